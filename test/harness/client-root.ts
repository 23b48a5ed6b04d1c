import { chmodSync, chownSync, existsSync, lchownSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';

/** What a test client host is: its name and the passwd/group its root holds. */
export interface ClientRootSpec {
  name: string;
  passwd: string;
  group: string;
  system: boolean;
}

function dir(path: string, mode: number): void {
  mkdirSync(path, { mode });
  chmodSync(path, mode);
}

function file(path: string, content: string, mode: number): void {
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
}

/** Lay out the client's root as its SFTP view shows it. `root` must not exist yet. */
export function buildClientRoot(root: string, id: ClientRootSpec): void {
  dir(root, 0o755);
  dir(join(root, 'etc'), 0o755);
  file(join(root, 'etc', 'passwd'), ensureNl(id.passwd), 0o644);
  file(join(root, 'etc', 'group'), ensureNl(id.group), 0o644);
  file(join(root, 'etc', 'hostname'), `${id.name}\n`, 0o644);
  dir(join(root, 'data'), 0o755);
  dir(join(root, 'root'), 0o700);
  dir(join(root, 'root', '.ssh'), 0o700);
  file(join(root, 'root', '.ssh', 'authorized_keys'), '', 0o600);
  if (!id.system) return;
  dir(join(root, 'usr'), 0o755);
  for (const top of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const hostPath = `/${top}`;
    if (!existsSync(hostPath)) continue;
    if (lstatSync(hostPath).isSymbolicLink()) symlinkSync(readlinkSync(hostPath), join(root, top));
  }
  for (const d of ['dev', 'proc', 'sys']) dir(join(root, d), 0o755);
  dir(join(root, 'tmp'), 0o1777);
}

function ensureNl(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}

/** Check a passwd text has the users sshd needs in the client. */
export function checkClientPasswd(passwd: string): void {
  const names = new Set(passwd.split('\n').map((l) => l.split(':')[0]));
  for (const needed of ['root', 'sshd']) {
    if (!names.has(needed)) throw new Error(`client passwd must contain '${needed}' (sshd needs it); got users: ${[...names].join(',')}`);
  }
}

export type FileSpec =
  | string
  | Uint8Array
  | { content: string | Uint8Array; mode?: number; uid?: number; gid?: number }
  | { dir: true; mode?: number; uid?: number; gid?: number }
  | { symlink: string; uid?: number; gid?: number };

/**
 * Write files under `root` (paths relative to it, '/'-separated, no '..').
 * Missing parents are made root-owned 0755. Owners are numeric ids.
 */
export function writeTree(root: string, tree: Record<string, FileSpec>): void {
  for (const [rel, spec] of Object.entries(tree)) {
    const clean = normalize(rel).replace(/^\/+/, '');
    if (clean === '' || clean === '.' || clean.split('/').includes('..')) throw new Error(`bad path in tree: ${rel}`);
    const path = join(root, clean);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    let uid: number | undefined;
    let gid: number | undefined;
    if (typeof spec === 'string' || spec instanceof Uint8Array) {
      writeFileSync(path, spec);
    } else if ('dir' in spec) {
      mkdirSync(path, { recursive: true });
      chmodSync(path, spec.mode ?? 0o755);
      ({ uid, gid } = spec);
    } else if ('symlink' in spec) {
      symlinkSync(spec.symlink, path);
      ({ uid, gid } = spec);
      if (uid !== undefined || gid !== undefined) {
        lchownSync(path, uid ?? 0, gid ?? 0);
      }
      continue;
    } else {
      writeFileSync(path, spec.content);
      chmodSync(path, spec.mode ?? 0o644);
      ({ uid, gid } = spec);
    }
    if (uid !== undefined || gid !== undefined) chownSync(path, uid ?? 0, gid ?? 0);
  }
}
