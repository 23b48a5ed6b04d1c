import { mkdir, readFile, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errnoCode, writeFileAtomic } from '@borgpull/protocol';

const MARK_RO = 'borgpull-controller-backup';

/** Read-only SFTP, from loopback (the tunnel) only: what backups use. */
export function backupKeyLine(key: string): string {
  return `restrict,from="127.0.0.1,::1",command="internal-sftp -R" ${bareKey(key)} ${MARK_RO}`;
}

function bareKey(key: string): string {
  return key.trim().split(/\s+/).slice(0, 2).join(' ');
}

/** Installs (or replaces) our line in an authorized_keys file, leaving every other line alone. */
export async function installBackupKey(file: string, key: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const kept = text.split('\n').filter((l) => l.length > 0 && !l.endsWith(` ${MARK_RO}`));
  await writeFileAtomic(file, [...kept, backupKeyLine(key)].join('\n') + '\n', 0o600);
  await chmod(file, 0o600);
}
