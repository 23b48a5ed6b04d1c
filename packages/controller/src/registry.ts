import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, errorMessage, writeFileAtomic, type TokenRecord } from '@borgpull/protocol';
import { ControllerError } from './errors.js';

export interface AgentRecord {
  readonly name: string;
  /** 'bp-ed25519:...' */
  readonly publicKey: string;
  readonly enrolledAt: number;
  /** Stable port of this agent's reverse tunnel on the server's loopback. */
  readonly port: number;
  /** The agent's ssh public key, allowed to forward exactly `port`. */
  readonly sshKey: string;
  readonly revokedAt?: number;
  readonly lastSeen?: number;
  readonly lastAddress?: string;
  readonly software?: string;
}

export interface StoredToken extends Omit<TokenRecord, 'verifier'> {
  /** Missing in a record written before tokens had verifiers: such a token is refused (E_AUTH_TOKEN_FORMAT). */
  readonly verifier?: string;
  readonly usedAt?: number;
}

/**
 * A token record as read from registry.json: known fields only. An old
 * record's `secretHash` was the very key its proof was made with; it is
 * dropped here, so the next write takes it off the disk.
 */
function readToken(v: unknown): StoredToken | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  const { id, name, verifier, expiresAt, usedAt } = r;
  if (typeof id !== 'string' || typeof name !== 'string' || typeof expiresAt !== 'number') return undefined;
  return {
    id,
    name,
    expiresAt,
    ...(typeof verifier === 'string' ? { verifier } : {}),
    ...(typeof usedAt === 'number' ? { usedAt } : {}),
  };
}

interface RegistryFile {
  agents: Record<string, AgentRecord>;
  tokens: StoredToken[];
  /** Keys cut off for good, even if their agent's name is enrolled again. */
  revokedKeys: string[];
}

const LAZY_WRITE_MS = 5000;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function checkAgentName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new ControllerError(
      'E_CONFIG_NAME',
      `invalid agent name '${name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/**
 * The agent registry and enrollment tokens: one JSON file, written atomically,
 * one write at a time. Only the daemon writes it.
 */
export class Registry {
  private data: RegistryFile = { agents: {}, tokens: [], revokedKeys: [] };
  /** publicKey -> agent name: a handshake must not scan the whole registry. */
  private readonly keyIndex = new Map<string, string>();
  private revoked = new Set<string>();
  private dirty = false;
  private flushing: Promise<void> | undefined;
  private lazyTimer: NodeJS.Timeout | undefined;

  private constructor(private readonly path: string) {}

  static async open(stateDir: string): Promise<Registry> {
    const reg = new Registry(join(stateDir, 'registry.json'));
    try {
      const raw = JSON.parse(await readFile(reg.path, 'utf8')) as Partial<RegistryFile>;
      const tokens = Array.isArray(raw.tokens) ? raw.tokens.map(readToken).filter((t) => t !== undefined) : [];
      reg.data = { agents: raw.agents ?? {}, tokens, revokedKeys: raw.revokedKeys ?? [] };
      for (const a of Object.values(reg.data.agents)) reg.keyIndex.set(a.publicKey, a.name);
      reg.revoked = new Set(reg.data.revokedKeys);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') {
        throw new ControllerError('E_STATE_READ', `cannot read ${reg.path}: ${errorMessage(err)}`, { cause: err });
      }
    }
    return reg;
  }

  agents(): AgentRecord[] {
    return Object.values(this.data.agents).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): AgentRecord | undefined {
    return Object.hasOwn(this.data.agents, name) ? this.data.agents[name] : undefined;
  }

  byKey(publicKey: string): AgentRecord | undefined {
    const name = this.keyIndex.get(publicKey);
    return name === undefined ? undefined : this.get(name);
  }

  isRevokedKey(publicKey: string): boolean {
    return this.revoked.has(publicKey);
  }

  token(id: string): StoredToken | undefined {
    return this.data.tokens.find((t) => t.id === id);
  }

  async addToken(rec: TokenRecord): Promise<void> {
    const existing = this.get(rec.name);
    if (existing && existing.revokedAt === undefined) {
      throw new ControllerError(
        'E_CONFIG_NAME_TAKEN',
        `agent '${rec.name}' is already enrolled; revoke it first ('controller agents revoke ${rec.name}') to enroll that name again`,
      );
    }
    const now = Date.now();
    // Drop tokens that can no longer be used.
    this.data.tokens = this.data.tokens.filter((t) => t.usedAt === undefined && t.expiresAt > now);
    this.data.tokens.push(rec);
    await this.save();
  }

  /** Marks a token used and records the agent. Fails if the token was used meanwhile. */
  async enroll(tokenId: string, agent: Omit<AgentRecord, 'port'>, portBase: number): Promise<AgentRecord> {
    const tok = this.token(tokenId);
    if (!tok || tok.usedAt !== undefined) throw new ControllerError('E_AUTH_TOKEN', 'enrollment token was already used');
    if (this.byKey(agent.publicKey) || this.isRevokedKey(agent.publicKey)) {
      throw new ControllerError('E_AUTH_TOKEN', 'this agent key is already enrolled or revoked; enroll with new keys');
    }
    const previous = this.get(agent.name);
    const port = previous?.port ?? this.freePort(portBase);
    const rec: AgentRecord = { ...agent, port };
    this.data.tokens = this.data.tokens.map((t) => (t.id === tokenId ? { ...t, usedAt: Date.now() } : t));
    if (previous) this.keyIndex.delete(previous.publicKey);
    this.data.agents[agent.name] = rec;
    this.keyIndex.set(rec.publicKey, rec.name);
    await this.save();
    return rec;
  }

  async revoke(name: string): Promise<AgentRecord> {
    const rec = this.get(name);
    if (!rec) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${name}' (see 'controller agents')`);
    const revoked: AgentRecord = { ...rec, revokedAt: rec.revokedAt ?? Date.now() };
    this.data.agents[name] = revoked;
    if (!this.revoked.has(rec.publicKey)) {
      this.revoked.add(rec.publicKey);
      this.data.revokedKeys.push(rec.publicKey);
    }
    await this.save();
    return revoked;
  }

  /**
   * Updates what we know of a connection. Kept in memory and written at most
   * every few seconds: thousands of agents reconnecting at once must not each
   * rewrite the registry.
   */
  touch(name: string, seen: { lastSeen: number; lastAddress?: string; software?: string }): void {
    const rec = this.get(name);
    if (!rec) return;
    this.data.agents[name] = { ...rec, ...seen };
    this.dirty = true;
    this.lazyTimer ??= setTimeout(() => {
      this.lazyTimer = undefined;
      void this.flush().catch(() => undefined);
    }, LAZY_WRITE_MS).unref();
  }

  /** Writes anything still in memory (at shutdown). */
  async close(): Promise<void> {
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    await this.flush();
  }

  private freePort(base: number): number {
    const used = new Set(Object.values(this.data.agents).map((a) => a.port));
    let p = base;
    while (used.has(p)) p++;
    return p;
  }

  /** Durable: resolves once the registry as it is now (or newer) is on disk. */
  private save(): Promise<void> {
    this.dirty = true;
    return this.flush();
  }

  /** One write at a time, each of the latest state: changes made meanwhile coalesce into the next. */
  private async flush(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (!this.dirty) return;
    this.dirty = false;
    const write = writeFileAtomic(this.path, JSON.stringify(this.data, null, 2) + '\n', 0o600);
    this.flushing = write.finally(() => {
      this.flushing = undefined;
    });
    try {
      await write;
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }
}
