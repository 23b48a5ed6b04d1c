import type { Logger } from 'pino';
import {
  BorgpullError,
  createToken,
  encodePublicKey,
  errorMessage,
  escapeControl,
  legacyToken,
  verifyTokenProof,
  type AgentCheck,
  type AgentMessage,
  type Channel,
  type ControllerMessage,
  type IdentityKeys,
} from '@borgpull/protocol';
import { versionStatus } from './agent-version.js';
import { ADMIN_API, type AdminApi, type AgentView, type Handlers } from './admin/api.js';
import { AdminServer } from './admin/server.js';
import { adminSocketPath } from './admin/wire.js';
import type { AgentLink } from './agent-link.js';
import { AgentServer } from './agent-server.js';
import { loadConfig, pinRestartKeys, RESTART_KEYS, type ControllerConfig } from './config.js';
import { ControllerError } from './errors.js';
import { Registry } from './registry.js';
import { loadIdentity, statePaths, type StatePaths } from './state.js';
import { requireSafeSshd } from './sshd-check.js';
import { checkSshPublicKey, readHostKey, writeTunnelKeys } from './tunnel-keys.js';
import { endTunnelSession } from './tunnel-sessions.js';
import { controllerVersion } from './version.js';
import { listArchives } from './jobs/borg.js';
import { JobRunner } from './jobs/job-runner.js';
import { checkKind, Scheduler, type ScheduledKind } from './schedule/scheduler.js';
import { Monitor } from './monitor/monitor.js';
import { maxAge } from './schedule/schedule.js';

export type DaemonState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

export const TOKEN_TTL_MS = 60 * 60 * 1000;

export interface DaemonOptions {
  /** Ping interval for agent connections (ms). */
  readonly heartbeatMs?: number;
  /** How long `stop` lets running jobs finish before it cancels them (ms; default 0: cancel at once, then clean up). */
  readonly stopGraceMs?: number;
}

/** The controller daemon: agent registry, agent connections, the job runner, the admin socket. */
export class ControllerDaemon {
  state: DaemonState = 'created';
  readonly paths: StatePaths;
  config!: ControllerConfig;
  identity!: IdentityKeys;
  registry!: Registry;
  private agentServer?: AgentServer;
  private admin?: AdminServer<AdminApi>;
  private jobs?: JobRunner;
  private monitor?: Monitor;
  private scheduler?: Scheduler;
  readonly links = new Map<string, AgentLink>();

  constructor(
    stateDir: string,
    private readonly log: Logger,
    private readonly opts: DaemonOptions = {},
  ) {
    this.paths = statePaths(stateDir);
  }

  private transition(next: DaemonState): void {
    this.log.info({ from: this.state, to: next }, 'controller state');
    this.state = next;
  }

