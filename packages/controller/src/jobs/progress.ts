import { escapeControl } from '@borgpull/protocol';

/** What a job tells the CLI while it runs (admin socket events). */
export interface JobEvent {
  readonly agent: string;
  readonly jobId: string;
  readonly phase: 'queued' | 'tunnel' | 'borg' | 'cleanup' | 'done' | 'restore';
  readonly nfiles?: number;
  readonly originalSize?: number;
  readonly deduplicatedSize?: number;
  readonly path?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
  readonly message?: string;
}

export interface BorgOutcome {
  rc: number | null;
  connection: boolean | null;
  setupError?: { code: string; message: string };
  errors: string[];
  warnings: string[];
  /** Files borg read because they were added or modified (--list --filter=AME). */
  changedFiles: number;
  /** Files borg could not read. */
  errorFiles: number;
}

/**
 * Reads borg's --log-json stderr (plus the job script's own result lines)
 * line by line: progress goes to `onProgress`, messages are kept by level.
 * Paths and messages name the client's files (and what its sftp-server
 * answered): they are escaped here, where they enter, before any terminal
 * or job record sees them.
 */
export class BorgLogReader {
  private buf = '';
  readonly outcome: BorgOutcome = { rc: null, connection: null, errors: [], warnings: [], changedFiles: 0, errorFiles: 0 };

  constructor(private readonly onProgress: (p: { nfiles: number; originalSize: number; deduplicatedSize: number; path: string }) => void) {}

  push(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      this.line(this.buf.slice(0, nl));
      this.buf = this.buf.slice(nl + 1);
    }
    if (this.buf.length > 1 << 20) this.buf = this.buf.slice(-4096);
  }

  private line(line: string): void {
    const result = /^BORGPULL-RESULT rc=(\d+) connection=([01])$/.exec(line);
    if (result) {
      this.outcome.rc = Number(result[1]);
      this.outcome.connection = result[2] === '1';
      return;
    }
    const setup = /^BORGPULL-ERROR (E_[A-Z0-9_]{1,64}) (.*)$/.exec(line);
    if (setup) {
      this.outcome.setupError = { code: setup[1] ?? 'E_JOB_SETUP', message: escapeControl(setup[2] ?? '') };
      return;
    }
    if (!line.startsWith('{')) {
      if (line.trim()) this.keep(this.outcome.errors, line.trim());
      return;
    }
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (m['type'] === 'archive_progress' && m['finished'] !== true) {
      this.onProgress({
        nfiles: num(m['nfiles']),
        originalSize: num(m['original_size']),
        deduplicatedSize: num(m['deduplicated_size']),
        path: typeof m['path'] === 'string' ? escapeControl(m['path'].slice(0, 4096)) : '',
      });
    } else if (m['type'] === 'file_status') {
      if (m['status'] === 'E') this.outcome.errorFiles++;
      else this.outcome.changedFiles++;
    } else if (m['type'] === 'log_message') {
      const level = String(m['levelname'] ?? '');
      const msg = String(m['message'] ?? '');
      if (level === 'ERROR' || level === 'CRITICAL') this.keep(this.outcome.errors, msg);
      else if (level === 'WARNING') this.keep(this.outcome.warnings, msg);
    }
  }

  private keep(list: string[], msg: string): void {
    if (list.length < 50) list.push(escapeControl(msg.slice(0, 500)));
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}
