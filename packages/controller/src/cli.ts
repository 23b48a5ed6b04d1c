import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino } from 'pino';
import { BorgpullError, errorMessage, terminalSafe } from '@borgpull/protocol';
import { adminRequest, adminSocketPath } from './admin-socket.js';
import { DEFAULT_STATE_DIR } from './config.js';
import { ControllerDaemon, type AgentView } from './daemon.js';
import { ago, table } from './format.js';
import { initController } from './init.js';
import { registerJobs } from './jobs/register.js';
import { backupCommand, archivesCommand, jobsCommand } from './cli-backup.js';
import { restoreCommand } from './cli-restore.js';
import { checkCommand } from './cli-check.js';
import { versionCell } from './agent-version.js';
import { controllerVersion } from './version.js';

/** Parsed flags: string or boolean values by flag name. */
export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

const USAGE = `usage: controller <command> [options]

commands:
  init --url ws://HOST:PORT [--listen HOST:PORT] [--ssh-host HOST] [--ssh-port N]
       [--tunnel-user USER] [--ssh-host-key FILE] [--sshd-config FILE] [--exclude PATTERN]...
       [--isolation namespace|chroot] [--parallel N]  create the state directory
       [--time-limit 24h] [--quota SIZE|none] [--min-free-space 2G]  job and disk limits
  serve                                 run the daemon (agents, admin socket, jobs)
  check [--json]                        check the tunnel sshd's rules for the tunnel user (ok/FAIL)
  token NAME [--ttl MINUTES]            print a one-time enrollment token for agent NAME
  agents [--json]                       list agents
  agents revoke NAME                    cut an agent off at once and for good
  backup NAME... | --all [--json]       back up agents now
  archives NAME [--json]                list an agent's archives
  jobs [--json] [--limit N]             recent jobs and their outcome
  restore NAME ARCHIVE [PATH...] [--method stream|extract|full] [--target DIR] [--dry-run] [--yes]
  --version                             print this controller's version

every command: --state-dir DIR (or BORGPULL_STATE_DIR; default ${DEFAULT_STATE_DIR})`;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

const defaultIo: Io = {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
};

export class UsageError extends BorgpullError {
  override name = 'UsageError';
  constructor(message: string) {
    super('E_USAGE', message);
  }
}

export function parse(argv: string[], options: ParseArgsConfig['options']): Parsed {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...options },
    });
  } catch (err) {
    throw new UsageError(errorMessage(err).split('\n')[0] ?? 'bad arguments');
  }
}

export function stateDirOf(values: Record<string, unknown>): string {
  const v = values['state-dir'];
  return typeof v === 'string' ? v : (process.env['BORGPULL_STATE_DIR'] ?? DEFAULT_STATE_DIR);
}

/** Usage of each command, printed by `controller COMMAND --help` (which never runs the command). */
const COMMAND_USAGE: Readonly<Record<string, string>> = {
  init: `usage: controller init --url ws://HOST:PORT [--listen HOST:PORT] [--ssh-host HOST] [--ssh-port N]
       [--tunnel-user USER] [--ssh-host-key FILE] [--exclude PATTERN]... [--isolation namespace|chroot]
       [--parallel N] [--tls-cert FILE --tls-key FILE] [--sshd-config FILE]
       [--time-limit DURATION] [--quota SIZE|none] [--min-free-space SIZE]
create the state directory, the controller's keys and config.json`,
  check: "usage: controller check [--json]\ncheck the tunnel sshd's effective rules for the tunnel user, each ok or FAIL",
  serve: 'usage: controller serve [--log-level LEVEL]\nrun the daemon: agents, admin socket, jobs',
  token: 'usage: controller token NAME [--ttl MINUTES] [--json]\nprint a one-time enrollment token for agent NAME',
  agents: 'usage: controller agents [--json]\n       controller agents revoke NAME\nlist agents, or cut one off at once and for good',
  backup: 'usage: controller backup NAME... | --all [--json]\nback up agents now, with live progress and a summary',
  archives: "usage: controller archives NAME [--json]\nlist an agent's archives",
  jobs: 'usage: controller jobs [--json] [--limit N] [--agent NAME]\nrecent jobs and their outcome',
  restore:
    'usage: controller restore NAME ARCHIVE [PATH...] [--method stream|extract|full] [--target DIR] [--dry-run] [--yes] [--json]\nrestore an archive (or PATHs of it) onto the client',
};

