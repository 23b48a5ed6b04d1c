/**
 * Status, alerts and metrics on a real controller, agent, sshd, sshfs and
 * borg: a failed backup fires the failure hooks with the job's details (a
 * command that writes its env and stdin, a POST to an HTTP server on the
 * server host's loopback), a hook that hangs is killed without holding up
 * anything, `controller status` goes to 2 when an agent is overdue and back
 * to 0 after its backup (with overdue and recovery alerts), and promtool
 * accepts the metrics, whose values match the jobs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_ADDRESS, assertNoLeftovers, cleanupAll, requireTools, waitFor, type HostSubprocess } from '../harness/index.js';
import { backup, startClient, startController, waitForAgent, type Client, type Controller, logLines } from './fixture.js';

const HTTP_PORT = 18080;
const METRICS_PORT = 9310;

/** A webhook receiver: each request as one JSON line in `file`. */
const RECEIVER = `
const http = require('node:http');
const fs = require('node:fs');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    fs.appendFileSync(process.argv[1], JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }) + '\\n');
    res.end('OK');
  });
}).listen(${HTTP_PORT}, '127.0.0.1');
`;

interface Received {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** `key=value` lines of an env dump. */
function envOf(file: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** Metric samples by `name{labels}`. */
function samples(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of text.split('\n')) {
    if (l === '' || l.startsWith('#')) continue;
    const i = l.lastIndexOf(' ');
    m.set(l.slice(0, i), Number(l.slice(i + 1)));
  }
  return m;
}

describe('monitoring: status, alerts, metrics', () => {
  let ctl: Controller;
  let c1: Client;
  let out: string;
  let ctlLog: Array<Record<string, unknown>>;
  let receiver: HostSubprocess | undefined;

  const status = async (): Promise<{ exitCode: number; json: { level: number; agents: Array<Record<string, unknown>> } }> => {
    const r = await ctl.cli(['status', '--json']);
    return { exitCode: r.exitCode, json: JSON.parse(r.stdout) as { level: number; agents: Array<Record<string, unknown>> } };
  };
  const received = (): Received[] =>
    existsSync(join(out, 'http.jsonl'))
      ? readFileSync(join(out, 'http.jsonl'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Received)
      : [];
  const metrics = async (): Promise<string> => {
    const r = await ctl.server.exec(
      ['node', '-e', `fetch('http://127.0.0.1:${METRICS_PORT}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`],
      { reject: false },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    // execa strips the final newline the endpoint sends
    return r.stdout.endsWith('\n') ? r.stdout : `${r.stdout}\n`;
  };
  const restart = async (): Promise<void> => {
    process.kill(ctl.proc.pid!, 'SIGTERM');
    await ctl.proc;
    await ctl.start();
    ctlLog = logLines(ctl.proc);
  };

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    out = join(ctl.server.dir, 'alerts');
    mkdirSync(out, { recursive: true });
    const dump = (name: string): string[] => [
      '/bin/sh',
      '-c',
      `env > "$0/${name}-$BORGPULL_JOB_ID.env"; cat > "$0/${name}-$BORGPULL_JOB_ID.json"`,
      out,
    ];
    ctl.configure({
      alerts: {
        timeout: '20s',
        failure: [
          { command: dump('failure') },
          // hangs, ignoring SIGTERM: killed (SIGKILL, whole group) after its 2 s
          { command: ['/bin/sh', '-c', `trap "" TERM; sleep 1000 & echo $$ $! > "$0/hang.pids"; wait`, out], timeout: '2s' },
          { url: `http://127.0.0.1:${HTTP_PORT}/ping/uuid-1/fail` },
        ],
        success: [{ url: `http://127.0.0.1:${HTTP_PORT}/borgpull-topic`, format: 'ntfy' }],
        overdue: [{ command: dump('overdue') }],
        recovery: [{ command: dump('recovery') }],
      },
      metrics: { listen: `127.0.0.1:${METRICS_PORT}` },
    });
    // Killed with the server host by cleanupAll.
    receiver = ctl.server.spawn(['node', '-e', RECEIVER, join(out, 'http.jsonl')]);
    await ctl.server.waitForPort(HTTP_PORT);
    expect(receiver.exitCode).toBeNull();
    // metrics.listen is bound at start
    await restart();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles({ 'home/alice/notes.txt': 'hello\n', 'etc/motd': 'client\n' });
  }, 180_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('a new agent is fine; a good backup caches its repository facts and POSTs an ntfy message', async () => {
    const s0 = await status();
    expect(s0.exitCode).toBe(0);
    expect(s0.json.agents[0]).toMatchObject({ name: 'pc1', connected: true, lastGoodAt: null, archives: null, nextRun: null, level: 0 });
    const r = await backup(ctl, ['pc1']);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const s1 = await status();
    expect(s1.exitCode).toBe(0);
    expect(s1.json.agents[0]).toMatchObject({ name: 'pc1', level: 0, archives: 1, lastBackup: { status: 'succeeded' } });
    expect(s1.json.agents[0]!['repositorySize']).toBeGreaterThan(0);
    const facts = ctlLog.find((l) => l['msg'] === 'repository facts gathered');
    expect(facts).toMatchObject({ agentId: 'pc1', archives: 1 });
    console.log(`repository facts (borg info + borg list, inside the job): ${String(facts?.['ms'])} ms`);
    const t = Date.now();
    await status();
    console.log(`controller status --json: ${Date.now() - t} ms`);
    await waitFor('ntfy POST', () => received().some((q) => q.url === '/borgpull-topic'), { timeoutMs: 10_000 });
    const ntfy = received().find((q) => q.url === '/borgpull-topic')!;
    expect(ntfy.headers).toMatchObject({ title: 'borgpull: backup of pc1: success', priority: 'low' });
    expect(ntfy.body).toBe('backup of pc1 succeeded');
    const table = await ctl.cli(['status']);
    expect(table.stdout.split('\n')[0]).toBe('OK: 1 agent, all backed up in time');
    expect(table.stdout).toMatch(/pc1\s+OK\s+yes\s+\d+s ago\s+succeeded\s+-\s+1\s+\S+/);
  }, 180_000);

  it('a failed backup fires the failure hooks with its details; a hook that hangs is killed and holds up nothing', async () => {
    ctl.configure({ minFreeSpace: '4P' });
    const t0 = Date.now();
    const r = await backup(ctl, ['pc1']);
    const took = Date.now() - t0;
    ctl.configure({ minFreeSpace: '2G' });
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ status: 'failed', code: 'E_JOB_DISK_LOW' });
    const jobs = JSON.parse((await ctl.cli(['jobs', '--json'])).stdout) as Array<{ id: string; status: string; reason: string }>;
    const failed = jobs.find((j) => j.status === 'failed')!;
    const envFile = join(out, `failure-${failed.id}.env`);
    await waitFor('failure hook', () => existsSync(envFile) && existsSync(join(out, `failure-${failed.id}.json`)), { timeoutMs: 10_000 });
    const env = envOf(envFile);
    expect(env).toMatchObject({
      BORGPULL_EVENT: 'failure',
      BORGPULL_AGENT: 'pc1',
      BORGPULL_KIND: 'backup',
      BORGPULL_JOB_ID: failed.id,
      BORGPULL_STATUS: 'failed',
      BORGPULL_CODE: 'E_JOB_DISK_LOW',
      BORGPULL_REASON: failed.reason,
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    });
    // nothing of the daemon's own environment
    expect(env['BORGPULL_HEARTBEAT_MS']).toBeUndefined();
    await waitFor('stdin JSON written', () => readFileSync(join(out, `failure-${failed.id}.json`), 'utf8').endsWith('\n'), {
      timeoutMs: 5000,
    });
    expect(JSON.parse(readFileSync(join(out, `failure-${failed.id}.json`), 'utf8'))).toMatchObject({
      event: 'failure',
      agent: 'pc1',
      jobId: failed.id,
      code: 'E_JOB_DISK_LOW',
    });
    await waitFor('failure POST', () => received().some((q) => q.url === '/ping/uuid-1/fail'), { timeoutMs: 10_000 });
    const post = received().find((q) => q.url === '/ping/uuid-1/fail')!;
    expect(post.headers['content-type']).toBe('application/json');
    expect(JSON.parse(post.body)).toMatchObject({ event: 'failure', jobId: failed.id, code: 'E_JOB_DISK_LOW' });

    // The hanging hook: the job's answer did not wait for it...
    expect(took).toBeLessThan(2000 + 10_000);
    await waitFor('hanging hook started', () => existsSync(join(out, 'hang.pids')), { timeoutMs: 10_000 });
    const pids = readFileSync(join(out, 'hang.pids'), 'utf8').trim().split(' ').map(Number);
    // ...and it is killed, with what it started, at its time limit.
    await waitFor('hanging hook killed', () => pids.every((p) => !alive(p)), { timeoutMs: 15_000 });
    await waitFor('hook failure logged', () => ctlLog.some((l) => l['msg'] === 'alert hook failed' && l['hook'] === 1), {
      timeoutMs: 5000,
    });
    expect(ctlLog.find((l) => l['msg'] === 'alert hook failed' && l['hook'] === 1)).toMatchObject({
      event: 'failure',
      agentId: 'pc1',
      result: 'killed after its time limit (2s)',
    });

    const s = await ctl.cli(['status']);
    expect(s.exitCode).toBe(2);
    expect(s.stdout.split('\n')[0]).toBe('CRITICAL: pc1: last backup failed (E_JOB_DISK_LOW)');

    // The next backup runs as usual, and it is a recovery.
    const again = await backup(ctl, ['pc1']);
    expect(again.exitCode, again.stdout + again.stderr).toBe(0);
    expect((await status()).exitCode).toBe(0);
    await waitFor('recovery hook', () => readdirSync(out).some((f) => f.startsWith('recovery-') && f.endsWith('.env')), {
      timeoutMs: 10_000,
    });
  }, 180_000);

  it('promtool accepts the metrics, and they match the jobs', async () => {
    const t = Date.now();
    const text = await metrics();
    console.log(`metrics scrape (node fetch in the server netns, start-up included): ${Date.now() - t} ms, ${text.length} bytes`);
    const check = (() => {
      try {
        return { ok: true, out: execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: 'pipe' }) };
      } catch (err) {
        const e = err as { code?: string; stdout?: string; stderr?: string };
        if (e.code === 'ENOENT')
          throw new Error('promtool missing: apt-get install --no-install-recommends prometheus (scripts/setup.sh does)', { cause: err });
        return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
      }
    })();
    expect(check, check.out).toMatchObject({ ok: true });
    const m = samples(text);
    const jobs = JSON.parse((await ctl.cli(['jobs', '--json'])).stdout) as Array<{
      status: string;
      kind: string;
      startedAt: number;
      endedAt: number;
      stats?: { originalSize?: number; deduplicatedSize?: number };
    }>;
    const good = jobs.filter((j) => j.kind === 'backup' && j.status === 'succeeded');
    expect(m.get('borgpull_jobs_total{kind="backup",outcome="succeeded"}')).toBe(good.length);
    expect(m.get('borgpull_jobs_total{kind="backup",outcome="failed"}')).toBe(jobs.filter((j) => j.status === 'failed').length);
    expect(m.get('borgpull_jobs_total{kind="restore",outcome="succeeded"}')).toBe(0);
    const last = good[0]!;
    expect(m.get('borgpull_agent_last_success_timestamp_seconds{agent="pc1"}')).toBe(last.endedAt / 1000);
    expect(m.get('borgpull_agent_last_backup_duration_seconds{agent="pc1"}')).toBe((last.endedAt - last.startedAt) / 1000);
    expect(m.get('borgpull_agent_last_backup_original_bytes{agent="pc1"}')).toBe(last.stats?.originalSize);
    expect(m.get('borgpull_agent_last_backup_deduplicated_bytes{agent="pc1"}')).toBe(last.stats?.deduplicatedSize);
    const archives = JSON.parse((await ctl.cli(['archives', 'pc1', '--json'])).stdout) as unknown[];
    expect(m.get('borgpull_agent_archives{agent="pc1"}')).toBe(archives.length);
    expect(m.get('borgpull_agent_repository_bytes{agent="pc1"}')).toBeGreaterThan(0);
    expect(m.get('borgpull_agents_connected')).toBe(1);
    expect(m.get('borgpull_agent_connected{agent="pc1"}')).toBe(1);
    expect(m.get('borgpull_jobs_running')).toBe(0);
    expect(m.get('borgpull_agent_status{agent="pc1"}')).toBe(0);
    // loopback only: the server's own address gets nothing
    const remote = await ctl.server.exec(
      ['node', '-e', `fetch('http://${SERVER_ADDRESS}:${METRICS_PORT}/metrics').then(() => process.exit(0), () => process.exit(7))`],
      {
        reject: false,
      },
    );
    expect(remote.exitCode).toBe(7);
  }, 120_000);

  it('status goes to 2 when the agent is overdue (one overdue alert), and back to 0 after its backup (a recovery alert)', async () => {
    // Long enough that the backup below (its repository facts included) and a status call fit in, on a busy machine.
    ctl.configure({ status: { warnAfter: '15s', overdueAfter: '20s' } });
    process.kill(ctl.proc.pid!, 'SIGHUP');
    await waitFor('config reloaded', () => ctlLog.some((l) => l['msg'] === 'config reloaded'), { timeoutMs: 10_000 });
    await waitFor('status 2', async () => (await status()).exitCode === 2, { timeoutMs: 60_000, intervalMs: 500 });
    const s = await ctl.cli(['status']);
    expect(s.stdout.split('\n')[0]).toMatch(/^CRITICAL: pc1: overdue: last good backup \d+s ago \(limit 20s\)$/);
    // The hook writes its env, then its stdin: a complete JSON means both are there.
    const complete = (f: string): boolean =>
      f.startsWith('overdue-') && f.endsWith('.json') && readFileSync(join(out, f), 'utf8').endsWith('\n');
    await waitFor('overdue hook', () => readdirSync(out).some(complete), { timeoutMs: 10_000 });
    const overdueEnv = envOf(
      join(
        out,
        readdirSync(out).find((f) => f.startsWith('overdue-') && f.endsWith('.env'))!,
      ),
    );
    expect(overdueEnv).toMatchObject({ BORGPULL_EVENT: 'overdue', BORGPULL_AGENT: 'pc1', BORGPULL_KIND: 'backup', BORGPULL_JOB_ID: '' });
    expect(overdueEnv['BORGPULL_LAST_GOOD_AT']).toMatch(/^\d{4}-\d\d-\d\dT/);
    const recoveriesBefore = readdirSync(out).filter((f) => f.startsWith('recovery-') && f.endsWith('.env')).length;
    const r = await backup(ctl, ['pc1']);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const after = await status();
    expect(after.exitCode, JSON.stringify(after.json)).toBe(0);
    await waitFor(
      'recovery hook',
      () => readdirSync(out).filter((f) => f.startsWith('recovery-') && f.endsWith('.env')).length === recoveriesBefore + 1,
      { timeoutMs: 10_000 },
    );
    // once per transition: a single overdue alert all along
    expect(ctlLog.filter((l) => l['msg'] === 'alert' && l['event'] === 'overdue')).toHaveLength(1);
    ctl.configure({ status: {} });
  }, 180_000);

  it('says so when the daemon is not running (exit 2)', async () => {
    process.kill(ctl.proc.pid!, 'SIGTERM');
    await ctl.proc;
    const r = await ctl.cli(['status']);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toMatch(/^CRITICAL: .*not running/);
    const j = await ctl.cli(['status', '--json']);
    expect(j.exitCode).toBe(2);
    expect(JSON.parse(j.stdout)).toMatchObject({ level: 2, verdict: 'CRITICAL', error: { code: 'E_DAEMON_DOWN' } });
    await ctl.start();
    await waitForAgent(ctl, 'pc1', true);
  }, 60_000);
});
