import { describe, expect, it } from 'vitest';
import { PeerError } from '@borgpull/protocol';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isGood, JobStore, markFailed, type JobKind, type JobRecord } from './job-store.js';

const job = (): JobRecord => ({ id: 'j', kind: 'restore', agent: 'pc1', startedAt: 0, status: 'running' });

describe('markFailed', () => {
  it("stores a peer's message with its control characters escaped, and only an E_ code", () => {
    const j = job();
    // What an agent's error reply becomes on the controller: BorgpullError(peer code, peer message).
    expect(markFailed(j, new PeerError('E_X\u009b', 'tar: \x1b]0;pwned\x07: Cannot open'))).toBe(false);
    expect(j).toMatchObject({ status: 'failed', code: 'E_JOB_PEER_CODE', reason: 'tar: \\x1b]0;pwned\\x07: Cannot open' });
  });

  it('keeps our own codes and text already escaped where it entered', () => {
    const j = job();
    markFailed(j, new PeerError('E_JOB_TAR', 'tar said \\x1b (escaped)'));
    expect(j).toMatchObject({ code: 'E_JOB_TAR', reason: 'tar said \\x1b (escaped)' });
    expect(markFailed(job(), new Error('a bug'))).toBe(true);
  });
});

describe('JobStore queries', () => {
  it('filters by agent, kind and status, newest first, and tells listeners of ended jobs once saved', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'job-store-'));
    try {
      const store = await JobStore.open(join(dir, 'jobs.json'));
      const ended: string[] = [];
      store.onEnd((j) => ended.push(j.id));
      const rec = (id: string, agent: string, kind: JobKind, status: JobRecord['status']): JobRecord => ({
        id,
        kind,
        agent,
        startedAt: 0,
        status,
      });
      const running = rec('1', 'a', 'backup', 'running');
      await store.add(running);
      await store.add(rec('2', 'a', 'prune', 'succeeded'));
      await store.add(rec('3', 'b', 'backup', 'failed'));
      running.status = 'succeeded';
      await store.update(running);
      await store.add(rec('4', 'a', 'backup', 'failed'));
      expect(ended).toEqual(['2', '3', '1', '4']);
      expect(store.query({ limit: 10, agent: 'a' }).map((j) => j.id)).toEqual(['4', '2', '1']);
      expect(store.query({ limit: 10, kind: 'backup', status: ['failed'] }).map((j) => j.id)).toEqual(['4', '3']);
      expect(store.query({ limit: 1, kind: 'backup' }).map((j) => j.id)).toEqual(['4']);
      expect(store.latest('a', 'backup')?.id).toBe('4');
      expect(store.latest('a', 'backup', isGood)?.id).toBe('1');
      expect(store.latest('c', 'backup')).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
