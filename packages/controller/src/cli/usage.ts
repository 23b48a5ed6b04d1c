/**
 * Every command's usage, in one place: `controller help`, `controller
 * COMMAND --help` (which never runs the command) and the UsageError of a
 * command called wrongly all print from here.
 */
import { DEFAULT_STATE_DIR } from '../config.js';
import { UsageError } from './usage-error.js';

export const EVERY_COMMAND = `every command: --state-dir DIR (or BORGPULL_STATE_DIR; default ${DEFAULT_STATE_DIR})`;

export const USAGE = `usage: controller <command> [options]

commands:
  init --url ws://HOST:PORT [--listen HOST:PORT] [--ssh-host HOST] [--ssh-port N]
       [--tunnel-user USER] [--ssh-host-key FILE] [--sshd-config FILE] [--exclude PATTERN]...
       [--isolation namespace|chroot] [--parallel N]  create the state directory
       [--time-limit 24h] [--quota SIZE|none] [--min-free-space 2G]  job and disk limits
       [--schedule 01:00-06:00|'every 6h'|off]  when backups run by themselves
  serve                                 run the daemon (agents, admin socket, jobs)
  check [--json]                        check the tunnel sshd's rules for the tunnel user (ok/FAIL)
  token NAME [--ttl MINUTES]            print a one-time enrollment token for agent NAME
  agents [--json]                       list agents
  agents revoke NAME                    cut an agent off at once and for good
  backup NAME... | --all [--json]       back up agents now
  archives NAME [--json]                list an agent's archives
  jobs [--agent NAME] [--kind KIND] [--outcome OUTCOME[,...]] [--since DURATION] [--limit N] [--json]
                                        the job history, newest first
  prune NAME [--dry-run] [--json]       apply the agent's keep rules now (--dry-run: show what would go)
  verify NAME... | --all [--json]       check agents' repositories and archives (borg check)
  restore NAME ARCHIVE [PATH...] [--method stream|extract|full] [--target DIR] [--dry-run] [--yes]
  setup-host [--print] [--undo] [--root DIR] [--tunnel-user USER]  the tunnel user, its sshd rules, sshd reload
  install-service [--print] [--root DIR]  setup-host, then install, enable and start the systemd unit for 'serve'
  uninstall-service [--purge --yes] [--root DIR]  stop, disable and remove it and the sshd rules (--purge: the state dir too)
  --version                             print this controller's version

${EVERY_COMMAND}`;

