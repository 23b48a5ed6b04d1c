import { chownSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oldBackupKeyLine, removeOldBackupKey } from './authorized-keys.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILTCW7GSfTmBunDXLmjYqUYxpN5DkrLNij5dew0sNAso borgpull-controller';
const OURS = oldBackupKeyLine(KEY);
const ADMIN = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM5gcHeKB6mZKcmqB7I1TqwnmRrCTm+wH3jxYXLtHkPt admin@laptop';

describe("removing the controller's old authorized_keys line (upgrade)", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bp-ak-'));
    file = join(dir, 'authorized_keys');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is the exact line older versions wrote', () => {
    expect(OURS).toBe(
      'restrict,from="127.0.0.1,::1",command="internal-sftp -R" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILTCW7GSfTmBunDXLmjYqUYxpN5DkrLNij5dew0sNAso borgpull-controller-backup',
    );
  });

  it('removes that line only, keeping every other byte, the mode and the owner', async () => {
    const before = `# keys\n${ADMIN}\n${OURS}\n\ncommand="backup" ${ADMIN}\n`;
    writeFileSync(file, before, { mode: 0o640 });
    chownSync(file, 1000, 1000);
    expect(await removeOldBackupKey(file)).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(`# keys\n${ADMIN}\n\ncommand="backup" ${ADMIN}\n`);
    const st = statSync(file);
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o640, 1000, 1000]);
    // Idempotent: nothing more to remove, nothing rewritten.
    expect(await removeOldBackupKey(file)).toBe(false);
  });

  it.each([
    ['an edited copy (read-write)', OURS.replace('internal-sftp -R', 'internal-sftp')],
    ['the marker on an admin key', `${ADMIN.split(' ').slice(0, 2).join(' ')} borgpull-controller-backup`],
    ['the line with something after it', `${OURS} extra`],
    ['the line with options in front', `no-pty,${OURS}`],
    ['the line with CRLF', `${OURS}\r`],
  ])('leaves %s alone: it is not exactly the line we wrote', async (_what, line) => {
    const before = `${ADMIN}\n${line}\n`;
    writeFileSync(file, before, { mode: 0o600 });
    expect(await removeOldBackupKey(file)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('does nothing for a missing file or directory', async () => {
    expect(await removeOldBackupKey(file)).toBe(false);
    expect(await removeOldBackupKey(join(dir, 'nope', 'authorized_keys'))).toBe(false);
  });

  it('never rewrites through a symlink (it would replace the link)', async () => {
    const real = join(dir, 'real');
    writeFileSync(real, `${OURS}\n`);
    symlinkSync(real, file);
    expect(await removeOldBackupKey(file)).toBe(false);
    expect(lstatSync(file).isSymbolicLink()).toBe(true);
    expect(readlinkSync(file)).toBe(real);
    expect(readFileSync(real, 'utf8')).toBe(`${OURS}\n`);
  });
});