  async start(): Promise<{ host: string; port: number }> {
    this.transition('starting');
    this.config = await loadConfig(this.paths.root);
    // The tunnel keys only limit what sshd's own rules allow: refuse to hand
    // out any while that sshd would let a client forward Unix sockets, other
    // ports, or run a command (sshd-check.ts).
    const sshd = await requireSafeSshd({
      sshdConfig: this.config.sshdConfig,
      tunnelUser: this.config.tunnelUser,
      sshPort: this.config.sshPort,
    });
    this.log.info({ sshd: sshd.sshd, sshdConfig: sshd.sshdConfig, checks: sshd.checks.length }, 'tunnel sshd rules checked');
    this.identity = await loadIdentity(this.paths);
    this.registry = await Registry.open(this.paths.root);
    await writeTunnelKeys(this.paths.tunnelAuthorizedKeys, this.registry.agents());
    const jobs = new JobRunner({
      paths: this.paths,
      registry: this.registry,
      links: this.links,
      config: this.config,
      log: this.log.child({ component: 'jobs' }),
    });
    this.jobs = jobs;
    // The admin socket first: it is what says no other daemon owns this state
    // directory (E_DAEMON_RUNNING), and recovery must never touch a live daemon's jobs.
    this.admin = new AdminServer(
      adminSocketPath(this.paths.root),
      ADMIN_API,
      this.adminHandlers(jobs),
      this.log.child({ component: 'admin' }),
    );
    await this.admin.start();
    // Crash recovery, now: a job command that arrives meanwhile waits for it.
    try {
      await jobs.start();
      // Status, alerts and metrics follow the job history from here on.
      this.monitor = new Monitor({
        paths: this.paths,
        log: this.log.child({ component: 'monitor' }),
        config: () => this.config,
        registry: this.registry,
        links: this.links,
        jobs,
        // The scheduler starts after the agent server; until then there is no next run.
        nextRun: (a) => this.nextRun(a),
        maxAgeMs: (a) => maxAge(this.config.agents[a]?.schedule ?? this.config.schedule),
      });
      await this.monitor.start(await jobs.history());
    } catch (err) {
      await this.monitor?.stop();
      await jobs.stop(0, 'start failed');
      await this.admin.stop();
      throw err;
    }
    this.agentServer = new AgentServer({
      listen: this.config.listen,
      tlsCert: this.config.tlsCert,
      tlsKey: this.config.tlsKey,
      identity: this.identity,
      checkAgent: this.checkAgent,
      nameOf: (key) => {
        const rec = this.registry.byKey(encodePublicKey(key));
        if (!rec) throw new ControllerError('E_AUTH_UNKNOWN_KEY', 'unknown agent');
        return rec.name;
      },
      onLink: (link) => this.addLink(link),
      onEnrollment: (tokenId, key, software, channel, close) => void this.enroll(tokenId, key, software, channel, close),
      log: this.log,
      heartbeatMs: this.opts.heartbeatMs,
    });
    let bound;
    try {
      bound = await this.agentServer.start();
    } catch (err) {
      await this.monitor.stop();
      await jobs.stop(0, 'start failed');
      await this.admin.stop();
      throw new ControllerError('E_CONFIG_LISTEN', `cannot listen on ${this.config.listen}: ${errorMessage(err)}`, { cause: err });
    }
    // After the job runner (it owns the history the scheduler plans from); stopped first.
    this.scheduler = new Scheduler({
      store: await jobs.history(),
      agents: () =>
        this.registry
          .agents()
          .filter((a) => a.revokedAt === undefined)
          .map((a) => a.name),
      connectedAt: (name) => {
        if (this.registry.get(name)?.revokedAt !== undefined) return undefined;
        const l = this.links.get(name);
        return l?.state === 'open' ? l.connectedAt : undefined;
      },
      settleMs: () => this.config.connectDelay * 1000,
      kinds: this.scheduledKinds(jobs),
      log: this.log.child({ component: 'scheduler' }),
    });
    this.scheduler.start();
    this.transition('running');
    return bound;
  }

