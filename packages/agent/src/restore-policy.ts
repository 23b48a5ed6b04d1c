/**
 * The client's restore policy: what a connected controller may write here.
 * The controller is the hostile peer for this module: a compromised backup
 * server must not own every client, so the client decides (UrBackup's model).
 *
 * The policy lives in its own file in the agent's state dir, written
 * atomically, and is read at every restore order: `agent restores ...`
 * changes it for a running agent at once. A damaged file refuses everything.
 */
import { lstat, readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { errnoCode, errorMessage, writeFileAtomic } from '@borgpull/protocol';
import { AgentError } from './errors.js';

export type RestorePolicy =
  { readonly mode: 'anywhere' } | { readonly mode: 'off' } | { readonly mode: 'dirs'; readonly dirs: readonly string[] };

export const DEFAULT_POLICY: RestorePolicy = Object.freeze({ mode: 'anywhere' });

/** Bounds: a policy is a handful of short absolute paths. */
export const MAX_POLICY_DIRS = 64;
export const MAX_PATH = 4096;
const MAX_POLICY_FILE = 64 * 1024;

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * One allowed directory: absolute, no '.', '..' or empty components (so what
 * is written is what is checked), no control characters, no commas (the
 * CLI's separator). A trailing slash is dropped; '/' stays '/'.
 */
export function parseDir(raw: string): string {
  if (raw.length === 0 || raw.length > MAX_PATH) throw new AgentError('E_USAGE', `a restore directory must be 1 to ${MAX_PATH} characters`);
  if (CONTROL.test(raw) || raw.includes(','))
    throw new AgentError('E_USAGE', 'a restore directory must not contain control characters or commas');
  if (!raw.startsWith('/')) throw new AgentError('E_USAGE', `a restore directory must be an absolute path, got '${raw}'`);
  const dir = raw.length > 1 ? raw.replace(/\/$/, '') : raw;
  if (
    dir !== '/' &&
    dir
      .slice(1)
      .split('/')
      .some((c) => c === '' || c === '.' || c === '..')
  ) {
    throw new AgentError('E_USAGE', `a restore directory must be a normalized path (no '.', '..' or '//'), got '${raw}'`);
  }
  return dir;
}

/** `anywhere`, `off`, or `DIR[,DIR...]`, as given to `agent enroll --restores` and `agent restores`. */
export function parsePolicy(text: string): RestorePolicy {
  if (text === 'anywhere') return DEFAULT_POLICY;
  if (text === 'off') return Object.freeze({ mode: 'off' });
  const parts = text.split(',');
  if (parts.length > MAX_POLICY_DIRS) throw new AgentError('E_USAGE', `at most ${MAX_POLICY_DIRS} restore directories`);
  const dirs = [...new Set(parts.map(parseDir))];
  return Object.freeze({ mode: 'dirs', dirs: Object.freeze(dirs) });
}

/** The policy as the CLI takes it back: `anywhere`, `off` or `DIR,DIR`. */
export function formatPolicy(p: RestorePolicy): string {
  return p.mode === 'dirs' ? p.dirs.join(',') : p.mode;
}

/** The policy in words, for the refusal message and `agent status`. */
export function describePolicy(p: RestorePolicy): string {
  if (p.mode === 'anywhere') return 'restores anywhere';
  if (p.mode === 'off') return 'restores off';
  return `restores only into ${p.dirs.join(', ')}`;
}

/** The file's JSON form: `{"restores": "anywhere" | "off" | ["/dir", ...]}`. */
function toJson(p: RestorePolicy): { restores: string | readonly string[] } {
  return { restores: p.mode === 'dirs' ? p.dirs : p.mode };
}

/** Validates the file's content like a wire message: parse, bound, copy. */
export function policyFromJson(text: string): RestorePolicy {
  if (text.length > MAX_POLICY_FILE) throw new AgentError('E_CONFIG_INVALID', 'the restore policy file is too large');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new AgentError('E_CONFIG_INVALID', 'the restore policy file is not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new AgentError('E_CONFIG_INVALID', 'the restore policy file must hold an object');
  const r = Object.prototype.hasOwnProperty.call(raw, 'restores') ? (raw as Record<string, unknown>)['restores'] : undefined;
  try {
    if (r === 'anywhere' || r === 'off') return parsePolicy(r);
    if (!Array.isArray(r) || r.length === 0 || r.length > MAX_POLICY_DIRS || !r.every((d) => typeof d === 'string')) {
      throw new AgentError('E_CONFIG_INVALID', `"restores" must be "anywhere", "off" or a list of 1 to ${MAX_POLICY_DIRS} directories`);
    }
    return parsePolicy(r.join(','));
  } catch (err) {
    throw new AgentError('E_CONFIG_INVALID', `the restore policy file is damaged: ${errorMessage(err)}`);
  }
}

export type PolicyState =
  { readonly policy: RestorePolicy; readonly damaged?: undefined } | { readonly policy?: undefined; readonly damaged: string };

/** Reads the policy; a missing file is the default (`anywhere`), a damaged one is reported, never guessed. */
export async function loadPolicy(file: string): Promise<PolicyState> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { policy: DEFAULT_POLICY };
    return { damaged: `cannot read ${file}: ${errnoCode(err) ?? 'error'}` };
  }
  try {
    return { policy: policyFromJson(text) };
  } catch (err) {
    return { damaged: `${file}: ${errorMessage(err)}` };
  }
}

export async function savePolicy(file: string, p: RestorePolicy): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(toJson(p)) + '\n', 0o600);
}

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

