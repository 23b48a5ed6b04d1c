import { mkdir, readFile, chmod, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import {
  decodePublicKey,
  encodePublicKey,
  errnoCode,
  errorMessage,
  generateIdentity,
  parseIdentity,
  serializeIdentity,
  writeFileAtomic,
  type IdentityKeys,
} from '@borgpull/protocol';
import { AgentError } from './errors.js';

export const DEFAULT_AGENT_STATE_DIR = '/var/lib/borgpull-agent';

export interface TunnelSettings {
  readonly sshHost: string;
  readonly sshPort: number;
  readonly user: string;
  readonly port: number;
  readonly hostKey: string;
}

/** What enrollment pinned: who the controller is and where to reach it. */
export interface Enrollment {
  readonly name: string;
  readonly url: string;
  readonly controllerKey: string;
  readonly tunnel: TunnelSettings;
  /**
   * The directory a backup sees as this client's `/` (sftp-server's `-d`;
   * default `/`). A starting point, not a confinement.
   */
  readonly sftpRoot?: string;
  /**
   * Agents enrolled before SFTP went through the agent's own socket: the
   * authorized_keys file where enrollment put the controller's key. The agent
   * removes that line at start (authorized-keys.ts).
   */
  readonly authorizedKeys?: string;
  /** Older enrollments only: the client sshd the tunnel used to reach. Unused. */
  readonly sshdPort?: number;
  readonly sshdHostKey?: string;
  readonly enrolledAt: number;
}

export function agentPaths(stateDir: string) {
  return {
    root: stateDir,
    identity: join(stateDir, 'identity.json'),
    enrollment: join(stateDir, 'enrollment.json'),
    sshKey: join(stateDir, 'id_ed25519'),
    knownHosts: join(stateDir, 'known_hosts'),
    tunnelControl: join(stateDir, 'tunnel.ctl'),
    /** The SFTP gate's socket, in a root-only dir; it exists only while a job's tunnel is open (sftp-gate.ts). */
    sftpSocket: join(stateDir, 'sftp', 'sftp.sock'),
    /** What a controller may restore into: the client's decision (restore-policy.ts). */
    restorePolicy: join(stateDir, 'restore-policy.json'),
    /** Every restore order received, JSON lines (restore-log.ts). */
    restoreLog: join(stateDir, 'restores.log'),
  };
}
export type AgentPaths = ReturnType<typeof agentPaths>;

export async function ensureStateDir(p: AgentPaths): Promise<void> {
  await mkdir(p.root, { recursive: true, mode: 0o700 });
  await chmod(p.root, 0o700);
}

export async function loadOrCreateIdentity(p: AgentPaths, fresh = false): Promise<IdentityKeys> {
  if (fresh) {
    const id = generateIdentity();
    await writeFileAtomic(p.identity, serializeIdentity(id), 0o600);
    return id;
  }
  try {
    return parseIdentity(await readFile(p.identity, 'utf8'));
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw new AgentError('E_STATE_IDENTITY', `cannot read ${p.identity}: ${errorMessage(err)}`);
  }
  const id = generateIdentity();
  await writeFileAtomic(p.identity, serializeIdentity(id), 0o600);
  return id;
}

export async function ensureSshKey(p: AgentPaths, fresh = false): Promise<string> {
  if (fresh) {
    await unlink(p.sshKey).catch(() => undefined);
    await unlink(`${p.sshKey}.pub`).catch(() => undefined);
  }
  try {
    await stat(p.sshKey);
  } catch {
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'borgpull-agent', '-f', p.sshKey]);
  }
  return (await readFile(`${p.sshKey}.pub`, 'utf8')).trim();
}

export async function saveEnrollment(p: AgentPaths, e: Enrollment): Promise<void> {
  await writeFileAtomic(p.enrollment, JSON.stringify(e, null, 2) + '\n', 0o600);
}

export async function loadEnrollment(
  p: AgentPaths,
): Promise<{ enrollment: Enrollment; identity: IdentityKeys; controllerKey: Uint8Array }> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(p.enrollment, 'utf8'));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new AgentError(
        'E_CONFIG_NOT_ENROLLED',
        `this agent is not enrolled (no ${p.enrollment}): run 'agent enroll TOKEN' first (or pass --state-dir)`,
      );
    }
    throw new AgentError('E_CONFIG_INVALID', `cannot read ${p.enrollment}: ${errorMessage(err)}`);
  }
  const e = raw as Partial<Enrollment> | null;
  if (typeof e?.url !== 'string' || typeof e.controllerKey !== 'string' || typeof e.tunnel !== 'object') {
    throw new AgentError('E_CONFIG_INVALID', `${p.enrollment} is damaged: enroll again`);
  }
  const identity = parseIdentity(await readFile(p.identity, 'utf8'));
  return { enrollment: e as Enrollment, identity, controllerKey: decodePublicKey(e.controllerKey) };
}

export { encodePublicKey };