/** Usage of each command: its first lines are the synopsis, the rest says what it does. */
export const COMMAND_USAGE = {
  init: `usage: controller init --url ws://HOST:PORT [--listen HOST:PORT] [--ssh-host HOST] [--ssh-port N]
       [--tunnel-user USER] [--ssh-host-key FILE] [--exclude PATTERN]... [--isolation namespace|chroot]
       [--parallel N] [--tls-cert FILE --tls-key FILE] [--sshd-config FILE]
       [--time-limit DURATION] [--quota SIZE|none] [--min-free-space SIZE] [--schedule SCHEDULE]
create the state directory, the controller's keys and config.json
(--schedule: a daily window HH:MM-HH:MM, 'every DURATION' or off; default 01:00-06:00)`,
  serve: 'usage: controller serve [--log-level LEVEL]\nrun the daemon: agents, admin socket, jobs',
  check: `usage: controller check [--json]
check the tunnel sshd's effective rules for the tunnel user, each ok or FAIL

Reads the tunnel sshd's effective settings for the tunnel user
(sshd -T -f SSHD-CONFIG -C user=TUNNEL-USER,...; sshdConfig in config.json,
default /etc/ssh/sshd_config) and prints each rule with ok or FAIL.
Exit status 1 if any rule fails: 'controller serve' refuses to start then.`,
  token: 'usage: controller token NAME [--ttl MINUTES] [--json]\nprint a one-time enrollment token for agent NAME',
  agents: 'usage: controller agents [--json]\n       controller agents revoke NAME\nlist agents, or cut one off at once and for good',
  backup: 'usage: controller backup NAME... | --all [--json]\nback up agents now, with live progress and a summary',
  archives: "usage: controller archives NAME [--json]\nlist an agent's archives",
  jobs: `usage: controller jobs [--agent NAME] [--kind KIND] [--outcome OUTCOME[,OUTCOME...]] [--since DURATION] [--limit N] [--json]
the job history, newest first: every backup, restore, prune, compact and check

--kind     backup, restore, prune, compact or check
--outcome  succeeded, warning, failed, offline or running (several: failed,offline)
--since    jobs started within this long, e.g. 7d, 12h, 90m
--limit    at most N jobs (default 20)
Kept as the history rule in config.json says (default {"keep": "400d", "maxJobs": 100000}).`,
  prune: `usage: controller prune NAME [--dry-run] [--json]
apply the agent's keep rules now: borg prune over the archives this controller
made for it, then borg compact. --dry-run lists which archives would be
deleted and which kept, and changes nothing. Refused while retention is off
for the agent; skipped (and said so) while its recent backups failed.`,
  verify: `usage: controller verify NAME... | --all [--json]
check agents' repositories (borg check: a time-bounded slice of the segments,
then the newest archives' metadata), each as a job. Exit status 1 if any
check fails.`,
  restore:
    'usage: controller restore NAME ARCHIVE [PATH...] [--method stream|extract|full] [--target DIR] [--dry-run] [--yes] [--json]\nrestore an archive (or PATHs of it) onto the client',
  'setup-host': `usage: controller setup-host [--print] [--undo] [--root DIR] [--tunnel-user USER]
set up what the tunnel sshd needs: the tunnel user (a system user, no shell,
locked; default: config.json's tunnelUser, else borgpull), its rules in
/etc/ssh/sshd_config.d/borgpull.conf, then reload sshd (after sshd -t accepts
the config). Each step says "created" or "already present"; a user with a
shell is said, not changed; a drop-in changed by hand is not replaced
(E_SETUP_CONFLICT). --print says what it would do and does nothing; --root DIR
works in DIR (useradd --root) and signals nothing; --undo removes the drop-in
(unless changed by hand) and keeps the user.`,
  'install-service': `usage: controller install-service [--print] [--root DIR] [--tunnel-user USER]
run setup-host's steps, then write /etc/systemd/system/borgpull-controller.service
(running this program's 'serve', with --state-dir when not the default), then
enable and start it when systemd runs this machine, or say what to run.
--print shows all of it (the steps as # comments, then the unit) and does
nothing; --root DIR works under DIR and never runs systemctl or signals sshd.`,
  'uninstall-service': `usage: controller uninstall-service [--purge --yes] [--root DIR] [--tunnel-user USER]
stop, disable and remove the unit and the sshd rules (setup-host --undo); the
state dir is kept unless --purge --yes (which deletes every key and every
backup repository in it)`,
} as const satisfies Record<string, string>;

export type CommandName = keyof typeof COMMAND_USAGE;

export function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMAND_USAGE, name);
}

/** What `controller COMMAND --help` prints. */
export function helpText(cmd: CommandName): string {
  return `${COMMAND_USAGE[cmd]}\n\n${EVERY_COMMAND}`;
}

/** The synopsis lines of a command's usage (those before its description). */
export function synopsis(cmd: CommandName): string {
  const lines = COMMAND_USAGE[cmd].split('\n');
  const end = lines.findIndex((l, i) => i > 0 && !l.startsWith(' '));
  return lines.slice(0, end < 0 ? lines.length : end).join('\n');
}

/** A UsageError that shows the command's synopsis. */
export function usageError(cmd: CommandName, why?: string): UsageError {
  return new UsageError(why === undefined ? synopsis(cmd) : `${why} (${synopsis(cmd).replace(/\n\s*/g, ' | ')})`);
}
