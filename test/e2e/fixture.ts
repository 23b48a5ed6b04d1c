import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  SERVER_ADDRESS,
  createClientHost,
  createServerHost,
  waitFor,
  type ClientHost,
  type ExecResult,
  type HostSubprocess,
  type ServerHost,
  type TunnelSshd,
} from '../harness/index.js';

/** The repository root: the nearest directory above this file with the workspace's package.json. */
function findRoot(): string {
  let dir = import.meta.dirname;
  for (;;) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'borgpull') return dir;
    } catch {
      /* keep looking */
    }
    const up = resolve(dir, '..');
    if (up === dir) throw new Error('cannot find the borgpull repository root');
    dir = up;
  }
}
export const ROOT = findRoot();
export const CONTROLLER = join(ROOT, 'packages/controller/bin/controller.js');
export const AGENT = join(ROOT, 'packages/agent/bin/agent.js');
export const WS_PORT = 7400;
export const TUNNEL_SSHD_PORT = 2222;
/** Short heartbeats, so that a cut connection is noticed within seconds. */
export const HEARTBEAT_MS = '2000';

/** A client's users: alice is 1000 here (the server has no alice), bob 1001, carol 1002 with no server match. */
export const CLIENT_PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'sshd:x:102:65534::/run/sshd:/usr/sbin/nologin',
  'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
  'bob:x:1001:1001:Bob:/home/bob:/bin/bash',
  'carol:x:1002:1002:Carol:/home/carol:/bin/bash',
].join('\n');
export const CLIENT_GROUP = ['root:x:0:', 'nogroup:x:65534:', 'alice:x:1000:', 'bob:x:1001:', 'staff:x:1002:'].join('\n');

export interface Controller {
  readonly server: ServerHost;
  /** The tunnel sshd agents dial (its config is the one `controller serve` checks). */
  readonly sshd: TunnelSshd;
  readonly state: string;
  proc: HostSubprocess;
  /** Runs the controller CLI; never throws: check exitCode. */
  cli(args: string[], timeout?: number): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  start(): Promise<void>;
  /** Merges settings into config.json (read by every job). */
  configure(patch: Record<string, unknown>): void;
}

/**
 * `tunnelRules`: the tunnel sshd's rules for the tunnel user, given the tunnel
 * keys file (default: the harness's TUNNEL_RULES).
 */
