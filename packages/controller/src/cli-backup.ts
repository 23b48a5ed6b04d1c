import { terminalSafe } from '@borgpull/protocol';
import { adminRequest, adminSocketPath } from './admin-socket.js';
import { parse, stateDirOf, UsageError, type Io } from './cli.js';
import { loadConfig } from './config.js';
import { bytes, duration, isoSeconds, table } from './format.js';
import { chrootWarning } from './isolation.js';
import type { ArchiveInfo } from './jobs/borg.js';
import type { JobRecord } from './jobs/job-store.js';
import type { JobEvent } from './jobs/progress.js';

/** Renders live progress: one line per agent, redrawn on a terminal, throttled otherwise. */
export class ProgressView {
  private readonly lines = new Map<string, string>();
  private drawn = 0;
  private lastPrint = new Map<string, number>();

  constructor(
    private readonly write: (s: string) => void,
    private readonly tty: boolean,
  ) {}

  update(e: JobEvent): void {
    // The daemon escapes a client's paths and messages; this is the last line of defence.
    const line = terminalSafe(describeEvent(e));
    this.lines.set(e.agent, line);
    if (this.tty) {
      this.redraw();
      return;
    }
    const now = Date.now();
    const important = e.phase !== 'borg' || e.nfiles === undefined;
    if (important || now - (this.lastPrint.get(e.agent) ?? 0) > 5000) {
      this.lastPrint.set(e.agent, now);
      this.write(`${line}\n`);
    }
  }

  private redraw(): void {
    const cols = process.stderr.columns || 100;
    let s = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const line of this.lines.values()) s += `\x1b[2K${line.slice(0, cols - 1)}\n`;
    this.drawn = this.lines.size;
    this.write(s);
  }
}

function describeEvent(e: JobEvent): string {
  const head = e.agent.padEnd(16);
  switch (e.phase) {
    case 'borg':
      if (e.nfiles === undefined) return `${head} backing up (${e.message ?? ''})`;
      return `${head} ${String(e.nfiles).padStart(8)} files  ${bytes(e.originalSize).padStart(10)} read  ${bytes(e.deduplicatedSize).padStart(10)} new  ${e.path ?? ''}`;
    case 'restore':
      return `${head} restoring ${bytes(e.bytes)}${e.totalBytes ? ` of ${bytes(e.totalBytes)} (${Math.floor(((e.bytes ?? 0) / e.totalBytes) * 100)}%)` : ''}`;
    case 'queued':
      return `${head} queued`;
    case 'tunnel':
      return `${head} opening the tunnel`;
    case 'cleanup':
      return `${head} cleaning up`;
    case 'done':
      return `${head} ${e.message ?? 'done'}`;
  }
}

export async function backupCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { all: { type: 'boolean' } });
  if (values['all'] === true && positionals.length) throw new UsageError('give agent names or --all, not both');
  if (values['all'] !== true && positionals.length === 0) throw new UsageError('usage: controller backup NAME... | --all');
  // Said before anything runs, also with --json (stderr): the daemon reads the same config at each job.
  const cfg = await loadConfig(stateDirOf(values)).catch(() => undefined);
  const warning = cfg && chrootWarning(cfg, values['all'] === true ? 'all' : positionals);
  if (warning) io.err(warning);
  const view = new ProgressView((s) => process.stderr.write(s), process.stderr.isTTY === true && values['json'] !== true);
  const jobs = (await adminRequest(
    adminSocketPath(stateDirOf(values)),
    'backup',
    values['all'] === true ? { all: true } : { names: positionals },
    (e) => {
      if (values['json'] !== true) view.update(e as JobEvent);
    },
  )) as JobRecord[];
  if (values['json']) io.out(JSON.stringify(jobs, null, 2));
  else io.out(`\n${summary(jobs)}`);
  return jobs.every((j) => j.status === 'succeeded' || j.status === 'warning') ? 0 : 1;
}

export function summary(jobs: readonly JobRecord[]): string {
  const rows = jobs.map((j) => [
    j.agent,
    j.archive ?? '-',
    j.endedAt ? duration(j.endedAt - j.startedAt) : '-',
    String(j.stats?.nfiles ?? '-'),
    bytes(j.stats?.originalSize),
    bytes(j.stats?.deduplicatedSize),
    j.status === 'succeeded' ? 'ok' : `${j.status.toUpperCase()}${j.reason ? `: ${j.reason}` : ''}`,
  ]);
  return table(['AGENT', 'ARCHIVE', 'TIME', 'FILES', 'SIZE', 'NEW', 'RESULT'], rows);
}

export async function archivesCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw new UsageError('usage: controller archives NAME');
  const list = (await adminRequest(adminSocketPath(stateDirOf(values)), 'archives', { name })) as ArchiveInfo[];
  if (values['json']) io.out(JSON.stringify(list, null, 2));
  else if (list.length === 0) io.out(`no archives for '${name}' yet: 'controller backup ${name}' makes one`);
  else io.out(table(['ARCHIVE', 'TIME'], list.map((a) => [a.name, a.start])));
  return 0;
}

export async function jobsCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { limit: { type: 'string' }, agent: { type: 'string' } });
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const limit = values['limit'] === undefined ? 20 : Number(values['limit']);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive whole number');
  const list = (await adminRequest(adminSocketPath(stateDirOf(values)), 'jobs', {
    limit,
    ...(typeof values['agent'] === 'string' ? { agent: values['agent'] } : {}),
  })) as JobRecord[];
  if (values['json']) {
    io.out(JSON.stringify(list, null, 2));
    return 0;
  }
  if (list.length === 0) {
    io.out('no jobs yet');
    return 0;
  }
  io.out(
    table(
      ['JOB', 'KIND', 'AGENT', 'STARTED', 'TIME', 'STATUS', 'ARCHIVE', 'REASON'],
      list.map((j) => [
        j.id,
        j.kind,
        j.agent,
        isoSeconds(j.startedAt),
        j.endedAt ? duration(j.endedAt - j.startedAt) : '-',
        j.status,
        j.archive ?? '-',
        j.reason ?? '',
      ]),
    ),
  );
  return 0;
}