/** True when -h/--help comes before any `--`: the command is then described, never run. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '-h' || a === '--help') return true;
  }
  return false;
}

export async function run(argv: string[], io: Io = defaultIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && Object.hasOwn(COMMAND_USAGE, cmd) && wantsHelp(rest)) {
    io.out(`${COMMAND_USAGE[cmd]}\n\nevery command: --state-dir DIR (or BORGPULL_STATE_DIR; default ${DEFAULT_STATE_DIR})`);
    return 0;
  }
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return cmd === undefined ? 2 : 0;
    case '--version':
      io.out(`borgpull-controller ${controllerVersion()}`);
      return 0;
    case 'init':
      return initController(rest, io);
    case 'serve':
      return serve(rest);
    case 'check':
      return checkCommand(rest, io);
    case 'token':
      return token(rest, io);
    case 'agents':
      return agents(rest, io);
    case 'backup':
      return backupCommand(rest, io);
    case 'archives':
      return archivesCommand(rest, io);
    case 'jobs':
      return jobsCommand(rest, io);
    case 'restore':
      return restoreCommand(rest, io);
    default:
      throw new UsageError(`unknown command '${cmd}' (see 'controller help')`);
  }
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'log-level': { type: 'string' } });
  const level = typeof values['log-level'] === 'string' ? values['log-level'] : (process.env['BORGPULL_LOG_LEVEL'] ?? 'info');
  const log = pino({ level, base: { service: 'borgpull-controller' }, redact: ['passphrase', '*.passphrase', 'token', '*.token'] });
  const daemon = new ControllerDaemon(stateDirOf(values), log, { heartbeatMs: heartbeatFromEnv() });
  registerJobs(daemon, log);
  await daemon.start();
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'shutting down');
      void daemon.stop(signal).then(resolve);
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  return 0;
}

async function token(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { ttl: { type: 'string' } });
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw new UsageError('usage: controller token NAME [--ttl MINUTES]');
  const ttl = values['ttl'] === undefined ? 60 : Number(values['ttl']);
  if (!Number.isFinite(ttl) || ttl <= 0 || ttl > 7 * 24 * 60) throw new UsageError('--ttl must be minutes, between 1 and 10080');
  const res = (await adminRequest(adminSocketPath(stateDirOf(values)), 'token', { name, ttlMs: Math.round(ttl * 60_000) })) as {
    token: string;
    expiresAt: number;
  };
  if (values['json']) io.out(JSON.stringify(res));
  else io.out(res.token);
  return 0;
}

async function agents(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const sock = adminSocketPath(stateDirOf(values));
  if (positionals[0] === 'revoke') {
    const name = positionals[1];
    if (!name || positionals.length > 2) throw new UsageError('usage: controller agents revoke NAME');
    await adminRequest(sock, 'revoke', { name });
    io.out(`agent '${name}' revoked: its key is refused from now on`);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unknown agents subcommand '${positionals[0]}'`);
  const list = (await adminRequest(sock, 'agents', {})) as AgentView[];
  if (values['json']) {
    io.out(JSON.stringify(list, null, 2));
    return 0;
  }
  if (list.length === 0) {
    io.out("no agents enrolled yet: 'controller token NAME' makes a token for 'agent enroll'");
    return 0;
  }
  io.out(
    table(
      ['NAME', 'STATUS', 'SINCE', 'LAST SEEN', 'ADDRESS', 'VERSION'],
      list.map((a) => [
        a.name,
        a.revoked ? 'revoked' : a.connected ? 'connected' : 'offline',
        a.connected ? ago(a.since) : '-',
        a.connected ? 'now' : ago(a.lastSeen),
        a.address ?? '-',
        versionCell(a),
      ]),
    ),
  );
  return 0;
}

/** BORGPULL_HEARTBEAT_MS: how often to ping peers (default 15000); a peer silent for two is cut off. */
export function heartbeatFromEnv(): number | undefined {
  const v = Number(process.env['BORGPULL_HEARTBEAT_MS']);
  return Number.isInteger(v) && v >= 100 ? v : undefined;
}

/** Entry point of the `controller` executable: one line on error, never a stack. */
export async function main(argv: string[]): Promise<void> {
  try {
    process.exitCode = await run(argv);
  } catch (err) {
    const code = err instanceof BorgpullError ? err.code : 'E_INTERNAL';
    // A daemon's error may quote an agent's words: nothing in it may act on the terminal.
    process.stderr.write(`controller: ${terminalSafe(errorMessage(err))}${code === 'E_INTERNAL' ? ' (internal error)' : ''}\n`);
    if (code === 'E_INTERNAL' && process.env['BORGPULL_DEBUG']) process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = code === 'E_USAGE' ? 2 : 1;
  }
}