const refuse = (reason: string): Decision => ({ allowed: false, reason });

/** A path for a message: bounded, control characters shown escaped. */
function shown(path: string): string {
  const short = path.length > 200 ? `${path.slice(0, 200)}…` : path;
  return JSON.stringify(short).slice(1, -1);
}

/**
 * May a restore write into `target` under `policy`? `anywhere` leaves the
 * target to the extractor's own checks. Under a DIR policy the target must be
 * absolute, free of '..' (refused, not resolved: '/srv/restore/../etc' is a
 * trick, not a path), lexically inside one of the dirs, and every component of
 * it below that dir must be a real directory or not exist yet: checked with
 * lstat, so a symlink planted there (by a user or by root) refuses the restore
 * rather than being followed out of the dir. The dir itself, and its parents,
 * may be root's own symlinks (the admin's choice), not another user's.
 */
export async function checkRestoreTarget(policy: RestorePolicy, target: string): Promise<Decision> {
  if (policy.mode === 'anywhere') return { allowed: true };
  if (policy.mode === 'off') return refuse('this client accepts no restores');
  if (target.length > MAX_PATH) return refuse(`the target is longer than ${MAX_PATH} characters`);
  if (CONTROL.test(target)) return refuse(`the target ${shown(target)} contains control characters`);
  if (!target.startsWith('/')) return refuse(`the target ${shown(target)} is not an absolute path`);
  if (target.split('/').includes('..')) return refuse(`the target ${shown(target)} contains '..'`);
  const clean = posix.normalize(target).replace(/(.)\/$/, '$1');
  const inside = policy.dirs.filter((d) => d === '/' || clean === d || clean.startsWith(`${d}/`));
  if (inside.length === 0) return refuse(`${shown(clean)} is outside ${policy.dirs.map(shown).join(', ')}`);
  let last: Decision = refuse('no allowed directory');
  for (const dir of inside) {
    last = await walkBelow(dir, clean);
    if (last.allowed) return last;
  }
  return last;
}

async function walkBelow(dir: string, target: string): Promise<Decision> {
  // The dir's own path: root's links are the admin's choice, a user's are not.
  let p = '';
  for (const c of dir.split('/').filter(Boolean)) {
    p += `/${c}`;
    const st = await lstatOrNull(p);
    if (st === 'missing') break;
    if (typeof st === 'string') return refuse(`cannot check ${shown(p)}: ${st}`);
    if (st.isSymbolicLink() && st.uid !== 0) return refuse(`${shown(p)} is a symbolic link owned by uid ${st.uid}, not root`);
  }
  p = dir === '/' ? '' : dir;
  for (const c of target.slice(p.length).split('/').filter(Boolean)) {
    p += `/${c}`;
    const st = await lstatOrNull(p);
    if (st === 'missing') return { allowed: true }; // the rest will be created, below a checked directory
    if (typeof st === 'string') return refuse(`cannot check ${shown(p)}: ${st}`);
    if (st.isSymbolicLink()) return refuse(`${shown(p)} is a symbolic link`);
    if (!st.isDirectory()) return refuse(`${shown(p)} is not a directory`);
  }
  return { allowed: true };
}

async function lstatOrNull(p: string): Promise<Awaited<ReturnType<typeof lstat>> | string /* 'missing', or why lstat failed */> {
  try {
    return await lstat(p);
  } catch (err) {
    const code = errnoCode(err);
    return code === 'ENOENT' ? 'missing' : (code ?? 'error');
  }
}