  /**
   * Stop taking jobs, drain them up to the grace period (`graceMs`, else the
   * stopGraceMs option, else 0), then cancel them; close connections and sockets. Idempotent.
   */
  async stop(reason: string, graceMs?: number): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.transition('stopping');
    this.scheduler?.stop();
    await this.jobs
      ?.stop(graceMs ?? this.opts.stopGraceMs ?? 0, reason)
      .catch((err: unknown) => this.log.error({ err }, 'shutdown step failed'));
    await this.agentServer?.stop(reason);
    await this.monitor?.stop();
    await this.admin?.stop();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- stop() may follow a start() that failed before the registry opened
    await this.registry?.close().catch((err: unknown) => this.log.error({ err }, 'could not write the registry'));
    this.transition('stopped');
  }

  /**
   * Re-reads config.json (SIGHUP). What the daemon itself reads as it goes
   * (the URL, tunnel endpoint and port base handed to new tokens and
   * enrollments, stopGrace) applies at once; each job reads the file when it
   * starts anyway. What was bound or checked at start (listen, TLS, the
   * tunnel sshd's config, parallel) needs a restart, and is said so; until
   * then the running values stay (pinRestartKeys), here and in every job. A bad
   * file changes nothing: the old config stays, the error is returned and logged.
   */
  async reload(): Promise<{ changed: string[]; needRestart: string[] }> {
    if (this.state !== 'running') throw new ControllerError('E_DAEMON_STARTING', `cannot reload while ${this.state}`);
    let next: ControllerConfig;
    try {
      next = await loadConfig(this.paths.root);
    } catch (err) {
      const code = err instanceof BorgpullError ? err.code : 'E_INTERNAL';
      this.log.error({ code, reason: errorMessage(err) }, 'config not reloaded: keeping the running config');
      throw err;
    }
    const old = this.config;
    const changed = (Object.keys(next) as Array<keyof ControllerConfig>).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(next[k]));
    const needRestart = changed.filter((k) => (RESTART_KEYS as readonly string[]).includes(k));
    this.config = pinRestartKeys(next, old);
    // Schedules and the connect delay are read from this.config at every plan: re-plan now.
    this.scheduler?.poke();
    if (changed.includes('history'))
      void this.jobs?.history().then(
        (h) => h.setRule(next.history),
        () => undefined,
      );
    this.monitor?.reloaded();
    this.log.info(
      { changed, needRestart },
      needRestart.length ? 'config reloaded; restart to apply the keys in needRestart' : 'config reloaded',
    );
    return { changed, needRestart };
  }

  private readonly checkAgent: AgentCheck = (agentKey, enroll) => {
    const key = encodePublicKey(agentKey);
    if (this.registry.isRevokedKey(key)) throw new ControllerError('E_AUTH_REVOKED', 'this agent was revoked');
    if (!enroll) {
      if (this.registry.byKey(key)) return;
      throw new ControllerError('E_AUTH_UNKNOWN_KEY', 'unknown agent key: enroll first with a token');
    }
    // An enrolling hello proves the token whoever sends it, enrolled or not.
    if (this.registry.byKey(key))
      throw new ControllerError('E_AUTH_TOKEN', 'this agent key is already enrolled; enroll with new keys (agent enroll --force)');
    const tok = this.registry.token(enroll.tokenId);
    if (!tok) throw new ControllerError('E_AUTH_TOKEN', 'unknown enrollment token');
    if (tok.usedAt !== undefined) throw new ControllerError('E_AUTH_TOKEN', 'enrollment token was already used');
    if (tok.expiresAt <= Date.now()) throw new ControllerError('E_AUTH_TOKEN', 'enrollment token has expired');
    if (tok.verifier === undefined) throw legacyToken();
    if (!verifyTokenProof(tok.verifier, enroll.proofInput, enroll.proof)) {
      throw new ControllerError('E_AUTH_TOKEN', 'enrollment token proof is invalid (forged token)');
    }
  };

  private async enroll(
    tokenId: string,
    agentKey: Uint8Array,
    software: string,
    channel: Channel<ControllerMessage, AgentMessage>,
    close: () => void,
  ): Promise<void> {
    const log = this.log.child({ component: 'enroll', tokenId });
    const timer = setTimeout(() => {
      log.warn({ code: 'E_PROTO_TIMEOUT' }, 'enrolling agent sent nothing, closing');
      close();
    }, 30_000);
    channel.onMessage = (msg) => {
      if (msg.type !== 'enroll') {
        log.warn({ code: 'E_PROTO_UNEXPECTED', type: msg.type }, 'unexpected message during enrollment');
        clearTimeout(timer);
        close();
        return;
      }
      clearTimeout(timer);
      void (async () => {
        try {
          const tok = this.registry.token(tokenId);
          if (!tok) throw new ControllerError('E_AUTH_TOKEN', 'unknown enrollment token');
          const sshKey = checkSshPublicKey(msg.sshKey);
          const hostKey = await readHostKey(this.config.sshHostKeyFile);
          if (channel.closed) {
            log.warn({ code: 'E_PROTO_CLOSED' }, 'enrollment session closed before it completed; nothing recorded');
            return;
          }
          const rec = await this.registry.enroll(
            tokenId,
            { name: tok.name, publicKey: encodePublicKey(agentKey), enrolledAt: Date.now(), sshKey, software: escapeControl(software) },
            this.config.tunnelPortBase,
          );
          await writeTunnelKeys(this.paths.tunnelAuthorizedKeys, this.registry.agents());
          channel.reply({
            type: 'enrolled',
            id: msg.id,
            name: rec.name,
            tunnel: { sshHost: this.config.sshHost, sshPort: this.config.sshPort, user: this.config.tunnelUser, port: rec.port, hostKey },
          });
          log.info({ agentId: rec.name, port: rec.port }, 'agent enrolled');
        } catch (err) {
          const code = err instanceof BorgpullError ? err.code : 'E_INTERNAL';
          log.warn({ code, reason: errorMessage(err) }, 'enrollment failed');
          channel.reply({ type: 'error', id: msg.id, code, message: errorMessage(err) });
        }
      })();
    };
  }

  private addLink(link: AgentLink): void {
    const old = this.links.get(link.name);
    if (old) {
      this.log.info({ agentId: link.name }, 'agent reconnected, closing its previous connection');
      old.close(1000, 'replaced by a newer connection');
    }
    this.links.set(link.name, link);
    // The agent's own words: escaped before a log, the registry or 'controller agents' shows them.
    const software = escapeControl(link.software);
    this.log.info({ agentId: link.name, address: link.address, software }, 'agent connected');
    this.registry.touch(link.name, { lastSeen: Date.now(), lastAddress: link.address, software });
    // Backup on connect: a backup it is owed starts once the connection settled (connectDelay).
    this.scheduler?.agentConnected(link.name);
    link.onClose((reason) => {
      if (this.links.get(link.name) === link) this.links.delete(link.name);
      this.log.info({ agentId: link.name, reason }, 'agent disconnected');
      this.registry.touch(link.name, { lastSeen: link.lastSeen });
      this.scheduler?.poke(link.name);
    });
  }

  /**
   * What the scheduler starts by itself: backups on `schedule` (per agent:
   * `agents.NAME.schedule`), and checks on `checks.schedule` (per agent:
   * `agents.NAME.checks.schedule`).
   */
  private scheduledKinds(jobs: JobRunner): ScheduledKind[] {
    // The scheduler never cancels a job it started; the daemon's stop does.
    const never = new AbortController().signal;
    return [
      {
        kind: 'backup',
        schedule: (agent) => this.config.agents[agent]?.schedule ?? this.config.schedule,
        run: (agent, trigger) => jobs.backupOne(agent, trigger, () => undefined, never),
      },
      checkKind({
        schedule: (agent) => (this.config.agents[agent]?.checks ?? this.config.checks).schedule,
        check: (agent, trigger) => jobs.check(agent, trigger, never),
        enrolledAt: (agent) => this.registry.get(agent)?.enrolledAt,
      }),
    ];
  }

  /** When `agent`'s next scheduled backup is due (epoch ms; now or earlier: due now), null when its schedule is off. */
  nextRun(agent: string): number | null {
    return this.scheduler?.nextRun(agent) ?? null;
  }

  agentViews(): AgentView[] {
    const own = controllerVersion();
    return this.registry.agents().map((a) => {
      const l = this.links.get(a.name);
      const version = l ? escapeControl(l.software) : (a.software ?? null);
      return {
        name: a.name,
        connected: l?.state === 'open',
        since: l ? l.connectedAt : null,
        lastSeen: l ? l.lastSeen : (a.lastSeen ?? null),
        address: l ? l.address : (a.lastAddress ?? null),
        version,
        outdated: versionStatus(version, own) === 'outdated',
        port: a.port,
        revoked: a.revokedAt !== undefined,
      };
    });
  }

  /** Every admin command (admin/api.ts), its arguments already read and checked. */
  private adminHandlers(jobs: JobRunner): Handlers<AdminApi> {
    return {
      token: async ({ name, ttlMs = TOKEN_TTL_MS }) => {
        const { token, record } = createToken({ url: this.config.url, controllerKey: this.identity.publicKey, name, ttlMs });
        await this.registry.addToken(record);
        this.log.info({ agentId: name, tokenId: record.id, expiresAt: record.expiresAt }, 'enrollment token issued');
        return { token, expiresAt: record.expiresAt };
      },
      agents: () => Promise.resolve(this.agentViews()),
      revoke: async ({ name }) => {
        const rec = await this.registry.revoke(name);
        await writeTunnelKeys(this.paths.tunnelAuthorizedKeys, this.registry.agents());
        this.links.get(name)?.close(1008, 'E_AUTH_REVOKED');
        this.scheduler?.poke(name);
        // Its key line is gone, but a tunnel it already holds stays up until ended here.
        const tunnel = await endTunnelSession(rec.port, this.config.tunnelUser, this.log.child({ component: 'revoke', agentId: name }));
        this.log.warn({ agentId: name, tunnelSessionsEnded: tunnel.ended.length }, 'agent revoked');
        return { name: rec.name, revokedAt: rec.revokedAt };
      },
      backup: (args, emit, signal) => jobs.backup(args, emit, signal),
      restore: (args, emit, signal) => jobs.restore(args, emit, signal),
      archives: async ({ name }) => {
        if (!this.registry.get(name)) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${name}' (see 'controller agents')`);
        return listArchives(this.paths, name);
      },
      jobs: async (args) => (await jobs.history()).query(args),
      prune: (args, _emit, signal) => jobs.prune(args, signal),
      verify: (args, _emit, signal) => jobs.verify(args, signal),
      status: async ({ names }) => {
        if (!this.monitor) throw new ControllerError('E_DAEMON_STARTING', 'the controller is still starting');
        return this.monitor.status(names);
      },
    };
  }
}
