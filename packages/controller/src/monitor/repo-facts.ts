/**
 * Repository facts for `controller status` and the metrics: how many archives
 * an agent's repository holds and how big it is. borg answers these only
 * under the repository's lock, and a lock taken from outside a job could make
 * a backup fail with LockTimeout, so they are gathered at the end of the jobs
 * that change a repository (backup, prune, compact) while the job still holds
 * the agent, and cached in `STATE/facts/NAME.json`. Status and metrics read
 * only the cache.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, writeFileAtomic } from '@borgpull/protocol';
import type { Logger } from 'pino';
import type { StatePaths } from '../state.js';
import { borg } from '../jobs/borg.js';

export interface RepoFacts {
  /** When these were gathered (ms). */
  readonly at: number;
  readonly archives: number;
  /** Bytes the repository's chunks take, compressed and deduplicated (borg's unique_csize): its size on disk, near enough. */
  readonly size: number;
  /** Bytes of every archive before compression and deduplication (borg's total_size). */
  readonly originalSize: number;
}

/** No job waits long for facts: a borg that takes longer than this is killed and the old facts kept. */
const FACTS_TIMEOUT_MS = 120_000;

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** Runs `borg info --json` and `borg list --short` on the agent's repository and caches the answer. Call only from inside a job of that agent. */
export async function gatherRepoFacts(p: StatePaths, agent: string, signal: AbortSignal): Promise<RepoFacts | undefined> {
  try {
    await stat(join(p.repo(agent), 'config'));
  } catch {
    return undefined;
  }
  const both = AbortSignal.any([signal, AbortSignal.timeout(FACTS_TIMEOUT_MS)]);
  const info = await borg(p, agent, ['info', '--json', '--', p.repo(agent)], { cancelSignal: both });
  if (info.exitCode !== 0) throw new Error(`borg info failed (exit ${info.exitCode ?? 'signal'})`);
  const list = await borg(p, agent, ['list', '--short', '--', p.repo(agent)], { cancelSignal: both });
  if (list.exitCode !== 0) throw new Error(`borg list failed (exit ${list.exitCode ?? 'signal'})`);
  const stats = (JSON.parse(info.stdout) as { cache?: { stats?: Record<string, unknown> } }).cache?.stats ?? {};
  const facts: RepoFacts = {
    at: Date.now(),
    archives: list.stdout.split('\n').filter((l) => l.length > 0).length,
    size: num(stats['unique_csize']) ?? 0,
    originalSize: num(stats['total_size']) ?? 0,
  };
  await mkdir(p.factsDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(p.repoFacts(agent), JSON.stringify(facts) + '\n', 0o600);
  return facts;
}

/** The same, never throwing: a job's outcome does not depend on its facts. */
export async function refreshRepoFacts(p: StatePaths, agent: string, signal: AbortSignal, log: Logger): Promise<void> {
  const t = Date.now();
  try {
    const f = await gatherRepoFacts(p, agent, signal);
    if (f) log.info({ agentId: agent, archives: f.archives, size: f.size, ms: Date.now() - t }, 'repository facts gathered');
  } catch (err) {
    log.warn({ agentId: agent, reason: errorMessage(err) }, 'could not gather repository facts');
  }
}

/** The cached facts, or undefined (none yet, or a file that does not parse). */
export async function readRepoFacts(p: StatePaths, agent: string): Promise<RepoFacts | undefined> {
  try {
    const o = JSON.parse(await readFile(p.repoFacts(agent), 'utf8')) as Record<string, unknown>;
    const at = num(o['at']);
    const archives = num(o['archives']);
    const size = num(o['size']);
    const originalSize = num(o['originalSize']);
    if (at === undefined || archives === undefined || size === undefined || originalSize === undefined) return undefined;
    return { at, archives, size, originalSize };
  } catch {
    return undefined;
  }
}
