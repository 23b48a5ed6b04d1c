/**
 * Helpers for integration tests that drive the real `controller` and `agent`
 * executables: run a CLI command, spawn a long-running process and read its
 * pino JSON log lines, wait for conditions by polling (never a fixed sleep),
 * and kill everything a test started, by pid.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { waitFor, type WaitOptions } from '../harness/wait.js';
import { TUNNEL_RULES } from '../harness/sshd-config.js';

// The one waitFor lives in the harness; re-exported for tests that import it from here.
export { waitFor };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CONTROLLER_BIN = `${ROOT}packages/controller/bin/controller.js`;
export const AGENT_BIN = `${ROOT}packages/agent/bin/agent.js`;

/** Our environment minus every BORGPULL_* variable, so no test can reach a real state directory. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('BORGPULL_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Writes an sshd_config (never run, only read by `sshd -T`) whose rules for
 * the tunnel user pass `controller check`, with `hostKey` (a private key file
 * of the test's own) so that `sshd -T` loads; returns its path. Pass it to
 * `controller init --sshd-config`: `controller serve` refuses to start on
 * this machine's own sshd unless its rules are the README's.
 */
export function safeSshdConfig(dir: string, hostKey: string): string {
  const file = join(dir, 'sshd_config');
  writeFileSync(file, [`HostKey ${hostKey}`, 'PidFile none', 'UsePAM no', ...TUNNEL_RULES, ''].join('\n'), { mode: 0o644 });
  return file;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion (node BIN ARGS...). Never throws on a non-zero exit. */
export async function cli(bin: string, args: readonly string[], timeoutMs = 20_000, env: Record<string, string> = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [bin, ...args], {
    reject: false,
    extendEnv: false,
    env: cleanEnv(env),
    stdin: 'ignore',
    timeout: timeoutMs,
    stripFinalNewline: true,
  });
  if (r.timedOut) throw new Error(`${bin} ${args.join(' ')} timed out after ${timeoutMs} ms`);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** One pino JSON line. */
export interface LogLine {
  level: number;
  time: number;
  msg: string;
  code?: string;
  [key: string]: unknown;
}

export type LogMatch = Partial<Record<string, unknown>> | ((l: LogLine) => boolean);

function matches(l: LogLine, m: LogMatch): boolean {
  if (typeof m === 'function') return m(l);
  return Object.entries(m).every(([k, v]) => l[k] === v);
}

/** A long-running process (controller serve, agent run) whose stdout is pino JSON. */
export class Proc {
  readonly logs: LogLine[] = [];
  /** stdout lines that are not JSON, and every stderr line. */
  readonly other: string[] = [];
  exitCode: number | undefined;
  signal: string | undefined;
  readonly done: Promise<void>;

  constructor(
    readonly name: string,
    private readonly child: ResultPromise,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const v = JSON.parse(line) as unknown;
        if (typeof v === 'object' && v !== null && typeof (v as LogLine).msg === 'string') {
          this.logs.push(v as LogLine);
          return;
        }
      } catch {
        /* not a log line */
      }
      this.other.push(line);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => this.other.push(`stderr: ${line}`));
    this.done = child.then(
      (r) => {
        this.exitCode = r.exitCode;
        this.signal = r.signal;
      },
      () => undefined,
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined && this.signal === undefined;
  }

  /** Index to pass as `from` so a wait only considers lines logged after this point. */
  mark(): number {
    return this.logs.length;
  }

  find(m: LogMatch, from = 0): LogLine | undefined {
    return this.logs.slice(from).find((l) => matches(l, m));
  }

  filter(m: LogMatch, from = 0): LogLine[] {
    return this.logs.slice(from).filter((l) => matches(l, m));
  }

  /** Waits for a log line matching `m` (logged at or after index `from`). Fails early if the process exits. */
  waitForLog(m: LogMatch, opts: WaitOptions & { from?: number } = {}): Promise<LogLine> {
    const what = `${this.name} to log ${typeof m === 'function' ? m.toString() : JSON.stringify(m)}`;
    return waitFor(
      what,
      () => {
        const hit = this.find(m, opts.from ?? 0);
        if (hit) return hit;
        if (!this.running)
          throw new Error(`${this.name} exited (${this.exitCode ?? this.signal}) before logging ${JSON.stringify(m)}\n${this.tail()}`);
        return undefined;
      },
      { ...opts, context: () => this.tail() },
    );
  }

  /** The last lines of output, for failure messages. */
  tail(n = 15): string {
    const lines = [...this.logs.map((l) => JSON.stringify(l)), ...this.other].slice(-n);
    return `--- last output of ${this.name} ---\n${lines.join('\n')}`;
  }

  /** Sends `signal` to this process (by pid) and waits for it to exit. Idempotent. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
    if ((await Promise.race([this.done.then(() => 'exited' as const), timer])) === 'timeout') {
      this.child.kill('SIGKILL');
      await this.done;
    }
  }
}

/** Every process a test file starts; killAll() in afterEach ends them, failed test or not. */
export class Procs {
  private readonly all: Proc[] = [];

  spawn(name: string, bin: string, args: readonly string[], env: Record<string, string> = {}): Proc {
    const child = execa(process.execPath, [bin, ...args], {
      reject: false,
      buffer: false,
      extendEnv: false,
      env: cleanEnv(env),
      stdin: 'ignore',
      cleanup: true,
    });
    const p = new Proc(name, child);
    this.all.push(p);
    return p;
  }

  async killAll(): Promise<void> {
    const procs = this.all.splice(0);
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Asserts the shape of a user-facing CLI failure: one line on stderr, no stack, non-zero exit. */
export function oneLineError(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  const problems: string[] = [];
  if (r.exitCode === 0) problems.push('exit code 0');
  if (lines.length !== 1) problems.push(`${lines.length} stderr lines`);
  if (/^\s+at /m.test(r.stderr)) problems.push('a stack trace');
  if (/internal error/.test(r.stderr)) problems.push('an internal error');
  if (problems.length) throw new Error(`expected a one-line error, got ${problems.join(', ')}:\n${r.stderr}\n(stdout: ${r.stdout})`);
  return lines[0]!;
}
