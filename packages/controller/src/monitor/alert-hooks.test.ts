import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommandHook, runUrlHook, cleanPayload, type AlertPayload } from './alert-hooks.js';
import { HookRunner } from './hook-runner.js';

const log = pino({ level: 'silent' });

/** What a root user on a client can get into a job's reason: borg quotes its file names, an agent its own error text. */
const HOSTILE_REASON = 'borg: warning: /home/x\nBORGPULL_AGENT=evil\r\nX-Injected: 1\x1b]0;owned\x07 \u202e done';

const payload = (over: Partial<AlertPayload> = {}): AlertPayload => ({
  event: 'failure',
  agent: 'pc1',
  kind: 'backup',
  jobId: '20261129T120000-abcdef',
  status: 'failed',
  code: 'E_JOB_BORG',
  reason: HOSTILE_REASON,
  startedAt: 1_700_000_000_000,
  endedAt: 1_700_000_060_000,
  message: `backup of pc1 failed (E_JOB_BORG): ${HOSTILE_REASON}`,
  at: 1_700_000_060_000,
  ...over,
});

/** Running, not a zombie waiting for whoever inherited it to reap it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('alert hooks', () => {
  let dir: string;
  let server: Server;
  let port: number;
  const requests: Array<{ method?: string; url?: string; headers: IncomingHttpHeaders; body: string }> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hooks-'));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        requests.push({ method: req.method, url: req.url, headers: req.headers, body });
        if (req.url === '/hang') return; // never answers
        res.writeHead(req.url === '/broken' ? 500 : 200).end('OK');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a command with the event in env vars and as JSON on stdin, escaped and bounded', async () => {
    const script = join(dir, 'hook.sh');
    const out = join(dir, 'hook.out');
    writeFileSync(script, `#!/bin/sh\nenv > "$1.env"\ncat > "$1.json"\necho hello from the hook\n`);
    chmodSync(script, 0o755);
    const r = await runCommandHook([script, out], cleanPayload(payload()), 10_000);
    expect(r).toMatchObject({ ok: true, detail: 'exit 0', output: 'hello from the hook\n'.replace('\n', '\\x0a') });
    const env = readFileSync(`${out}.env`, 'utf8').split('\n');
    // One line per variable: the reason's newline did not forge a second BORGPULL_AGENT.
    expect(env.filter((l) => l.startsWith('BORGPULL_AGENT='))).toEqual(['BORGPULL_AGENT=pc1']);
    expect(env).toContain('BORGPULL_EVENT=failure');
    expect(env).toContain('BORGPULL_KIND=backup');
    expect(env).toContain('BORGPULL_STATUS=failed');
    expect(env).toContain('BORGPULL_CODE=E_JOB_BORG');
    expect(env).toContain('BORGPULL_JOB_ID=20261129T120000-abcdef');
    expect(env).toContain('BORGPULL_ENDED_AT=2023-11-14T22:14:20.000Z');
    const reason = env.find((l) => l.startsWith('BORGPULL_REASON='))!;
    expect(reason).toBe(
      'BORGPULL_REASON=borg: warning: /home/x\\x0aBORGPULL_AGENT=evil\\x0d\\x0aX-Injected: 1\\x1b]0;owned\\x07 \\u202e done',
    );
    // Nothing of the daemon's environment.
    expect(env.some((l) => l.startsWith('VITEST'))).toBe(false);
    const json = JSON.parse(readFileSync(`${out}.json`, 'utf8')) as AlertPayload;
    expect(json).toMatchObject({ event: 'failure', agent: 'pc1', code: 'E_JOB_BORG' });
    expect(json.reason).not.toMatch(/[\n\r\x1b\u202e]/);
  });

  it('bounds a reason and the output it logs', async () => {
    const p = cleanPayload(payload({ reason: 'x'.repeat(100_000) }));
    expect(p.reason!.length).toBeLessThanOrEqual(1003);
    const r = await runCommandHook(['/bin/sh', '-c', 'head -c 100000 /dev/zero | tr "\\0" y'], p, 10_000);
    expect(r.ok).toBe(true);
    expect(r.output!.length).toBeLessThan(4300);
    expect(r.output).toMatch(/\[95904 more bytes\]$/);
  });

  it('kills a hook that hangs at its time limit, with whatever it started', async () => {
    const pids = join(dir, 'pids');
    const started = Date.now();
    const r = await runCommandHook(
      ['/bin/sh', '-c', `trap "" TERM; sleep 1000 & echo $$ $! > ${pids}; wait`],
      cleanPayload(payload()),
      1000,
    );
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/killed after its time limit/);
    // SIGTERM was ignored: SIGKILL came 2 s later.
    expect(Date.now() - started).toBeLessThan(6000);
    const [sh, sleep] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    // SIGKILL was sent to the group; the kernel ends them a moment later.
    for (let i = 0; i < 40 && (alive(sh!) || alive(sleep!)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(alive(sh!)).toBe(false);
    expect(alive(sleep!)).toBe(false);
  });

  it('says why a command could not start', async () => {
    const r = await runCommandHook(['/nonexistent/hook'], cleanPayload(payload()), 1000);
    expect(r).toMatchObject({ ok: false });
    expect(r.detail).toMatch(/cannot start/);
  });

  it('POSTs the event as JSON, and ntfy-style text with headers that carry nothing of the reason', async () => {
    requests.length = 0;
    const p = cleanPayload(payload({ agent: 'pc1\r\nX-Evil: 1' }));
    expect(await runUrlHook({ url: `http://127.0.0.1:${port}/ping/uuid/fail`, format: 'json' }, p, 5000)).toMatchObject({
      ok: true,
      detail: 'HTTP 200',
    });
    expect(await runUrlHook({ url: `http://127.0.0.1:${port}/mytopic`, format: 'ntfy' }, p, 5000)).toMatchObject({ ok: true });
    expect(requests.map((r) => `${r.method} ${r.url}`)).toEqual(['POST /ping/uuid/fail', 'POST /mytopic']);
    const [json, ntfy] = requests;
    expect(json!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(json!.body)).toMatchObject({ event: 'failure', code: 'E_JOB_BORG', jobId: '20261129T120000-abcdef' });
    expect(ntfy!.headers['title']).toBe('borgpull: backup of pc1\\x0d\\x0aX-Evil: 1: failure');
    expect(ntfy!.headers['priority']).toBe('high');
    expect(ntfy!.headers['x-evil']).toBeUndefined();
    expect(ntfy!.headers['x-injected']).toBeUndefined();
    expect(ntfy!.body.split('\n')).toHaveLength(1);
    expect(ntfy!.body).toContain('X-Injected: 1');
  });

  it('says a URL that fails or does not answer, without waiting past the time limit', async () => {
    expect(await runUrlHook({ url: `http://127.0.0.1:${port}/broken`, format: 'json' }, cleanPayload(payload()), 5000)).toMatchObject({
      ok: false,
      detail: 'HTTP 500',
    });
    const t = Date.now();
    const r = await runUrlHook({ url: `http://127.0.0.1:${port}/hang`, format: 'json' }, cleanPayload(payload()), 500);
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/no answer within/);
    expect(Date.now() - t).toBeLessThan(3000);
  });

  it('stop(grace) lets queued and running hooks finish within the grace', async () => {
    const runner = new HookRunner(log, 1);
    const a = join(dir, 'grace-a');
    const b = join(dir, 'grace-b');
    runner.fire(
      payload(),
      [{ command: ['/bin/sh', '-c', `sleep 0.3; echo a > ${a}`] }, { command: ['/bin/sh', '-c', `echo b > ${b}`] }],
      10,
    );
    await runner.stop(5000);
    expect(existsSync(a) && existsSync(b)).toBe(true);
  });

  it('fire() returns at once, runs at most `concurrency` hooks, and stop() kills those running', async () => {
    const runner = new HookRunner(log, 2);
    const marks = join(dir, 'marks');
    const t = Date.now();
    const hang = { command: ['/bin/sh', '-c', `echo x >> ${marks}; exec sleep 1000`] };
    runner.fire(payload(), [hang, hang, hang], 60);
    // It spawns the first two (synchronously, tens of ms on a busy machine) and waits for none of them.
    expect(Date.now() - t).toBeLessThan(2000);
    const lines = (): string => (existsSync(marks) ? readFileSync(marks, 'utf8') : '');
    for (let i = 0; i < 100 && lines() !== 'x\nx\n'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(lines()).toBe('x\nx\n');
    const s = Date.now();
    await runner.stop();
    expect(Date.now() - s).toBeLessThan(3000);
    expect(readFileSync(marks, 'utf8')).toBe('x\nx\n');
    // after stop, nothing runs
    runner.fire(payload(), [{ command: ['/bin/sh', '-c', `echo late > ${join(dir, 'late')}`] }], 5);
    await runner.idle();
    expect(existsSync(join(dir, 'late'))).toBe(false);
  });
});
