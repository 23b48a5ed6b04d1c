import { terminalSafe } from '@borgpull/protocol';
import { bytes, duration } from '../format.js';
import { adminClient } from './admin.js';
import { parse } from './args.js';
import type { Io } from './io.js';
import { ProgressView } from './progress-view.js';
import { usageError } from './usage.js';
import { UsageError } from './usage-error.js';

export async function restoreCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    method: { type: 'string' },
    target: { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean' },
  });
  const [agent, archive, ...paths] = positionals;
  if (!agent || !archive) throw usageError('restore');
  const method = typeof values['method'] === 'string' ? values['method'] : 'stream';
  if (method !== 'stream' && method !== 'extract' && method !== 'full')
    throw new UsageError(`--method must be stream, extract or full, got '${method}'`);
  const target = typeof values['target'] === 'string' ? values['target'] : '/';
  if (!target.startsWith('/')) throw new UsageError(`--target must be an absolute path on the client, got '${target}'`);
  const dryRun = values['dry-run'] === true;
  if (target.replace(/\/+$/, '') === '' && !dryRun && values['yes'] !== true) {
    throw new UsageError(`restoring into the client's live / overwrites its files: add --yes if you mean it, or pick --target DIR`);
  }
  const view = new ProgressView((s) => process.stderr.write(s), process.stderr.isTTY && values['json'] !== true);
  const job = await adminClient(values).call('restore', { agent, archive, paths, method, target, dryRun }, (e) => {
    // The outcome is said once, below: a refusal or a failure stays one line.
    if (values['json'] !== true && e.phase !== 'done') view.update(e);
  });
  if (values['json']) {
    io.out(JSON.stringify(job, null, 2));
  } else if (dryRun) {
    // Client file names: escaped by the daemon, and once more here should one slip through.
    for (const path of job.wouldWrite ?? []) io.out(terminalSafe(path));
    io.out(
      `dry run: ${job.wouldWrite?.length ?? 0} items of ${archive} would be written under ${target} on ${agent} (--method ${method}); nothing was written`,
    );
  } else if (job.status === 'succeeded' || job.status === 'warning') {
    const s = job.stats ?? {};
    const what =
      s.bytes !== undefined
        ? `${s.files ?? 0} ${s.files === 1 ? 'entry' : 'entries'}, ${bytes(s.bytes)} (sha256 ${s.sha256?.slice(0, 16)}…, verified by the agent)`
        : 'done';
    io.out(
      `restored ${archive} to ${agent}:${target} by ${method} in ${duration((job.endedAt ?? job.startedAt) - job.startedAt)}: ${what}`,
    );
    if (job.status === 'warning') io.out(`warnings: ${terminalSafe(job.reason ?? '')}`);
  } else if (job.code === 'E_RESTORE_REFUSED') {
    // The client's own decision, not a failure of the job: said as such, in one line.
    io.err(`${terminalSafe(job.reason ?? `restore refused by ${agent}'s restore policy`)} (job ${job.id})`);
  } else {
    io.err(`restore failed: ${terminalSafe(job.reason ?? job.code ?? 'unknown reason')} (job ${job.id})`);
  }
  return job.status === 'succeeded' || job.status === 'warning' ? 0 : 1;
}
