import { AgentHandshake, exists, parseToken, tokenSigningKey, type EnrolledMessage } from '@borgpull/protocol';
import { removeOldBackupKey } from './authorized-keys.js';
import { dialSession } from './dial.js';
import { AgentError } from './errors.js';
import { savePolicy, type RestorePolicy } from './restore-policy.js';
import {
  encodePublicKey,
  ensureSshKey,
  ensureStateDir,
  loadOrCreateIdentity,
  saveEnrollment,
  type AgentPaths,
  type Enrollment,
} from './state.js';

export interface EnrollOptions {
  readonly token: string;
  readonly paths: AgentPaths;
  /** What backups see as this machine's / (sftp-server's starting directory). */
  readonly sftpRoot: string;
  /** Where an older version put the controller's key: its line is removed. */
  readonly authorizedKeys: string;
  readonly software: string;
  readonly force: boolean;
  /** `--restores`: what a controller may restore here. Unset: keep the current policy (none: anywhere). */
  readonly restores?: RestorePolicy | undefined;
}

/**
 * `agent enroll TOKEN`: makes this machine's keys, pins the controller's key
 * from the token, proves the token over a fresh handshake. Nothing is written
 * outside the state dir: backups reach this machine through its own SFTP
 * socket (sftp-gate.ts), not sshd, so no authorized_keys line is installed;
 * the one an older version installed is removed.
 */
export async function enroll(opts: EnrollOptions): Promise<Enrollment> {
  const tok = parseToken(opts.token);
  if (tok.expiresAt <= Date.now())
    throw new AgentError('E_AUTH_TOKEN', 'this enrollment token has expired: ask for a new one (controller token NAME)');
  if (!opts.force && (await exists(opts.paths.enrollment))) {
    throw new AgentError(
      'E_CONFIG_ENROLLED',
      `already enrolled (${opts.paths.enrollment} exists); pass --force to enroll again with new keys`,
    );
  }
  await ensureStateDir(opts.paths);
  // --force starts over with new keys: the old ones may have been revoked for good.
  const identity = await loadOrCreateIdentity(opts.paths, opts.force);
  const sshKey = await ensureSshKey(opts.paths, opts.force);
  const hs = new AgentHandshake({
    identity,
    controllerKey: tok.controllerKey,
    software: opts.software,
    enroll: { tokenId: tok.id, tokenKey: tokenSigningKey(tok.secret) },
  });
  const ac = new AbortController();
  const { ws, channel } = await dialSession(tok.url, hs, ac.signal);
  // The controller answers a refused token by closing the socket with its code.
  const closed = new Promise<never>((_, reject) =>
    ws.on('close', (code, reason) =>
      reject(new AgentError('E_AUTH_TOKEN', `the controller refused the enrollment (${reason.toString() || code})`)),
    ),
  );
  let reply: EnrolledMessage;
  try {
    reply = await Promise.race([channel.request({ type: 'enroll', sshKey }), closed]);
  } finally {
    channel.close('enrolled');
  }
  await removeOldBackupKey(opts.authorizedKeys);
  const enrollment: Enrollment = {
    name: reply.name,
    url: tok.url,
    controllerKey: encodePublicKey(tok.controllerKey),
    tunnel: reply.tunnel,
    sftpRoot: opts.sftpRoot,
    authorizedKeys: opts.authorizedKeys,
    enrolledAt: Date.now(),
  };
  // The policy first: no moment where this enrollment is live under an older, looser policy.
  if (opts.restores) await savePolicy(opts.paths.restorePolicy, opts.restores);
  await saveEnrollment(opts.paths, enrollment);
  return enrollment;
}
