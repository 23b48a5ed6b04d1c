/**
 * The `controller` executable: picks the command module (cli/), prints usage
 * (cli/usage.ts) and turns errors into one line and an exit status. Command
 * modules never import this file.
 */
import { BorgpullError, errorMessage, terminalSafe } from '@borgpull/protocol';
import { wantsHelp } from './cli/args.js';
import { agentsCommand, tokenCommand } from './cli/agents.js';
import { archivesCommand, backupCommand } from './cli/backup.js';
import { checkCommand } from './cli/check.js';
import { initController } from './cli/init.js';
import { jobsCommand } from './cli/jobs.js';
import { pruneCommand, verifyCommand } from './cli/maintenance.js';
import { defaultIo, type Io } from './cli/io.js';
import { restoreCommand } from './cli/restore.js';
import { serveCommand } from './cli/serve.js';
import { installServiceCommand, setupHostCommand, uninstallServiceCommand } from './cli/service.js';
import { helpText, isCommand, USAGE } from './cli/usage.js';
import { UsageError } from './cli/usage-error.js';
import { controllerVersion } from './version.js';

export async function run(argv: string[], io: Io = defaultIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && isCommand(cmd) && wantsHelp(rest)) {
    io.out(helpText(cmd));
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
      return serveCommand(rest);
    case 'check':
      return checkCommand(rest, io);
    case 'token':
      return tokenCommand(rest, io);
    case 'agents':
      return agentsCommand(rest, io);
    case 'backup':
      return backupCommand(rest, io);
    case 'archives':
      return archivesCommand(rest, io);
    case 'jobs':
      return jobsCommand(rest, io);
    case 'restore':
      return restoreCommand(rest, io);
    case 'prune':
      return pruneCommand(rest, io);
    case 'verify':
      return verifyCommand(rest, io);
    case 'install-service':
      return installServiceCommand(rest, io);
    case 'uninstall-service':
      return uninstallServiceCommand(rest, io);
    case 'setup-host':
      return setupHostCommand(rest, io);
    default:
      throw new UsageError(`unknown command '${cmd}' (see 'controller help')`);
  }
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
