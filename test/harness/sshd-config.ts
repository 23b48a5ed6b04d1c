import { mkdirSync } from 'node:fs';

export interface TunnelSshdConfig {
  port: number;
  hostKey: string;
  tunnelUser: string;
  authorizedKeysFile: string;
}

/** The backup server's sshd: tunnel user only, remote forwarding only. */
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
    'AllowTcpForwarding remote',
    'AllowAgentForwarding no',
    'AllowStreamLocalForwarding no',
    'GatewayPorts no',
    'PermitTTY no',
    'PermitTunnel no',
    'PermitUserRC no',
    'PermitUserEnvironment no',
    'X11Forwarding no',
    'StrictModes yes',
    'ClientAliveInterval 15',
    'ClientAliveCountMax 3',
    'LogLevel VERBOSE',
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
