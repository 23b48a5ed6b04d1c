import WebSocket from 'ws';
import {
  AgentHandshake,
  BorgpullError,
  Channel,
  MAX_SEALED_FRAME_BYTES,
  toBuffer,
  decodeControllerMessage,
  type AgentMessage,
  type ControllerMessage,
} from '@borgpull/protocol';
import { AgentError } from './errors.js';

export type AgentChannel = Channel<AgentMessage, ControllerMessage>;

export const HANDSHAKE_TIMEOUT_MS = 15_000;

/**
 * Dials the controller and runs the handshake. Resolves with the socket and a
 * sealed channel; rejects with the reason if the session never got going.
 */
export function dialSession(url: string, hs: AgentHandshake, signal: AbortSignal): Promise<{ ws: WebSocket; channel: AgentChannel }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      handshakeTimeout: 10_000,
      maxPayload: MAX_SEALED_FRAME_BYTES + 1024,
      perMessageDeflate: false,
    });
    let failure: Error | undefined;
    let channel: AgentChannel | undefined;
    const deadline = setTimeout(() => {
      failure = new AgentError('E_PROTO_TIMEOUT', 'the controller did not complete the handshake in time');
      ws.terminate();
    }, HANDSHAKE_TIMEOUT_MS);
    const onAbort = (): void => {
      failure = new AgentError('E_STOPPED', 'stopped');
      ws.terminate();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    ws.on('error', (err) => {
      failure ??= new AgentError('E_CONNECT', `cannot reach the controller at ${url}: ${err.message}`);
    });
    ws.on('open', () => ws.send(hs.hello()));
    ws.on('message', (data, isBinary) => {
      const frame = toBuffer(data);
      if (channel) {
        channel.receive(frame);
        return;
      }
      try {
        if (!isBinary) throw new AgentError('E_PROTO_DECODE', 'text frame from the controller');
        ws.send(hs.onWelcome(frame));
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
        ws.close(1008, err instanceof BorgpullError ? err.code : 'E_PROTO_HANDSHAKE');
        return;
      }
      clearTimeout(deadline);
      signal.removeEventListener('abort', onAbort);
      channel = new Channel<AgentMessage, ControllerMessage>({ socket: ws, session: hs.session(), decode: decodeControllerMessage });
      resolve({ ws, channel });
    });
    ws.on('close', (code, reason) => {
      clearTimeout(deadline);
      signal.removeEventListener('abort', onAbort);
      if (!channel) {
        const why = reason.length ? reason.toString() : `connection closed (${code})`;
        reject(failure ?? new AgentError('E_CONNECT', why));
      }
    });
  });
}
