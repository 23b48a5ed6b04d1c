/**
 * One borg base dir per agent (`STATE/borg/NAME`, 0700): borg's cache,
 * security and config dirs, its temp files and HOME. A client trusted to run
 * its own borg (chroot isolation) gets its own base bound in, and a broken one
 * cannot reach another agent's cache or security data.
 */
import { chmod, mkdir, readFile, rename } from 'node:fs/promises';
import { exists } from '@borgpull/protocol';
import { dirname, join } from 'node:path';
import type { StatePaths } from '../state.js';

/** Where borg 1.2 keeps a repository's cache and security data below BORG_BASE_DIR. */
const PER_REPO = [join('.cache', 'borg'), join('.config', 'borg', 'security')];

/** The repository id from its config file, or undefined (no repository yet). */
async function repoId(p: StatePaths, agent: string): Promise<string | undefined> {
  try {
    const m = /^id = ([0-9a-f]{64})$/m.exec(await readFile(join(p.repo(agent), 'config'), 'utf8'));
    return m?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Creates the agent's base dir and its tmp (0700). On first use, moves the
 * agent's repository cache and security data from the shared base dir older
 * versions used (`STATE/borg/.cache/borg/ID`, `STATE/borg/.config/borg/security/ID`),
 * so an upgrade does not cost a full re-read of every client.
 */
export async function ensureBorgBase(p: StatePaths, agent: string): Promise<string> {
  const base = p.borgBase(agent);
  const fresh = !(await exists(base));
  for (const d of [p.borgDir, base, join(base, 'tmp')]) {
    await mkdir(d, { recursive: true, mode: 0o700 });
    await chmod(d, 0o700);
  }
  if (fresh) {
    const id = await repoId(p, agent);
    if (id !== undefined) {
      for (const sub of PER_REPO) {
        const from = join(p.borgDir, sub, id);
        const to = join(base, sub, id);
        if (!(await exists(from)) || (await exists(to))) continue;
        await mkdir(dirname(to), { recursive: true, mode: 0o700 });
        // Another job of this agent may have moved it a moment ago.
        await rename(from, to).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        });
      }
    }
  }
  return base;
}
