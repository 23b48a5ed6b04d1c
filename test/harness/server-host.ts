import { errorMessage } from '@borgpull/protocol';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { execa } from 'execa';
import { readLog } from './logs.js';
import { isAbsolute, join } from 'node:path';
import { addNetns, deleteNetns, makeRootDir, randomId, SERVER_ADDRESS } from './netns.js';
import { isAlive, isListening, killAndWait, nsInode, pidsInNamespace } from './proc.js';
import { removeDirIfUnmounted } from './mounts.js';
import { killSyncHelper, register, unregister, type Stoppable } from './registry.js';
import { Runner, type ExecOptions, type ExecResult, type HostSubprocess, type SpawnOptions } from './runner.js';
import { generateSshKey, publicKeyOnly } from './ssh-keys.js';
import { ensurePrivsepDir, tunnelSshdConfig } from './sshd-config.js';
import { waitFor } from './wait.js';

export interface ServerHostOptions {
  /** Name of the tunnel user added (in sshd's private mount namespace only). Default 'borgpull'. */
  tunnelUser?: string;
}

export interface TunnelSshdOptions {
  /** TCP port, listened on at 0.0.0.0 inside the server netns. */
  port: number;
  /**
   * Absolute path of the tunnel user's authorized_keys (written by the controller).
   * StrictModes: sshd opens it AS THE TUNNEL USER (uid 64999), so the file must be
   * readable by that uid (0644 root:root, or 0640 root:64999) and every directory
   * on its path root-owned, not group/world writable, and searchable by others
   * (0755 or 0711). Nothing under /tmp (1777 fails StrictModes).
   */
  authorizedKeysFile: string;
  /** sshd_config lines for the tunnel user (default TUNNEL_RULES in sshd-config.ts). */
  rules?: readonly string[];
}

export interface TunnelSshd {
  /** 'ssh-ed25519 AAAA...' (no comment): pin it as `[serverAddress]:port <key>`. */
  hostKeyPublic: string;
  pid: number;
  port: number;
  logFile: string;
  /** Its sshd_config (root-readable; what `controller check` reads with `sshd -T -f`). */
  configFile: string;
}

/** Attached client (kept minimal to avoid an import cycle). */
interface AttachedClient {
  stop(): Promise<void>;
}

export const TUNNEL_UID = 64999;

/** The backup server: a network namespace; the host's mount namespace and file system stay visible. */
export class ServerHost implements Stoppable {
  readonly kind = 'server' as const;
  readonly netns: string;
  /** Root-owned 0755 scratch dir for the test (state dirs, repos, mountpoints). */
  readonly dir: string;
  readonly tunnelUser: string;
  readonly tunnelUid = TUNNEL_UID;
  readonly tunnelGid = TUNNEL_UID;
  /** A `sleep` living in the netns (for /proc/PID/net probes). */
  holderPid = 0;
  netInode: number | undefined;
  private readonly runner: Runner;
  private readonly clients = new Set<AttachedClient>();
  private nextSubnet = 1;
  private stopping: Promise<void> | undefined;

