import { errorMessage } from '@borgpull/protocol';
import { execFileSync } from 'node:child_process';
import { pidsInGroup, pidsInNamespace } from './proc.js';

export interface Stoppable {
  readonly kind: 'server' | 'client';
  stop(): Promise<void>;
  /** Synchronous last-resort kill used from process.on('exit'). */
  killSync(): void;
}

const live = new Set<Stoppable>();

/** Namespace inodes and dirs this process created, for the leftover check. */
export const created = {
  net: new Set<number>(),
  mnt: new Set<number>(),
  netnsNames: new Set<string>(),
  dirs: new Set<string>(),
};

let exitHookInstalled = false;

export function register(h: Stoppable): void {
  live.add(h);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const x of live) x.killSync();
    });
  }
}

export function unregister(h: Stoppable): void {
  live.delete(h);
}

/** SIGKILL groups and namespace members, then delete netns, all synchronously. */
export function killSyncHelper(
  groups: Iterable<number>,
  netInode: number | undefined,
  mntInode: number | undefined,
  netns: string[],
): void {
  const kill = (pid: number): void => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  for (const g of groups) {
    kill(-g);
    pidsInGroup(g).forEach(kill);
  }
  if (netInode !== undefined) pidsInNamespace('net', netInode).forEach(kill);
  if (mntInode !== undefined) pidsInNamespace('mnt', mntInode).forEach(kill);
  for (const n of netns) {
    try {
      execFileSync('ip', ['netns', 'delete', n], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/**
 * Stop every host still alive (clients before servers). Use in afterEach/afterAll.
 * Throws one error listing every problem (leaked mounts, surviving processes).
 */
export async function cleanupAll(): Promise<void> {
  const errors: string[] = [];
  const order = [...live].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'client' ? -1 : 1));
  for (const h of order) {
    try {
      await h.stop();
    } catch (err) {
      errors.push(errorMessage(err));
    }
  }
  if (errors.length > 0) throw new Error(`cleanup problems:\n${errors.join('\n')}`);
}
