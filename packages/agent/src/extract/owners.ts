/**
 * Owners of restored entries. 'numeric' keeps the archived ids; 'names' maps
 * the archived user and group names through this machine's passwd and group
 * (as GNU tar does as root), falling back to the archived id for a name it
 * does not know or an entry without one.
 */
import { readFileSync } from 'node:fs';
import type { Member } from './tar-stream.js';

/** Bigger than any real passwd; a bound on what we read and keep. */
const MAX_DB_BYTES = 16 * 1024 * 1024;
const MAX_ID = 0xfffffffe;

/** name -> id from a passwd or group file; the first line for a name wins, like getpwnam. */
export function parseIdFile(text: Buffer): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.subarray(0, MAX_DB_BYTES).toString('latin1').split('\n')) {
    const f = line.split(':');
    const name = f[0];
    const id = f[2];
    if (!name || id === undefined || !/^\d{1,10}$/.test(id) || name.startsWith('+') || name.startsWith('-')) continue;
    const n = Number(id);
    if (n <= MAX_ID && !out.has(name)) out.set(name, n);
  }
  return out;
}

export interface Owner {
  uid: number;
  gid: number;
}

export class OwnerMap {
  private constructor(
    private readonly users: Map<string, number> | undefined,
    private readonly groups: Map<string, number> | undefined,
  ) {}

  static numeric(): OwnerMap {
    return new OwnerMap(undefined, undefined);
  }

  /** Reads the two files once, at the start of a restore. */
  static names(passwd = '/etc/passwd', group = '/etc/group'): OwnerMap {
    const read = (p: string): Map<string, number> => {
      try {
        return parseIdFile(readFileSync(p));
      } catch {
        return new Map();
      }
    };
    return new OwnerMap(read(passwd), read(group));
  }

  of(m: Member): Owner {
    const uid = (m.uname.length > 0 ? this.users?.get(m.uname.toString('latin1')) : undefined) ?? m.uid;
    const gid = (m.gname.length > 0 ? this.groups?.get(m.gname.toString('latin1')) : undefined) ?? m.gid;
    return { uid, gid };
  }
}
