import { mkdir, readFile, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '@borgpull/protocol';

const MARK_RO = 'borgpull-controller-backup';

/** Read-only SFTP, from loopback (the tunnel) only: what backups use. */
export function backupKeyLine(key: string): string {
  return `restrict,from="127.0.0.1,::1",command="internal-sftp -R" ${bareKey(key)} ${MARK_RO}`;
}

function bareKey(key: string): string {
  return key.trim().split(/\s+/).slice(0, 2).join(' ');
}

async function rewrite(file: string, edit: (lines: string[]) => string[]): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const lines = text.split('\n').filter((l) => l.length > 0);
  await writeFileAtomic(file, edit(lines).join('\n') + '\n', 0o600);
  await chmod(file, 0o600);
}

/** Installs (or replaces) our line tagged `mark`, leaving every other line alone. */
function setLine(file: string, mark: string, line: string | null): Promise<void> {
  return rewrite(file, (lines) => {
    const kept = lines.filter((l) => !l.endsWith(` ${mark}`));
    return line === null ? kept : [...kept, line];
  });
}

export const installBackupKey = (file: string, key: string) => setLine(file, MARK_RO, backupKeyLine(key));
