import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { AgentStatus } from './agent-status.js';
import { JobCounters, labelValue, renderMetrics } from './metrics.js';

/** promtool from Debian's `prometheus` package (scripts/setup.sh installs it). */
export function promtoolCheck(text: string): { ok: boolean; output: string } {
  try {
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    return { ok: true, output: out };
  } catch (err) {
    const e = err as { code?: string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error("promtool is missing: install Debian's 'prometheus' package (bash scripts/setup.sh does)", { cause: err });
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const agent = (name: string, over: Partial<AgentStatus> = {}): AgentStatus => ({
  name,
  connected: true,
  lastGoodAt: 1_700_000_000_000,
  lastGood: { durationMs: 12_500, originalSize: 1000, deduplicatedSize: 100 },
  lastBackup: { jobId: 'j1', status: 'succeeded', code: null, startedAt: 1, endedAt: 2 },
  lastCheck: null,
  nextRun: null,
  archives: 3,
  repositorySize: 4096,
  factsAt: 1,
  level: 0,
  overdue: false,
  problems: [],
  warnAfter: 93600,
  overdueAfter: 172800,
  ...over,
});

describe('metrics', () => {
  it('escapes label values as the exposition format says', () => {
    expect(labelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
  });

  it('renders every family with HELP and TYPE, accepted by promtool', () => {
    const counters = new JobCounters();
    counters.add({ id: 'a', kind: 'backup', agent: 'pc1', startedAt: 1, status: 'succeeded' });
    counters.add({ id: 'b', kind: 'backup', agent: 'pc1', startedAt: 1, status: 'failed' });
    counters.add({ id: 'c', kind: 'backup', agent: 'pc1', startedAt: 1, status: 'failed' });
    const text = renderMetrics({
      agents: [
        agent('pc1'),
        agent('pc2', { connected: false, lastGoodAt: null, lastGood: null, archives: null, repositorySize: null, level: 2, overdue: true }),
      ],
      counters,
      running: 1,
      queued: 2,
      version: '0.1.0',
      startedAt: 1_700_000_000_000,
    });
    const check = promtoolCheck(text);
    expect(check, check.output).toMatchObject({ ok: true });
    expect(text).toContain('borgpull_jobs_total{kind="backup",outcome="failed"} 2');
    expect(text).toContain('borgpull_jobs_total{kind="check",outcome="succeeded"} 0');
    expect(text).toContain('borgpull_agent_last_success_timestamp_seconds{agent="pc1"} 1700000000');
    expect(text).not.toContain('borgpull_agent_last_success_timestamp_seconds{agent="pc2"}');
    expect(text).toContain('borgpull_agent_last_backup_duration_seconds{agent="pc1"} 12.5');
    expect(text).toContain('borgpull_agents_connected 1');
    expect(text).toContain('borgpull_jobs_queued 2');
    expect(text).toContain('borgpull_agent_status{agent="pc2"} 2');
  });

  it('a hostile label value cannot end its line or inject a sample', () => {
    // Agent names are restricted at enrollment; this is the defence behind that.
    const evil = 'x"} 1\nborgpull_agent_connected{agent="forged"} 1\n#';
    const text = renderMetrics({
      agents: [agent(evil)],
      counters: new JobCounters(),
      running: 0,
      queued: 0,
      version: '0.1.0\n1',
      startedAt: 0,
    });
    expect(promtoolCheck(text).ok).toBe(true);
    expect(text).not.toMatch(/^borgpull_agent_connected\{agent="forged"\}/m);
    expect(text.split('\n').filter((l) => l.startsWith('borgpull_agent_connected{'))).toHaveLength(1);
  });
});
