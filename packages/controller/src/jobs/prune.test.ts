import { describe, expect, it } from 'vitest';
import { errorText, metDamage, parseBorgLog } from './borg-maintenance.js';
import { checkRuns } from './check.js';
import { DEFAULT_CHECKS, parseChecks } from './check-settings.js';
import { parsePruneList } from './prune.js';

const ID = 'a'.repeat(64);
const line = (message: string, name = 'borg.output.list'): string =>
  JSON.stringify({ type: 'log_message', time: 1, message, levelname: 'INFO', name });

describe("borg prune's --list, read", () => {
  it('turns kept and pruned archives into rows, in borg order, and ignores every other line', () => {
    const stderr = [
      line(`Keeping archive (rule: within #1):       pc1-2026-11-28T10:00:00              Sat, 2026-11-28 10:00:00 [${ID}]`),
      line(`Keeping archive (rule: daily #12):       pc1-2026-11-20T10:00:00              Fri, 2026-11-20 10:00:00 [${ID}]`),
      line(`Keeping checkpoint archive:              pc1-2026-11-29T10:00:00.checkpoint   Sun, 2026-11-29 10:00:00 [${ID}]`),
      line(`Would prune:                             pc1-2026-11-15T10:00:00              Sun, 2026-11-15 10:00:00 [${ID}]`),
      line(`Pruning archive (1/2):                   pc1-2026-11-01T10:00:00              Sun, 2026-11-01 10:00:00 [${ID}]`),
      line('Pruning archive (2/2): not a list line', 'borg.output.stats'),
      JSON.stringify({ type: 'progress_percent', message: 'Pruning archives 50%' }),
      'Traceback (most recent call last):',
    ].join('\n');
    expect(parsePruneList(parseBorgLog(stderr))).toEqual([
      { archive: 'pc1-2026-11-28T10:00:00', time: 'Sat, 2026-11-28 10:00:00', action: 'keep', rule: 'within #1' },
      { archive: 'pc1-2026-11-20T10:00:00', time: 'Fri, 2026-11-20 10:00:00', action: 'keep', rule: 'daily #12' },
      { archive: 'pc1-2026-11-29T10:00:00.checkpoint', time: 'Sun, 2026-11-29 10:00:00', action: 'keep', rule: 'checkpoint' },
      { archive: 'pc1-2026-11-15T10:00:00', time: 'Sun, 2026-11-15 10:00:00', action: 'prune' },
      { archive: 'pc1-2026-11-01T10:00:00', time: 'Sun, 2026-11-01 10:00:00', action: 'prune' },
    ]);
  });

  it('keeps text borg printed as data: control bytes escaped, a non-log line an error line', () => {
    const log = parseBorgLog([line('bad \u001b[2J segment', 'borg.repository'), 'Traceback \u001b]0;x\u0007'].join('\n'));
    expect(log.map((l) => l.message).join(' ')).not.toMatch(/[\u0000-\u001f]/);
    expect(log[1]).toMatchObject({ levelname: 'ERROR', name: 'stderr' });
  });
});

describe('checks', () => {
  it("say what borg found, not its traceback, and tell damage from borg's other errors", () => {
    // As borg 1.2.4 logged them here for a segment overwritten in the middle.
    const crash = parseBorgLog(
      [
        JSON.stringify({
          type: 'log_message',
          message: 'Data integrity error: Segment entry checksum mismatch [segment 28, offset 8]',
          levelname: 'ERROR',
          name: 'borg.archiver',
          msgid: 'IntegrityError',
        }),
        JSON.stringify({
          type: 'log_message',
          message: 'Traceback (most recent call last):\n  File "x"\nborg.helpers.errors.IntegrityError: ...',
          levelname: 'ERROR',
          name: 'borg.archiver',
        }),
      ].join('\n'),
    );
    const run = { rc: 2, log: crash, stdout: '' };
    expect(errorText(run)).toBe('Data integrity error: Segment entry checksum mismatch [segment 28, offset 8]');
    expect(metDamage(run)).toBe(true);
    const lock = parseBorgLog(
      JSON.stringify({
        type: 'log_message',
        message: 'Failed to create/acquire the lock',
        levelname: 'ERROR',
        name: 'borg.archiver',
        msgid: 'LockTimeout',
      }),
    );
    expect(metDamage({ rc: 2, log: lock, stdout: '' })).toBe(false);
  });

  it('run a time-bounded repository check, then the newest archives of this controller', () => {
    const s = parseChecks({ maxDuration: '10m', lastArchives: 2 }, 'checks', DEFAULT_CHECKS);
    const runs = checkRuns('/r/pc1', 'pc1', s);
    expect(runs[0]).toEqual(['check', '--lock-wait', '30', '--repository-only', '--max-duration=600', '--', '/r/pc1']);
    expect(runs[1]).toContain('--last=2');
    expect(runs[1]).toContain('--archives-only');
    expect(runs[1]).not.toContain('--verify-data');
    expect(checkRuns('/r/pc1', 'pc1', { ...s, verifyData: true })[1]).toContain('--verify-data');
  });

  it("settings: an agent's keys replace the global ones; unknown keys and bad values are refused", () => {
    const global = parseChecks({ schedule: 'every 7d' }, 'checks', DEFAULT_CHECKS);
    expect(parseChecks({ lastArchives: 1 }, 'agents.a.checks', global)).toEqual({
      ...DEFAULT_CHECKS,
      schedule: { kind: 'every', seconds: 7 * 86_400 },
      lastArchives: 1,
    });
    for (const [v, msg] of [
      [{ schedul: 'every 7d' }, 'unknown key "schedul"'],
      [{ maxDuration: '0s' }, 'checks.maxDuration'],
      [{ lastArchives: 0 }, 'checks.lastArchives'],
      [{ verifyData: 'yes' }, 'checks.verifyData'],
      [{ schedule: 'every 7d\n' }, 'checks.schedule'],
      ['every 7d', 'must be an object'],
    ] as const) {
      expect(() => parseChecks(v, 'checks', DEFAULT_CHECKS)).toThrow(
        expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining(msg) }),
      );
    }
  });
});