export async function startController(opts: { tunnelRules?: (authorizedKeysFile: string) => readonly string[] } = {}): Promise<Controller> {
  const server = await createServerHost();
  const state = join(server.dir, 'state');
  const authorizedKeysFile = join(state, 'tunnel', 'authorized_keys');
  const sshd = await server.startTunnelSshd({ port: TUNNEL_SSHD_PORT, authorizedKeysFile, rules: opts.tunnelRules?.(authorizedKeysFile) });
  const hostKeyFile = join(server.dir, 'tunnel_host_key.pub');
  writeFileSync(hostKeyFile, `${sshd.hostKeyPublic}\n`);
  const cli: Controller['cli'] = async (args, timeout = 120_000) => {
    const r = await server.exec(['node', CONTROLLER, ...args, '--state-dir', state], { reject: false, timeout });
    return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const init = await cli([
    'init',
    '--url',
    `ws://${SERVER_ADDRESS}:${WS_PORT}`,
    '--listen',
    `0.0.0.0:${WS_PORT}`,
    '--ssh-host',
    SERVER_ADDRESS,
    '--ssh-port',
    String(TUNNEL_SSHD_PORT),
    '--ssh-host-key',
    hostKeyFile,
    // The tunnel sshd's config, which `controller serve` checks with `sshd -T`.
    '--sshd-config',
    sshd.configFile,
    // No job starts by itself (whatever the time of day CI runs at) unless a
    // test asks for one: it sets `schedule` with configure() and reload().
    '--schedule',
    'off',
  ]);
  if (init.exitCode !== 0) throw new Error(`controller init failed: ${init.stderr}`);
  // Nor does a backup prune or a check run unless the test asks (retention.test.ts does):
  // archives stay as the test made them, and backups take no longer than they need.
  const written = join(state, 'config.json');
  writeFileSync(
    written,
    JSON.stringify({ ...(JSON.parse(readFileSync(written, 'utf8')) as object), retention: 'off', checks: { schedule: 'off' } }),
  );
  const ctl: Controller = {
    server,
    sshd,
    state,
    proc: undefined as unknown as HostSubprocess,
    cli,
    async start() {
      this.proc = server.spawn(['node', CONTROLLER, 'serve', '--state-dir', state], { env: { BORGPULL_HEARTBEAT_MS: HEARTBEAT_MS } });
      const proc = this.proc;
      await waitFor('controller listening', () => server.isListening(WS_PORT), {
        timeoutMs: 20_000,
        abortIf: () => (proc.exitCode === null ? undefined : `controller exited: ${server.logs()}`),
      });
    },
    configure(patch) {
      const file = join(state, 'config.json');
      const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      writeFileSync(file, JSON.stringify({ ...cfg, ...patch }, null, 2));
    },
  };
  await ctl.start();
  return ctl;
}

export interface Client {
  readonly host: ClientHost;
  readonly name: string;
  agent?: HostSubprocess;
  startAgent(): Promise<void>;
}

/** A client host with an enrolled, running agent. */
export async function startClient(
  ctl: Controller,
  name: string,
  opts: { system?: boolean; passwd?: string; group?: string; enrollArgs?: string[]; sshd?: boolean } = {},
): Promise<Client> {
  const host = await createClientHost(ctl.server, {
    name,
    passwd: opts.passwd ?? CLIENT_PASSWD,
    group: opts.group ?? CLIENT_GROUP,
    system: opts.system ?? false,
    // borgpull's clients need no sshd: the agent serves SFTP itself (the bench starts one for its baselines).
    sshd: opts.sshd ?? false,
  });
  const tok = await ctl.cli(['token', name]);
  if (tok.exitCode !== 0) throw new Error(`token failed: ${tok.stderr}`);
  const agentState = join(host.dir, 'agent-state');
  const enroll = await host.exec(
    [
      'node',
      AGENT,
      'enroll',
      tok.stdout.trim(),
      '--state-dir',
      agentState,
      // What backups see as the client's /: its harness root (the host's / is the machine running the tests).
      '--sftp-root',
      host.root,
      ...(opts.enrollArgs ?? []),
    ],
    { reject: false },
  );
  if (enroll.exitCode !== 0) throw new Error(`agent enroll failed: ${enroll.stderr}`);
  const client: Client = {
    host,
    name,
    async startAgent() {
      this.agent = host.spawn(['node', AGENT, 'run', '--state-dir', agentState], { env: { BORGPULL_HEARTBEAT_MS: HEARTBEAT_MS } });
      await waitForAgent(ctl, name, true);
    },
  };
  await client.startAgent();
  return client;
}

export async function agentsJson(ctl: Controller): Promise<Array<{ name: string; connected: boolean; since: number | null }>> {
  const r = await ctl.cli(['agents', '--json']);
  if (r.exitCode !== 0) return [];
  return JSON.parse(r.stdout) as Array<{ name: string; connected: boolean; since: number | null }>;
}

export async function waitForAgent(ctl: Controller, name: string, connected: boolean): Promise<void> {
  let last = false;
  await waitFor(
    `agent ${name} ${connected ? 'connected' : 'disconnected'}`,
    async () => {
      last = (await agentsJson(ctl)).some((a) => a.name === name && a.connected);
      return last === connected;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

export interface Item {
  path: string;
  type: string;
  mode: string;
  user: string;
  group: string;
  uid: number;
  gid: number;
  linktarget: string;
  size: number;
  mtime: string;
}

/**
 * Runs borg on an agent's repository on the server, as the controller does:
 * the passphrase on fd 3 from its root-only file, the agent's own base dir.
 * `args` name the repository as REPO (replaced by its path).
 */
export function serverBorg(ctl: Controller, agent: string, args: string[]): Promise<ExecResult> {
  const repo = join(ctl.state, 'repos', agent);
  return ctl.server.exec(['sh', '-c', 'exec borg "$@" 3<"$PASSPHRASE_FILE"', 'borg', ...args.map((a) => a.replace(/^REPO/, repo))], {
    env: {
      PASSPHRASE_FILE: join(ctl.state, 'secrets', `${agent}.passphrase`),
      BORG_PASSPHRASE_FD: '3',
      BORG_BASE_DIR: join(ctl.state, 'borg', agent),
      PYTHONNOUSERSITE: '1',
      BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
    },
    reject: false,
  });
}

/** The items of an archive, straight from borg on the server. */
export async function listItems(ctl: Controller, agent: string, archive: string): Promise<Item[]> {
  const r = await serverBorg(ctl, agent, ['list', '--json-lines', `REPO::${archive}`]);
  if (r.exitCode !== 0) throw new Error(`borg list failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Item);
}

/** Pids whose command line contains every one of `parts` (e.g. a job's borg or sshfs). */
export function pidsMatching(...parts: string[]): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (Number(d) !== process.pid && parts.every((p) => cmd.includes(p))) out.push(Number(d));
  }
  return out;
}

/** Any process or mount that a job of this controller could leave behind. */
export function jobLeftovers(ctl: Controller): string[] {
  const found: string[] = [];
  // A job's shell gets its paths through the environment: match this controller's there.
  const jobShells = pidsMatching('unshare', 'borgpull-job').filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'utf8').includes(ctl.state);
    } catch {
      return false;
    }
  });
  for (const pid of [...pidsMatching('sshfs', ctl.state), ...pidsMatching('borg', ctl.state), ...jobShells]) {
    found.push(`process ${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(0, 200)}`);
  }
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    if (line.includes(ctl.state) || line.includes(' fuse.sshfs ')) found.push(`mount: ${line}`);
  }
  return found;
}

export interface BackupRun {
  exitCode: number;
  jobs: Array<{ agent: string; archive?: string; status: string; code?: string; reason?: string; stats?: Record<string, number> }>;
  stdout: string;
  stderr: string;
}

export async function backup(ctl: Controller, args: string[]): Promise<BackupRun> {
  const r = await ctl.cli(['backup', ...args, '--json'], 300_000);
  let jobs: BackupRun['jobs'] = [];
  try {
    jobs = JSON.parse(r.stdout) as BackupRun['jobs'];
  } catch {
    /* left empty: assertions show stdout and stderr */
  }
  return { exitCode: r.exitCode, jobs, stdout: r.stdout, stderr: r.stderr };
}

/** Many small files, so that a backup runs long enough to be interrupted. */
export function manyFiles(count: number, dir = 'bulk'): Record<string, string> {
  const tree: Record<string, string> = {};
  for (let i = 0; i < count; i++) tree[`${dir}/d${i % 50}/f${i}.txt`] = `file ${i} ${'x'.repeat(i % 300)}\n`;
  return tree;
}

/** Where a client's agent listens for SFTP while a job runs; its tunnel forwards the server's port here. */
export function sftpSocket(c: Client): string {
  return join(c.host.dir, 'agent-state', 'sftp', 'sftp.sock');
}

/** The agent's sftp-server processes for this client: what serves sshfs its files. SIGSTOP them to stall a client. */
export function sftpSessions(c: Client): number[] {
  return pidsMatching('sftp-server', '-R', c.host.root);
}

export function signalAll(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}

/** The JSON log lines a process writes to stdout, as they come. */
export function logLines(proc: HostSubprocess): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  let rest = '';
  proc.stdout.on('data', (b: Buffer) => {
    const parts = (rest + b.toString()).split('\n');
    rest = parts.pop() ?? '';
    for (const l of parts) {
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* not a log line */
      }
    }
  });
  return lines;
}
