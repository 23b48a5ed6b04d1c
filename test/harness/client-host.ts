import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLog } from './logs.js';
import { addNetns, addVeth, deleteNetns, deleteVeth, makeRootDir, randomId, type VethPair } from './netns.js';
import { isAlive, isListening, killAndWait, nsInode, pidsInNamespace } from './proc.js';
import { removeDirIfUnmounted } from './mounts.js';
import { created, killSyncHelper, register, unregister, type Stoppable } from './registry.js';
import { Runner, type ExecOptions, type ExecResult, type HostSubprocess, type SpawnOptions } from './runner.js';
import { buildClientRoot, checkClientPasswd, writeTree, type FileSpec } from './client-root.js';
import type { ServerHost } from './server-host.js';
import { generateSshKey, publicKeyOnly } from './ssh-keys.js';
import { clientSshdConfig, ensurePrivsepDir } from './sshd-config.js';
import { waitFor } from './wait.js';

export interface ClientHostOptions {
  /** Host name (also the UTS hostname and /etc/hostname inside the client). */
  name: string;
  /** The client's /etc/passwd; must contain root and sshd. */
  passwd: string;
  /** The client's /etc/group. */
  group: string;
  /** Add read-only /usr, merged-usr links, dev, proc, sys, tmp so a chroot into the root runs /usr/bin/borg. */
  system?: boolean;
  /**
   * Bind client.root/root over /root inside the client mount namespace (default true),
   * so an agent writing /root/.ssh/authorized_keys writes the client sshd's file.
   */
  bindRootHome?: boolean;
  /**
   * Start the client's own sshd on 127.0.0.1:22 (default true). borgpull's
   * agent needs none: the e2e fixture's clients run without one. The bench's
   * "today's path" and the harness's own tests use it.
   */
  sshd?: boolean;
}

/** Holder script: runs in a fresh private mount + UTS namespace inside the client netns. */
const HOLDER_SCRIPT = `set -e
R="$1"; DIR="$2"; NAME="$3"; SYSTEM="$4"; HOMEBIND="$5"
mount --bind "$R/etc/passwd" /etc/passwd
mount --bind "$R/etc/group" /etc/group
if [ -e /etc/hostname ]; then mount --bind "$R/etc/hostname" /etc/hostname; fi
hostname "$NAME"
if [ "$SYSTEM" = 1 ]; then mount --bind /usr "$R/usr"; mount -o remount,bind,ro "$R/usr"; fi
if [ "$HOMEBIND" = 1 ]; then mount --bind "$R/root" /root; fi
: > "$DIR/holder.ready"
exec sleep infinity
`;

