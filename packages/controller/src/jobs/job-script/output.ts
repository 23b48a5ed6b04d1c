import { escapeControl } from '@borgpull/protocol';

/** The line a job script ends with: borg's exit status and whether the client was still mounted. */
export const RESULT_TAG = 'BORGPULL-RESULT';
/** The line a job script writes when a step before borg fails: a code and a message. */
export const ERROR_TAG = 'BORGPULL-ERROR';

const RESULT_LINE = new RegExp(`^${RESULT_TAG} rc=(\\d+) connection=([01])$`);
const ERROR_LINE = new RegExp(`^${ERROR_TAG} (E_[A-Z0-9_]{1,64}) (.*)$`);

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
 * Reads a job script's stderr: borg's --log-json lines plus the script's own
 * RESULT and ERROR lines (script.ts writes them)
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
    const result = RESULT_LINE.exec(line);
    if (result) {
      this.outcome.rc = Number(result[1]);
      this.outcome.connection = result[2] === '1';
      return;
    }
    const setup = ERROR_LINE.exec(line);
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
      const level = typeof m['levelname'] === 'string' ? m['levelname'] : '';
      const msg = typeof m['message'] === 'string' ? m['message'] : '';
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
