import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PeerError } from '@borgpull/protocol';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyHistoryRule, parseHistoryRule } from './history-rule.js';
import { readJobRecord } from './job-record.js';
import { isGood, JobStore, markFailed, type JobKind, type JobRecord, type StoreLog } from './job-store.js';

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
      const store = await JobStore.open(join(dir, 'jobs.jsonl'));
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

const DAY = 86_400_000;
const T0 = Date.parse('2026-11-29T12:00:00Z');

function rec(id: string, over: Partial<JobRecord> = {}): JobRecord {
  return { id, kind: 'backup', agent: 'pc1', startedAt: T0, status: 'succeeded', endedAt: T0 + 1000, ...over };
}

/** A logger that keeps what it was told. */
function memLog(): StoreLog & { warnings: Array<Record<string, unknown>>; infos: string[] } {
  const warnings: Array<Record<string, unknown>> = [];
  const infos: string[] = [];
  return {
    warnings,
    infos,
    warn: (obj, msg) => warnings.push({ ...obj, msg }),
    info: (_obj, msg) => infos.push(msg),
  };
}

const fileLines = (path: string): string[] => readFileSync(path, 'utf8').split('\n').slice(0, -1);

describe('JobStore: the append-only history file', () => {
  let dir: string;
  let path: string;
  const open: JobStore[] = [];
  const openStore = async (opts: Parameters<typeof JobStore.open>[1] = {}): Promise<JobStore> => {
    const s = await JobStore.open(path, opts);
    open.push(s);
    return s;
  };
  const reopen = async (s: JobStore, opts: Parameters<typeof JobStore.open>[1] = {}): Promise<JobStore> => {
    await s.close();
    open.splice(open.indexOf(s), 1);
    return openStore(opts);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'job-log-'));
    path = join(dir, 'jobs.jsonl');
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('appends one line per change, 0600, and reads back the last version of each job in the order they started', async () => {
    let s = await openStore();
    const a = rec('a', { status: 'running', endedAt: undefined });
    await s.add(a);
    await s.add(rec('b', { agent: 'pc2', kind: 'restore', method: 'stream', target: '/' }));
    a.status = 'warning';
    a.endedAt = T0 + 5;
    a.stats = { nfiles: 3, originalSize: 1024, deduplicatedSize: 10 };
    await s.update(a);
    expect(fileLines(path)).toHaveLength(3);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    s = await reopen(s);
    expect(s.query({ limit: 10 })).toEqual([rec('b', { agent: 'pc2', kind: 'restore', method: 'stream', target: '/' }), a]);
    expect(s.latest('pc1', 'backup', isGood)).toEqual(a);
    await s.add(rec('c'));
    s = await reopen(s);
    expect(s.query({ limit: 10 }).map((j) => j.id)).toEqual(['c', 'b', 'a']);
  });

  it('a crash mid-write, at every byte of the last line: at most that record is lost and the next append lands on a clean line', async () => {
    const s = await openStore();
    await s.add(rec('first'));
    await s.add(rec('second', { reason: 'r\u00e9sum\u00e9 \u2603', code: 'E_JOB_BORG', status: 'failed' }));
    await s.close();
    open.splice(0);
    const whole = readFileSync(path);
    const lastStart = whole.lastIndexOf(0x0a, whole.length - 2) + 1;
    for (let cut = lastStart; cut < whole.length; cut++) {
      writeFileSync(path, whole.subarray(0, cut));
      const log = memLog();
      const t = await JobStore.open(path, { log });
      expect(
        t.query({ limit: 10 }).map((j) => j.id),
        `cut at ${cut}`,
      ).toEqual(['first']);
      expect(log.warnings.filter((w) => typeof w['msg'] === 'string' && w['msg'].includes('half-written')).length).toBe(
        cut > lastStart ? 1 : 0,
      );
      await t.add(rec('next'));
      await t.close();
      const u = await JobStore.open(path);
      expect(
        u.query({ limit: 10 }).map((j) => j.id),
        `cut at ${cut}`,
      ).toEqual(['next', 'first']);
      await u.close();
      expect(fileLines(path).every((l) => readJobRecord(JSON.parse(l)) !== undefined)).toBe(true);
    }
  });

  it('never follows a symlink planted as the history file', async () => {
    const target = join(dir, 'elsewhere');
    writeFileSync(target, '');
    symlinkSync(target, path);
    await expect(JobStore.open(path)).rejects.toMatchObject({
      code: 'E_STATE_READ',
      message: expect.stringMatching(/ELOOP|symbolic links/),
    });
    expect(readFileSync(target, 'utf8')).toBe('');
  });

  it('skips a damaged line in the middle, says how many, and never throws', async () => {
    let s = await openStore();
    await s.add(rec('a'));
    appendFileSync(path, '{"id":"x","kind":"backup"\u0000\u0000garbage\n\u00ff\u00fe\n\n');
    appendFileSync(path, '{"id":"evil","kind":"rm -rf /","agent":"pc1","startedAt":1,"status":"succeeded"}\n');
    appendFileSync(path, Buffer.from([0x7b, 0xc3, 0x28, 0x7d, 0x0a])); // invalid UTF-8
    appendFileSync(path, 'x'.repeat(200_000) + '\n'); // longer than any line we write
    await s.add(rec('b'));
    const log = memLog();
    s = await reopen(s, { log });
    expect(s.query({ limit: 10 }).map((j) => j.id)).toEqual(['b', 'a']);
    expect(log.warnings).toContainEqual(expect.objectContaining({ lines: 6, msg: 'job history: skipped damaged lines' }));
    // Compacted at open: the damage is gone from the file, and said once.
    expect(fileLines(path)).toHaveLength(2);
  });

  it('refuses records that do not validate (hostile or damaged values), one line each', () => {
    const good = { id: 'j1', kind: 'backup', agent: 'pc1', startedAt: T0, status: 'failed' };
    expect(readJobRecord(good)).toEqual(good);
    const bad: Array<[string, unknown]> = [
      ['not an object', [good]],
      ['kind outside the set', { ...good, kind: 'rm -rf /' }],
      ['status outside the set', { ...good, status: 'ok' }],
      ['trigger outside the set', { ...good, trigger: 'cron' }],
      ['startedAt Infinity (1e999 in the file)', JSON.parse('{"id":"j","kind":"backup","agent":"a","status":"failed","startedAt":1e999}')],
      ['startedAt negative', { ...good, startedAt: -1 }],
      ['startedAt a string', { ...good, startedAt: '1' }],
      ['endedAt a fraction', { ...good, endedAt: 1.5 }],
      ['id with a newline', { ...good, id: 'a\nb' }],
      ['id too long', { ...good, id: 'a'.repeat(129) }],
      ['agent empty', { ...good, agent: '' }],
      ['agent with ESC', { ...good, agent: 'pc\u001b]0;x\u0007' }],
      ['archive too long', { ...good, archive: 'a'.repeat(256) }],
      ['reason too long', { ...good, reason: 'r'.repeat(5000) }],
      ['reason an object', { ...good, reason: { toString: 1 } }],
      ['code not a code', { ...good, code: 'rm' }],
      ['stats a list', { ...good, stats: [1] }],
      ['stats NaN-like', { ...good, stats: { nfiles: 'NaN' } }],
      ['stats negative', { ...good, stats: { nfiles: -1 } }],
      ['sha256 not hex', { ...good, stats: { sha256: 'z'.repeat(64) } }],
    ];
    for (const [what, raw] of bad) expect(readJobRecord(raw), what).toBeUndefined();
    // Free text is printed later: a control character a writer forgot to escape is escaped here.
    expect(readJobRecord({ ...good, reason: 'tar: \u001b]0;pwned\u0007' })?.reason).toBe('tar: \\x1b]0;pwned\\x07');
    // A field a later version adds survives, if it is a plain bounded value; any other is left out, the record kept.
    expect(readJobRecord({ ...good, queuedAt: 5, dryRun: true })).toEqual({ ...good, queuedAt: 5, dryRun: true });
    expect(readJobRecord({ ...good, evil: { a: 1 }, list: ['x'], long: 'x'.repeat(5000), big: Infinity })).toEqual(good);
    const proto = readJobRecord(
      JSON.parse('{"id":"j1","kind":"backup","agent":"pc1","status":"failed","startedAt":1,"__proto__":{"x":1}}'),
    );
    expect(proto).toEqual({ ...good, startedAt: 1 });
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
    expect((proto as unknown as Record<string, unknown>)['x']).toBeUndefined();
    expect(Object.keys(proto!)).not.toContain('__proto__');
  });

  it('imports the old jobs.json once, renames it aside, and keeps what validates', async () => {
    const legacy = join(dir, 'jobs.json');
    writeFileSync(
      legacy,
      JSON.stringify(
        { jobs: [rec('old-1'), { ...rec('old-2'), kind: 'bogus' }, rec('old-3', { status: 'running', endedAt: undefined })] },
        null,
        1,
      ),
    );
    const log = memLog();
    let s = await openStore({ legacy, log });
    expect(s.query({ limit: 10 }).map((j) => j.id)).toEqual(['old-3', 'old-1']);
    expect(existsSync(legacy)).toBe(false);
    expect(existsSync(`${legacy}.imported`)).toBe(true);
    expect(log.infos).toContain('job history: imported the old history file');
    expect((await s.failInterrupted()).map((j) => j.id)).toEqual(['old-3']);
    // A jobs.json that shows up again (a crash before the rename, a restored backup) is never imported twice.
    writeFileSync(legacy, JSON.stringify({ jobs: [rec('old-9')] }));
    s = await reopen(s, { legacy });
    expect(s.query({ limit: 10 }).map((j) => [j.id, j.status])).toEqual([
      ['old-3', 'failed'],
      ['old-1', 'succeeded'],
    ]);
    // A damaged one imports nothing and never stops the daemon.
    await s.close();
    open.splice(0);
    await rm(path);
    writeFileSync(legacy, '{"jobs": [');
    const log2 = memLog();
    s = await openStore({ legacy, log: log2 });
    expect(s.size).toBe(0);
    expect(log2.warnings).toContainEqual(
      expect.objectContaining({ msg: 'job history: the old history file is damaged; nothing imported' }),
    );
  });

  it('compacts when the file has doubled, atomically, keeping every record and the order', async () => {
    let s = await openStore({ minCompactLines: 10 });
    const ended: string[] = [];
    s.onEnd((j) => ended.push(j.id));
    for (let i = 0; i < 30; i++) {
      const j = rec(`j${i}`, { status: 'running', endedAt: undefined });
      await s.add(j);
      j.status = 'succeeded';
      await s.update(j);
    }
    await s.close();
    open.splice(0);
    // 60 lines written; compactions at 20 and 40 lines leave far fewer.
    expect(fileLines(path).length).toBeLessThan(40);
    expect(ended).toHaveLength(30);
    s = await openStore();
    expect(s.query({ limit: 100 }).map((j) => j.id)).toEqual(Array.from({ length: 30 }, (_, i) => `j${29 - i}`));
    expect(s.query({ limit: 100, status: ['running'] })).toEqual([]);
    expect(existsSync(`${path}.tmp`)).toBe(false);
  });

  it("trims by the rule at open: older than keep or beyond maxJobs, never a running job or an agent's last good backup", async () => {
    const now = T0 + 500 * DAY;
    const s0 = await openStore();
    await s0.add(rec('pc1-good-ancient', { startedAt: T0, endedAt: T0 + 1 }));
    await s0.add(rec('pc1-failed-old', { startedAt: T0 + DAY, endedAt: T0 + DAY, status: 'failed' }));
    await s0.add(rec('pc2-good-old', { agent: 'pc2', startedAt: T0 + 2 * DAY, endedAt: T0 + 2 * DAY }));
    await s0.add(rec('pc2-running-old', { agent: 'pc2', kind: 'check', startedAt: T0 + 2 * DAY, status: 'running', endedAt: undefined }));
    for (let i = 0; i < 150; i++) await s0.add(rec(`pc2-new-${i}`, { agent: 'pc2', startedAt: now - DAY + i, endedAt: now - DAY + i }));
    const log = memLog();
    const s = await reopen(s0, { rule: { keep: 400 * 86_400, maxJobs: 100 }, now: () => now, log });
    const ids = s.query({ limit: 1000 }).map((j) => j.id);
    expect(ids).toHaveLength(100 + 2);
    expect(ids).toContain('pc2-new-50');
    expect(ids).toContain('pc1-good-ancient');
    expect(ids).toContain('pc2-running-old');
    expect(ids).not.toContain('pc1-failed-old');
    expect(ids).not.toContain('pc2-good-old');
    expect(ids).not.toContain('pc2-new-49');
    expect(ids[0]).toBe('pc2-new-149');
    expect(fileLines(path)).toHaveLength(102);
    expect(s.query({ limit: 1000, agent: 'pc2' }).map((j) => j.id)).toContain('pc2-new-149');
    expect(log.infos).toContain('job history compacted');
  });

  it('applies a new rule (config reloaded) at the next compaction', async () => {
    const s = await openStore({ minCompactLines: 10 });
    s.setRule({ keep: 400 * 86_400, maxJobs: 3 });
    for (let i = 0; i < 25; i++) await s.add(rec(`j${i}`, { agent: `pc${i}`, status: 'failed', startedAt: Date.now() }));
    await s.close();
    open.splice(0);
    // 25 lines: at the 20th (twice the minimum) compacted down to the newest 3, then 5 more appended.
    expect(fileLines(path)).toHaveLength(8);
    const t = await openStore();
    expect(t.query({ limit: 100 }).map((j) => j.id)).toEqual(['j24', 'j23', 'j22', 'j21', 'j20', 'j19', 'j18', 'j17']);
  });

  it('answers latest() and agent queries from its indexes', async () => {
    const s = await openStore();
    await s.add(rec('b1', { agent: 'pc1' }));
    await s.add(rec('b2', { agent: 'pc1', status: 'failed' }));
    await s.add(rec('p1', { agent: 'pc1', kind: 'prune' }));
    await s.add(rec('x1', { agent: 'pc2', status: 'offline' }));
    expect(s.latest('pc1', 'backup')?.id).toBe('b2');
    expect(s.latest('pc1', 'backup', isGood)?.id).toBe('b1');
    expect(s.latest('pc1', 'check')).toBeUndefined();
    expect(s.latest('pc9', 'backup')).toBeUndefined();
    expect(s.query({ limit: 10, agent: 'pc1', kind: 'backup' }).map((j) => j.id)).toEqual(['b2', 'b1']);
    expect(s.query({ limit: 10, status: ['offline', 'failed'] }).map((j) => j.id)).toEqual(['x1', 'b2']);
    expect(s.query({ limit: 10, since: T0 + 1 })).toEqual([]);
    expect(s.query({ limit: 10, agent: 'pc9' })).toEqual([]);
  });
});

