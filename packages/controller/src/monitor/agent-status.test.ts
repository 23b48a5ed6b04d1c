import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BorgpullError } from '@borgpull/protocol';
import { validateConfig } from '../config.js';
import { JobStore, type JobRecord } from '../jobs/job-store.js';
import { statePaths, type StatePaths } from '../state.js';
import { agentStatuses, type StatusDeps } from './agent-status.js';

const H = 3600_000;
const NOW = 1_800_000_000_000;

describe('agentStatuses', () => {
  let dir: string;
  let paths: StatePaths;
  let store: JobStore;
  const agents = [
    { name: 'pc1', enrolledAt: NOW - 100 * H },
    { name: 'pc2', enrolledAt: NOW - 100 * H },
    { name: 'gone', enrolledAt: 0, revokedAt: 1 },
  ];
  const deps = (over: Partial<StatusDeps> = {}): StatusDeps => ({
    paths,
    agents: () => agents,
    connected: (n) => n === 'pc1',
    store,
    config: () => validateConfig({ url: 'ws://127.0.0.1:7400' }),
    now: () => NOW,
    ...over,
  });
  const add = async (j: Partial<JobRecord> & Pick<JobRecord, 'agent' | 'status'>): Promise<void> => {
    await store.add({ id: `j${Math.random()}`, kind: 'backup', startedAt: NOW - 2 * H, endedAt: NOW - H, ...j });
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'status-'));
    paths = statePaths(dir);
    store = await JobStore.open(join(dir, 'jobs.json'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('judges each agent not revoked, with its facts, next run and last results', async () => {
    await add({ agent: 'pc1', status: 'succeeded', stats: { originalSize: 1000, deduplicatedSize: 10 } });
    await add({ agent: 'pc1', status: 'offline', startedAt: NOW - 1000, endedAt: NOW - 1000 });
    await add({ agent: 'pc2', status: 'failed', code: 'E_JOB_BORG' });
    mkdirSync(paths.factsDir);
    writeFileSync(paths.repoFacts('pc1'), JSON.stringify({ at: NOW - H, archives: 7, size: 12345, originalSize: 99999 }));
    const list = await agentStatuses(deps({ nextRun: (a) => (a === 'pc1' ? NOW + H : null) }));
    expect(list.map((a) => a.name)).toEqual(['pc1', 'pc2']);
    expect(list[0]).toMatchObject({
      connected: true,
      level: 0,
      lastGoodAt: NOW - H,
      lastGood: { durationMs: H, originalSize: 1000, deduplicatedSize: 10 },
      lastBackup: { status: 'offline' },
      nextRun: NOW + H,
      archives: 7,
      repositorySize: 12345,
    });
    expect(list[1]).toMatchObject({ connected: false, level: 2, overdue: true, archives: null, nextRun: null });
    expect(list[1]!.problems).toEqual([
      expect.stringMatching(/^overdue: no good backup since enrolled 4d ago/),
      'last backup failed (E_JOB_BORG)',
    ]);
  });

  it("follows the schedule's maxAge: warning past it, critical past twice it", async () => {
    await add({ agent: 'pc1', status: 'succeeded', endedAt: NOW - 7 * H });
    await add({ agent: 'pc2', status: 'succeeded', endedAt: NOW - 13 * H });
    const list = await agentStatuses(deps({ maxAge: () => 6 * 3600 }));
    expect(list.map((a) => [a.level, a.warnAfter, a.overdueAfter])).toEqual([
      [1, 6 * 3600, 12 * 3600],
      [2, 6 * 3600, 12 * 3600],
    ]);
  });

  it('shows a revoked agent when named, never judged; refuses a name it does not know', async () => {
    expect(await agentStatuses(deps(), ['gone'])).toMatchObject([{ name: 'gone', level: 0, problems: ['revoked'] }]);
    const err = await agentStatuses(deps(), ['nosuch']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BorgpullError);
    expect((err as BorgpullError).code).toBe('E_AGENT_UNKNOWN');
  });

  it('ignores a facts file that does not parse', async () => {
    mkdirSync(paths.factsDir);
    writeFileSync(paths.repoFacts('pc1'), '{"archives": "many"}');
    expect((await agentStatuses(deps(), ['pc1']))[0]).toMatchObject({ archives: null, repositorySize: null });
  });
});
