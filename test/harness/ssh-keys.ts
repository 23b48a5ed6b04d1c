import { execa } from 'execa';
import { readFile } from 'node:fs/promises';

/** Generate an unencrypted ed25519 key pair at `path` (+ `.pub`); returns the public line 'ssh-ed25519 AAAA... comment'. */
export async function generateSshKey(path: string, comment = 'borgpull-test'): Promise<string> {
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return (await readFile(`${path}.pub`, 'utf8')).trim();
}

/** 'ssh-ed25519 AAAA...' without the comment. */
export function publicKeyOnly(line: string): string {
  return line.trim().split(/\s+/).slice(0, 2).join(' ');
}
