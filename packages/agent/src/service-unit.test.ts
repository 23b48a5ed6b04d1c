import { access, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { analyzeUnit } from '../../../test/harness/systemd-analyze.js';
import { agentUnit } from './service-unit.js';

// The real executable (built by `tsc -b`), as a user runs it: exit status and stderr are part of what is tested.
const BIN = join(import.meta.dirname, '..', 'bin', 'agent.js');
const agent = (...args: string[]) =>
  execa(process.execPath, [BIN, ...args], { reject: false, env: { BORGPULL_AGENT_STATE_DIR: undefined } });

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'borgpull-svc-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('agent install-service', () => {
  it('--print shows the unit running this program with the custom state dir', async () => {
    const r = await agent('install-service', '--print', '--state-dir', '/srv/borgpull agent');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^ExecStart="${process.execPath}" "${await realpath(BIN)}" "run" "--state-dir" "/srv/borgpull agent"$`, 'm'),
    );
    expect(r.stdout).toMatch(/^Restart=on-failure$/m);
    // Off on purpose (restores may target /tmp and /home); MDWE would kill node.
    expect(r.stdout).toMatch(/^PrivateTmp=no$/m);
    expect(r.stdout).toMatch(/^MemoryDenyWriteExecute=no$/m);
  });

  it('the default state dir is not repeated; the single binary is its own ExecStart', () => {
    expect(agentUnit(['/usr/local/bin/borgpull-agent'], '/var/lib/borgpull-agent')).toMatch(
      /^ExecStart="\/usr\/local\/bin\/borgpull-agent" "run"$/m,
    );
  });

  it('passes systemd-analyze verify, with an exposure score of at most 4.0', async () => {
    for (const stateDir of ['/var/lib/borgpull-agent', '/srv/a b/%i$x']) {
      const r = await analyzeUnit('borgpull-agent', agentUnit([process.execPath, '/usr/lib/borgpull/agent.js'], stateDir));
      expect(r.verify).toEqual({ exitCode: 0, output: '' });
      expect(r.exposure).toBeLessThanOrEqual(4.0);
    }
  });

  it('refuses a state dir that would add a directive: one line, a code, no stack', async () => {
    const r = await agent('install-service', '--print', '--state-dir', '/srv/x\nExecStartPre=/bin/touch /tmp/pwned');
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^agent: cannot put .* in a unit file/);
  });

  it('installs into --root and uninstall removes it, keeping the state dir; --purge needs --yes', async () => {
    const root = await tempDir();
    const state = await tempDir();
    await writeFile(join(state, 'identity.json'), '{}');
    const unit = join(root, 'etc/systemd/system/borgpull-agent.service');

    const i = await agent('install-service', '--root', root, '--state-dir', state);
    expect(i.exitCode).toBe(0);
    expect(await readFile(unit, 'utf8')).toContain(`"run" "--state-dir" "${state}"`);
    expect(i.stdout).toContain(
      `installed under --root ${root}: nothing started. On that system, run:\n  systemctl daemon-reload\n  systemctl enable --now borgpull-agent.service`,
    );

    const refused = await agent('uninstall-service', '--root', root, '--state-dir', state, '--purge');
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toBe(`agent: --purge deletes ${state} (keys, enrollment): add --yes`);
    await access(unit);

    const u = await agent('uninstall-service', '--root', root, '--state-dir', state);
    expect(u.exitCode).toBe(0);
    await expect(access(unit)).rejects.toMatchObject({ code: 'ENOENT' });
    await access(join(state, 'identity.json'));

    const p = await agent('uninstall-service', '--root', root, '--state-dir', state, '--purge', '--yes');
    expect(p.exitCode).toBe(0);
    await expect(access(state)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('--help describes the commands and runs nothing', async () => {
    for (const cmd of ['install-service', 'uninstall-service']) {
      const r = await agent(cmd, '--purge', '--help');
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: agent ${cmd}`));
    }
  });
});
