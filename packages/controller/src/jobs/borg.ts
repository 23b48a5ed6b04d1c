import { readFile, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { writeFileAtomic } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import type { StatePaths } from '../state.js';
import { ensureBorgBase } from './borg-base.js';

/** Host ids of borg processes that run inside a job's PID namespace. */
export const JOB_HOST_PREFIX = 'borgpull-job-';

/** The only PATH a job or a borg run gets (never the daemon's own). */
export const JOB_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment every borg run gets, built from nothing: no variable of the
 * daemon's reaches borg (BORG_LOGGING_CONF, BORG_PASSCOMMAND, PYTHONPATH,
 * PYTHONSTARTUP, LD_PRELOAD, SSH_AUTH_SOCK, XDG_*: each would let something
 * other than this code decide what borg reads or runs). borg is a Python
 * program run as root without -s: HOME is a server dir and the user site dir
 * is off, so no passwd entry or HOME can make it import a client's file.
 * Cache, config, security and temp files go to the agent's own base dir;
 * the passphrase comes on fd 3.
 */
export function borgEnv(p: StatePaths, agent: string, extra: Record<string, string> = {}): Record<string, string> {
  const base = p.borgBase(agent);
  return {
    PATH: JOB_PATH,
    HOME: base,
    TMPDIR: join(base, 'tmp'),
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    PYTHONNOUSERSITE: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    // Python >= 3.11: nothing from the cwd (the client's mount) on sys.path, whatever runs.
    PYTHONSAFEPATH: '1',
    // borg records who made an archive (getpass.getuser: LOGNAME first, then
    // the passwd entry of uid 0, which a client's passwd may lack: a crash at
    // the very end of a backup).
    LOGNAME: 'root',
    BORG_BASE_DIR: base,
    BORG_PASSPHRASE_FD: '3',
    // chroot isolation reaches a repository as /borgrepo, everything else by its
    // state-dir path: both paths are the controller's own, for a repository
    // only it uses, so borg's relocation check would only get in the way.
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'no',
    BORG_DISPLAY_PASSPHRASE: 'no',
    ...extra,
  };
}

/**
 * The one way to start borg on an agent's repository: `/bin/sh` with this argv
 * and env runs `borg ARGS` with the passphrase on fd 3, opened by the shell
 * from the root-only file, so it never sits in an argument or env.
 * Callers end the options with `--`: no repository, archive or path is ever
 * read as an option.
 */
export function borgCommand(
  p: StatePaths,
  agent: string,
  args: readonly string[],
): { file: string; args: string[]; env: Record<string, string> } {
  return {
    file: '/bin/sh',
    args: ['-c', 'exec borg "$@" 3<"$PASSPHRASE_FILE"', 'borg', ...args],
    env: borgEnv(p, agent, { PASSPHRASE_FILE: p.passphrase(agent) }),
  };
}

/** Runs a borg command on an agent's repository to its end (see borgCommand). */
export async function borg(p: StatePaths, agent: string, args: string[], opts: { cancelSignal?: AbortSignal } = {}) {
  await ensureBorgBase(p, agent);
  const cmd = borgCommand(p, agent, args);
  return execa(cmd.file, cmd.args, {
    env: cmd.env,
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    cancelSignal: opts.cancelSignal,
    forceKillAfterDelay: 5000,
  });
}

function borgFailure(what: string, res: { exitCode?: number; stderr?: unknown }): ControllerError {
  const text = (typeof res.stderr === 'string' ? res.stderr : '').trim().split('\n').slice(-3).join('; ');
  return new ControllerError('E_JOB_BORG', `${what} failed (borg exit ${res.exitCode ?? 'signal'}): ${text}`);
}

/** Creates the agent's repository on first use: encrypted (repokey), passphrase kept root-only. */
export async function ensureRepo(p: StatePaths, agent: string): Promise<void> {
  try {
    await stat(join(p.repo(agent), 'config'));
    return;
  } catch {
    /* create it */
  }
  try {
    await stat(p.passphrase(agent));
  } catch {
    await writeFileAtomic(p.passphrase(agent), randomBytes(32).toString('base64url'), 0o600);
  }
  const res = await borg(p, agent, ['init', '--encryption', 'repokey', '--', p.repo(agent)]);
  if (res.exitCode !== 0) throw borgFailure(`creating the repository of '${agent}'`, res);
}

