/**
 * The single-file builds of `npm run bundle` (built here when missing or
 * stale), run from a directory with no node_modules: the JS bundles with
 * plain node, the single binaries with nothing at all. The controller and
 * the agent bundles enroll and connect over loopback like the real thing
 * (msgpack, handshake, sealed session, all in the bundle's own code).
 * The single binary's full job on a client without Node.js: test/e2e/single-binary.test.ts.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBundle } from '../e2e/bundle-build.js';
import { AGENT_BIN, Procs, cli, cleanEnv, freePort, safeSshdConfig } from './procs.js';

const procs = new Procs();
let tmp = '';
let agent: { binary: string; mjs: string };
let controller: { binary: string; mjs: string };
/** Copies of the bundles in a directory of their own: no package.json, no node_modules anywhere above it. */
let agentMjs = '';
let controllerMjs = '';
const AGENT_VERSION = (
  JSON.parse(await readFile(new URL('../../packages/agent/package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** Runs FILE (a binary, or node with an .mjs) in `cwd`, environment cleaned of BORGPULL_*. */
async function run(file: string, args: string[], env: Record<string, string> = {}) {
  const [cmd, argv] = file.endsWith('.mjs') ? [process.execPath, [file, ...args]] : [file, args];
  const r = await execa(cmd, argv, { reject: false, extendEnv: false, env: cleanEnv(env), cwd: tmp, stdin: 'ignore', timeout: 30_000 });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  agent = await ensureBundle('agent');
  controller = await ensureBundle('controller');
  tmp = await mkdtemp(join(tmpdir(), 'borgpull-bundle-'));
  agentMjs = join(tmp, 'borgpull-agent.mjs');
  controllerMjs = join(tmp, 'borgpull-controller.mjs');
  await copyFile(agent.mjs, agentMjs);
  await copyFile(controller.mjs, controllerMjs);
}, 300_000);

afterAll(async () => {
  await procs.killAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the single-file builds', () => {
  it('print their version, injected at build time, with no package.json beside them', async () => {
    for (const f of [agentMjs, agent.binary])
      expect(await run(f, ['--version'])).toMatchObject({ exitCode: 0, stdout: `borgpull-agent ${AGENT_VERSION}`, stderr: '' });
    for (const f of [controllerMjs, controller.binary]) {
      const r = await run(f, ['--version']);
      expect(r).toMatchObject({ exitCode: 0, stderr: '' });
      expect(r.stdout).toMatch(/^borgpull-controller \d+\.\d+\.\d+$/);
    }
    // The binary says nothing about being an experimental SEA, and fails like the CLI does.
    expect(await run(agent.binary, ['bogus'])).toMatchObject({
      exitCode: 2,
      stderr: "agent: unknown command 'bogus' (see 'agent help')\n".trimEnd(),
    });
  });

  it('install-service names the program that runs: the single binary itself, or node and the .mjs', async () => {
    const exec = async (f: string) => {
      const r = await run(f, ['install-service', '--print', '--state-dir', '/srv/bp']);
      expect(r).toMatchObject({ exitCode: 0, stderr: '' });
      return r.stdout.split('\n').find((l) => l.startsWith('ExecStart='));
    };
    expect(await exec(agent.binary)).toBe(`ExecStart="${agent.binary}" "run" "--state-dir" "/srv/bp"`);
    expect(await exec(controller.binary)).toBe(`ExecStart="${controller.binary}" "serve" "--state-dir" "/srv/bp"`);
    expect(await exec(agentMjs)).toBe(`ExecStart="${process.execPath}" "${agentMjs}" "run" "--state-dir" "/srv/bp"`);
  });

  it('load no native addon, even next to a node_modules that has them', async () => {
    // LD_DEBUG=files makes the dynamic loader name every object it opens: a .node is an addon.
    const probe = async (args: string[]) => {
      const r = await execa(process.execPath, args, { reject: false, env: { LD_DEBUG: 'files' }, all: true, timeout: 30_000 });
      return r.all.split('\n').filter((l) => /\.node\b/.test(l) && /file=/.test(l));
    };
    // The probe sees them: the unbundled agent loads msgpackr's native extractor from node_modules.
    expect(await probe([AGENT_BIN, '--version'])).not.toEqual([]);
    // The bundles in dist-bundle/, whose parent holds that node_modules, load none.
    expect(await probe([agent.mjs, '--version'])).toEqual([]);
    expect(await probe([controller.mjs, '--version'])).toEqual([]);
    const text = await readFile(agent.mjs, 'utf8');
    expect(text).not.toMatch(/node-gyp-build|\.node['"]/);
    expect(text).toContain('msgpackr-extract: native addon left out of the borgpull bundle');
  });

  it('enroll and connect: the controller bundle serves, the agent bundle dials it', async () => {
    const state = join(tmp, 'controller');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', join(tmp, 'host_key')]);
    const port = await freePort();
    const init = await run(controllerMjs, [
      'init',
      '--url',
      `ws://127.0.0.1:${port}`,
      '--ssh-host-key',
      join(tmp, 'host_key.pub'),
      '--sshd-config',
      safeSshdConfig(tmp, join(tmp, 'host_key')),
      // No job starts by itself in a test that did not ask for one.
      '--schedule',
      'off',
      '--state-dir',
      state,
    ]);
    expect(init.exitCode, init.stderr).toBe(0);
    const serve = procs.spawn('controller bundle', controllerMjs, ['serve', '--state-dir', state]);
    await serve.waitForLog({ msg: 'controller state', to: 'running' });
    const tok = await run(controllerMjs, ['token', 'mjs1', '--state-dir', state]);
    expect(tok.exitCode, tok.stderr).toBe(0);
    const dir = join(tmp, 'agent');
    const enroll = await run(agentMjs, [
      'enroll',
      tok.stdout.trim(),
      '--state-dir',
      dir,
      '--authorized-keys',
      join(tmp, 'authorized_keys'),
      '--sshd-host-key',
      join(tmp, 'host_key.pub'),
    ]);
    expect(enroll.exitCode, enroll.stderr).toBe(0);
    const from = serve.mark();
    const a = procs.spawn('agent bundle', agentMjs, ['run', '--state-dir', dir]);
    await a.waitForLog({ msg: 'agent state', to: 'connected' });
    await serve.waitForLog({ msg: 'agent connected', agentId: 'mjs1' }, { from });
    const list = await cli(controllerMjs, ['agents', '--json', '--state-dir', state]);
    expect(JSON.parse(list.stdout)).toMatchObject([
      { name: 'mjs1', connected: true, version: `borgpull-agent/${AGENT_VERSION}`, outdated: false },
    ]);
  });
});
