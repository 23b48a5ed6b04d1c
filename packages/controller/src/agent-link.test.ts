import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { AgentLink } from './agent-link.js';

const INTERVAL = 1000;

function link(): { l: AgentLink; ws: EventEmitter & { ping: ReturnType<typeof vi.fn>; terminate: ReturnType<typeof vi.fn> } } {
  const ws = Object.assign(new EventEmitter(), { ping: vi.fn(), terminate: vi.fn(), close: vi.fn() });
  const channel = { close: vi.fn() } as unknown as Channel<ControllerMessage, AgentMessage>;
  const l = new AgentLink(
    'pc1',
    '127.0.0.1:1',
    'borgpull-agent/0',
    ws as unknown as WebSocket,
    channel,
    pino({ level: 'silent' }),
    INTERVAL,
  );
  return { l, ws };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('AgentLink heartbeat', () => {
  it('terminates an agent that sent nothing, not even a pong, for a whole interval', () => {
    vi.useFakeTimers();
    const { ws } = link();
    vi.advanceTimersByTime(INTERVAL);
    expect(ws.ping).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(INTERVAL);
    expect(ws.terminate).toHaveBeenCalledTimes(1);
  });

  it('keeps an agent whose pong is late but whose frames keep coming (a restore it is still unpacking)', () => {
    vi.useFakeTimers();
    const { ws } = link();
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(INTERVAL);
      ws.emit('message', Buffer.alloc(1), true);
    }
    expect(ws.terminate).not.toHaveBeenCalled();
    expect(ws.ping).toHaveBeenCalledTimes(5);
  });

  it('keeps an agent that answers pings', () => {
    vi.useFakeTimers();
    const { ws } = link();
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(INTERVAL);
      ws.emit('pong');
    }
    expect(ws.terminate).not.toHaveBeenCalled();
  });

  it('no timer outlives the link', () => {
    vi.useFakeTimers();
    const { l, ws } = link();
    l.closed('socket closed');
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10 * INTERVAL);
    expect(ws.ping).not.toHaveBeenCalled();
  });
});
