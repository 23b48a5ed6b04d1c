import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { validateConfig } from '../config.js';
import { checkFreeSpace, jobLimits, QuotaWatchingReader, TimeLimit } from './limits.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('TimeLimit', () => {
  it('cancels the job at the limit with its own code and a reason naming the key', () => {
    vi.useFakeTimers();
    const outer = new AbortController();
    const t = new TimeLimit(outer.signal, 24 * 3600, 'timeLimit');
    vi.advanceTimersByTime(24 * 3600 * 1000 - 1);
    expect(t.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(t.signal.aborted).toBe(true);
    expect(t.expired).toBe(true);
    const err = t.explain(new Error('borg was killed')) as { code: string; message: string };
    expect(err.code).toBe('E_JOB_TIME_LIMIT');
    expect(err.message).toBe('cancelled after the time limit of 24h (config timeLimit)');
  });

  it('holds limits longer than setTimeout can (25 days)', () => {
    vi.useFakeTimers();
    const t = new TimeLimit(new AbortController().signal, 25 * 86_400, 'agents.big.timeLimit');
    vi.advanceTimersByTime(2 ** 31);
    expect(t.signal.aborted).toBe(false);
    vi.advanceTimersByTime(25 * 86_400_000 - 2 ** 31);
    expect(t.signal.aborted).toBe(true);
  });

  it('leaves a cancellation by the caller as it is', () => {
    vi.useFakeTimers();
    const outer = new AbortController();
    const t = new TimeLimit(outer.signal, 60, 'timeLimit');
    outer.abort(new Error('Ctrl-C'));
    expect(t.signal.aborted).toBe(true);
    vi.advanceTimersByTime(120_000);
    expect(t.expired).toBe(false);
    const e = new Error('cancelled');
    expect(t.explain(e)).toBe(e);
    t.dispose();
  });

  it('ends a wait that takes no signal', async () => {
    vi.useFakeTimers();
    const t = new TimeLimit(new AbortController().signal, 5, 'timeLimit');
    const never = new Promise<never>(() => undefined);
    const r = t.race(never).catch((e: unknown) => (e as { code: string }).code);
    vi.advanceTimersByTime(5000);
    expect(await r).toBe('E_JOB_TIME_LIMIT');
    t.dispose();
  });

  it('no timer outlives a finished job', () => {
    vi.useFakeTimers();
    const t = new TimeLimit(new AbortController().signal, 5, 'timeLimit');
    t.dispose();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('jobLimits', () => {
  it('takes the agent override and names its key', () => {
    const c = validateConfig({ url: 'ws://h:1', timeLimit: '6h', quota: '1T', agents: { big: { timeLimit: '3d', quota: 'none' } } });
    expect(jobLimits(c, 'big')).toEqual({
      timeLimit: 3 * 86_400,
      timeLimitKey: 'agents.big.timeLimit',
      quota: 0,
      quotaKey: 'agents.big.quota',
    });
    expect(jobLimits(c, 'other')).toEqual({ timeLimit: 6 * 3600, timeLimitKey: 'timeLimit', quota: 2 ** 40, quotaKey: 'quota' });
  });
});

describe('checkFreeSpace', () => {
  it('refuses below the floor, in one line with free, floor and key', async () => {
    const s = await statfs(tmpdir());
    const free = s.bavail * s.bsize;
    await expect(checkFreeSpace(tmpdir(), free + 2 ** 40)).rejects.toMatchObject({
      code: 'E_JOB_DISK_LOW',
      message: expect.stringMatching(/^only \S+ \S+ free on \S+, below the floor of \S+ TiB \(config minFreeSpace\)[^\n]*$/),
    });
    await expect(checkFreeSpace(tmpdir(), 1)).resolves.toBeUndefined();
  });
});

describe('QuotaWatchingReader', () => {
  const real =
    '{"type": "log_message", "time": 1.0, "message": "The storage quota (10.00 MB) has been exceeded (10.26 MB). Try deleting some archives.", "levelname": "ERROR", "name": "borg.archiver", "msgid": "Repository.StorageQuotaExceeded"}\n';

  it("sees borg's quota refusal, even split across chunks", () => {
    const r = new QuotaWatchingReader(() => undefined);
    r.push(real.slice(0, 150));
    expect(r.quotaExceeded).toBe(false);
    r.push(real.slice(150));
    expect(r.quotaExceeded).toBe(true);
    expect(r.outcome.errors[0]).toMatch(/storage quota/);
  });

  it('is not fooled by a client file named after the message id', () => {
    const r = new QuotaWatchingReader(() => undefined);
    const name = 'x", "msgid": "Repository.StorageQuotaExceeded';
    r.push(JSON.stringify({ type: 'file_status', status: 'A', path: name }) + '\n');
    r.push(JSON.stringify({ type: 'archive_progress', path: name, nfiles: 1 }) + '\n');
    r.push(
      JSON.stringify({
        type: 'log_message',
        levelname: 'WARNING',
        message: `${name}: read error`,
        msgid: 'Repository.StorageQuotaExceededX',
      }) + '\n',
    );
    r.push('Repository.StorageQuotaExceeded\n');
    expect(r.quotaExceeded).toBe(false);
  });
});