  constructor(id: string, opts: ServerHostOptions) {
    this.netns = `bpt-s-${id}`;
    this.dir = `/run/bpt-s-${id}`;
    this.tunnelUser = opts.tunnelUser ?? 'borgpull';
    if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(this.tunnelUser)) throw new Error(`bad tunnel user name: ${this.tunnelUser}`);
    this.runner = new Runner(() => ['nsenter', `--net=/run/netns/${this.netns}`, '--']);
  }

  get stopped(): boolean {
    return this.stopping !== undefined;
  }

  /** @internal */
  async init(): Promise<void> {
    makeRootDir(this.dir);
    mkdirSync(join(this.dir, 'logs'), { mode: 0o755 });
    this.netInode = await addNetns(this.netns);
    await execa('ip', ['-n', this.netns, 'addr', 'add', `${SERVER_ADDRESS}/32`, 'dev', 'lo']);
    const holder = this.runner.spawnLogged(['sleep', 'infinity'], join(this.dir, 'logs', 'holder.log'));
    this.holderPid = holder.pid ?? 0;
    await waitFor('server netns holder', () => nsInode(this.holderPid, 'net') === this.netInode, {
      abortIf: () => (isAlive(this.holderPid) ? undefined : 'holder exited'),
    });
  }

  /** Run a command in the server netns (host mount ns and file system). Throws on failure unless reject:false. */
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.runner.exec(argv, opts);
  }

  /** Start a long-running command (e.g. the controller) in the server netns; stop() kills it. */
  spawn(argv: readonly string[], opts?: SpawnOptions): HostSubprocess {
    return this.runner.spawn(argv, opts);
  }

  isListening(port: number): boolean {
    return isListening(this.holderPid, port);
  }

  /** Poll until something listens on TCP `port` in the server netns. */
  async waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(`port ${port} in ${this.netns}`, () => this.isListening(port), { timeoutMs });
  }

  /** Start the tunnel sshd (see TunnelSshdOptions for the authorized_keys file mode). */
  async startTunnelSshd(opts: TunnelSshdOptions): Promise<TunnelSshd> {
    if (this.stopped) throw new Error('server host is stopped');
    if (!isAbsolute(opts.authorizedKeysFile)) throw new Error('authorizedKeysFile must be absolute');
    ensurePrivsepDir();
    const d = join(this.dir, `tunnel-sshd-${opts.port}`);
    mkdirSync(d, { mode: 0o755 });
    const hostKey = join(d, 'ssh_host_ed25519_key');
    const hostKeyPublic = publicKeyOnly(await generateSshKey(hostKey, `${this.netns}-tunnel`));
    const passwd = join(d, 'passwd');
    const group = join(d, 'group');
    writeFileSync(
      passwd,
      withLine(
        readFileSync('/etc/passwd', 'utf8'),
        this.tunnelUser,
        `${this.tunnelUser}:x:${this.tunnelUid}:${this.tunnelGid}:borgpull tunnel:/nonexistent:/usr/sbin/nologin`,
      ),
      { mode: 0o644 },
    );
    writeFileSync(group, withLine(readFileSync('/etc/group', 'utf8'), this.tunnelUser, `${this.tunnelUser}:x:${this.tunnelGid}:`), {
      mode: 0o644,
    });
    // And a shadow entry that is not locked: with UsePAM no, sshd refuses a user
    // whose shadow password starts with '!' ("account is locked"), which is
    // what `useradd` leaves if this machine happens to have such a user.
    const shadow = join(d, 'shadow');
    writeFileSync(shadow, withLine(readFileSync('/etc/shadow', 'utf8'), this.tunnelUser, `${this.tunnelUser}:*:20000::::::`), {
      mode: 0o600,
    });
    const config = join(d, 'sshd_config');
    writeFileSync(
      config,
      tunnelSshdConfig({
        port: opts.port,
        hostKey,
        tunnelUser: this.tunnelUser,
        authorizedKeysFile: opts.authorizedKeysFile,
        rules: opts.rules,
      }),
      { mode: 0o644 },
    );
    const logFile = join(this.dir, 'logs', `tunnel-sshd-${opts.port}.log`);
    const script =
      'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && mount --bind "$4" /etc/shadow && exec /usr/sbin/sshd -D -e -f "$3"';
    const sub = this.runner.spawnLogged(
      ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', passwd, group, config, shadow],
      logFile,
    );
    const pid = sub.pid ?? 0;
    await waitFor(`tunnel sshd on port ${opts.port}`, () => this.isListening(opts.port), {
      abortIf: () => (isAlive(pid) ? undefined : `sshd exited:\n${readLog(logFile)}`),
    });
    return { hostKeyPublic, pid, port: opts.port, logFile, configFile: config };
  }

  /** Concatenated harness logs (sshd etc.), for failure messages. */
  logs(): string {
    return readLog(join(this.dir, 'logs'));
  }

  /** @internal */
  attach(client: AttachedClient): number {
    if (this.stopped) throw new Error('server host is stopped');
    this.clients.add(client);
    return this.nextSubnet++;
  }

  /** @internal */
  detach(client: AttachedClient): void {
    this.clients.delete(client);
  }

  /** Stop clients, kill every process, delete the netns, then (only if nothing is mounted) the dir. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const problems: string[] = [];
    for (const c of [...this.clients]) {
      try {
        await c.stop();
      } catch (err) {
        problems.push(errorMessage(err));
      }
    }
    const ino = this.netInode;
    const survivors = await killAndWait([...this.runner.groups], () => (ino === undefined ? [] : pidsInNamespace('net', ino)));
    problems.push(...survivors);
    problems.push(...(await deleteNetns(this.netns)));
    if (survivors.length === 0) problems.push(...(await removeDirIfUnmounted(this.dir)));
    else problems.push(`not deleting ${this.dir}: processes survive`);
    unregister(this);
    if (problems.length > 0) throw new Error(`server ${this.netns} stop:\n  ${problems.join('\n  ')}`);
  }

  killSync(): void {
    killSyncHelper(this.runner.groups, this.netInode, undefined, [this.netns]);
  }
}

function withLine(file: string, name: string, line: string): string {
  const lines = file.split('\n').filter((l) => l !== '' && !l.startsWith(`${name}:`));
  return `${[...lines, line].join('\n')}\n`;
}

/** Create the backup-server host (a bpt-s-<random> netns). Cleans up after itself if setup fails. */
export async function createServerHost(opts: ServerHostOptions = {}): Promise<ServerHost> {
  const host = new ServerHost(randomId(), opts);
  register(host);
  try {
    await host.init();
  } catch (err) {
    await host.stop().catch(() => undefined);
    throw err;
  }
  return host;
}
