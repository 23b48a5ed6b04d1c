export { BorgpullError, ProtocolError, PeerError, PROTOCOL_CODES, isCodeOf, errorMessage, errnoCode } from './errors.js';
export type { ProtocolCode } from './errors.js';
export {
  generateIdentity,
  encodePublicKey,
  decodePublicKey,
  serializeIdentity,
  parseIdentity,
  keyFingerprint,
  signMessage,
  verifySignature,
  bytesEqual,
  PUBLIC_KEY_PREFIX,
} from './keys.js';
export type { IdentityKeys } from './keys.js';
export {
  createToken,
  parseToken,
  tokenSigningKey,
  tokenProof,
  verifyTokenProof,
  checkEnrollment,
  legacyToken,
  TOKEN_PREFIX,
} from './token.js';
export type { TokenRecord, ParsedToken } from './token.js';
export { PROTOCOL_VERSION, REPLY_TO, SFTP_SECRET_BYTES } from './messages.js';
export type {
  HandshakeMessage,
  HelloMessage,
  WelcomeMessage,
  AuthMessage,
  HandshakeErrorMessage,
  ControllerMessage,
  AgentMessage,
  OkMessage,
  ErrorMessage,
  CreditMessage,
  TunnelSpec,
  TunnelOpenMessage,
  TunnelCloseMessage,
  HostReportGetMessage,
  RestoreBeginMessage,
  RestoreEndMessage,
  RestoreAbortMessage,
  EnrolledMessage,
  EnrollMessage,
  TunnelOpenedMessage,
  TunnelClosedMessage,
  HostReportMessage,
  RestoreResultMessage,
  RequestType,
  ReplyTo,
} from './messages.js';
export { LIMITS } from './validate.js';
// The field readers, for the other trust boundaries (the controller's admin socket).
export { asRecord, bool, int, optInt, optStr, optStrList, str, type Rec, type StrOpts } from './validate.js';
export {
  encodeMessage,
  decodeHandshake,
  decodeControllerMessage,
  decodeAgentMessage,
  MAX_MESSAGE_BYTES,
  MAX_RESTORE_PATHS,
} from './codec.js';
export { AgentHandshake, ControllerHandshake, enrollProofInput, encodeHandshakeError } from './handshake.js';
export type { AgentCheck, AgentInfo } from './handshake.js';
export { Session, MAX_DATA_BYTES, MAX_SEALED_FRAME_BYTES } from './session.js';
export type { OpenedFrame } from './session.js';
export { Channel, CLOSE_POLICY_VIOLATION, CLOSE_NORMAL } from './channel.js';
export { Heartbeat } from './heartbeat.js';
export type { HeartbeatOptions, HeartbeatState } from './heartbeat.js';
export type { FrameSocket, ChannelOptions, Requests } from './channel.js';
export { writeFileAtomic } from './fs-atomic.js';
export { exists } from './fs-exists.js';
export { toBuffer } from './frame-bytes.js';
export { escapeControl, terminalSafe } from './text.js';
export {
  execStart,
  execWord,
  pathValue,
  purgeStateDir,
  installUnit,
  systemdRunning,
  thisProgram,
  uninstallUnit,
  unitPath,
} from './systemd-unit.js';
export type { InstallOptions, ServiceIo } from './systemd-unit.js';
