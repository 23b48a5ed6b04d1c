import { BorgpullError } from '@borgpull/protocol';

/**
 * Every code the controller raises or stores, with what it means. Codes the
 * protocol package raises are in its PROTOCOL_CODES. A code an agent sent (an
 * `error` reply) is a string (PeerError): a job keeps it only if it looks
 * like a code (job-store.ts markFailed), else E_JOB_PEER_CODE.
 */
export const CONTROLLER_CODES = {
  E_USAGE: 'bad command-line arguments',
  E_INTERNAL: 'a bug: an error without a code reached the CLI or the admin socket',
  E_ADMIN_REQUEST: 'an admin socket request with fields other than cmd and args',
  E_ADMIN_JSON: 'an admin socket line that is not a JSON object',
  E_ADMIN_TOO_LARGE: 'an admin socket request above the size limit',
  E_ADMIN_UNKNOWN_COMMAND: 'an admin command the daemon does not have',
  E_ADMIN_ARGS: "an admin command's arguments that do not fit its declaration",
  E_ADMIN_CLOSED: 'the admin client went away; its job is cancelled',
  E_DAEMON_DOWN: "the daemon is not running: start it with 'controller serve'",
  E_DAEMON_ACCESS: 'no permission on the admin socket: run as root',
  E_DAEMON_IO: 'the admin socket failed or closed mid-answer',
  E_DAEMON_REPLY: "a daemon's answer the admin client cannot read",
  E_DAEMON_STARTING: 'the job runner has not started yet',
  E_DAEMON_STOPPING: 'the daemon is stopping: no new jobs',
  E_DAEMON_RUNNING: 'a daemon is already running on this state directory',
  E_STATE_EXISTS: 'the state directory is already initialized',
  E_STATE_READ: 'a state file (registry, job record) cannot be read or is damaged',
  E_STATE_IDENTITY: "the controller's identity key file cannot be read",
  E_STATE_ADMIN_DIR: "the admin socket's directory is not a directory owned by the daemon's uid",
  E_CONFIG_MISSING: "no controller state: run 'controller init' first",
  E_CONFIG_READ: 'config.json cannot be read',
  E_CONFIG_INVALID: 'a config value, or the tunnel user name, is invalid',
  E_CONFIG_URL: 'the URL agents dial is not ws:// or wss://HOST:PORT',
  E_CONFIG_LISTEN: 'the listen address is not HOST:PORT, or cannot be bound',
  E_CONFIG_HOSTKEY: "the tunnel sshd's host key cannot be read",
  E_CONFIG_NAME: 'an agent name that is not 1-63 letters, digits, ., _ or -',
  E_CONFIG_NAME_TAKEN: 'an agent of that name is already enrolled',
  E_SSHD_MISSING: 'no sshd found: agents tunnel into it',
  E_SSHD_CHECK: "sshd -T cannot read the tunnel sshd's settings",
  E_SSHD_UNSAFE: 'the tunnel user could do more than forward its own port',
  E_SETUP_ARG: 'setup-host: a tunnel user or state dir that cannot go into sshd_config',
  E_SETUP_CONFLICT: 'setup-host: an sshd drop-in changed by hand, or a tunnel user with uid 0: not touched',
  E_SETUP_FAILED: 'setup-host: useradd, writing the drop-in, sshd -t or the sshd reload failed',
  E_AUTH_TOKEN: 'an enrollment token already used, or an agent key already enrolled or revoked',
  E_AUTH_UNKNOWN_KEY: 'an agent key that is not enrolled (refused at the handshake)',
  E_AUTH_REVOKED: 'a revoked agent key (refused at the handshake)',
  E_PROTO_HANDSHAKE: 'an agent failed the handshake without a code of its own (logged, sent to it)',
  E_PROTO_DECODE: 'an agent sent a text frame',
  E_PROTO_BUSY: 'too many handshakes in progress (in all, or from one address): refused with HTTP 503',
  E_PROTO_CREDIT: 'an agent returned more restore credit than it had been sent',
  E_PROTO_BAD_FIELD: "an agent's ssh key that is not an ssh public key",
  E_AGENT_UNKNOWN: 'no agent of that name',
  E_AGENT_REVOKED: 'the agent was revoked',
  E_AGENT_OFFLINE: 'the agent is not connected',
  E_JOB_AGENT_SFTP: 'the agent is too old to serve SFTP through its own socket (upgrade it)',
  E_JOB_NOTHING: 'no agent named and no --all, or no agents enrolled',
  E_JOB_CANCELLED: 'the job was cancelled',
  E_JOB_CONNECTION_LOST: 'the connection to the agent was lost mid-job',
  E_JOB_TIME_LIMIT: 'the job ran past its time limit',
  E_JOB_DISK_LOW: 'the repository disk is below its free-space floor',
  E_JOB_QUOTA: 'the backup would take the repository past its quota',
  E_JOB_MOUNTS: 'the client reported more mounts to exclude than allowed',
  E_JOB_MOUNTPOINT: "the agent's mountpoint is not a directory",
  E_JOB_MOUNT: 'sshfs could not mount the client (raised by the job script)',
  E_JOB_CHROOT_BORG: 'chroot isolation, and no borg on the client (raised by the job script)',
  E_JOB_SETUP: 'the job script failed to set up, without a code of its own',
  E_JOB_ABORTED: 'the job script ended before borg reported',
  E_JOB_BORG: 'borg failed',
  E_JOB_TAR: "the client's tar failed, or the restored bytes do not match",
  E_JOB_INTERRUPTED: 'the controller stopped mid-job (found at the next start)',
  E_JOB_INTERNAL: 'a job failed without a code',
  E_JOB_PEER_CODE: 'a job failed with a code from the agent that is not a code',
  E_RETENTION_OFF: 'a prune was asked for an agent whose retention is off',
  E_PRUNE_FROZEN: "a prune skipped because the agent's recent backups failed (the pruning freeze)",
  E_CHECK_FAILED: 'borg check found the repository or its archives damaged',
  E_CHECK_NO_REPO: 'a check of an agent that has no repository yet',
  E_RESTORE_ARCHIVE: 'no archive of that name for the agent',
  E_RESTORE_TARGET: 'the restore target is not an absolute path',
  E_RESTORE_REFUSED: "the agent's restore policy refused the restore",
} as const;

export type ControllerCode = keyof typeof CONTROLLER_CODES;

/** Errors raised by the controller. Branch on `code`, never on the message. */
export class ControllerError extends BorgpullError {
  override name = 'ControllerError';

  // Not useless: public where the base's is protected, and only this package's codes.
  // eslint-disable-next-line @typescript-eslint/no-useless-constructor
  constructor(code: ControllerCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
