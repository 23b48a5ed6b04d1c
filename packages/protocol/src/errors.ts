/**
 * Error classes shared by the protocol. Branch on `code`, never on message text.
 *
 * Each package lists the codes it raises in a table with a one-line meaning
 * (this one: PROTOCOL_CODES); its error class takes only those, so a typo is a
 * compile error. A code that crossed the wire is the peer's to choose: it is a
 * string, carried by PeerError.
 */
export class BorgpullError extends Error {
  override name = 'BorgpullError';
  readonly code: string;

  /** Protected: raise a package's own class (ProtocolError, AgentError, ControllerError) or PeerError. */
  protected constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Every code the protocol package raises, with what it means. */
export const PROTOCOL_CODES = {
  E_PROTO_FRAME_TOO_LARGE: 'a frame above the size limit (much smaller before authentication)',
  E_PROTO_DECODE: 'a frame that is not msgpack, or a text frame',
  E_PROTO_NOT_OBJECT: 'a frame that is not a plain msgpack map',
  E_PROTO_UNKNOWN_TYPE: 'a message type this side does not receive',
  E_PROTO_BAD_FIELD: 'a missing, mistyped or out-of-bounds field',
  E_PROTO_VERSION: 'the peer speaks another protocol version',
  E_PROTO_UNEXPECTED: 'a message out of order, or one that is not a request where a request was due',
  E_PROTO_REPLY: "a reply of another type than the request's (REPLY_TO)",
  E_PROTO_TIMEOUT: 'a request or the handshake got no answer in time',
  E_PROTO_CLOSED: 'the channel closed before the reply came',
  E_AUTH_SIGNATURE: 'a handshake signature does not verify',
  E_AUTH_TOKEN: 'an enrollment token that is malformed, unknown, used, expired or forged',
  E_AUTH_TOKEN_FORMAT: 'a token record from before verifiers: it can no longer be checked',
  E_AUTH_PINNED_KEY: "the controller's key is not the pinned one",
  E_AUTH_SEAL: 'a sealed frame that does not open (forged, replayed, reordered) or an exhausted nonce',
  E_CONFIG_KEY: 'a key or identity file that is malformed',
  E_SERVICE_ARG: 'a value that cannot go into a systemd unit (a control character, a relative program)',
  E_SERVICE_WRITE: 'the systemd unit file cannot be written, read or removed',
  E_SERVICE_PURGE: 'uninstall-service --purge refused or failed: not a state dir, or something is mounted in it',
  E_SERVICE_SYSTEMCTL: 'systemctl failed (daemon-reload, enable --now, disable --now)',
} as const;

export type ProtocolCode = keyof typeof PROTOCOL_CODES;

/** Raised by the protocol package: a frame or peer violated the protocol, or a key or token is bad. */
export class ProtocolError extends BorgpullError {
  override name = 'ProtocolError';

  // Not useless: public where the base's is protected, and only this package's codes.
  // eslint-disable-next-line @typescript-eslint/no-useless-constructor
  constructor(code: ProtocolCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * An error the peer reported (an `error` reply, a handshake refusal): its code
 * crossed the wire, so it is any string the peer chose, never trusted to be
 * one of ours. Print it escaped; branch on it only by comparing.
 */
export class PeerError extends BorgpullError {
  override name = 'PeerError';

  // Not useless: public where the base's is protected.
  // eslint-disable-next-line @typescript-eslint/no-useless-constructor
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** True if `code` is one of the codes in `table` (for tests and for mapping wire codes). */
export function isCodeOf<T extends Record<string, string>>(table: T, code: string): code is Extract<keyof T, string> {
  return Object.prototype.hasOwnProperty.call(table, code);
}

/** The message of anything thrown: an Error's message, else its string form (no cast at the catch site). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The errno code of a Node system error ('ENOENT', ...), or undefined for anything else. */
export function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
