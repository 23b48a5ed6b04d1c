import { lstat, mkdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ControllerError } from '../errors.js';

/**
 * A job's scratch directory on the server. It only ever holds the files and
 * directories this class created, and cleanup removes exactly those, one by
 * one: rmdir, never a recursive delete (a mountpoint may sit inside).
 */
export class JobDir {
  private readonly files: string[] = [];
  private readonly dirs: string[] = [];

  private constructor(readonly path: string) {}

  static async create(path: string): Promise<JobDir> {
    await mkdir(path, { mode: 0o700 });
    const d = new JobDir(path);
    d.dirs.push(path);
    return d;
  }

  async file(name: string, content: string | Uint8Array, mode = 0o600): Promise<string> {
    const p = join(this.path, name);
    await writeFile(p, content, { mode, flag: 'wx' });
    this.files.push(p);
    return p;
  }

  /** A name for a file the job's processes will create. */
  expect(name: string): string {
    const p = join(this.path, name);
    this.files.push(p);
    return p;
  }

  async dir(name: string): Promise<string> {
    const p = join(this.path, name);
    await mkdir(p, { mode: 0o700 });
    this.dirs.push(p);
    return p;
  }

  async remove(): Promise<void> {
    for (const f of this.files) await unlink(f).catch(() => undefined);
    for (const d of [...this.dirs].reverse()) await rmdir(d).catch(() => undefined);
  }
}

/** The agent's stable mountpoint (borg keys its files cache on the absolute path). */
export async function ensureMountpoint(path: string): Promise<void> {
  await mkdir(path, { mode: 0o700 }).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  const st = await lstat(path);
  if (!st.isDirectory()) throw new ControllerError('E_JOB_MOUNTPOINT', `${path} is not a directory`);
}

export async function removeMountpoint(path: string): Promise<void> {
  await rmdir(path).catch(() => undefined);
}
