/**
 * Error classes shared by the protocol. Branch on `code`, never on message text.
 */
export class BorgpullError extends Error {
  override name = 'BorgpullError';
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** A frame or peer violated the protocol (decode, handshake, seal, channel). */
export class ProtocolError extends BorgpullError {
  override name = 'ProtocolError';
}

/** Every error code this package throws. */
export const ErrorCodes = {
  FRAME_TOO_LARGE: 'E_PROTO_FRAME_TOO_LARGE',
  DECODE: 'E_PROTO_DECODE',
  NOT_OBJECT: 'E_PROTO_NOT_OBJECT',
  UNKNOWN_TYPE: 'E_PROTO_UNKNOWN_TYPE',
  BAD_FIELD: 'E_PROTO_BAD_FIELD',
  VERSION: 'E_PROTO_VERSION',
  UNEXPECTED: 'E_PROTO_UNEXPECTED',
  TIMEOUT: 'E_PROTO_TIMEOUT',
  CLOSED: 'E_PROTO_CLOSED',
  AUTH_SIGNATURE: 'E_AUTH_SIGNATURE',
  AUTH_UNKNOWN_KEY: 'E_AUTH_UNKNOWN_KEY',
  AUTH_REVOKED: 'E_AUTH_REVOKED',
  AUTH_TOKEN: 'E_AUTH_TOKEN',
  AUTH_PINNED_KEY: 'E_AUTH_PINNED_KEY',
  AUTH_SEAL: 'E_AUTH_SEAL',
  CONFIG_KEY: 'E_CONFIG_KEY',
} as const;