describe('history rule', () => {
  it('parses the config form with defaults, and names the bad field', () => {
    expect(parseHistoryRule(undefined)).toEqual({ keep: 400 * 86_400, maxJobs: 100_000 });
    expect(parseHistoryRule({ keep: '30d' })).toEqual({ keep: 30 * 86_400, maxJobs: 100_000 });
    expect(parseHistoryRule({ maxJobs: 5000 })).toEqual({ keep: 400 * 86_400, maxJobs: 5000 });
    expect(parseHistoryRule('400d')).toMatch(/^history must be an object/);
    expect(parseHistoryRule({ keep: '1h' })).toMatch(/^history\.keep /);
    expect(parseHistoryRule({ maxJobs: 1e9 })).toMatch(/^history\.maxJobs /);
    expect(parseHistoryRule({ maxJobs: '100' })).toMatch(/^history\.maxJobs /);
    expect(parseHistoryRule({ keeep: '1d' })).toMatch(/^history\.keeep is not a setting/);
  });

  it("keeps the newest maxJobs, each agent's last good backup and running jobs", () => {
    const list = [
      rec('a-good', { agent: 'a' }),
      rec('a-fail', { agent: 'a', status: 'failed' }),
      rec('b-warn', { agent: 'b', status: 'warning' }),
      rec('b-run', { agent: 'b', status: 'running' }),
      rec('c-1', { agent: 'c', kind: 'prune' }),
    ];
    expect(applyHistoryRule(list, { keep: 86_400, maxJobs: 1 }, T0).map((j) => j.id)).toEqual(['a-good', 'b-warn', 'b-run', 'c-1']);
    expect(applyHistoryRule(list, { keep: 86_400, maxJobs: 1 }, T0 + 2 * DAY).map((j) => j.id)).toEqual(['a-good', 'b-warn', 'b-run']);
  });
});

