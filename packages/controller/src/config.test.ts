import { describe, expect, it } from 'vitest';
import { configJson, DEFAULT_MIN_FREE_SPACE, DEFAULT_STOP_GRACE, DEFAULT_TIME_LIMIT, validateConfig } from './config.js';

const base = { url: 'ws://backup.example.net:7400' };

function codeOf(raw: unknown): string | undefined {
  try {
    validateConfig(raw);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe('config: job limits', () => {
  it('defaults: 24h, no quota, a 2 GiB floor', () => {
    const c = validateConfig(base);
    expect(c.timeLimit).toBe(DEFAULT_TIME_LIMIT);
    expect(c.timeLimit).toBe(86_400);
    expect(c.quota).toBe(0);
    expect(c.minFreeSpace).toBe(DEFAULT_MIN_FREE_SPACE);
  });

  it('reads global and per-agent settings, and writes them back as a person would', () => {
    const c = validateConfig({
      ...base,
      timeLimit: '6h',
      quota: '500G',
      minFreeSpace: '10G',
      agents: { big: { timeLimit: '3d', quota: '2T' }, free: { quota: 'none' }, plain: {} },
    });
    expect(c.timeLimit).toBe(6 * 3600);
    expect(c.quota).toBe(500 * 2 ** 30);
    expect(c.minFreeSpace).toBe(10 * 2 ** 30);
    expect(c.agents['big']).toMatchObject({ timeLimit: 3 * 86_400, quota: 2 * 2 ** 40 });
    expect(c.agents['free']?.quota).toBe(0);
    expect(c.agents['plain']?.quota).toBeUndefined();
    const file = configJson(c);
    expect(file).toMatchObject({
      timeLimit: '6h',
      quota: '500G',
      minFreeSpace: '10G',
      agents: { big: { timeLimit: '3d', quota: '2T' }, free: { quota: 'none' } },
    });
    expect(validateConfig(JSON.parse(JSON.stringify(file)))).toEqual(c);
  });

  it.each([
    ['timeLimit', -1],
    ['timeLimit', 0],
    ['timeLimit', '0s'],
    ['timeLimit', NaN],
    ['timeLimit', Infinity],
    ['timeLimit', 1e300],
    ['timeLimit', '1e999'],
    ['timeLimit', '5X'],
    ['timeLimit', 'none'],
    ['timeLimit', '400d'],
    ['timeLimit', {}],
    ['timeLimit', ['24h']],
    ['timeLimit', null],
    ['quota', -1],
    ['quota', '1M'],
    ['quota', 1000],
    ['quota', NaN],
    ['quota', '1e999'],
    ['quota', '5X'],
    ['quota', '-5G'],
    ['quota', 2 ** 60],
    ['quota', { bytes: 5 }],
    ['quota', true],
    ['minFreeSpace', -1],
    ['minFreeSpace', NaN],
    ['minFreeSpace', '1e999'],
    ['minFreeSpace', '5X'],
    ['minFreeSpace', '10%'],
    ['minFreeSpace', 'none'],
    ['minFreeSpace', []],
  ])('refuses %s = %j, globally and per agent', (key, value) => {
    expect(codeOf({ ...base, [key]: value })).toBe('E_CONFIG_INVALID');
    if (key !== 'minFreeSpace') expect(codeOf({ ...base, agents: { pc1: { [key]: value } } })).toBe('E_CONFIG_INVALID');
  });

  it('names the key that is wrong, in one line', () => {
    expect(() => validateConfig({ ...base, agents: { pc1: { quota: '5X' } } })).toThrow(
      /^config: agents\.pc1\.quota '5X' is not a size[^\n]*$/,
    );
    expect(() => validateConfig({ ...base, timeLimit: -5 })).toThrow(/^config: timeLimit must be in 1s\.\.30d$/);
  });

  it('refuses an agent entry that is not an object', () => {
    expect(codeOf({ ...base, agents: { pc1: ['x'] } })).toBe('E_CONFIG_INVALID');
    expect(codeOf({ ...base, agents: { pc1: 'x' } })).toBe('E_CONFIG_INVALID');
  });
});

describe('config: stopGrace', () => {
  it('defaults to 30s, takes 0 (cancel at once) and durations, and writes them back as a person would', () => {
    expect(validateConfig(base).stopGrace).toBe(DEFAULT_STOP_GRACE);
    expect(DEFAULT_STOP_GRACE).toBe(30);
    expect(validateConfig({ ...base, stopGrace: 0 }).stopGrace).toBe(0);
    expect(validateConfig({ ...base, stopGrace: '0s' }).stopGrace).toBe(0);
    const c = validateConfig({ ...base, stopGrace: '2m30s' });
    expect(c.stopGrace).toBe(150);
    expect(configJson(c)).toMatchObject({ stopGrace: '2m30s' });
    expect(validateConfig(JSON.parse(JSON.stringify(configJson(c))))).toEqual(c);
  });

  it.each([-1, -0.5, 1.5, NaN, Infinity, 1e300, '1e999', '-5s', '5X', 'none', '', '2d', 86_401, null, true, {}, ['30s'], '30s\n'])(
    'refuses stopGrace = %j with its name',
    (value) => {
      expect(codeOf({ ...base, stopGrace: value })).toBe('E_CONFIG_INVALID');
      expect(() => validateConfig({ ...base, stopGrace: value })).toThrow(/^config: stopGrace /);
    },
  );
});

describe('config: history', () => {
  it('defaults to 400 days and 100,000 jobs, and writes the rule back as a person would', () => {
    expect(validateConfig(base).history).toEqual({ keep: 400 * 86_400, maxJobs: 100_000 });
    const c = validateConfig({ ...base, history: { keep: '90d', maxJobs: 5000 } });
    expect(c.history).toEqual({ keep: 90 * 86_400, maxJobs: 5000 });
    expect(configJson(c)).toMatchObject({ history: { keep: '90d', maxJobs: 5000 } });
    expect(validateConfig(JSON.parse(JSON.stringify(configJson(c))))).toEqual(c);
  });

  it.each([
    ['400d', /^config: history must be an object/],
    [null, /^config: history must be an object/],
    [['400d'], /^config: history must be an object/],
    [{ keep: '12h' }, /^config: history\.keep /],
    [{ keep: '1e999' }, /^config: history\.keep /],
    [{ maxJobs: 10 }, /^config: history\.maxJobs /],
    [{ maxJobs: 1e300 }, /^config: history\.maxJobs /],
    [{ maxJobs: 1000.5 }, /^config: history\.maxJobs /],
    [{ keep: '30d', max: 5 }, /^config: history\.max is not a setting/],
    [JSON.parse('{"__proto__": {"keep": "1d"}}'), /^config: history\.__proto__ is not a setting/],
  ])('refuses history = %j with the field named', (value, message) => {
    expect(codeOf({ ...base, history: value })).toBe('E_CONFIG_INVALID');
    expect(() => validateConfig({ ...base, history: value })).toThrow(message);
  });
});

describe('config: schedules', () => {
  it('without the key: off (an upgraded server starts no job nobody asked for); connect delay 30s', () => {
    const c = validateConfig(base);
    expect(c.schedule).toEqual({ kind: 'off' });
    expect(c.connectDelay).toBe(30);
  });

  it('reads a global schedule and per-agent ones, and writes them back as written', () => {
    const c = validateConfig({
      ...base,
      schedule: '01:00-06:00',
      connectDelay: '2m',
      agents: { laptop: { schedule: 'every 6h' }, nas: { schedule: '22:00-04:00' }, old: { schedule: 'off' }, plain: {} },
    });
    expect(c.schedule).toEqual({ kind: 'window', start: 60, end: 360 });
    expect(c.connectDelay).toBe(120);
    expect(c.agents['laptop']?.schedule).toEqual({ kind: 'every', seconds: 21_600 });
    expect(c.agents['old']?.schedule).toEqual({ kind: 'off' });
    expect(c.agents['plain']?.schedule).toBeUndefined();
    const file = configJson(c);
    expect(file).toMatchObject({
      schedule: '01:00-06:00',
      connectDelay: '2m',
      agents: { laptop: { schedule: 'every 6h' }, nas: { schedule: '22:00-04:00' }, old: { schedule: 'off' } },
    });
    expect(validateConfig(JSON.parse(JSON.stringify(file)))).toEqual(c);
  });

  it.each([
    ['schedule', 'daily'],
    ['schedule', '2:00-5:00'],
    ['schedule', 'every 0s'],
    ['schedule', null],
    ['schedule', 3600],
    ['connectDelay', '2h'],
    ['connectDelay', -1],
  ])('refuses %s = %j, naming the field', (field, v) => {
    expect(codeOf({ ...base, [field]: v })).toBe('E_CONFIG_INVALID');
    expect(() => validateConfig({ ...base, [field]: v })).toThrow(new RegExp(`^config: ${field} `));
  });

  it('refuses a bad per-agent schedule, naming the agent', () => {
    expect(() => validateConfig({ ...base, agents: { pc1: { schedule: 'sometimes' } } })).toThrow(/^config: agents\.pc1\.schedule /);
  });
});

describe('config: unknown keys', () => {
  it('refuses a misspelt key at the top and in an agent, naming it, instead of silently not applying it', () => {
    expect(() => validateConfig({ ...base, timelimit: '6h' })).toThrow(/^config: key "timelimit" is not a known setting/);
    expect(() => validateConfig({ ...base, agents: { pc1: { exclud: ['/tmp'] } } })).toThrow(
      /^config: agents\.pc1\.exclud is not a known setting/,
    );
    // JSON.parse makes "__proto__" an own key: just another unknown one.
    expect(codeOf(JSON.parse(`{"url":"${base.url}","__proto__":{"parallel":99}}`))).toBe('E_CONFIG_INVALID');
    expect(codeOf(JSON.parse(`{"url":"${base.url}","agents":{"pc1":{"__proto__":{"isolation":"chroot"}}}}`))).toBe('E_CONFIG_INVALID');
  });

  it('takes back every key it writes', () => {
    const c = validateConfig({
      ...base,
      tlsCert: '/c',
      tlsKey: '/k',
      agents: { pc1: { exclude: ['/x'], isolation: 'chroot', quota: '1G' } },
    });
    expect(validateConfig(JSON.parse(JSON.stringify(configJson(c))))).toEqual(c);
  });
});

describe('config: retention and checks', () => {
  it('absent retention is "off" (nothing pruned that was not asked for), written back as "off"; checks are not scheduled', () => {
    const c = validateConfig(base);
    expect(c.retention).toBe('off');
    expect(c.checks).toMatchObject({ schedule: { kind: 'off' }, lastArchives: 3, verifyData: false });
    expect(configJson(c)).toMatchObject({ retention: 'off', checks: { schedule: 'off', maxDuration: '10m' } });
    expect(validateConfig(JSON.parse(JSON.stringify(configJson(c))))).toEqual(c);
  });

  it('reads global and per-agent keep rules and checks, and reads back what it writes', () => {
    const c = validateConfig({
      ...base,
      retention: { keepWithin: '2d', hourly: 0, daily: 7, weekly: 4, monthly: 6, yearly: 0 },
      checks: { schedule: 'every 7d', maxDuration: '30m' },
      agents: { laptop: { retention: { daily: 30 }, checks: { lastArchives: 1 } }, lab: { retention: 'off' } },
    });
    expect(c.retention).toEqual({ keepWithin: '2d', hourly: 0, daily: 7, weekly: 4, monthly: 6, yearly: 0 });
    expect(c.agents['laptop']?.retention).toMatchObject({ daily: 30, weekly: 0 });
    expect(c.agents['laptop']?.checks).toMatchObject({
      schedule: { kind: 'every', seconds: 7 * 86_400 },
      maxDuration: 1800,
      lastArchives: 1,
    });
    expect(configJson(c)).toMatchObject({ checks: { schedule: 'every 7d', maxDuration: '30m' } });
    expect(c.agents['lab']?.retention).toBe('off');
    expect(validateConfig(JSON.parse(JSON.stringify(configJson(c))))).toEqual(c);
  });

  it.each([
    [{ retention: {} }, 'config: retention keeps nothing'],
    [{ retention: { daily: 7, weakly: 4 } }, 'config: retention has an unknown key "weakly"'],
    [{ agents: { a: { retention: { keepWithin: '6m' } } } }, 'config: agents.a.retention.keepWithin'],
    [{ retention: null }, 'config: retention must be "off"'],
    [{ checks: { maxDuration: 'forever' } }, 'config: checks.maxDuration'],
    [{ checks: { schedule: 'weekly' } }, 'config: checks.schedule'],
  ])('refuses %j, naming the field', (patch, msg) => {
    expect(() => validateConfig({ ...base, ...patch })).toThrow(
      expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining(msg) }),
    );
  });
});
