import { BorgpullError } from '@borgpull/protocol';

/** Errors raised by the agent. Branch on `code`, never on the message. */
export class AgentError extends BorgpullError {
  override name = 'AgentError';
}