describe('JobStore: a real crash', () => {
  it('a process appending in a loop is SIGKILLed: every record it saw saved is there, the next append is fine', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'job-crash-'));
    const path = join(dir, 'jobs.jsonl');
    // The built store (tsc -b), in a process of its own that is killed mid-loop.
    const storeUrl = new URL('../../dist/jobs/job-store.js', import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { JobStore } from ${JSON.stringify(storeUrl)};
         const s = await JobStore.open(process.argv[1], { minCompactLines: 64 });
         for (let i = 0; ; i++) {
           const j = { id: 'j' + i, kind: 'backup', agent: 'pc' + (i % 7), startedAt: Date.now(), status: 'running', reason: 'x'.repeat(i % 3000) };
           await s.add(j);
           j.status = 'succeeded';
           j.endedAt = Date.now();
           await s.update(j);
           process.stdout.write('saved ' + i + '\\n');
         }`,
        path,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      expect(existsSync(fileURLToPath(storeUrl)), 'run npx tsc -b first').toBe(true);
      const target = 150 + Math.floor(Math.random() * 100);
      let saved = -1;
      await new Promise<void>((resolve, reject) => {
        let buf = '';
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const m = /saved (\d+)\n(?![\s\S]*saved)/.exec(buf);
          if (m) saved = Number(m[1]);
          if (saved >= target && child.exitCode === null) {
            child.kill('SIGKILL');
            resolve();
          }
        });
        child.on('exit', () => (saved >= target ? resolve() : reject(new Error(`child exited after ${saved}`))));
      });
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.on('exit', r)));
      // Lines written after the last "saved" the parent read are fine too; what it saw saved must be there.
      const log = memLog();
      const s = await JobStore.open(path, { log });
      const byId = new Map(s.query({ limit: 1_000_000 }).map((j) => [j.id, j]));
      for (let i = 0; i <= saved; i++) expect(byId.get(`j${i}`)?.status, `j${i}`).toBe('succeeded');
      // The child may have gone on a little before the kill landed: what is there is still every job
      // up to the one in flight, with no gap, each in a state it really reached.
      const last = byId.size - 1;
      expect(last).toBeGreaterThanOrEqual(saved);
      for (let i = 0; i < last; i++) expect(byId.get(`j${i}`)?.status, `j${i}`).toBe('succeeded');
      expect(['running', 'succeeded']).toContain(byId.get(`j${last}`)?.status);
      expect(log.warnings.filter((w) => w['msg'] === 'job history: skipped damaged lines')).toEqual([]);
      await s.add(rec('after'));
      await s.close();
      const t = await JobStore.open(path);
      expect(t.query({ limit: 1 })[0]?.id).toBe('after');
      await t.close();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
