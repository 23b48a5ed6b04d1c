import { execa, type ResultPromise } from 'execa';

/** Options for a one-shot command in a host. */
export interface ExecOptions {
  env?: Record<string, string>;
  /** Working directory (default: process.cwd(), which is also visible inside the hosts). */
  cwd?: string;
  input?: string | Uint8Array;
  /** Kill after this many ms (default 30 000). */
  timeout?: number;
  /** Throw on a non-zero exit (default true). */
  reject?: boolean;
}

export interface ExecResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Non-zero exit, signal, timeout or spawn failure. */
  failed: boolean;
}

/** Options for a long-running process in a host. */
export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** 'pipe' (default) lets the test write to subprocess.stdin. */
  stdin?: 'pipe' | 'ignore';
}

interface SpawnExecaOptions {
  readonly detached: true;
  readonly reject: false;
  readonly cleanup: true;
  readonly stdin: 'pipe' | 'ignore';
  readonly env?: Record<string, string>;
  readonly cwd?: string;
}

/**
 * A long-running process in a host: the execa subprocess (own process group,
 * `reject: false`, so awaiting it never throws: check `exitCode`/`signal`).
 */
export type HostSubprocess = ResultPromise<SpawnExecaOptions>;

interface LogExecaOptions {
  readonly detached: true;
  readonly reject: false;
  readonly stdin: 'ignore';
  readonly stdout: { readonly file: string; readonly append: true };
  readonly stderr: { readonly file: string; readonly append: true };
}

/** A harness-internal daemon whose output goes to a log file. */
export type LoggedSubprocess = ResultPromise<LogExecaOptions>;

/**
 * Runs argv behind a fixed prefix (nsenter ...) and remembers every process
 * group it starts so that stop() can kill them.
 */
export class Runner {
  readonly groups = new Set<number>();

  constructor(private readonly prefix: (cwd: string) => string[]) {}

  private track<T extends { pid?: number | undefined; finally(f: () => void): unknown }>(sub: T, keep: boolean): T {
    const pid = sub.pid;
    if (pid !== undefined) {
      this.groups.add(pid);
      if (!keep) void sub.finally(() => this.groups.delete(pid));
    }
    return sub;
  }

  private argv(argv: readonly string[], cwd: string | undefined): [string, string[]] {
    if (argv.length === 0) throw new Error('empty argv');
    const full = [...this.prefix(cwd ?? process.cwd()), ...argv];
    return [full[0] as string, full.slice(1)];
  }

  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const [file, args] = this.argv(argv, opts.cwd);
    const sub = execa(file, args, {
      detached: true,
      reject: false,
      cleanup: true,
      timeout: opts.timeout ?? 30_000,
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
    });
    const r = await this.track(sub, false);
    const result: ExecResult = {
      command: argv.join(' '),
      exitCode: r.exitCode ?? -1,
      stdout: String(r.stdout),
      stderr: String(r.stderr),
      failed: r.failed,
    };
    if (r.failed && opts.reject !== false) {
      const why = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit ${String(r.exitCode)}`;
      throw new Error(`command failed (${why}): ${result.command}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    }
    return result;
  }

  spawn(argv: readonly string[], opts: SpawnOptions = {}): HostSubprocess {
    const [file, args] = this.argv(argv, opts.cwd);
    const o: SpawnExecaOptions = {
      detached: true,
      reject: false,
      cleanup: true,
      stdin: opts.stdin ?? 'pipe',
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    };
    return this.track(execa(file, args, o), true);
  }

  /** Internal daemons (holders, sshd): output appended to logFile. */
  spawnLogged(argv: readonly string[], logFile: string): LoggedSubprocess {
    const [file, args] = this.argv(argv, undefined);
    const o: LogExecaOptions = {
      detached: true,
      reject: false,
      stdin: 'ignore',
      stdout: { file: logFile, append: true },
      stderr: { file: logFile, append: true },
    };
    return this.track(execa(file, args, o), true);
  }
}
