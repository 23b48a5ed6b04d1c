/**
 * Excludes for a pulled backup. Over sshfs every path has the same st_dev, so
 * --one-file-system does nothing: the client's pseudo and network file systems
 * are excluded explicitly, from the mount table the client reported.
 */
const SKIP_TYPES = new Set([
  'proc', 'sysfs', 'devtmpfs', 'devpts', 'tmpfs', 'ramfs', 'cgroup', 'cgroup2', 'mqueue', 'debugfs', 'tracefs',
  'securityfs', 'pstore', 'bpf', 'configfs', 'fusectl', 'hugetlbfs', 'autofs', 'binfmt_misc', 'efivarfs', 'rpc_pipefs',
  'nsfs', 'overlay', 'squashfs', 'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', '9p', 'ceph', 'glusterfs', 'davfs', 'afs',
  'fuse.sshfs', 'sshfs', 'fuse.gvfsd-fuse', 'fuse.portal', 'fuse.lxcfs',
]);

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountEntry {
  readonly path: string;
  readonly type: string;
}

export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3 || !f[1] || !f[2]) continue;
    out.push({ path: unescapeMountPath(f[1]), type: f[2] });
  }
  return out;
}

/** Escapes a literal path for a borg shell-style (sh:) pattern. */
function shEscape(p: string): string {
  return p.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/**
 * Patterns (relative to the client's /) excluding the contents of each pseudo
 * or network mount; the mountpoint directory itself is kept so a full restore
 * recreates it.
 */
export function mountExcludes(mounts: readonly MountEntry[]): string[] {
  const seen = new Set<string>();
  for (const m of mounts) {
    if (m.path === '/' || !m.path.startsWith('/')) continue;
    if (!SKIP_TYPES.has(m.type) && !m.type.startsWith('fuse.')) continue;
    seen.add(m.path.replace(/^\/+/, '').replace(/\/+$/, ''));
  }
  // A mount below an excluded one needs no pattern of its own.
  const sorted = [...seen].sort();
  const kept = sorted.filter((p) => !sorted.some((q) => q !== p && p.startsWith(`${q}/`)));
  return kept.map((p) => `sh:${shEscape(p)}/*`);
}
