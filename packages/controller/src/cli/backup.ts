import type { BackupOutcome } from '../admin/api.js';
import { loadConfig } from '../config.js';
import { bytes, duration, table } from '../format.js';
import { chrootWarning } from '../isolation.js';
import { adminClient } from './admin.js';
import { parse, stateDirOf } from './args.js';
import type { Io } from './io.js';
import { ProgressView } from './progress-view.js';
import { usageError } from './usage.js';
import { UsageError } from './usage-error.js';

export async function backupCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { all: { type: 'boolean' } });
  if (values['all'] === true && positionals.length) throw new UsageError('give agent names or --all, not both');
  if (values['all'] !== true && positionals.length === 0) throw usageError('backup');
  // Said before anything runs, also with --json (stderr): the daemon reads the same config at each job.
  const cfg = await loadConfig(stateDirOf(values)).catch(() => undefined);
  const warning = cfg && chrootWarning(cfg, values['all'] === true ? 'all' : positionals);
  if (warning) io.err(warning);
  const view = new ProgressView((s) => process.stderr.write(s), process.stderr.isTTY && values['json'] !== true);
  const jobs = await adminClient(values).call('backup', { all: values['all'] === true, names: positionals }, (e) => {
    if (values['json'] !== true) view.update(e);
  });
  if (values['json']) io.out(JSON.stringify(jobs, null, 2));
  else io.out(`\n${summary(jobs)}`);
  return jobs.every((j) => j.status === 'succeeded' || j.status === 'warning') ? 0 : 1;
}

export function summary(jobs: readonly BackupOutcome[]): string {
  const rows = jobs.map((j) => [
    j.agent,
    ('archive' in j ? j.archive : undefined) ?? '-',
    j.endedAt ? duration(j.endedAt - j.startedAt) : '-',
    String(('stats' in j ? j.stats?.nfiles : undefined) ?? '-'),
    bytes('stats' in j ? j.stats?.originalSize : undefined),
    bytes('stats' in j ? j.stats?.deduplicatedSize : undefined),
    j.status === 'succeeded' ? 'ok' : `${j.status.toUpperCase()}${j.reason ? `: ${j.reason}` : ''}`,
  ]);
  return table(['AGENT', 'ARCHIVE', 'TIME', 'FILES', 'SIZE', 'NEW', 'RESULT'], rows);
}

export async function archivesCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw usageError('archives');
  const list = await adminClient(values).call('archives', { name });
  if (values['json']) io.out(JSON.stringify(list, null, 2));
  else if (list.length === 0) io.out(`no archives for '${name}' yet: 'controller backup ${name}' makes one`);
  else
    io.out(
      table(
        ['ARCHIVE', 'TIME'],
        list.map((a) => [a.name, a.start]),
      ),
    );
  return 0;
}