/** A client behind NAT: own netns (veth to the server), own mount + UTS namespace, own sshd on 127.0.0.1:22 unless `sshd: false`. */
export class ClientHost implements Stoppable {
  readonly kind = 'client' as const;
  readonly name: string;
  readonly netns: string;
  /** Root-owned 0755 harness dir (logs, sshd config); the client root is inside it. */
  readonly dir: string;
  /** Host path of the client's `/` as its SFTP server shows it (root-owned 0755 up to /). */
  readonly root: string;
  /** The client sshd's AuthorizedKeysFile (= /root/.ssh/authorized_keys inside the client). */
  readonly authorizedKeysFile: string;
  readonly system: boolean;
  address = '';
  /** The server's veth address as seen from the client: dial the controller here. */
  serverAddress = '';
  /** 'ssh-ed25519 AAAA...' of the client's sshd. */
  sshdHostKeyPublic = '';
  holderPid = 0;
  netInode: number | undefined;
  mntInode: number | undefined;
  private veth: VethPair | undefined;
  private readonly boot: Runner;
  private readonly runner: Runner;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly server: ServerHost,
    id: string,
    private readonly opts: ClientHostOptions,
  ) {
    if (!/^[a-z0-9][a-z0-9-]{0,31}$/.test(opts.name)) throw new Error(`bad client name: ${opts.name}`);
    checkClientPasswd(opts.passwd);
    this.name = opts.name;
    this.system = opts.system ?? false;
    this.netns = `bpt-c-${id}`;
    this.dir = `/run/bpt-c-${id}`;
    this.root = join(this.dir, 'root');
    this.authorizedKeysFile = join(this.root, 'root', '.ssh', 'authorized_keys');
    this.boot = new Runner(() => ['nsenter', `--net=/run/netns/${this.netns}`, '--']);
    this.runner = new Runner((cwd) => ['nsenter', '-t', String(this.holderPid), '-m', '-n', '-u', `--wd=${cwd}`, '--']);
  }

  get stopped(): boolean {
    return this.stopping !== undefined;
  }

  /** @internal */
  async init(): Promise<void> {
    makeRootDir(this.dir);
    mkdirSync(join(this.dir, 'logs'), { mode: 0o755 });
    buildClientRoot(this.root, { name: this.name, passwd: this.opts.passwd, group: this.opts.group, system: this.system });
    this.netInode = await addNetns(this.netns);
    this.veth = await addVeth(this.server.netns, this.netns, this.server.attach(this));
    this.address = this.veth.clientAddress;
    this.serverAddress = this.veth.serverAddress;

    const holder = this.boot.spawnLogged(
      [
        'unshare',
        '--mount',
        '--uts',
        '--propagation',
        'private',
        'sh',
        '-c',
        HOLDER_SCRIPT,
        'holder',
        this.root,
        this.dir,
        this.name,
        this.system ? '1' : '0',
        this.opts.bindRootHome === false ? '0' : '1',
      ],
      join(this.dir, 'logs', 'holder.log'),
    );
    this.holderPid = holder.pid ?? 0;
    await waitFor(`client ${this.name} namespaces`, () => existsSync(join(this.dir, 'holder.ready')), {
      abortIf: () => (isAlive(this.holderPid) ? undefined : `holder exited:\n${readLog(join(this.dir, 'logs'))}`),
    });
    this.mntInode = nsInode(this.holderPid, 'mnt');
    if (this.mntInode === undefined || nsInode(this.holderPid, 'net') !== this.netInode) {
      throw new Error(`client ${this.name}: holder is not in the expected namespaces`);
    }
    created.mnt.add(this.mntInode);
    if (this.opts.sshd !== false) await this.startSshd();
  }

  private async startSshd(): Promise<void> {
    ensurePrivsepDir();
    const d = join(this.dir, 'sshd');
    mkdirSync(d, { mode: 0o755 });
    const hostKey = join(d, 'ssh_host_ed25519_key');
    this.sshdHostKeyPublic = publicKeyOnly(await generateSshKey(hostKey, `${this.name}-sshd`));
    const config = join(d, 'sshd_config');
    writeFileSync(config, clientSshdConfig({ hostKey, root: this.root, authorizedKeysFile: this.authorizedKeysFile }), { mode: 0o644 });
    const logFile = join(this.dir, 'logs', 'sshd.log');
    const sub = this.runner.spawnLogged(['/usr/sbin/sshd', '-D', '-e', '-f', config], logFile);
    const pid = sub.pid ?? 0;
    await waitFor(`client ${this.name} sshd on 127.0.0.1:22`, () => isListening(this.holderPid, 22), {
      abortIf: () => (isAlive(pid) ? undefined : `sshd exited:\n${readLog(logFile)}`),
    });
  }

  /** Run a command inside the client (its netns, mount and UTS namespaces). Throws on failure unless reject:false. */
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.runner.exec(argv, opts);
  }

  /** Start a long-running command (e.g. the agent) inside the client; stop() kills it. */
  spawn(argv: readonly string[], opts?: SpawnOptions): HostSubprocess {
    return this.runner.spawn(argv, opts);
  }

  /** Write test data under client.root (relative paths, numeric owners). */
  writeFiles(tree: Record<string, FileSpec>): void {
    writeTree(this.root, tree);
  }

  isListening(port: number): boolean {
    return isListening(this.holderPid, port);
  }

  async waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(`port ${port} in client ${this.name}`, () => this.isListening(port), { timeoutMs });
  }

  logs(): string {
    return readLog(join(this.dir, 'logs'));
  }

  /** Kill everything in the client, delete veth and netns, then (only if nothing is mounted) the dir. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const problems: string[] = [];
    const net = this.netInode;
    const mnt = this.mntInode;
    const survivors = await killAndWait([...this.boot.groups, ...this.runner.groups], () => [
      ...(net === undefined ? [] : pidsInNamespace('net', net)),
      ...(mnt === undefined ? [] : pidsInNamespace('mnt', mnt)),
    ]);
    problems.push(...survivors);
    if (this.veth) problems.push(...(await deleteVeth(this.server.netns, this.veth.serverIf)));
    problems.push(...(await deleteNetns(this.netns)));
    if (survivors.length === 0) problems.push(...(await removeDirIfUnmounted(this.dir)));
    else problems.push(`not deleting ${this.dir}: processes survive`);
    this.server.detach(this);
    unregister(this);
    if (problems.length > 0) throw new Error(`client ${this.name} (${this.netns}) stop:\n  ${problems.join('\n  ')}`);
  }

  killSync(): void {
    killSyncHelper([...this.boot.groups, ...this.runner.groups], this.netInode, this.mntInode, [this.netns]);
  }
}

/** Create a client host joined to `server`. Cleans up after itself if setup fails. */
export async function createClientHost(server: ServerHost, opts: ClientHostOptions): Promise<ClientHost> {
  const host = new ClientHost(server, randomId(), opts);
  register(host);
  try {
    await host.init();
  } catch (err) {
    await host.stop().catch(() => undefined);
    throw err;
  }
  return host;
}
