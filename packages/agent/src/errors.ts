import { BorgpullError } from '@borgpull/protocol';

/**
 * Every code the agent raises or answers with, with what it means. Codes the
 * protocol package raises are in its PROTOCOL_CODES; a code the controller
 * sent is a string (PeerError).
 */
export const AGENT_CODES = {
  E_USAGE: 'bad command-line arguments',
  E_INTERNAL: 'a bug: an error without a code reached the CLI',
  E_CONNECT: 'the controller cannot be reached, or closed the connection during the handshake',
  E_STOPPED: 'the agent is stopping',
  E_PROTO_DECODE: 'the controller sent a text frame during the handshake',
  E_PROTO_TIMEOUT: 'the controller did not complete the handshake in time',
  E_PROTO_HANDSHAKE: 'the handshake failed without a code of its own (sent in the close frame)',
  E_AUTH_TOKEN: 'the enrollment token expired, or the controller refused it',
  E_CONFIG_ENROLLED: 'already enrolled (pass --force to enroll again)',
  E_CONFIG_NOT_ENROLLED: "not enrolled yet: run 'agent enroll TOKEN'",
  E_CONFIG_INVALID: 'the enrollment or restore policy file is damaged or invalid',
  E_STATE_IDENTITY: "the agent's identity key file cannot be read",
  E_AGENT_SFTP_SERVER: 'no sftp-server on this machine (Debian: openssh-sftp-server)',
  E_AGENT_INTERNAL: 'an order failed without a code (answered to the controller)',
  E_AGENT_UNSUPPORTED: 'an order this agent does not handle (answered to the controller)',
  E_TUNNEL_FAILED: 'ssh could not set up the reverse tunnel',
  E_TUNNEL_TIMEOUT: 'ssh did not set up the reverse tunnel in time',
  E_TUNNEL_NO_SECRET: 'a tunnel order without the SFTP secret (a controller older than this agent)',
  E_RESTORE_BUSY: 'a restore stream with that id is already open',
  E_RESTORE_REFUSED: 'the restore policy refuses this target',
  E_RESTORE_TARGET: 'the restore target is not an absolute path to a directory that can be made',
  E_RESTORE_TAR_FORMAT: 'the restore stream is not a well-formed tar archive',
  E_RESTORE_STREAM: 'restore data or an end for a stream that is not open',
} as const;

export type AgentCode = keyof typeof AGENT_CODES;

/** Errors raised by the agent. Branch on `code`, never on the message. */
export class AgentError extends BorgpullError {
  override name = 'AgentError';

  // Not useless: public where the base's is protected, and only this package's codes.
  // eslint-disable-next-line @typescript-eslint/no-useless-constructor
  constructor(code: AgentCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
