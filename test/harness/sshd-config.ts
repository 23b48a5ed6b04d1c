import { mkdirSync } from 'node:fs';

export interface TunnelSshdConfig {
  port: number;
  hostKey: string;
  tunnelUser: string;
  authorizedKeysFile: string;
  /**
   * What the tunnel user may do, appended after the base settings (a `Match`
   * block may end it). Default TUNNEL_RULES; a test passes other rules (the
   * README's snippet, or unsafe ones) to check what they allow.
   */
  rules?: readonly string[];
}

/**
 * The rules the README gives, globally: remote TCP forwarding (the agent's
 * `-R`, further limited to its own port by its key line) and nothing else:
 * no Unix-socket forwarding either way, no tun devices, no gateway ports, no
 * TTY, no command but /bin/false, no ~/.ssh/rc. `controller serve` refuses an
 * sshd whose effective settings for the tunnel user allow more.
 */
export const TUNNEL_RULES: readonly string[] = [
  'AllowTcpForwarding remote',
  'AllowStreamLocalForwarding no',
  'AllowAgentForwarding no',
  'GatewayPorts no',
  'PermitTTY no',
  'PermitTunnel no',
  'PermitUserRC no',
  'PermitUserEnvironment no',
  'X11Forwarding no',
  'ForceCommand /bin/false',
];

/** The backup server's sshd: tunnel user only, public keys only, then the forwarding rules. */
export function tunnelSshdConfig(c: TunnelSshdConfig): string {
  return [
    `ListenAddress 0.0.0.0:${c.port}`,
    `HostKey ${c.hostKey}`,
    'PidFile none',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'AuthenticationMethods publickey',
    'PermitRootLogin no',
    `AllowUsers ${c.tunnelUser}`,
    `AuthorizedKeysFile ${c.authorizedKeysFile}`,
    'StrictModes yes',
    'ClientAliveInterval 15',
    'ClientAliveCountMax 3',
    'LogLevel VERBOSE',
    ...(c.rules ?? TUNNEL_RULES),
    '',
  ].join('\n');
}

export interface ClientSshdConfig {
  hostKey: string;
  root: string;
  authorizedKeysFile: string;
}

/** The client's sshd: loopback only, chrooted SFTP for everyone. */
export function clientSshdConfig(c: ClientSshdConfig): string {
  return [
    'ListenAddress 127.0.0.1:22',
    `HostKey ${c.hostKey}`,
    'PidFile none',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password',
    `AuthorizedKeysFile ${c.authorizedKeysFile}`,
    `ChrootDirectory ${c.root}`,
    'Subsystem sftp internal-sftp',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    'X11Forwarding no',
    'PermitTTY no',
    'PermitTunnel no',
    'StrictModes yes',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
}

/**
 * sshd refuses to start without its privilege-separation dir (/run/sshd on
 * Debian, normally made by the service unit). Create it when missing.
 */
export function ensurePrivsepDir(): void {
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}
