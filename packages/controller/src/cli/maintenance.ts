/** `controller prune` and `controller verify`: retention and repository checks by hand (the daemon runs them as jobs). */
import type { CheckOutcome } from '../admin/api.js';
import { bytes, duration, table } from '../format.js';
import type { PruneResult } from '../jobs/prune.js';
import { adminClient } from './admin.js';
import { parse } from './args.js';
import type { Io } from './io.js';
import { usageError } from './usage.js';
import { UsageError } from './usage-error.js';

export async function pruneCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { 'dry-run': { type: 'boolean' } });
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw usageError('prune');
  const dryRun = values['dry-run'] === true;
  const r = await adminClient(values).call('prune', { name, dryRun });
  if (values['json']) io.out(JSON.stringify(r, null, 2));
  else io.out(pruneReport(r, dryRun));
  if (dryRun) return 0;
  const bad = [r.prune, r.compact].some((j) => j !== undefined && j.status === 'failed');
  return bad ? 1 : 0;
}

/** The table of archives kept and deleted, then one line on what happened (or would). */
export function pruneReport(r: PruneResult, dryRun: boolean): string {
  const lines: string[] = [];
  if (r.archives.length) {
    lines.push(
      table(
        ['ARCHIVE', 'TIME', dryRun ? 'WOULD' : 'ACTION', 'RULE'],
        r.archives.map((a) => [a.archive, a.time, a.action === 'keep' ? 'keep' : dryRun ? 'delete' : 'deleted', a.rule ?? '']),
      ),
    );
  } else if (!r.prune?.code) lines.push(`no archives of '${r.agent}' to prune`);
  const kept = r.archives.filter((a) => a.action === 'keep').length;
  const gone = r.archives.length - kept;
  const rules = r.rules.join(' ');
  if (dryRun) {
    lines.push(`${gone} would be deleted, ${kept} kept (${rules})`);
    if (r.frozen) lines.push(`frozen: ${r.frozen}; a prune now would delete nothing`);
    return lines.join('\n');
  }
  const p = r.prune;
  if (p?.code === 'E_PRUNE_FROZEN') lines.push(`not pruned: ${p.reason ?? 'frozen'}`);
  else if (p?.status === 'failed') lines.push(`prune FAILED: ${p.reason ?? p.code ?? ''}`);
  else lines.push(`${gone} deleted, ${kept} kept (${rules})${p?.endedAt ? ` in ${duration(p.endedAt - p.startedAt)}` : ''}`);
  const c = r.compact;
  if (c) lines.push(c.status === 'failed' ? `compact FAILED: ${c.reason ?? c.code ?? ''}` : `compact freed ${bytes(c.stats?.freedBytes)}`);
  return lines.join('\n');
}

export async function verifyCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { all: { type: 'boolean' } });
  const all = values['all'] === true;
  if (all && positionals.length) throw new UsageError('give agent names or --all, not both');
  if (!all && positionals.length === 0) throw usageError('verify');
  const jobs = await adminClient(values).call('verify', { all, names: positionals });
  if (values['json']) io.out(JSON.stringify(jobs, null, 2));
  else io.out(verifySummary(jobs));
  return jobs.every((j) => j.status === 'succeeded' || (j.status === 'warning' && j.code === 'E_CHECK_NO_REPO')) ? 0 : 1;
}

export function verifySummary(jobs: readonly CheckOutcome[]): string {
  return table(
    ['AGENT', 'JOB', 'TIME', 'RESULT'],
    jobs.map((j) => [
      j.agent,
      'id' in j ? j.id : '-',
      j.endedAt ? duration(j.endedAt - j.startedAt) : '-',
      j.status === 'succeeded' ? 'ok' : `${j.status.toUpperCase()}${j.reason ? `: ${j.reason}` : ''}`,
    ]),
  );
}
