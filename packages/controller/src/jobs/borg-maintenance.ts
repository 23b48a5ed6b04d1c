/**
 * borg runs of the repository jobs that need no client (prune, compact,
 * check): the daemon's own borg on the agent's local repository, with the
 * environment and passphrase of borgCommand, dying with the daemon, and its
 * log read as JSON lines.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { escapeControl } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import type { StatePaths } from '../state.js';
import { ensureBorgBase } from './borg-base.js';
import { borgCommand, JOB_HOST_PREFIX } from './borg.js';

/**
 * Seconds borg waits for the repository's lock. Inside a job nothing else of
 * this daemon's uses the repository, but `controller archives` lists it
 * without a job and holds a lock for a moment.
 */
export const LOCK_WAIT = '30';

export interface BorgLogLine {
  readonly levelname: string;
  readonly name: string;
  /** Escaped: borg quotes paths and archive names in its messages. */
  readonly message: string;
  readonly msgid?: string;
}

export interface MaintenanceRun {
  /** borg's exit status, or null when it died of a signal (cancelled). */
  readonly rc: number | null;
  readonly log: readonly BorgLogLine[];
  readonly stdout: string;
}

/** At most this many log lines are kept (a check of a damaged repository logs one line per bad chunk). */
const MAX_LOG_LINES = 10_000;

/** borg's `--log-json` stderr, one object a line; anything else (a Python traceback) kept as an error line. */
export function parseBorgLog(stderr: string): BorgLogLine[] {
  const out: BorgLogLine[] = [];
  for (const raw of stderr.split('\n')) {
    if (out.length >= MAX_LOG_LINES) break;
    const line = raw.trim();
    if (!line) continue;
    let j: unknown;
    try {
      j = JSON.parse(line);
    } catch {
      out.push({ levelname: 'ERROR', name: 'stderr', message: escapeControl(line.slice(0, 1000)) });
      continue;
    }
    if (typeof j !== 'object' || j === null) continue;
    const o = j as Record<string, unknown>;
    if (o['type'] !== 'log_message' || typeof o['message'] !== 'string') continue;
    out.push({
      levelname: typeof o['levelname'] === 'string' ? o['levelname'] : 'INFO',
      name: typeof o['name'] === 'string' ? o['name'] : '',
      message: escapeControl(o['message'].slice(0, 4000)),
      ...(typeof o['msgid'] === 'string' ? { msgid: o['msgid'] } : {}),
    });
  }
  return out;
}

/** The error lines of a run, for a job's reason (the last few). */
export function errorText(run: MaintenanceRun, max = 3): string {
  const lines = run.log
    .filter((l) => l.levelname === 'ERROR' || l.levelname === 'CRITICAL')
    // A crash logs its whole traceback as one message: its first line says nothing, its error is said apart.
    .map((l) => (l.message.startsWith('Traceback') ? '' : (l.message.split('\n')[0] ?? '')))
    .filter(Boolean);
  return [...new Set(lines)].slice(-max).join('; ');
}

/** Whether borg's log says it met damaged data (a failed CRC or MAC, an object missing), whatever its exit status. */
export function metDamage(run: MaintenanceRun): boolean {
  return run.log.some((l) => /Integrity|ObjectNotFound/.test(l.msgid ?? '') || l.message.startsWith('Data integrity error'));
}

/**
 * Runs `borg ARGS` on the agent's repository (args end with `--` and the
 * repository), with `--log-json`, as job `jobId` (which the caller keeps in
 * JobContext.running meanwhile). It dies with the daemon (pdeathsig), and
 * its lock carries the job's host id like a backup's (job-env.ts): a lock
 * left by a daemon that died mid-prune is broken by the next job of the
 * repository (breakStaleJobLock), not waited on.
 */
export async function maintenanceBorg(
  p: StatePaths,
  agent: string,
  jobId: string,
  args: readonly string[],
  signal: AbortSignal,
): Promise<MaintenanceRun> {
  await ensureBorgBase(p, agent);
  const cmd = borgCommand(p, agent, ['--log-json', ...args]);
  const res = await execa('setpriv', ['--pdeathsig', 'SIGKILL', '--', cmd.file, ...cmd.args], {
    env: { ...cmd.env, BORG_HOST_ID: `${JOB_HOST_PREFIX}${jobId}` },
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    cancelSignal: signal,
    forceKillAfterDelay: 5000,
    maxBuffer: 64 * 2 ** 20,
  });
  if (signal.aborted) {
    const why: unknown = signal.reason;
    throw why instanceof Error ? why : new ControllerError('E_JOB_CANCELLED', 'the job was cancelled');
  }
  return {
    rc: res.exitCode ?? null,
    log: parseBorgLog(typeof res.stderr === 'string' ? res.stderr : ''),
    stdout: typeof res.stdout === 'string' ? res.stdout : '',
  };
}

/** Whether the agent has a repository yet (its first backup makes it). */
export async function hasRepo(p: StatePaths, agent: string): Promise<boolean> {
  try {
    await stat(join(p.repo(agent), 'config'));
    return true;
  } catch {
    return false;
  }
}

/** Bytes the repository's segment files take: compact's gain is the difference before and after. */
export async function segmentBytes(p: StatePaths, agent: string): Promise<number> {
  const data = join(p.repo(agent), 'data');
  let total = 0;
  for (const dir of await readdir(data)) {
    if (!/^\d+$/.test(dir)) continue;
    for (const f of await readdir(join(data, dir))) {
      if (!/^\d+$/.test(f)) continue;
      total += (await stat(join(data, dir, f))).size;
    }
  }
  return total;
}
