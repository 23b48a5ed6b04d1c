import { terminalSafe } from '@borgpull/protocol';
import { bytes } from '../format.js';
import type { JobEvent } from '../jobs/job-event.js';

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
      if (e.position === undefined) return `${head} queued`;
      return `${head} queued (position ${e.position}: ${e.waitingFor === 'agent' ? "waiting for this agent's running job" : 'waiting for a free slot'})`;
    case 'tunnel':
      return `${head} opening the tunnel`;
    case 'cleanup':
      return `${head} cleaning up`;
    case 'done':
      return `${head} ${e.message ?? 'done'}`;
  }
}
