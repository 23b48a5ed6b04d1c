import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { archiveName } from './backup.js';
import type { JobRecord, JobStatus } from './job-store.js';
import { archiveGlob, freezeReason, keepArgs, parseRetention, retentionOf } from './retention.js';

const job = (n: number, status: JobStatus): JobRecord => ({
  id: `j${n}`,
  kind: 'backup',
  agent: 'pc1',
  startedAt: n * 1000,
  endedAt: n * 1000 + 500,
  status,
  ...(status === 'failed' ? { code: 'E_JOB_BORG' } : status === 'offline' ? { code: 'E_AGENT_OFFLINE' } : {}),
});

describe('keep rules', () => {
  it('translate to borg prune arguments, one word each, rules at 0 left out', () => {
    const r = parseRetention({ keepWithin: '2d', hourly: 0, daily: 7, weekly: 4, monthly: 6, yearly: 0 }, 'retention');
    expect(keepArgs(r as Exclude<typeof r, 'off'>)).toEqual(['--keep-within=2d', '--keep-daily=7', '--keep-weekly=4', '--keep-monthly=6']);
    const only = parseRetention({ yearly: 3 }, 'retention');
    expect(keepArgs(only as Exclude<typeof only, 'off'>)).toEqual(['--keep-yearly=3']);
    expect(parseRetention('off', 'retention')).toBe('off');
  });

  it.each([
    [{}, 'retention keeps nothing'],
    [{ daily: 0, keepWithin: undefined }, 'retention keeps nothing'],
    // A typo would keep fewer archives than asked for: refused, never ignored.
    [{ dayly: 7 }, 'unknown key "dayly"'],
    [{ daily: 7, __proto__x: 1 }, 'unknown key'],
    [{ daily: -1 }, 'retention.daily must be a whole number'],
    [{ daily: 1.5 }, 'retention.daily must be a whole number'],
    [{ daily: '7' }, 'retention.daily must be a whole number'],
    [{ daily: 1e9 }, 'retention.daily must be a whole number'],
    // borg reads m as months, the rest of config.json as minutes: refused.
    [{ keepWithin: '90m' }, 'retention.keepWithin must be'],
    [{ keepWithin: '2d --keep-daily=0' }, 'retention.keepWithin must be'],
    [{ keepWithin: '-2d' }, 'retention.keepWithin must be'],
    [{ keepWithin: '0d' }, 'retention.keepWithin must be'],
    [{ keepWithin: 48 }, 'retention.keepWithin must be'],
    ['on', 'must be "off" or an object'],
    [null, 'must be "off" or an object'],
    [[{ daily: 1 }], 'must be "off" or an object'],
  ])('refuses %j', (v, msg) => {
    expect(() => parseRetention(v, 'retention')).toThrow(
      expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining(msg) }),
    );
  });

  it("an agent's own rules replace the default whole; an absent one inherits it", () => {
    const cfg = { retention: parseRetention({ daily: 7 }, 'r'), agents: { a: { retention: parseRetention('off', 'r') }, b: {} } };
    expect(retentionOf(cfg, 'a')).toBe('off');
    expect(retentionOf(cfg, 'b')).toEqual(cfg.retention);
    expect(retentionOf(cfg, 'c')).toEqual(cfg.retention);
  });
});

describe('archive glob', () => {
  it("matches this controller's archive names for the agent and nothing else (checked by borg's own matcher)", () => {
    const glob = archiveGlob('pc.1');
    const names = [
      archiveName('pc.1', new Date('2026-11-29T10:00:00Z')),
      'pc.1-before-upgrade',
      'pc.1-2026-11-29T10:00:00-mine',
      'pcX1-2026-11-29T10:00:00',
      'other-2026-11-29T10:00:00',
      'pc.1-2026-11-29T10:00:00.checkpoint',
    ];
    // borg's shellpattern, as prune and check use it (match_end as in prune).
    const py = `
import sys, re
from borg.shellpattern import translate
rx = re.compile(translate(sys.argv[1], match_end=r'(\\.checkpoint(\\.\\d+)?)?\\Z'))
print(' '.join('1' if rx.match(n) else '0' for n in sys.argv[2:]))`;
    const out = execFileSync('python3', ['-c', py, glob, ...names], {
      encoding: 'utf8',
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', PYTHONPATH: '/usr/lib/python3/dist-packages' },
    }).trim();
    expect(out).toBe('1 0 0 0 0 1');
  });
});

describe('the pruning freeze', () => {
  it.each<[string, JobStatus[], boolean]>([
    ['two good backups in a row', ['succeeded', 'succeeded'], false],
    ['good after a warning', ['succeeded', 'warning'], false],
    ['the only backup, good', ['succeeded'], false],
    ['the newest failed', ['failed', 'succeeded'], true],
    ['the newest found the agent offline', ['offline', 'succeeded', 'succeeded'], true],
    ['good, right after a failure', ['succeeded', 'failed', 'succeeded'], true],
    ['good, right after an offline one', ['succeeded', 'offline'], true],
    ['good twice after failures', ['succeeded', 'succeeded', 'failed', 'failed'], false],
    ['nothing on record', [], true],
  ])('%s: frozen=%s', (_what, statuses, frozen) => {
    const backups = statuses.map((s, i) => job(100 - i, s));
    expect(freezeReason(backups) !== undefined).toBe(frozen);
  });

  it('ignores a backup still running, and says which backup froze it', () => {
    const running: JobRecord = { ...job(200, 'running'), endedAt: undefined };
    expect(freezeReason([running, job(100, 'succeeded'), job(99, 'succeeded')])).toBeUndefined();
    expect(freezeReason([job(100, 'succeeded'), job(99, 'failed')])).toMatch(/^the backup before the newest \(j99, .*failed E_JOB_BORG\)/);
  });
});
