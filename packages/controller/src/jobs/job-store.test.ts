import { describe, expect, it } from 'vitest';
import { PeerError } from '@borgpull/protocol';
import { markFailed, type JobRecord } from './job-store.js';

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
