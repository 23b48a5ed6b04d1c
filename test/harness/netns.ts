import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { created } from './registry.js';

/** Random suffix for netns and dir names. */
export function randomId(): string {
  return randomBytes(4).toString('hex');
}

/** Make a root-owned 0755 directory (whole path root-owned 0755 when parent is /run). */
export function makeRootDir(path: string, mode = 0o755): void {
  mkdirSync(path, { mode });
  chmodSync(path, mode);
  created.dirs.add(path);
}

/** The server's address that every client can reach (on the server netns' lo). */
export const SERVER_ADDRESS = '198.18.0.1';

/** `ip netns add NAME`, lo up; returns the namespace inode. */
export async function addNetns(name: string): Promise<number> {
  created.netnsNames.add(name);
  await execa('ip', ['netns', 'add', name]);
  const ino = statSync(`/run/netns/${name}`).ino;
  created.net.add(ino);
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return ino;
}

/** Delete a netns if it exists; returns problems. */
export async function deleteNetns(name: string): Promise<string[]> {
  if (!existsSync(`/run/netns/${name}`)) return [];
  const r = await execa('ip', ['netns', 'delete', name], { reject: false });
  return r.failed ? [`ip netns delete ${name}: ${r.stderr}`] : [];
}

export interface VethPair {
  serverIf: string;
  serverAddress: string;
  clientAddress: string;
}

/** Veth from serverNs (bpc<N>, 198.18.N.1/30) to clientNs (eth0, 198.18.N.2/30). */
export async function addVeth(serverNs: string, clientNs: string, n: number): Promise<VethPair> {
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new Error(`subnet index out of range: ${n}`);
  const serverIf = `bpc${n}`;
  const serverAddress = `198.18.${n}.1`;
  const clientAddress = `198.18.${n}.2`;
  await execa('ip', ['link', 'add', serverIf, 'netns', serverNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', clientNs]);
  await execa('ip', ['-n', serverNs, 'addr', 'add', `${serverAddress}/30`, 'dev', serverIf]);
  await execa('ip', ['-n', clientNs, 'addr', 'add', `${clientAddress}/30`, 'dev', 'eth0']);
  await execa('ip', ['-n', serverNs, 'link', 'set', serverIf, 'up']);
  await execa('ip', ['-n', clientNs, 'link', 'set', 'eth0', 'up']);
  // Every client reaches the server's one public address through its own veth.
  await execa('ip', ['-n', clientNs, 'route', 'add', `${SERVER_ADDRESS}/32`, 'via', serverAddress]);
  return { serverIf, serverAddress, clientAddress };
}

/** Delete the server side of a veth (takes the peer with it); returns problems. */
export async function deleteVeth(serverNs: string, serverIf: string): Promise<string[]> {
  if (!existsSync(`/run/netns/${serverNs}`)) return [];
  const r = await execa('ip', ['-n', serverNs, 'link', 'del', serverIf], { reject: false });
  if (r.failed && !/Cannot find device/.test(r.stderr)) return [`ip link del ${serverIf}: ${r.stderr}`];
  return [];
}
