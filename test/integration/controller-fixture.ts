/**
 * A real `controller serve` in a temp state dir, enrolled agents, and what a
 * test reads from outside the process (VmRSS, child processes). Shared by the
 * transport-limit tests; needs a build (`npx tsc -b`).
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { parseIdentity, type IdentityKeys } from '@borgpull/protocol';
import { AGENT_BIN, CONTROLLER_BIN, Procs, cli, freePort, safeSshdConfig, type CliResult, type Proc } from './procs.js';

export interface AgentView {
  name: string;
  connected: boolean;
  since: number | null;
  address: string | null;
}

export class Fixture {
  readonly procs = new Procs();
  private seq = 0;
  private constructor(
    readonly tmp: string,
    readonly hostKeyFile: string,
  ) {}

  static async create(): Promise<Fixture> {
    const tmp = await mkdtemp(join(tmpdir(), 'borgpull-limits-'));
    const hostKeyFile = join(tmp, 'ssh_host_ed25519_key');
    // A host key of our own, so nothing depends on this machine's sshd.
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', hostKeyFile]);
    return new Fixture(tmp, hostKeyFile);
  }

  async dispose(): Promise<void> {
    await this.procs.killAll();
    await rm(this.tmp, { recursive: true, force: true });
  }

  dir(kind: string): string {
    return join(this.tmp, `${kind}-${++this.seq}`);
  }

  /** `controller init` in a fresh state dir, then `controller serve`. */
  async controller(): Promise<Controller> {
    const c = new Controller(this, this.dir('controller'));
    const port = await freePort();
    // The tunnel sshd rules are checked at start: check a config of our own, never this machine's.
    const sshdConfig = safeSshdConfig(this.tmp, this.hostKeyFile);
    const init = await c.run(
      'init',
      '--url',
      `ws://127.0.0.1:${port}`,
      '--ssh-host-key',
      `${this.hostKeyFile}.pub`,
      '--sshd-config',
      sshdConfig,
      // No job starts by itself (whatever the time of day) unless a test asks for one.
      '--schedule',
      'off',
    );
    expect(init.exitCode, init.stderr).toBe(0);
    c.key = Buffer.from(/controller key bp-ed25519:(\S+)/.exec(init.stdout)?.[1] ?? '', 'base64url');
    expect(c.key.length).toBe(32);
    await c.start();
    return c;
  }
}

export class Controller {
  serve!: Proc;
  key = Buffer.alloc(0);
  listenPort = 0;
  constructor(
    readonly fx: Fixture,
    readonly dir: string,
  ) {}

  run(...args: string[]): Promise<CliResult> {
    return cli(CONTROLLER_BIN, [...args, '--state-dir', this.dir]);
  }

  async start(): Promise<void> {
    this.serve = this.fx.procs.spawn('controller', CONTROLLER_BIN, ['serve', '--state-dir', this.dir]);
    const listening = await this.serve.waitForLog({ msg: 'listening for agents' });
    this.listenPort = listening['port'] as number;
    await this.serve.waitForLog({ msg: 'controller state', to: 'running' });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.listenPort}`;
  }

  async agents(): Promise<AgentView[]> {
    const r = await this.run('agents', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as AgentView[];
  }

  async agent(name: string): Promise<AgentView> {
    const a = (await this.agents()).find((v) => v.name === name);
    if (!a) throw new Error(`agent ${name} is not listed`);
    return a;
  }

  /** Token + `agent enroll`; returns the agent's state dir and its identity. */
  async enroll(name: string): Promise<{ dir: string; identity: IdentityKeys }> {
    const t = await this.run('token', name, '--json');
    expect(t.exitCode, t.stderr).toBe(0);
    const { token } = JSON.parse(t.stdout) as { token: string };
    const dir = this.fx.dir('agent');
    const r = await cli(AGENT_BIN, [
      'enroll',
      token,
      '--state-dir',
      dir,
      '--authorized-keys',
      join(dir, 'authorized_keys'),
      '--sshd-host-key',
      `${this.fx.hostKeyFile}.pub`,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    return { dir, identity: parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8')) };
  }

  /** `agent run`, waited on until the controller has its connection. */
  async runAgent(name: string, dir: string): Promise<Proc> {
    const from = this.serve.mark();
    const p = this.fx.procs.spawn(`agent ${name}`, AGENT_BIN, ['run', '--state-dir', dir]);
    await p.waitForLog({ msg: 'agent state', to: 'connected' });
    await this.serve.waitForLog({ msg: 'agent connected', agentId: name }, { from });
    return p;
  }

  /** The daemon's resident set, from /proc/PID/status, in bytes. */
  async rss(): Promise<number> {
    return vmRss(this.serve.pid);
  }
}

export async function vmRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib) * 1024;
}

/** Command lines of the live processes whose parent is `pid`. */
export async function childCommands(pid: number): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const status = await readFile(`/proc/${d}/status`, 'utf8');
      if (Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1]) !== pid) continue;
      if (/^State:\s+Z/m.test(status)) continue;
      out.push((await readFile(`/proc/${d}/cmdline`, 'utf8')).split('\0').join(' ').trim());
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

export const MIB = 1024 * 1024;
