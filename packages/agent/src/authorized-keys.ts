import { chown, lstat, readFile } from 'node:fs/promises';
import { errnoCode, writeFileAtomic } from '@borgpull/protocol';

/**
 * Exactly the line older versions of `agent enroll` added to root's
 * authorized_keys (read-only SFTP for the controller, from the tunnel):
 * `restrict,from="127.0.0.1,::1",command="internal-sftp -R" TYPE KEY borgpull-controller-backup`.
 * Backups no longer go through sshd, so that line is removed; a line that
 * differs in any way (edited by hand, another key's) is someone else's.
 */
const OLD_BACKUP_LINE =
  /^restrict,from="127\.0\.0\.1,::1",command="internal-sftp -R" [a-z0-9@.-]{1,64} [A-Za-z0-9+/]{1,16384}={0,2} borgpull-controller-backup$/;

/** For tests and for the upgrade note: the line an older enrollment wrote for `key`. */
export function oldBackupKeyLine(key: string): string {
  return `restrict,from="127.0.0.1,::1",command="internal-sftp -R" ${key.trim().split(/\s+/).slice(0, 2).join(' ')} borgpull-controller-backup`;
}

/**
 * Removes the line an older version installed from `file`, leaving every
 * other byte, the mode and the owner as they were. Nothing to do (no file,
 * no such line) is not an error. A symlink or other non-regular file is left
 * alone: rewriting it would replace the link. Returns whether a line went.
 */
export async function removeOldBackupKey(file: string): Promise<boolean> {
  let text: string;
  try {
    const st = await lstat(file);
    if (!st.isFile()) return false;
    text = await readFile(file, 'utf8');
    const lines = text.split('\n');
    const kept = lines.filter((l) => !OLD_BACKUP_LINE.test(l));
    if (kept.length === lines.length) return false;
    await writeFileAtomic(file, kept.join('\n'), st.mode & 0o7777);
    if (st.uid !== process.getuid?.() || st.gid !== process.getgid?.()) await chown(file, st.uid, st.gid);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return false;
    throw err;
  }
}
