import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { waitFor } from './wait.js';

export type NsKind = 'net' | 'mnt' | 'uts';

/** Inode of a process's namespace (as in `readlink /proc/PID/ns/KIND`), or undefined if gone. */
export function nsInode(pid: number | 'self', kind: NsKind): number | undefined {
  try {
    const m = /\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${kind}`));
    return m?.[1] === undefined ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((p) => p !== process.pid);
}

interface Stat {
  state: string;
  pgrp: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', pgrp: Number(rest[2]) };
  } catch {
    return undefined;
  }
}

/** Alive = exists and is neither a zombie nor dead. */
export function isAlive(pid: number): boolean {
  const st = readStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

/** Live processes (other than ourselves) in the namespace with this inode. */
export function pidsInNamespace(kind: NsKind, inode: number): number[] {
  return allPids().filter((p) => nsInode(p, kind) === inode && isAlive(p));
}

/** Live members of a process group. */
export function pidsInGroup(pgid: number): number[] {
  return allPids().filter((p) => {
    const st = readStat(p);
    return st !== undefined && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X';
  });
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * SIGTERM every process group in `groups` and every pid `extra()` yields, wait
 * up to `graceMs`, then SIGKILL what is left and wait again.
 * Returns descriptions of survivors (empty when all are gone).
 */
export async function killAndWait(groups: number[], extra: () => number[], graceMs = 2_000): Promise<string[]> {
  const targets = (): number[] => [...new Set([...groups.flatMap(pidsInGroup), ...extra()])];
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    for (const g of groups) signal(-g, sig);
    for (const p of targets()) signal(p, sig);
    try {
      await waitFor('processes to exit', () => targets().length === 0, {
        timeoutMs: sig === 'SIGTERM' ? graceMs : 3_000,
      });
      return [];
    } catch {
      // escalate / report
    }
  }
  return targets().map((p) => `pid ${p} (${cmdline(p)}) survived SIGKILL`);
}

/** True when a TCP socket listens on `port` in the network namespace of `pid`. */
export function isListening(pid: number, port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && f[1]?.endsWith(`:${hexPort}`)) return true;
    }
  }
  return false;
}
