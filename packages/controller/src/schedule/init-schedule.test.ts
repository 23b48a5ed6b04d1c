import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initController } from '../cli/init.js';
import { loadConfig, validateConfig } from '../config.js';

describe('controller init --schedule', () => {
  let dir: string;
  const out: string[] = [];
  const io = { out: (s: string) => out.push(s), err: (s: string) => out.push(s) };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'borgpull-init-sched-'));
    out.length = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a nightly window by default, and says so', async () => {
    const state = join(dir, 'state');
    expect(await initController(['--url', 'ws://backup.example:7400', '--state-dir', state], io)).toBe(0);
    expect((JSON.parse(readFileSync(join(state, 'config.json'), 'utf8')) as { schedule: string }).schedule).toBe('01:00-06:00');
    expect((await loadConfig(state)).schedule).toEqual({ kind: 'window', start: 60, end: 360 });
    expect(out).toContain("backups run by themselves: daily between 01:00 and 06:00 (local time) ('schedule' in config.json)");
  });

  it('writes keep rules and a weekly check, and says so; a config without them prunes and checks nothing', async () => {
    const state = join(dir, 'state');
    expect(await initController(['--url', 'ws://backup.example:7400', '--state-dir', state], io)).toBe(0);
    const cfg = await loadConfig(state);
    expect(cfg.retention).toEqual({ keepWithin: '2d', hourly: 0, daily: 7, weekly: 4, monthly: 6, yearly: 0 });
    expect(cfg.checks.schedule).toEqual({ kind: 'every', seconds: 7 * 86_400 });
    expect(out).toContain(
      `after each good backup, old archives are pruned, keeping: within 2d, daily 7, weekly 4, monthly 6 ('retention' in config.json; "off" keeps all)`,
    );
    expect(out).toContain("repositories are checked: every 7d ('checks' in config.json)");
    const old = validateConfig({ url: 'ws://b:1' });
    expect(old.retention).toBe('off');
    expect(old.checks.schedule).toEqual({ kind: 'off' });
  });

  it('takes --schedule off (what the test fixtures pin) and an interval; refuses a bad one before writing anything', async () => {
    expect(await initController(['--url', 'ws://b:1', '--schedule', 'off', '--state-dir', join(dir, 'a')], io)).toBe(0);
    expect((await loadConfig(join(dir, 'a'))).schedule).toEqual({ kind: 'off' });
    expect(await initController(['--url', 'ws://b:1', '--schedule', 'every 6h', '--state-dir', join(dir, 'b')], io)).toBe(0);
    expect((await loadConfig(join(dir, 'b'))).schedule).toEqual({ kind: 'every', seconds: 21_600 });
    await expect(initController(['--url', 'ws://b:1', '--schedule', 'nightly', '--state-dir', join(dir, 'c')], io)).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: expect.stringMatching(/^config: schedule 'nightly' must be "off"/) as unknown,
    });
    await expect(loadConfig(join(dir, 'c'))).rejects.toMatchObject({ code: 'E_CONFIG_MISSING' });
  });
});