export interface ArchiveInfo {
  name: string;
  start: string;
  id: string;
}

export async function listArchives(p: StatePaths, agent: string): Promise<ArchiveInfo[]> {
  try {
    await stat(join(p.repo(agent), 'config'));
  } catch {
    return [];
  }
  const res = await borg(p, agent, ['list', '--json', '--', p.repo(agent)]);
  if (res.exitCode !== 0) throw borgFailure(`listing the archives of '${agent}'`, res);
  const parsed = JSON.parse(res.stdout) as { archives?: Array<{ name: string; start: string; id: string }> };
  return (parsed.archives ?? []).map((a) => ({ name: a.name, start: a.start, id: a.id }));
}

/**
 * Removes what a backup that did not succeed may have left: the archive itself
 * (borg commits a cut-short one when the client vanishes) and its checkpoint.
 * Returns the names deleted.
 */
export async function discardArchive(p: StatePaths, agent: string, archive: string): Promise<string[]> {
  const res = await borg(p, agent, ['list', '--json', '--consider-checkpoints', '--', p.repo(agent)]);
  if (res.exitCode !== 0) throw borgFailure(`listing the archives of '${agent}'`, res);
  const names = new Set(((JSON.parse(res.stdout) as { archives?: Array<{ name: string }> }).archives ?? []).map((a) => a.name));
  const gone: string[] = [];
  for (const name of [archive, `${archive}.checkpoint`]) {
    if (!names.has(name)) continue;
    const del = await borg(p, agent, ['delete', '--', `${p.repo(agent)}::${name}`]);
    if (del.exitCode !== 0) throw borgFailure(`deleting archive ${name}`, del);
    gone.push(name);
  }
  return gone;
}

/**
 * Breaks a lock left by a job of ours that is confirmed dead. Job borgs run in
 * a PID namespace with a per-job host id, so borg cannot tell by itself; the
 * daemon can: one daemon per state dir, one job per repository, and jobs die
 * with the daemon. A lock held by anything else is left to borg.
 */
export async function breakStaleJobLock(p: StatePaths, agent: string, isRunning: (jobId: string) => boolean): Promise<boolean> {
  let roster: { exclusive?: unknown[][]; shared?: unknown[][] };
  try {
    roster = JSON.parse(await readFile(join(p.repo(agent), 'lock.roster'), 'utf8')) as typeof roster;
  } catch {
    return false;
  }
  const holders = [...(roster.exclusive ?? []), ...(roster.shared ?? [])].map((h) => (typeof h[0] === 'string' ? h[0] : ''));
  if (holders.length === 0) return false;
  const ours = holders.every((h) => h.startsWith(JOB_HOST_PREFIX) && !isRunning(h.slice(JOB_HOST_PREFIX.length).split('@')[0] ?? ''));
  if (!ours) return false;
  const res = await borg(p, agent, ['break-lock', '--', p.repo(agent)]);
  if (res.exitCode !== 0) throw borgFailure('breaking a stale lock', res);
  return true;
}

/**
 * Makes the repository's borg `storage_quota` match `bytes` (0: none). For a
 * local repository the quota lives in the repository's config, where every
 * borg that opens it (ours, or a chroot client's own) enforces it: a create
 * that would pass it fails with exit 2 and msgid Repository.StorageQuotaExceeded,
 * and its transaction is rolled back. borg refuses values under 10M and
 * refuses 0, so "none" deletes the key. Returns whether it changed anything.
 */
export async function applyQuota(p: StatePaths, agent: string, bytes: number): Promise<boolean> {
  const text = await readFile(join(p.repo(agent), 'config'), 'utf8');
  const current = /^storage_quota\s*=\s*(\S*)\s*$/m.exec(text)?.[1];
  const want = bytes === 0 ? undefined : String(bytes);
  if ((current === undefined || current === '0') && want === undefined) return false;
  if (current === want) return false;
  const res =
    want === undefined
      ? await borg(p, agent, ['config', '--delete', p.repo(agent), 'storage_quota'])
      : await borg(p, agent, ['config', p.repo(agent), 'storage_quota', want]);
  if (res.exitCode !== 0) throw borgFailure(`setting the quota of '${agent}'`, res);
  return true;
}
