/**
 * The client's user and group names, parsed from the /etc/passwd and
 * /etc/group texts its agent reports, and the files a job binds over the
 * server's in its mount namespace, written from those fields only.
 *
 * Why not the client's text verbatim: the server's borg (Python, run as root)
 * takes root's home from the passwd database when HOME is unset and loads
 * `.pth` files from that home's user site dir. A passwd that gave root the
 * home `.` made borg run code from the client's tree as root on the server.
 * What reaches the server's programs is name, uid and gid; home, shell and
 * gecos are fixed, group members dropped.
 */

/** Home and shell of every user in the passwd a job binds: nothing to read, nothing to run. */
export const NO_HOME = '/nonexistent';
export const NO_SHELL = '/usr/sbin/nologin';

/** Largest uid or gid kept: 2^32-1 is (uid_t)-1, "no id", for the kernel and chown. */
export const MAX_ID = 0xffff_fffe;
/** Entries kept per file; a real passwd has tens to a few thousand. */
export const MAX_ENTRIES = 65_536;
/** Longer lines are dropped without being split (the reported text is at most 1 MiB). */
const MAX_LINE = 4096;

/**
 * Names the archive records: POSIX portable characters plus `@` (some
 * directory services) and a trailing `$` (Samba machine accounts). Not
 * starting with `-` or `+` (NIS compat entries, options), nor `.`; no `:`,
 * whitespace, control characters or non-ASCII. A name outside this is dropped:
 * borg then records that uid or gid as a number only.
 */
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}\$?$/;
/** Canonical decimal, no sign, no leading zeros, no spaces. */
const ID_RE = /^(0|[1-9][0-9]{0,9})$/;

export interface ClientUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface ClientGroup {
  readonly name: string;
  readonly gid: number;
}

function parseId(s: string | undefined): number | undefined {
  if (s === undefined || !ID_RE.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

/** Lines of a colon-separated database with exactly `fields` fields; comments, blanks and overlong lines skipped. */
function* records(text: string, fields: number): Generator<string[]> {
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end);
    start = end + 1;
    if (line.length === 0 || line.length > MAX_LINE || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length === fields) yield f;
  }
}

/** Valid entries of a passwd text, first of each name kept, at most MAX_ENTRIES. */
export function parsePasswd(text: string): ClientUser[] {
  const out: ClientUser[] = [];
  const seen = new Set<string>();
  for (const [name = '', , uidText, gidText] of records(text, 7)) {
    const uid = parseId(uidText);
    const gid = parseId(gidText);
    if (!NAME_RE.test(name) || uid === undefined || gid === undefined || seen.has(name)) continue;
    seen.add(name);
    out.push({ name, uid, gid });
    if (out.length >= MAX_ENTRIES) break;
  }
  return out;
}

/** Valid entries of a group text (members are not needed), first of each name kept, at most MAX_ENTRIES. */
export function parseGroup(text: string): ClientGroup[] {
  const out: ClientGroup[] = [];
  const seen = new Set<string>();
  for (const [name = '', , gidText] of records(text, 4)) {
    const gid = parseId(gidText);
    if (!NAME_RE.test(name) || gid === undefined || seen.has(name)) continue;
    seen.add(name);
    out.push({ name, gid });
    if (out.length >= MAX_ENTRIES) break;
  }
  return out;
}

/** The passwd a job binds: names and ids from the client, everything else fixed. */
export function formatPasswd(users: readonly ClientUser[]): string {
  return users.map((u) => `${u.name}:x:${u.uid}:${u.gid}::${NO_HOME}:${NO_SHELL}\n`).join('');
}

/** The group a job binds: names and ids from the client, no members. */
export function formatGroup(groups: readonly ClientGroup[]): string {
  return groups.map((g) => `${g.name}:x:${g.gid}:\n`).join('');
}
