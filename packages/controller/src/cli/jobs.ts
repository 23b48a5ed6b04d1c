/** `controller jobs`: the job history, filtered, as a table or JSON. */
import type { JobsArgs } from '../admin/api.js';
import { bytes, duration, isoSeconds, table } from '../format.js';
import { JOB_KINDS, type JobKind, type JobRecord, type JobStatus } from '../jobs/job-store.js';
import { checkAgentName } from '../registry.js';
import { parseDuration } from '../units.js';
import { adminClient } from './admin.js';
import { parse } from './args.js';
import type { Io } from './io.js';
import { usageError } from './usage.js';

/** What `--limit` may ask for: the daemon's own bound. */
const MAX_LIMIT = 1_000_000;
const MAX_SINCE = 36_500 * 86_400;
/** JOB_STATUSES in the order a person reads them. */
const OUTCOMES: readonly JobStatus[] = ['succeeded', 'warning', 'failed', 'offline', 'running'];

function isAgentName(s: string): boolean {
  try {
    checkAgentName(s);
    return true;
  } catch {
    return false;
  }
}

/** The filters of `controller jobs`, read from its flags; a bad value is a usage error that says what is allowed. */
export function jobsFilter(values: Record<string, unknown>, now = Date.now()): JobsArgs {
  const limitText = values['limit'];
  let limit = 20;
  if (typeof limitText === 'string') {
    limit = /^\d{1,7}$/.test(limitText) ? Number(limitText) : 0;
    if (limit < 1 || limit > MAX_LIMIT)
      throw usageError('jobs', `--limit must be a whole number in 1..${MAX_LIMIT}, got '${limitText.slice(0, 40)}'`);
  }
  const agent = values['agent'];
  if (typeof agent === 'string' && !isAgentName(agent))
    throw usageError('jobs', `--agent must be an agent name (1-63 letters, digits, '.', '_' or '-'), got '${agent.slice(0, 70)}'`);
  const kind = values['kind'];
  if (typeof kind === 'string' && !(JOB_KINDS as readonly string[]).includes(kind))
    throw usageError('jobs', `--kind must be one of ${JOB_KINDS.join(', ')}, got '${kind.slice(0, 40)}'`);
  const outcome = values['outcome'];
  let status: JobStatus[] | undefined;
  if (typeof outcome === 'string') {
    const wanted = outcome.split(',');
    for (const o of wanted) {
      if (!(OUTCOMES as readonly string[]).includes(o))
        throw usageError('jobs', `--outcome must be among ${OUTCOMES.join(', ')} (comma-separated), got '${o.slice(0, 40)}'`);
    }
    status = [...new Set(wanted)] as JobStatus[];
  }
  const sinceText = values['since'];
  let since: number | undefined;
  if (typeof sinceText === 'string') {
    const s = parseDuration(sinceText, 1, MAX_SINCE);
    if (typeof s === 'string') throw usageError('jobs', `--since ${s}`);
    since = Math.max(0, now - s * 1000);
  }
  return {
    limit,
    ...(typeof agent === 'string' ? { agent } : {}),
    ...(typeof kind === 'string' ? { kind: kind as JobKind } : {}),
    ...(status ? { status } : {}),
    ...(since === undefined ? {} : { since }),
  };
}

export async function jobsCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    limit: { type: 'string' },
    agent: { type: 'string' },
    kind: { type: 'string' },
    outcome: { type: 'string' },
    since: { type: 'string' },
  });
  if (positionals.length) throw usageError('jobs', `unexpected argument '${positionals[0]!.slice(0, 70)}'`);
  const filter = jobsFilter(values);
  const list = await adminClient(values).call('jobs', filter);
  if (values['json']) io.out(JSON.stringify(list, null, 2));
  else if (list.length === 0) io.out(Object.keys(filter).length > 1 ? 'no jobs match' : 'no jobs yet');
  else io.out(jobsTable(list));
  return 0;
}

/** Sizes a person compares: what a backup read and what it added; what a restore sent. */
function sizes(j: JobRecord): [string, string] {
  if (j.kind === 'restore') return [bytes(j.stats?.bytes), '-'];
  return [bytes(j.stats?.originalSize), bytes(j.stats?.deduplicatedSize)];
}

export function jobsTable(list: readonly JobRecord[]): string {
  return table(
    ['STARTED', 'TIME', 'AGENT', 'KIND', 'OUTCOME', 'SIZE', 'NEW', 'CODE', 'JOB', 'REASON'],
    list.map((j) => [
      isoSeconds(j.startedAt),
      j.endedAt ? duration(j.endedAt - j.startedAt) : '-',
      j.agent,
      j.kind,
      j.status,
      ...sizes(j),
      j.code ?? '-',
      j.id,
      j.reason ?? '',
    ]),
  );
}
