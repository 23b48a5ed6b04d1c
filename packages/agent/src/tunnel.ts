import { unlink, writeFile } from 'node:fs/promises';
import { execa, type ResultPromise } from 'execa';
import type { Logger } from 'pino';
import { AgentError } from './errors.js';
import { findSftpServer, SftpGate } from './sftp-gate.js';
import type { AgentPaths } from './state.js';

export interface TunnelOrder {
  readonly port: number;
  readonly sshHost: string;
  readonly sshPort: number;
  readonly user: string;
  /** The backup server's sshd host key, received over the authenticated session. */
  readonly hostKey: string;
  /** This job's SFTP secret; without it there is no tunnel (see sftp-gate.ts). */
  readonly sftpSecret?: Uint8Array | undefined;
}

export type TunnelState = 'idle' | 'opening' | 'open' | 'closing';

const HOST_ALIAS = 'borgpull-server';
const OPEN_TIMEOUT_MS = 20_000;

/**
 * One reverse tunnel at a time: `ssh -N -R 127.0.0.1:PORT:SOCKET` to the
 * backup server, host key pinned, where SOCKET is this job's SFTP gate (a
 * root-only Unix socket that serves `sftp-server -R` to whoever sends the
 * job's secret). The socket exists only while the tunnel does. It restarts
 * nothing on its own: if ssh exits, `onClosed` reports it, the gate closes
 * and the controller decides.
 */
export class Tunnel {
  state: TunnelState = 'idle';
  private proc?: ResultPromise;
  private gate?: SftpGate;
  onClosed: (port: number, reason: string) => void = () => undefined;

  constructor(
    private readonly paths: AgentPaths,
    /** The directory the controller's mount sees as the client's root. */
    private readonly sftpRoot: string,
    private readonly log: Logger,
  ) {}

  async open(order: TunnelOrder): Promise<void> {
    if (this.state === 'open' || this.state === 'opening') await this.close('replaced by a new tunnel order');
    if (!order.sftpSecret)
      throw new AgentError(
        'E_TUNNEL_NO_SECRET',
        'the controller sent no SFTP secret: it is older than this agent, which serves backups without sshd (upgrade the controller)',
      );
    this.state = 'opening';
    try {
      await this.startGate(order.sftpSecret);
      await this.startSsh(order);
    } catch (err) {
      this.state = 'idle';
      await this.stopGate();
      throw err;
    }
  }

  private async startGate(secret: Uint8Array): Promise<void> {
    const gate = new SftpGate({
      socketPath: this.paths.sftpSocket,
      secret,
      root: this.sftpRoot,
      sftpServer: await findSftpServer(),
      log: this.log,
    });
    await gate.start();
    this.gate = gate;
  }

  private async stopGate(): Promise<void> {
    const gate = this.gate;
    this.gate = undefined;
    await gate?.stop();
  }

  private async startSsh(order: TunnelOrder): Promise<void> {
    await writeFile(this.paths.knownHosts, `${HOST_ALIAS} ${order.hostKey}\n`, { mode: 0o600 });
    await unlink(this.paths.tunnelControl).catch(() => undefined);
    const args = [
      '-N',
      '-v',
      '-F',
      '/dev/null',
      '-M',
      '-S',
      this.paths.tunnelControl,
      '-R',
      `127.0.0.1:${order.port}:${this.paths.sftpSocket}`,
      '-p',
      String(order.sshPort),
      '-i',
      this.paths.sshKey,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'ServerAliveInterval=15',
      '-o',
      'ServerAliveCountMax=3',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${this.paths.knownHosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      `HostKeyAlias=${HOST_ALIAS}`,
      '-o',
      'ConnectTimeout=15',
      `${order.user}@${order.sshHost}`,
    ];
    const proc = execa('ssh', args, {
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      forceKillAfterDelay: 2000,
    });
    this.proc = proc;
    const log = this.log.child({ component: 'tunnel', port: order.port });
    let tail = '';
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(
        () => finish(new AgentError('E_TUNNEL_TIMEOUT', `ssh did not set up the forward within ${OPEN_TIMEOUT_MS / 1000}s`)),
        OPEN_TIMEOUT_MS,
      );
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          proc.kill('SIGTERM');
          reject(err);
        } else resolve();
      };
      proc.stderr.setEncoding('utf8');
      proc.stderr.on('data', (chunk: string) => {
        tail = (tail + chunk).slice(-4000);
        if (/remote forward success for: listen 127\.0\.0\.1:\d+/.test(tail)) finish();
      });
      void proc.then((res) => {
        const reason = explain(res.exitCode, tail);
        if (!settled) {
          finish(new AgentError('E_TUNNEL_FAILED', reason));
          return;
        }
        if (this.proc === proc) {
          this.proc = undefined;
          const wasOpen = this.state === 'open';
          this.state = 'idle';
          if (wasOpen) {
            log.warn({ exitCode: res.exitCode, reason }, 'tunnel closed');
            void this.stopGate().finally(() => this.onClosed(order.port, reason));
          }
        }
      });
    });
    await this.setNoDelay(order, log);
    this.state = 'open';
    log.info({ server: `${order.sshHost}:${order.sshPort}` }, 'tunnel open');
  }

  /**
   * sshd turns Nagle off (TCP_NODELAY) for a connection only when a session
   * starts, and `ssh -N -R` never starts one: the server end then delays every
   * small SFTP reply behind a delayed ACK (measured: 6 MB/s through the tunnel
   * instead of 140-240). One session over the control socket fixes it for the
   * whole connection; the tunnel key's forced command just exits at once.
   */
  private async setNoDelay(order: TunnelOrder, log: Logger): Promise<void> {
    const res = await execa(
      'ssh',
      [
        '-S',
        this.paths.tunnelControl,
        '-T',
        '-F',
        '/dev/null',
        '-o',
        'BatchMode=yes',
        '-p',
        String(order.sshPort),
        `${order.user}@${order.sshHost}`,
      ],
      { stdin: 'ignore', reject: false, timeout: 10_000 },
    );
    if (res.timedOut) log.warn('the tunnel session that enables TCP_NODELAY did not end; backups may be slow');
  }

  async close(reason: string): Promise<void> {
    const proc = this.proc;
    if (!proc) {
      this.state = 'idle';
      await this.stopGate();
      return;
    }
    this.state = 'closing';
    this.proc = undefined;
    proc.kill('SIGTERM');
    await proc;
    await this.stopGate();
    this.state = 'idle';
    this.log.info({ reason }, 'tunnel closed on order');
  }
}

function explain(exitCode: number | undefined, stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l && !l.startsWith('debug') && !l.startsWith('OpenSSH_') && !l.startsWith('Transferred'));
  const last = lines.slice(-3).join('; ').trim();
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr)) {
    return "the backup server's ssh host key does not match the pinned one";
  }
  if (/remote port forwarding failed|Error: remote port forwarding/.test(stderr)) {
    return 'the server refused the port forward (port taken, or not allowed for this key)';
  }
  if (/Permission denied/.test(stderr)) return 'the server refused our ssh key (was this agent revoked?)';
  return `ssh exited with ${exitCode ?? 'a signal'}${last ? `: ${last}` : ''}`;
}
