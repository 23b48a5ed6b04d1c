import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino, type Logger } from 'pino';
import { resolve } from 'node:path';
import { BorgpullError, errorMessage, installUnit, purgeStateDir, terminalSafe, thisProgram, uninstallUnit } from '@borgpull/protocol';
import { enroll } from './enroll.js';
import { removeOldBackupKey } from './authorized-keys.js';
import { AgentError } from './errors.js';
import { describePolicy, formatPolicy, loadPolicy, parsePolicy, savePolicy, type RestorePolicy } from './restore-policy.js';
import { AgentService } from './service.js';
import { AGENT_UNIT_NAME, agentUnit } from './service-unit.js';
import { agentPaths, DEFAULT_AGENT_STATE_DIR, loadEnrollment } from './state.js';
import { agentStatus, formatStatus } from './status.js';
import { agentVersion, SOFTWARE } from './version.js';

/** Parsed flags: string or boolean values by flag name. */
export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

const USAGE = `usage: agent <command> [options]

commands:
  enroll TOKEN [--force] [--restores anywhere|off|DIR[,DIR...]] [--sftp-root DIR]
                 enroll this machine with the controller that issued TOKEN
  run            run the service: stay connected to the controller, obey its orders
  restores [anywhere|off|DIR[,DIR...]]
                 show or set what a controller may restore here (a running agent
                 follows a change at once): anywhere (default), off, or only into
                 these directories
  status [--json] what this agent is enrolled to, its restore policy, its last restores
  install-service [--print] [--root DIR]
                 install, enable and start the systemd unit for 'run'
  uninstall-service [--purge --yes] [--root DIR]
                 stop, disable and remove it (--purge: the state dir too)
  --version      print this agent's version

every command: --state-dir DIR (or BORGPULL_AGENT_STATE_DIR; default ${DEFAULT_AGENT_STATE_DIR})`;

class UsageError extends BorgpullError {
  override name = 'UsageError';
  constructor(message: string) {
    super('E_USAGE', message);
  }
}

function parse(argv: string[], options: ParseArgsConfig['options']): Parsed {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' }, ...options },
    });
  } catch (err) {
    throw new UsageError(errorMessage(err).split('\n')[0] ?? 'bad arguments');
  }
}

function policyArg(text: string, what: string): RestorePolicy {
  try {
    return parsePolicy(text);
  } catch (err) {
    throw new UsageError(`${what} must be anywhere, off or DIR[,DIR...]: ${errorMessage(err)}`);
  }
}

const stdoutIo = { out: (s: string): void => void process.stdout.write(s + '\n') };

function rootOf(values: Record<string, unknown>): string {
  const r = values['root'];
  return typeof r === 'string' ? resolve(r) : '/';
}

function stateDirOf(values: Record<string, unknown>): string {
  const v = values['state-dir'];
  return typeof v === 'string' ? v : (process.env['BORGPULL_AGENT_STATE_DIR'] ?? DEFAULT_AGENT_STATE_DIR);
}

/** Usage of each command, printed by `agent COMMAND --help` (which never runs the command). */
const COMMAND_USAGE: Readonly<Record<string, string>> = {
  enroll:
    "usage: agent enroll TOKEN [--force] [--restores anywhere|off|DIR[,DIR...]] [--sftp-root DIR]\nenroll this machine with the controller that issued TOKEN\n--sftp-root DIR: what backups see as this machine's / (default /)\n--authorized-keys FILE: where an older version put the controller's key (default /root/.ssh/authorized_keys); that one line is removed\n(--sshd-port and --sshd-host-key are accepted and ignored: no sshd is needed)",
  restores: 'usage: agent restores [anywhere|off|DIR[,DIR...]]\nshow or set what a controller may restore on this machine',
  run: 'usage: agent run [--log-level LEVEL]\nrun the service: stay connected to the controller, obey its orders',
  status: 'usage: agent status [--json]\nshow what this agent is enrolled to, its restore policy and its last restore orders',
  'install-service':
    "usage: agent install-service [--print] [--root DIR]\nwrite /etc/systemd/system/borgpull-agent.service (running this program's 'run', with --state-dir when\nnot the default), then enable and start it when systemd runs this machine, or say what to run.\n--print shows the unit and writes nothing; --root DIR writes under DIR and never runs systemctl.",
  'uninstall-service':
    'usage: agent uninstall-service [--purge --yes] [--root DIR]\nstop, disable and remove the unit; the state dir is kept unless --purge --yes (which deletes the keys and the enrollment)',
};

