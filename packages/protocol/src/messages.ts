/**
 * Wire message types. One frame = one msgpack map with a string `type`;
 * requests and their replies carry a numeric `id` (uint32).
 * Within a protocol version only optional fields are ever added.
 */

export const PROTOCOL_VERSION = 1;

/** Length of a job's SFTP secret (tunnel.open's sftpSecret). */
export const SFTP_SECRET_BYTES = 32;

// ---- handshake (plaintext, before the session is keyed) ----

/** agent -> controller, first frame. */
export interface HelloMessage {
  type: 'hello';
  v: number;
  /** agent's ed25519 identity public key (32 bytes) */
  agentKey: Uint8Array;
  /** agent's ephemeral x25519 public key (32 bytes) */
  eph: Uint8Array;
  /** 32 random bytes */
  nonce: Uint8Array;
  /** agent software version */
  software: string;
  /** present only when enrolling with a token */
  /** proof: 64-byte ed25519 signature by the token's key (see handshake.ts) */
  enroll?: { tokenId: string; proof: Uint8Array };
}

/** controller -> agent. */
export interface WelcomeMessage {
  type: 'welcome';
  v: number;
  controllerKey: Uint8Array;
  eph: Uint8Array;
  nonce: Uint8Array;
  /** 64-byte ed25519 signature, see handshake.ts */
  sig: Uint8Array;
}

/** agent -> controller. */
export interface AuthMessage {
  type: 'auth';
  sig: Uint8Array;
}

/** either direction during the handshake; the sender then closes. */
export interface HandshakeErrorMessage {
  type: 'error';
  code: string;
  message: string;
}

export type HandshakeMessage = HelloMessage | WelcomeMessage | AuthMessage | HandshakeErrorMessage;

// ---- messages used in both directions ----

/** Generic success reply. */
export interface OkMessage {
  type: 'ok';
  id: number;
}

/** Error reply (with id) or unsolicited error (without). Never a stack. */
export interface ErrorMessage {
  type: 'error';
  id?: number;
  code: string;
  message: string;
}

/** Flow-control grant: the sender may send `bytes` more data on `stream`. */
export interface CreditMessage {
  type: 'credit';
  stream: number;
  bytes: number;
}

// ---- controller -> agent ----

export interface TunnelSpec {
  sshHost: string;
  sshPort: number;
  user: string;
  /** remote port on the backup server (ssh -R 127.0.0.1:port:<the agent's SFTP socket>) */
  port: number;
  /** known_hosts key text, e.g. 'ssh-ed25519 AAAA...' */
  hostKey: string;
}

export interface TunnelOpenMessage extends TunnelSpec {
  type: 'tunnel.open';
  id: number;
  /**
   * The job's SFTP secret (SFTP_SECRET_BYTES random bytes): a connection to
   * the tunnel port gets SFTP only after sending exactly these bytes. A new
   * one for every job; the agent serves SFTP only while this tunnel is open.
   * Optional on the wire only because protocol 1 adds fields as optional: an
   * agent that serves SFTP itself refuses a tunnel.open without it.
   */
  sftpSecret?: Uint8Array;
}
export interface TunnelCloseMessage {
  type: 'tunnel.close';
  id: number;
}
export interface HostReportGetMessage {
  type: 'host.report.get';
  id: number;
}
export interface RestoreBeginMessage {
  type: 'restore.begin';
  id: number;
  stream: number;
  target: string;
  totalBytes?: number;
  /**
   * How tar sets owners: 'numeric' (default) keeps the archived ids; 'names'
   * maps the archived user and group names through the client's own passwd.
   */
  owners?: 'numeric' | 'names';
  /** The archive being restored, for the client's own record of restore orders. */
  archive?: string;
  /** The archive paths being restored (none: the whole archive), for that record. */
  paths?: string[];
}
/** End of data; the agent replies with restore.result once tar exits. */
export interface RestoreEndMessage {
  type: 'restore.end';
  id: number;
  stream: number;
  bytes: number;
  sha256: Uint8Array;
}
/** Notification (no id). */
export interface RestoreAbortMessage {
  type: 'restore.abort';
  stream: number;
  reason: string;
}
/** Reply to the agent's enroll request. */
export interface EnrolledMessage {
  type: 'enrolled';
  id: number;
  name: string;
  tunnel: TunnelSpec;
  /**
   * Older controllers' ssh public key line, for the client's root
   * authorized_keys. No longer sent or used: the agent serves SFTP itself.
   */
  sftpKey?: string;
}

export type ControllerMessage =
  | TunnelOpenMessage
  | TunnelCloseMessage
  | HostReportGetMessage
  | RestoreBeginMessage
  | RestoreEndMessage
  | RestoreAbortMessage
  | EnrolledMessage
  | OkMessage
  | ErrorMessage
  | CreditMessage;

// ---- agent -> controller ----

/** Sent once right after an enrollment handshake. */
export interface EnrollMessage {
  type: 'enroll';
  id: number;
  /** agent's ssh public key line (for the tunnel user's authorized_keys) */
  sshKey: string;
}
export interface TunnelOpenedMessage {
  type: 'tunnel.opened';
  id: number;
  /**
   * True from an agent whose tunnel ends at its own secret-gated SFTP socket;
   * absent from older agents, whose tunnel ends at their sshd.
   */
  sftp?: boolean;
}
/** Notification: the tunnel died by itself. */
export interface TunnelClosedMessage {
  type: 'tunnel.closed';
  port: number;
  reason: string;
}
export interface HostReportMessage {
  type: 'host.report';
  id: number;
  hostname: string;
  passwd: string;
  group: string;
  /** /proc/self/mounts text */
  mounts: string;
  /** Older agents: their sshd's public host key. No longer sent or used (no sshd in the path). */
  sshHostKey?: string;
}
export interface RestoreResultMessage {
  type: 'restore.result';
  id: number;
  stream: number;
  ok: boolean;
  bytes: number;
  files: number;
  sha256: Uint8Array;
  tarExit: number | null;
  stderr: string;
}

export type AgentMessage =
  | EnrollMessage
  | TunnelOpenedMessage
  | TunnelClosedMessage
  | HostReportMessage
  | RestoreResultMessage
  | OkMessage
  | ErrorMessage
  | CreditMessage;

/** Message types that answer a request (matched to it by id). */
type ReplyType = 'ok' | 'error' | 'enrolled' | 'tunnel.opened' | 'host.report' | 'restore.result';

/** Every message type with a mandatory id that is not a reply: the requests. */
type Request = Exclude<Extract<ControllerMessage | AgentMessage, { id: number }>['type'], ReplyType>;

/**
 * What each request is answered with. Any request may also be answered with
 * an `error` reply instead; the channel turns that into a rejection. The
 * `satisfies` makes a request without an entry here a compile error.
 */
export const REPLY_TO = {
  'tunnel.open': 'tunnel.opened',
  'tunnel.close': 'ok',
  'host.report.get': 'host.report',
  'restore.begin': 'ok',
  'restore.end': 'restore.result',
  enroll: 'enrolled',
} as const satisfies Record<Request, Exclude<ReplyType, 'error'>>;

export type RequestType = keyof typeof REPLY_TO;

/** The reply a request of type T gets (when it is not an `error`). */
export type ReplyTo<T extends RequestType> = Extract<ControllerMessage | AgentMessage, { type: (typeof REPLY_TO)[T] }>;

/** Omit that distributes over a union, so each variant keeps its own fields. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Message types that are replies to a request (matched by id). */
export const REPLY_TYPES: ReadonlySet<string> = new Set<ReplyType>(['error', ...Object.values(REPLY_TO)]);
