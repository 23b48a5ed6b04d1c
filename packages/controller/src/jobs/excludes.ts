/**
 * Excludes for a pulled backup. Over sshfs every path has the same st_dev, so
 * --one-file-system does nothing: the client's pseudo and network file systems
 * are excluded explicitly, from the mount table the client reported.
 *
 * That table is the client's word: each mount path is parsed, normalized and
 * bounded, and turned into a pattern that matches what is below that one
 * directory and nothing else. (Seen before: a mount at `//` became `sh:/*`,
 * which borg reads as `*` + `/**` + `/*`: everything below every top-level
 * directory, an empty backup.)
 */
import { ControllerError } from '../errors.js';

const SKIP_TYPES = new Set([
  'proc',
  'sysfs',
  'devtmpfs',
  'devpts',
  'tmpfs',
  'ramfs',
  'cgroup',
  'cgroup2',
  'mqueue',
  'debugfs',
  'tracefs',
  'securityfs',
  'pstore',
  'bpf',
  'configfs',
  'fusectl',
  'hugetlbfs',
  'autofs',
  'binfmt_misc',
  'efivarfs',
  'rpc_pipefs',
  'nsfs',
  'overlay',
  'squashfs',
  'nfs',
  'nfs4',
  'cifs',
  'smb3',
  'smbfs',
  '9p',
  'ceph',
  'glusterfs',
  'davfs',
  'afs',
  'fuse.sshfs',
  'sshfs',
  'fuse.gvfsd-fuse',
  'fuse.portal',
  'fuse.lxcfs',
]);

/** Longest mount path kept (PATH_MAX). */
const MAX_PATH = 4096;
/**
 * Most patterns a client's mount table may produce, after nested mounts are
 * folded into their parents, and their total length: they become borg
 * arguments, and argv is bounded (a big container host has a few hundred).
 */
export const MAX_MOUNT_EXCLUDES = 4096;
const MAX_EXCLUDE_CHARS = 512 * 1024;

/** C0, DEL, C1, and the replacement character (a name that was not UTF-8 on the client). */
const BAD_CHARS = /[\u0000-\u001f\u007f-\u009f\ufffd]/;

/** /proc/mounts escapes space, tab, newline and backslash as three octal digits (a byte). */
export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-3][0-7]{2})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountEntry {
  readonly path: string;
  readonly type: string;
}

export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3 || !f[1] || !f[2] || f[1].length > MAX_PATH * 4) continue;
    out.push({ path: unescapeMountPath(f[1]), type: f[2] });
  }
  return out;
}

/**
 * The mount path relative to the client's `/`, normalized (`//`, `.` and
 * trailing slashes folded), or undefined when it is `/` itself, not absolute,
 * goes up (`..`), is too long or holds a control character.
 */
export function relativeMountPath(path: string): string | undefined {
  if (!path.startsWith('/') || path.length > MAX_PATH || BAD_CHARS.test(path)) return undefined;
  const parts = path.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.length === 0 || parts.includes('..')) return undefined;
  return parts.join('/');
}

/**
 * A borg regex pattern for what is below `rel` (not `rel` itself). Regex, not
 * sh:, because borg's shell patterns have no escape character: a `*` or `?` in
 * a mount path could not be matched literally. Every character other than a
 * letter, digit, `_` or `/` is escaped (Python's re accepts `\` before any ASCII
 * punctuation), so the pattern matches this one literal path.
 */
export function belowPattern(rel: string): string {
  return `re:^${rel.replace(/[^A-Za-z0-9_/\u00a0-\uffff]/g, (c) => `\\${c}`)}/`;
}

/**
 * Patterns (relative to the client's /) excluding the contents of each pseudo
 * or network mount; the mountpoint directory itself is kept so a full restore
 * recreates it. Throws E_JOB_MOUNTS when the table would give more patterns
 * than borg can be handed.
 */
export function mountExcludes(mounts: readonly MountEntry[]): string[] {
  const seen = new Set<string>();
  for (const m of mounts) {
    if (!SKIP_TYPES.has(m.type) && !m.type.startsWith('fuse.')) continue;
    const rel = relativeMountPath(m.path);
    if (rel !== undefined) seen.add(rel);
  }
  // A mount below an excluded one needs no pattern of its own. Sorting with
  // '/' below every other character puts each path's descendants right after
  // it, so one pass finds them (no paths are compared pairwise).
  const sorted = [...seen].map((p) => ({ p, key: p.replaceAll('/', '\u0000') }));
  sorted.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const kept: string[] = [];
  let last: string | undefined;
  for (const { p } of sorted) {
    if (last !== undefined && p.startsWith(`${last}/`)) continue;
    kept.push(p);
    last = p;
  }
  const patterns = kept.map(belowPattern);
  const chars = patterns.reduce((n, x) => n + x.length, 0);
  if (patterns.length > MAX_MOUNT_EXCLUDES || chars > MAX_EXCLUDE_CHARS) {
    throw new ControllerError(
      'E_JOB_MOUNTS',
      `the client reported ${patterns.length} pseudo or network mounts to exclude (at most ${MAX_MOUNT_EXCLUDES}, ${MAX_EXCLUDE_CHARS} characters)`,
    );
  }
  return patterns;
}
