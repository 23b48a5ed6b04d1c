import { errorMessage } from '@borgpull/protocol';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { AgentError } from './errors.js';

const MAX = 1024 * 1024;

async function readBounded(path: string): Promise<string> {
  const text = await readFile(path, 'utf8');
  return text.length > MAX ? text.slice(0, MAX) : text;
}

/** What the controller needs to record the client's names and skip its pseudo file systems. */
export async function readHostReport(sshdHostKeyFile: string): Promise<{
  hostname: string;
  passwd: string;
  group: string;
  mounts: string;
  sshHostKey: string;
}> {
  let sshHostKey: string;
  try {
    sshHostKey = (await readFile(sshdHostKeyFile, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  } catch (err) {
    throw new AgentError('E_AGENT_HOSTKEY', `cannot read this machine's sshd host key ${sshdHostKeyFile}: ${errorMessage(err)}`);
  }
  return {
    sshHostKey,
    hostname: hostname().slice(0, 255),
    passwd: await readBounded('/etc/passwd'),
    group: await readBounded('/etc/group'),
    mounts: await readBounded('/proc/self/mounts'),
  };
}
