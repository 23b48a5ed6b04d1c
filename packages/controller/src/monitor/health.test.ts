import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../jobs/job-store.js';
import { DEFAULT_OVERDUE_AFTER, DEFAULT_WARN_AFTER, judge, thresholds } from './health.js';

const H = 3600_000;
const now = 100 * 24 * H;
const job = (status: JobRecord['status'], endedAt: number, kind: JobRecord['kind'] = 'backup', code?: string): JobRecord => ({
  id: 'j',
  kind,
  agent: 'pc1',
  startedAt: endedAt - 1000,
  endedAt,
  status,
  ...(code ? { code } : {}),
});

describe('health', () => {
  it('takes thresholds from config, else from the schedule, else the defaults', () => {
    expect(thresholds({})).toEqual({ warnAfter: DEFAULT_WARN_AFTER, overdueAfter: DEFAULT_OVERDUE_AFTER });
    expect(thresholds({}, 6 * 3600)).toEqual({ warnAfter: 6 * 3600, overdueAfter: 12 * 3600 });
    expect(thresholds({}, null)).toEqual({ warnAfter: null, overdueAfter: null });
    expect(thresholds({ warnAfter: 100, overdueAfter: 200 }, 6 * 3600)).toEqual({ warnAfter: 100, overdueAfter: 200 });
    // an overdue threshold set below the default warning pulls the warning down with it
    expect(thresholds({ overdueAfter: 60 })).toEqual({ warnAfter: 60, overdueAfter: 60 });
  });

  const t = { warnAfter: 26 * 3600, overdueAfter: 48 * 3600 };

  it.each([
    ['a fresh good backup', { lastGood: job('succeeded', now - H), lastBackup: job('succeeded', now - H) }, 0, false],
    ['a good backup 30h old', { lastGood: job('succeeded', now - 30 * H) }, 1, false],
    ['a good backup 3 days old', { lastGood: job('succeeded', now - 72 * H) }, 2, true],
    ['never backed up, enrolled an hour ago', {}, 0, false],
    ['never backed up, enrolled 3 days ago', { enrolledAt: now - 72 * H }, 2, true],
    [
      'the last backup failed',
      { lastGood: job('succeeded', now - 2 * H), lastBackup: job('failed', now - H, 'backup', 'E_JOB_BORG') },
      2,
      false,
    ],
    ['the last backup warned', { lastGood: job('warning', now - H), lastBackup: job('warning', now - H) }, 1, false],
    ['the last check failed', { lastGood: job('succeeded', now - H), lastCheck: job('failed', now - H, 'check') }, 2, false],
  ])('%s', (_what, input, level, overdue) => {
    const h = judge({ enrolledAt: now - H, ...input }, t, now);
    expect({ level: h.level, overdue: h.overdue }).toEqual({ level, overdue });
    expect(h.problems.length > 0).toBe(level > 0);
  });

  it('never judges the age of an agent whose schedule is off', () => {
    expect(judge({ enrolledAt: 0 }, { warnAfter: null, overdueAfter: null }, now)).toEqual({ level: 0, overdue: false, problems: [] });
  });
});
