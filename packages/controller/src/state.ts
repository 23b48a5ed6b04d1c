import { mkdir, readFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, generateIdentity, parseIdentity, serializeIdentity, writeFileAtomic, type IdentityKeys } from '@borgpull/protocol';
import { ControllerError } from './errors.js';

/** Every path in the controller's state directory, in one place. */
export function statePaths(stateDir: string) {
  return {
    root: stateDir,
    identity: join(stateDir, 'identity.json'),
    tunnelDir: join(stateDir, 'tunnel'),
    tunnelAuthorizedKeys: join(stateDir, 'tunnel', 'authorized_keys'),
    reposDir: join(stateDir, 'repos'),
    repo: (agent: string) => join(stateDir, 'repos', agent),
    secretsDir: join(stateDir, 'secrets'),
    passphrase: (agent: string) => join(stateDir, 'secrets', `${agent}.passphrase`),
    mountsDir: join(stateDir, 'mnt'),
    mountpoint: (agent: string) => join(stateDir, 'mnt', agent),
    /** Parent of the per-agent borg base dirs. */
    borgDir: join(stateDir, 'borg'),
    /**
     * One agent's borg base dir (cache, security, config, temp files, HOME),
     * 0700: a client that is trusted to run its own borg (chroot isolation)
     * reaches this one and no other agent's.
     */
    borgBase: (agent: string) => join(stateDir, 'borg', agent),
    jobsDir: join(stateDir, 'jobs'),
    /** Cached repository facts (archive count, sizes), written by the jobs that change a repository. */
    factsDir: join(stateDir, 'facts'),
    repoFacts: (agent: string) => join(stateDir, 'facts', `${agent}.json`),
    /** What the alerter last said of each agent (overdue, failing), so a restart does not say it again. */
    alertState: join(stateDir, 'alert-state.json'),
    /** The job history: JSON lines, appended (jobs/job-log.ts). */
    jobs: join(stateDir, 'jobs.jsonl'),
    /** The job history of versions before the log: imported once, then renamed to jobs.json.imported. */
    legacyJobs: join(stateDir, 'jobs.json'),
  };
}
export type StatePaths = ReturnType<typeof statePaths>;

/**
 * Creates the state directory tree. The root is 0711 so that sshd, reading the
 * tunnel user's authorized_keys as that user, can reach tunnel/ (0755) and
 * nothing else; every secret lives in a 0700 directory or a 0600 file.
 */
export async function createStateDirs(p: StatePaths): Promise<void> {
  await mkdir(p.root, { recursive: true, mode: 0o711 });
  await chmod(p.root, 0o711);
  for (const d of [p.reposDir, p.secretsDir, p.mountsDir, p.borgDir, p.jobsDir]) {
    await mkdir(d, { recursive: true, mode: 0o700 });
    await chmod(d, 0o700);
  }
  await mkdir(p.tunnelDir, { recursive: true, mode: 0o755 });
  await chmod(p.tunnelDir, 0o755);
}

export async function createIdentity(p: StatePaths): Promise<IdentityKeys> {
  const id = generateIdentity();
  await writeFileAtomic(p.identity, serializeIdentity(id), 0o600);
  return id;
}

export async function loadIdentity(p: StatePaths): Promise<IdentityKeys> {
  try {
    return parseIdentity(await readFile(p.identity, 'utf8'));
  } catch (err) {
    throw new ControllerError('E_STATE_IDENTITY', `cannot load the controller identity from ${p.identity}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}
