import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';

const MAX = 1024 * 1024;

async function readBounded(path: string): Promise<string> {
  const text = await readFile(path, 'utf8');
  return text.length > MAX ? text.slice(0, MAX) : text;
}

/** What the controller needs to record the client's names and skip its pseudo file systems. */
export async function readHostReport(): Promise<{
  hostname: string;
  passwd: string;
  group: string;
  mounts: string;
}> {
  return {
    hostname: hostname().slice(0, 255),
    passwd: await readBounded('/etc/passwd'),
    group: await readBounded('/etc/group'),
    mounts: await readBounded('/proc/self/mounts'),
  };
}
