import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Read a log file, or every *.log in a directory (for failure messages). */
export function readLog(path: string): string {
  try {
    if (!statSync(path).isDirectory()) return readFileSync(path, 'utf8');
    return readdirSync(path)
      .filter((n) => n.endsWith('.log'))
      .map((n) => `--- ${n}\n${readFileSync(join(path, n), 'utf8')}`)
      .join('\n');
  } catch {
    return existsSync(path) ? '(unreadable)' : '(no log)';
  }
}
