import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_API, type AdminApi, type Handlers, type JobsArgs } from '../admin/api.js';
import { AdminServer } from '../admin/server.js';
import { adminSocketPath } from '../admin/wire.js';
import { run } from '../cli.js';
import { JobStore, type JobRecord } from '../jobs/job-store.js';
import type { Io } from './io.js';
import { jobsFilter } from './jobs.js';

const NOW = Date.parse('2026-11-29T12:00:00Z');
const H = 3_600_000;

describe('controller jobs: flags', () => {
  it('reads the filters into the admin arguments', () => {
    expect(jobsFilter({})).toEqual({ limit: 20 });
    expect(jobsFilter({ agent: 'pc1', kind: 'backup', outcome: 'failed,offline,failed', limit: '5', since: '2h' }, NOW)).toEqual({
      limit: 5,
      agent: 'pc1',
      kind: 'backup',
      status: ['failed', 'offline'],
      since: NOW - 2 * H,
    });
  });

  it.each([
    [{ limit: '0' }, /--limit must be a whole number in 1\.\.1000000, got '0'/],
    [{ limit: '-5' }, /--limit must be/],
    [{ limit: '1e3' }, /--limit must be/],
    [{ limit: '0x10' }, /--limit must be/],
    [{ limit: '99999999' }, /--limit must be/],
    [{ limit: ' 5' }, /--limit must be/],
    [{ agent: '../etc' }, /--agent must be an agent name/],
    [{ agent: 'pc\u001b]0;x\u0007' }, /--agent must be an agent name/],
    [{ kind: 'backups' }, /--kind must be one of backup, restore, prune, compact, check, got 'backups'/],
    [{ kind: 'constructor' }, /--kind must be one of/],
    [{ outcome: 'ok' }, /--outcome must be among succeeded, warning, failed, offline, running/],
    [{ outcome: 'failed,' }, /--outcome must be among .* got ''/],
    [{ since: 'yesterday' }, /--since 'yesterday' is not a duration/],
    [{ since: '0s' }, /--since must be in/],
    [{ since: '99999d' }, /--since must be in/],
  ])('refuses %j with a usage error that says what is allowed', (values, message) => {
    let err: unknown;
    try {
      jobsFilter(values, NOW);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'E_USAGE' });
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('usage: controller jobs');
  });
});

describe('controller jobs: against a daemon socket backed by a real store', () => {
  let state: string;
  let store: JobStore;
  let server: AdminServer<AdminApi>;
  const seen: JobsArgs[] = [];
  const io = (): Io & { out: (s: string) => void; text: () => string } => {
    const lines: string[] = [];
    return { out: (s) => lines.push(s), err: (s) => lines.push(s), text: () => lines.join('\n') };
  };

  beforeAll(async () => {
    state = mkdtempSync(join(tmpdir(), 'bp-cli-jobs-'));
    writeFileSync(join(state, 'config.json'), '{}');
    store = await JobStore.open(join(state, 'jobs.jsonl'));
    const now = Date.now();
    const jobs: JobRecord[] = [
      {
        id: 'b1',
        kind: 'backup',
        agent: 'pc1',
        startedAt: now - 30 * H,
        endedAt: now - 30 * H + 61_000,
        status: 'succeeded',
        archive: 'pc1-a',
        stats: { originalSize: 3 * 2 ** 30, deduplicatedSize: 5 * 2 ** 20 },
      },
      {
        id: 'b2',
        kind: 'backup',
        agent: 'pc2',
        startedAt: now - 3 * H,
        endedAt: now - 3 * H + 2000,
        status: 'failed',
        code: 'E_AGENT_OFFLINE',
        reason: "agent 'pc2' is not connected",
      },
      {
        id: 'r1',
        kind: 'restore',
        agent: 'pc1',
        startedAt: now - 2 * H,
        endedAt: now - 2 * H + 9000,
        status: 'succeeded',
        stats: { bytes: 2048 },
      },
      {
        id: 'b3',
        kind: 'backup',
        agent: 'pc1',
        startedAt: now - H,
        endedAt: now - H + 5000,
        status: 'warning',
        stats: { originalSize: 1024, deduplicatedSize: 0 },
      },
    ];
    for (const j of jobs) await store.add(j);
    // Only `jobs` is called here; the other commands belong to other tests.
    const handlers = {
      jobs: async (args: JobsArgs) => {
        seen.push(args);
        return store.query(args);
      },
    } as unknown as Handlers<AdminApi>;
    server = new AdminServer(adminSocketPath(state), ADMIN_API, handlers, pino({ level: 'silent' }));
    await server.start();
  });

  afterAll(async () => {
    await server.stop();
    await store.close();
    rmSync(state, { recursive: true, force: true });
  });

  const jobs = async (...args: string[]): Promise<{ code: number; text: string }> => {
    const o = io();
    const code = await run(['jobs', '--state-dir', state, ...args], o);
    return { code, text: o.text() };
  };

  it('lists the history as a table: start, duration, agent, kind, outcome, sizes, code', async () => {
    const { code, text } = await jobs();
    expect(code).toBe(0);
    const [head, ...rows] = text.split('\n');
    expect(head).toMatch(/^STARTED\s+TIME\s+AGENT\s+KIND\s+OUTCOME\s+SIZE\s+NEW\s+CODE\s+JOB\s+REASON$/);
    expect(rows.map((r) => r.split(/\s{2,}/)[7])).toEqual(['-', '-', 'E_AGENT_OFFLINE', '-']);
    expect(rows[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+5\.0s\s+pc1\s+backup\s+warning\s+1\.0 KiB\s+0 B\s+-\s+b3$/);
    expect(rows[3]).toMatch(/1m01s\s+pc1\s+backup\s+succeeded\s+3\.0 GiB\s+5\.0 MiB\s+-\s+b1$/);
    expect(rows[1]).toMatch(/restore\s+succeeded\s+2\.0 KiB\s+-/);
  });

  it('filters by agent, kind, outcome and age, and says when nothing matches', async () => {
    const ids = async (...args: string[]): Promise<string[]> =>
      (JSON.parse((await jobs('--json', ...args)).text) as JobRecord[]).map((j) => j.id);
    expect(await ids('--agent', 'pc1')).toEqual(['b3', 'r1', 'b1']);
    expect(await ids('--kind', 'backup', '--outcome', 'succeeded,warning')).toEqual(['b3', 'b1']);
    expect(await ids('--kind', 'backup', '--outcome', 'failed')).toEqual(['b2']);
    expect(await ids('--since', '1d')).toEqual(['b3', 'r1', 'b2']);
    expect(await ids('--agent', 'pc1', '--kind', 'backup', '--limit', '1')).toEqual(['b3']);
    expect(seen.at(-1)).toEqual({ limit: 1, agent: 'pc1', kind: 'backup' });
    expect(await jobs('--agent', 'pc9')).toEqual({ code: 0, text: 'no jobs match' });
  });

  it('refuses a bad flag before it asks the daemon', async () => {
    const before = seen.length;
    await expect(jobs('--kind', 'nope')).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(jobs('--outcome')).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(jobs('extra')).rejects.toMatchObject({ code: 'E_USAGE' });
    expect(seen.length).toBe(before);
  });
});
