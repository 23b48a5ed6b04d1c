import { lstat } from 'node:fs/promises';

/**
 * Whether anything is at `path`, a symlink included (dangling or not): lstat,
 * so a link planted where a state file goes counts as there, never followed.
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
