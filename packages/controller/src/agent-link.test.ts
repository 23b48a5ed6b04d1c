import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { AgentLink } from './agent-link.js';

function link(): { l: AgentLink; ws: EventEmitter & { ping: ReturnType<typeof vi.fn>; terminate: ReturnType<typeof vi.fn> } } {
  const ws = Object.assign(new EventEmitter(), { ping: vi.fn(), terminate: vi.fn(), close: vi.fn() });
  const channel = { close: vi.fn() } as unknown as Channel<ControllerMessage, AgentMessage>;
  const l = new AgentLink('pc1', '127.0.0.1:1', 'borgpull-agent/0', ws as unknown as WebSocket, channel, pino({ level: 'silent' }));
  return { l, ws };
}

describe('AgentLink heartbeat', () => {
  it('terminates an agent that sent nothing, not even a pong, for a whole interval', () => {
    const { l, ws } = link();
    l.heartbeat();
    expect(ws.ping).toHaveBeenCalledTimes(1);
    l.heartbeat();
    expect(ws.terminate).toHaveBeenCalledTimes(1);
  });

  it('keeps an agent whose pong is late but whose frames keep coming (a restore it is still unpacking)', () => {
    const { l, ws } = link();
    for (let i = 0; i < 5; i++) {
      l.heartbeat();
      ws.emit('message', Buffer.alloc(1), true);
    }
    expect(ws.terminate).not.toHaveBeenCalled();
    expect(ws.ping).toHaveBeenCalledTimes(5);
  });

  it('keeps an agent that answers pings', () => {
    const { l, ws } = link();
    for (let i = 0; i < 3; i++) {
      l.heartbeat();
      ws.emit('pong');
    }
    expect(ws.terminate).not.toHaveBeenCalled();
  });
});
