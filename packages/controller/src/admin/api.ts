/**
 * Every admin command, in one place: the reader of its arguments, the type of
 * its result and of the events it sends while it runs (tRPC's router idea,
 * without tRPC). The server (server.ts) reads each request's arguments here
 * before any handler sees them; the CLI calls `AdminClient.call(name, args)`
 * and gets the declared result type back.
 *
 * The admin socket is a trust boundary like the agents' WebSocket: a request
 * is parsed with the protocol package's readers, bounded, and copied into a
 * fresh object. Unknown fields are refused, so a typo or a `__proto__` key is
 * an error, never silently ignored.
 */
import { bool, optInt, optStr, optStrList, str, LIMITS, MAX_RESTORE_PATHS, type Rec } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import { checkAgentName } from '../registry.js';
import type { ArchiveInfo } from '../jobs/borg.js';
import type { JobEvent } from '../jobs/job-event.js';
import { JOB_KINDS, JOB_STATUSES, type JobKind, type JobRecord, type JobStatus } from '../jobs/job-store.js';
import type { PruneResult } from '../jobs/prune.js';
import type { RestoreMethod, RestoreRequest } from '../jobs/restore.js';

/** One command: how to read its arguments; its result and event types ride along as types only. */
export interface CommandSpec<A, R, E> {
  readonly readArgs: (raw: Rec) => A;
  /** Never set: carries the result and event types to the server's handlers and the client. */
  readonly types?: { readonly result: R; readonly event: E };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommand = CommandSpec<any, any, any>;
export type ApiSpec = Readonly<Record<string, AnyCommand>>;

export type ArgsOf<C extends AnyCommand> = C extends CommandSpec<infer A, unknown, unknown> ? A : never;
export type ResultOf<C extends AnyCommand> = NonNullable<C['types']>['result'];
export type EventOf<C extends AnyCommand> = NonNullable<C['types']>['event'];

/** A typed handler for every command of `Api`. */
export type Handlers<Api extends ApiSpec> = {
  readonly [K in keyof Api]: (
    args: ArgsOf<Api[K]>,
    emit: (event: EventOf<Api[K]>) => void,
    signal: AbortSignal,
  ) => Promise<ResultOf<Api[K]>>;
};

/** Declares a command whose arguments `readArgs` reads; R and E are its result and event types. */
export function command<R, E = never>(): <A>(readArgs: (raw: Rec) => A) => CommandSpec<A, R, E> {
  return (readArgs) => ({ readArgs });
}

/** Refuses any field not in `known`: a request means exactly what it says (a `__proto__` key is just an unknown field). */
export function onlyFields(r: Rec, known: readonly string[], code: 'E_ADMIN_ARGS' | 'E_ADMIN_REQUEST' = 'E_ADMIN_ARGS'): void {
  for (const k of Object.keys(r)) {
    if (!known.includes(k))
      throw new ControllerError(code, `unknown ${code === 'E_ADMIN_ARGS' ? 'argument' : 'request field'} "${k.slice(0, 64)}"`);
  }
}

const NAME = { max: LIMITS.name, nonEmpty: true, line: true } as const;
/** As the agent reads them in restore.begin: a file name may hold any character but NUL. */
const PATH = { max: LIMITS.message } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Agent names in one `backup` request: more than one server serves (and than fit in a request line). */
export const MAX_BACKUP_NAMES = 4096;

const agentName = (r: Rec, field: string): string => checkAgentName(str(r, field, NAME));

// ---- results ----

/** One agent as `controller agents` shows it. */
export interface AgentView {
  name: string;
  connected: boolean;
  since: number | null;
  lastSeen: number | null;
  address: string | null;
  version: string | null;
  /** the agent's version is older than this controller's (semver; false when unknown) */
  outdated: boolean;
  port: number;
  revoked: boolean;
}

/** A backup that never started: cancelled, or the daemon stopped, while it waited for its turn in the queue. */
export interface NotStarted {
  readonly kind: 'backup';
  readonly agent: string;
  readonly status: 'failed';
  readonly code: string;
  readonly reason: string;
  readonly startedAt: number;
  readonly endedAt: number;
}

/** One line of a backup command's result: the job that ran, or why none did. */
export type BackupOutcome = JobRecord | NotStarted;

export type RestoreOutcome = JobRecord & { wouldWrite?: string[] };

/** One line of a verify command's result: the check job that ran, or why none did. */
export type CheckOutcome = JobRecord | (Omit<NotStarted, 'kind'> & { readonly kind: 'check' });

// ---- arguments ----

export interface TokenArgs {
  readonly name: string;
  readonly ttlMs?: number;
}

export interface BackupArgs {
  readonly all: boolean;
  readonly names: readonly string[];
}

/** Which jobs `controller jobs` lists: all given conditions hold, newest first (the JobStore's JobQuery). */
export interface JobsArgs {
  readonly limit: number;
  readonly agent?: string;
  readonly kind?: JobKind;
  /** Any of these outcomes. */
  readonly status?: readonly JobStatus[];
  /** Started at or after (ms since the epoch). */
  readonly since?: number;
}

/** A year 9999 bound: a time further out is a mistake, not a filter. */
const MAX_TIME_MS = 253_402_300_799_999;

function readJobs(r: Rec): JobsArgs {
  onlyFields(r, ['limit', 'agent', 'kind', 'status', 'since']);
  const agent = optStr(r, 'agent', NAME);
  const kind = optStr(r, 'kind', NAME);
  if (kind !== undefined && !(JOB_KINDS as readonly string[]).includes(kind))
    throw new ControllerError('E_ADMIN_ARGS', `kind must be one of ${JOB_KINDS.join(', ')}`);
  const status = optStrList(r, 'status', JOB_STATUSES.length, NAME);
  for (const st of status ?? []) {
    if (!(JOB_STATUSES as readonly string[]).includes(st))
      throw new ControllerError('E_ADMIN_ARGS', `status must be among ${JOB_STATUSES.join(', ')}`);
  }
  return {
    limit: optInt(r, 'limit', 1, 1_000_000) ?? 20,
    agent: agent === undefined ? undefined : checkAgentName(agent),
    kind: kind as JobKind | undefined,
    status: status as JobStatus[] | undefined,
    since: optInt(r, 'since', 0, MAX_TIME_MS),
  };
}

function readRestore(r: Rec): RestoreRequest {
  onlyFields(r, ['agent', 'archive', 'paths', 'method', 'target', 'dryRun']);
  const method = optStr(r, 'method', NAME) ?? 'stream';
  if (method !== 'stream' && method !== 'extract' && method !== 'full') {
    throw new ControllerError('E_USAGE', `--method must be stream, extract or full, got '${method}'`);
  }
  const target = optStr(r, 'target', { max: LIMITS.message, nonEmpty: true, line: true }) ?? '/';
  if (!target.startsWith('/')) throw new ControllerError('E_RESTORE_TARGET', `--target must be an absolute path, got '${target}'`);
  if (target.split('/').includes('..')) throw new ControllerError('E_RESTORE_TARGET', `--target must not contain '..'`);
  const paths = optStrList(r, 'paths', MAX_RESTORE_PATHS, PATH) ?? [];
  for (const path of paths) {
    if (path.length === 0 || path.split('/').includes('..')) throw new ControllerError('E_USAGE', `bad path '${path}'`);
  }
  const archive = optStr(r, 'archive', { max: 200, line: true }) ?? '';
  if (!/^[^/\0\n]{1,200}$/.test(archive))
    throw new ControllerError('E_USAGE', 'name the archive to restore (see controller archives NAME)');
  const dryRun = r['dryRun'] === undefined ? false : bool(r, 'dryRun');
  return {
    agent: agentName(r, 'agent'),
    archive,
    // borg stores paths without a leading slash.
    paths: paths.map((x) => x.replace(/^\/+/, '')),
    method: method satisfies RestoreMethod,
    target,
    dryRun,
  };
}

/** The admin API: every command the daemon answers on its admin socket. */
export const ADMIN_API = {
  token: command<{ token: string; expiresAt: number }>()((r): TokenArgs => {
    onlyFields(r, ['name', 'ttlMs']);
    return { name: agentName(r, 'name'), ttlMs: optInt(r, 'ttlMs', 1, 7 * DAY_MS) };
  }),
  agents: command<AgentView[]>()((r): Record<string, never> => {
    onlyFields(r, []);
    return {};
  }),
  revoke: command<{ name: string; revokedAt: number | undefined }>()((r): { name: string } => {
    onlyFields(r, ['name']);
    return { name: agentName(r, 'name') };
  }),
  backup: command<BackupOutcome[], JobEvent>()((r): BackupArgs => {
    onlyFields(r, ['all', 'names']);
    const all = r['all'] === undefined ? false : bool(r, 'all');
    const names = (optStrList(r, 'names', MAX_BACKUP_NAMES, NAME) ?? []).map(checkAgentName);
    if (all && names.length) throw new ControllerError('E_USAGE', 'give agent names or all, not both');
    return { all, names };
  }),
  restore: command<RestoreOutcome, JobEvent>()(readRestore),
  archives: command<ArchiveInfo[]>()((r): { name: string } => {
    onlyFields(r, ['name']);
    return { name: agentName(r, 'name') };
  }),
  prune: command<PruneResult>()((r): { name: string; dryRun: boolean } => {
    onlyFields(r, ['name', 'dryRun']);
    return { name: agentName(r, 'name'), dryRun: r['dryRun'] === undefined ? false : bool(r, 'dryRun') };
  }),
  verify: command<CheckOutcome[]>()((r): BackupArgs => {
    onlyFields(r, ['all', 'names']);
    const all = r['all'] === undefined ? false : bool(r, 'all');
    const names = (optStrList(r, 'names', MAX_BACKUP_NAMES, NAME) ?? []).map(checkAgentName);
    if (all && names.length) throw new ControllerError('E_USAGE', 'give agent names or all, not both');
    return { all, names };
  }),
  jobs: command<JobRecord[]>()(readJobs),
} as const satisfies ApiSpec;

export type AdminApi = typeof ADMIN_API;
export type AdminCommand = keyof AdminApi;
