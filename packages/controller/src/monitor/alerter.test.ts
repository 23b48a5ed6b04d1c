import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../config.js';
import { JobStore, type JobRecord } from '../jobs/job-store.js';
import type { AlertPayload } from './alert-hooks.js';
import { Alerter } from './alerter.js';

const log = pino({ level: 'silent' });
const H = 3600_000;

describe('Alerter (fake clock)', () => {
  let dir: string;
  let store: JobStore;
  let now: number;
  let fired: AlertPayload[];
  const alerters: Alerter[] = [];
  const cfg = validateConfig({
    url: 'ws://127.0.0.1:7400',
    status: { warnAfter: '12h', overdueAfter: '24h' },
    alerts: { failure: [{ command: ['/bin/true'] }] },
  });
  const agents = [
    { name: 'pc1', enrolledAt: 0 },
    { name: 'pc2', enrolledAt: 0 },
    { name: 'old', enrolledAt: 0, revokedAt: 1 },
  ];

  const alerter = async (): Promise<Alerter> => {
    const a = new Alerter({
      paths: { alertState: join(dir, 'alert-state.json') },
      log,
      config: () => cfg,
      agents: () => agents,
      hooks: { fire: (p) => fired.push(p) },
      now: () => now,
    });
    await a.start(store, { timer: false });
    alerters.push(a);
    return a;
  };

  let seq = 0;
  const end = async (
    agent: string,
    status: JobRecord['status'],
    kind: JobRecord['kind'] = 'backup',
    extra: Partial<JobRecord> = {},
  ): Promise<void> => {
    const job: JobRecord = { id: `j${++seq}`, kind, agent, startedAt: now - 1000, status: 'running' };
    await store.add(job);
    Object.assign(job, { status, endedAt: now, ...extra });
    await store.update(job);
  };
  const events = (): string[] => fired.map((p) => `${p.event} ${p.agent}`);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alerter-'));
    store = await JobStore.open(join(dir, 'jobs.json'));
    now = 1_000_000_000_000;
    fired = [];
  });
  afterEach(async () => {
    for (const a of alerters.splice(0)) {
      a.stop();
      await a.flushed();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('says overdue once per transition, then recovery at the next good backup', async () => {
    const a = await alerter();
    await end('pc1', 'succeeded');
    await end('pc2', 'succeeded');
    expect(events()).toEqual(['success pc1', 'success pc2']);
    fired = [];
    now += 23 * H;
    a.checkOverdue();
    expect(events()).toEqual([]);
    now += 2 * H;
    a.checkOverdue();
    now += 1 * H;
    a.checkOverdue();
    a.checkOverdue();
    // once, not once per check; the revoked agent never
    expect(events()).toEqual(['overdue pc1', 'overdue pc2']);
    expect(fired[0]).toMatchObject({ kind: 'backup', lastGoodAt: 1_000_000_000_000 });
    fired = [];
    // an agent offline at its backup is no failure and no recovery
    await end('pc1', 'offline');
    expect(events()).toEqual([]);
    await end('pc1', 'succeeded');
    expect(events()).toEqual(['success pc1', 'recovery pc1']);
    fired = [];
    a.checkOverdue();
    expect(events()).toEqual([]);
    // still overdue: pc2; good again later without a new alert in between
    now += 30 * H;
    a.checkOverdue();
    expect(events()).toEqual(['overdue pc1']);
  });

  it('says failure at each failed job, and recovery only at the first good one after', async () => {
    await alerter();
    await end('pc1', 'failed', 'backup', { code: 'E_JOB_BORG', reason: 'borg create failed' });
    await end('pc1', 'failed', 'backup', { code: 'E_JOB_BORG' });
    await end('pc1', 'warning');
    await end('pc1', 'succeeded');
    await end('pc1', 'failed', 'check', { code: 'E_JOB_BORG' });
    await end('pc1', 'succeeded', 'backup');
    await end('pc1', 'succeeded', 'check');
    // restores are not alerted
    await end('pc1', 'failed', 'restore');
    expect(events()).toEqual([
      'failure pc1',
      'failure pc1',
      'success pc1',
      'recovery pc1',
      'success pc1',
      'failure pc1',
      'success pc1',
      'success pc1',
      'recovery pc1',
    ]);
    expect(fired[0]).toMatchObject({
      event: 'failure',
      kind: 'backup',
      code: 'E_JOB_BORG',
      status: 'failed',
      reason: 'borg create failed',
    });
    expect(fired[8]).toMatchObject({ event: 'recovery', kind: 'check' });
  });

  it('remembers across a restart what it said', async () => {
    const a = await alerter();
    await end('pc1', 'succeeded');
    await end('pc2', 'failed');
    now += 25 * H;
    a.checkOverdue();
    await a.flushed();
    a.stop();
    expect(JSON.parse(readFileSync(join(dir, 'alert-state.json'), 'utf8'))).toEqual({ failing: ['pc2/backup'], overdue: ['pc1', 'pc2'] });
    fired = [];
    const b = await alerter();
    b.checkOverdue();
    expect(events()).toEqual([]);
    await end('pc2', 'succeeded');
    expect(events()).toEqual(['success pc2', 'recovery pc2']);
  });

  it('on a first start, takes a failed last job as failing without alerting', async () => {
    now -= 1000;
    await end('pc1', 'failed');
    now += 1000;
    await alerter();
    expect(events()).toEqual([]);
    await end('pc1', 'succeeded');
    expect(events()).toEqual(['success pc1', 'recovery pc1']);
  });
});
