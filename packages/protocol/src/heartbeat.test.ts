import { afterEach, describe, expect, it, vi } from 'vitest';
import { Heartbeat } from './heartbeat.js';

afterEach(() => {
  vi.useRealTimers();
});

function setup(intervalMs = 1000): { hb: Heartbeat; calls: string[] } {
  const calls: string[] = [];
  const hb = new Heartbeat({ intervalMs, ping: () => calls.push('ping'), terminate: () => calls.push('terminate') });
  return { hb, calls };
}

describe('heartbeat', () => {
  it('pings every interval while the peer answers', () => {
    vi.useFakeTimers();
    const { hb, calls } = setup();
    hb.start();
    expect(calls).toEqual([]);
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(1000);
      hb.heard();
    }
    expect(calls).toEqual(['ping', 'ping', 'ping', 'ping', 'ping']);
    hb.stop();
  });

  it('terminates a peer that missed its pong, once, and stops', () => {
    vi.useFakeTimers();
    const { hb, calls } = setup();
    hb.start();
    vi.advanceTimersByTime(1000);
    hb.heard();
    vi.advanceTimersByTime(1000); // ping, no pong this time
    expect(calls).toEqual(['ping', 'ping']);
    vi.advanceTimersByTime(999);
    expect(calls).toEqual(['ping', 'ping']);
    vi.advanceTimersByTime(1);
    expect(calls).toEqual(['ping', 'ping', 'terminate']);
    expect(hb.state).toBe('stopped');
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual(['ping', 'ping', 'terminate']);
  });

  it('being heard from after the next tick is too late', () => {
    vi.useFakeTimers();
    const { hb, calls } = setup();
    hb.start();
    vi.advanceTimersByTime(2000);
    hb.heard();
    expect(calls).toEqual(['ping', 'terminate']);
  });

  it('no timer outlives stop(); stop is idempotent; a stopped heartbeat does not restart', () => {
    vi.useFakeTimers();
    const { hb, calls } = setup();
    hb.start();
    hb.start();
    expect(vi.getTimerCount()).toBe(1);
    hb.stop();
    hb.stop();
    expect(vi.getTimerCount()).toBe(0);
    hb.start();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual([]);
  });

  it('stop() before start() leaves no timer', () => {
    vi.useFakeTimers();
    const { hb } = setup();
    hb.stop();
    hb.start();
    expect(vi.getTimerCount()).toBe(0);
  });
});
