import { readFile } from 'node:fs/promises';
import { errorMessage, writeFileAtomic } from '@borgpull/protocol';
import type { AgentRecord } from './registry.js';
import { ControllerError } from './errors.js';

/**
 * The tunnel user's authorized_keys: one line per enrolled, unrevoked agent,
 * allowing remote forwarding of exactly its port on 127.0.0.1 and nothing
 * else (no shell, no -L: permitopen names the discard port nobody listens on).
 */
export function tunnelKeyLine(agent: AgentRecord): string {
  return (
    `restrict,port-forwarding,permitlisten="127.0.0.1:${agent.port}",permitopen="127.0.0.1:9",command="/bin/false" ` +
    `${agent.sshKey} borgpull-agent-${agent.name}`
  );
}

export async function writeTunnelKeys(path: string, agents: readonly AgentRecord[]): Promise<void> {
  const lines = agents.filter((a) => a.revokedAt === undefined && a.sshKey.length > 0).map(tunnelKeyLine);
  // Readable by the tunnel user: sshd reads this file with that user's rights.
  await writeFileAtomic(path, `# managed by borgpull: do not edit\n${lines.join('\n')}\n`, 0o644);
}

const SSH_KEY_RE = /^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]{16,2048}$/;

/** Accepts an ssh public key as '<type> <base64>' only: no options, no comment. */
export function checkSshPublicKey(key: string): string {
  const parts = key.trim().split(/\s+/);
  const bare = parts.slice(0, 2).join(' ');
  if (!SSH_KEY_RE.test(bare)) throw new ControllerError('E_PROTO_BAD_FIELD', 'not an ssh public key');
  return bare;
}

export async function readHostKey(file: string): Promise<string> {
  try {
    return checkSshPublicKey(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ControllerError(
      'E_CONFIG_HOSTKEY',
      `cannot read the tunnel sshd's host key from ${file} (set sshHostKeyFile in config.json): ${errorMessage(err)}`,
      { cause: err },
    );
  }
}