function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '-h' || a === '--help') return true;
  }
  return false;
}

export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && Object.hasOwn(COMMAND_USAGE, cmd) && wantsHelp(rest)) {
    process.stdout.write(
      `${COMMAND_USAGE[cmd]}\n\nevery command: --state-dir DIR (or BORGPULL_AGENT_STATE_DIR; default ${DEFAULT_AGENT_STATE_DIR})\n`,
    );
    return 0;
  }
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return cmd === undefined ? 2 : 0;
    case '--version':
      process.stdout.write(`borgpull-agent ${agentVersion()}\n`);
      return 0;
    case 'enroll': {
      const { values, positionals } = parse(rest, {
        'sshd-port': { type: 'string' },
        'authorized-keys': { type: 'string' },
        'sshd-host-key': { type: 'string' },
        'sftp-root': { type: 'string' },
        force: { type: 'boolean' },
        restores: { type: 'string' },
      });
      const [token, ...extra] = positionals;
      if (!token || extra.length) throw new UsageError('usage: agent enroll TOKEN');
      // --sshd-port and --sshd-host-key: accepted so that scripts written for older versions still run; no sshd is used.
      const authorizedKeys = typeof values['authorized-keys'] === 'string' ? values['authorized-keys'] : '/root/.ssh/authorized_keys';
      if (!authorizedKeys.startsWith('/')) throw new UsageError('--authorized-keys must be an absolute path');
      const sftpRoot = typeof values['sftp-root'] === 'string' ? values['sftp-root'] : '/';
      if (!sftpRoot.startsWith('/') || sftpRoot.includes('\n')) throw new UsageError('--sftp-root must be an absolute path');
      const restores = typeof values['restores'] === 'string' ? policyArg(values['restores'], '--restores') : undefined;
      const paths = agentPaths(stateDirOf(values));
      const e = await enroll({
        token,
        paths,
        sftpRoot,
        authorizedKeys,
        software: SOFTWARE,
        force: values['force'] === true,
        restores,
      });
      process.stdout.write(`enrolled as '${terminalSafe(e.name)}' with ${terminalSafe(e.url)}\n`);
      const policy = await loadPolicy(paths.restorePolicy);
      process.stdout.write(
        `restore policy: ${policy.policy ? describePolicy(policy.policy) : 'damaged (every restore refused)'} (change with 'agent restores')\n`,
      );
      process.stdout.write(`next: run 'agent run' (as a service)\n`);
      return 0;
    }
    case 'run': {
      const { values, positionals } = parse(rest, { 'log-level': { type: 'string' } });
      if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      const paths = agentPaths(stateDirOf(values));
      const loaded = await loadEnrollment(paths);
      const level = typeof values['log-level'] === 'string' ? values['log-level'] : (process.env['BORGPULL_LOG_LEVEL'] ?? 'info');
      const log = pino({ level, base: { service: 'borgpull-agent', agentId: loaded.enrollment.name } });
      await dropOldBackupKey(loaded.enrollment.authorizedKeys ?? '/root/.ssh/authorized_keys', log);
      const hb = Number(process.env['BORGPULL_HEARTBEAT_MS']);
      const service = new AgentService({
        paths,
        ...loaded,
        software: SOFTWARE,
        log,
        heartbeatMs: Number.isInteger(hb) && hb >= 100 ? hb : undefined,
      });
      service.start();
      await new Promise<void>((resolve) => {
        let stopping = false;
        const shutdown = (signal: string): void => {
          if (stopping) {
            log.warn({ signal }, 'already stopping');
            return;
          }
          stopping = true;
          log.info({ signal }, 'shutting down');
          void service.stop(signal).then(resolve);
        };
        // 'on', never 'once': execa's exit hook (signal-exit) re-raises a signal
        // that it finds no other listener for, and a 'once' listener is gone by
        // the time it looks, so the agent died by SIGTERM before closing its
        // tunnel and session (test/e2e/lifecycle.test.ts).
        process.on('SIGINT', shutdown);
        process.on('SIGTERM', shutdown);
      });
      return 0;
    }
    case 'restores': {
      const { values, positionals } = parse(rest, {});
      if (positionals.length > 1) throw new UsageError('usage: agent restores [anywhere|off|DIR[,DIR...]]');
      const paths = agentPaths(stateDirOf(values));
      await loadEnrollment(paths); // a mistyped --state-dir is said, not silently created
      if (positionals[0] !== undefined) await savePolicy(paths.restorePolicy, policyArg(positionals[0], 'the policy'));
      const state = await loadPolicy(paths.restorePolicy);
      if (values['json']) {
        process.stdout.write(
          JSON.stringify(
            state.policy
              ? { restores: state.policy.mode === 'dirs' ? state.policy.dirs : state.policy.mode }
              : { restores: 'damaged', problem: state.damaged },
          ) + '\n',
        );
      } else if (state.policy) {
        process.stdout.write(`${formatPolicy(state.policy)}\n`);
        process.stderr.write(
          `${describePolicy(state.policy)}${positionals[0] !== undefined ? ' (a running agent applies it to the next restore order)' : ''}\n`,
        );
      } else {
        throw new AgentError(
          'E_CONFIG_INVALID',
          `${state.damaged}: every restore is refused; set it again with 'agent restores anywhere|off|DIR[,DIR...]'`,
        );
      }
      return 0;
    }
    case 'status': {
      const { values } = parse(rest, {});
      const paths = agentPaths(stateDirOf(values));
      const status = await agentStatus(paths);
      if (values['json']) process.stdout.write(JSON.stringify(status, null, 2) + '\n');
      else process.stdout.write(`${await formatStatus(paths, status)}\n`);
      return 0;
    }
    case 'install-service': {
      const { values, positionals } = parse(rest, { print: { type: 'boolean' }, root: { type: 'string' } });
      if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      const text = agentUnit(await thisProgram(), resolve(stateDirOf(values)));
      if (values['print']) process.stdout.write(text);
      else await installUnit({ root: rootOf(values), name: AGENT_UNIT_NAME, text, io: stdoutIo });
      return 0;
    }
    case 'uninstall-service': {
      const { values, positionals } = parse(rest, { purge: { type: 'boolean' }, yes: { type: 'boolean' }, root: { type: 'string' } });
      if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      const stateDir = resolve(stateDirOf(values));
      // Checked before anything is stopped: --purge deletes the agent's keys and enrollment.
      if (values['purge'] && !values['yes']) throw new UsageError(`--purge deletes ${stateDir} (keys, enrollment): add --yes`);
      await uninstallUnit({ root: rootOf(values), name: AGENT_UNIT_NAME, io: stdoutIo });
      if (values['purge']) await purgeStateDir(stateDir, stdoutIo);
      else process.stdout.write(`kept ${stateDir} (delete it with --purge --yes)\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${cmd}' (see 'agent help')`);
  }
}

/** Entry point of the `agent` executable: one line on error, never a stack. */
export async function main(argv: string[]): Promise<void> {
  try {
    process.exitCode = await run(argv);
  } catch (err) {
    const code = err instanceof BorgpullError ? err.code : 'E_INTERNAL';
    // An error may quote the controller's words (a refused enrollment): nothing in it may act on the terminal.
    process.stderr.write(
      `agent: ${terminalSafe(err instanceof Error ? err.message : String(err))}${code === 'E_INTERNAL' ? ' (internal error)' : ''}\n`,
    );
    if (code === 'E_INTERNAL' && process.env['BORGPULL_DEBUG']) process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = code === 'E_USAGE' ? 2 : 1;
  }
}

/**
 * An agent enrolled by an older version gave the controller a key in root's
 * authorized_keys; backups no longer use it, so the upgraded agent removes
 * exactly that line at start. A failure is logged, never fatal.
 */
async function dropOldBackupKey(file: string, log: Logger): Promise<void> {
  try {
    if (await removeOldBackupKey(file)) log.info({ file }, "removed the controller's old SFTP key line from authorized_keys");
  } catch (err) {
    log.warn({ file, reason: errorMessage(err) }, "cannot remove the controller's old SFTP key line from authorized_keys");
  }
}
