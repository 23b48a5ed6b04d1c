/**
 * Process plumbing shared by the foundation suite: spawning Node children with
 * an IPC channel, request/reply over IPC, /proc readings, settling, stats.
 */
import { spawn } from 'node:child_process';
import { readFileSync, openSync, closeSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = join(HERE, '..', '..');
export const PROBE_URL = pathToFileURL(join(HERE, 'probe.mjs')).href;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** VmRSS / VmHWM / threads of a process, in KiB. */
export function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

/** utime + stime of a process, in clock ticks (usually 10 ms). */
export function cpuTicks(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/**
 * Waits until a process stops burning CPU (<= maxTicks over windowMs) and
 * signature() (e.g. a file's mtime) stopped changing, up to maxMs. Returns ms waited.
 */
export async function waitQuiet(pid, { windowMs = 500, maxTicks = 2, maxMs = 30_000, signature = () => '' } = {}) {
  const t0 = Date.now();
  let prev = cpuTicks(pid);
  let prevSig = signature();
  for (;;) {
    await sleep(windowMs);
    const now = cpuTicks(pid);
    const sig = signature();
    if ((now - prev <= maxTicks && sig === prevSig) || Date.now() - t0 > maxMs) return Date.now() - t0;
    prev = now;
    prevSig = sig;
  }
}

/** RLIMIT_NOFILE of this process (Node raises its soft limit to the hard limit at startup). */
export function nofileLimits(pid = 'self') {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').trim().split(/\s+/).slice(3, 5);
  return { soft: soft === 'unlimited' ? Infinity : Number(soft), hard: hard === 'unlimited' ? Infinity : Number(hard) };
}

/**
 * Spawns `node [execArgv] script [args]` with an IPC channel; stdout/stderr go
 * to logFile (or are inherited for stderr when no file is given).
 */
export function spawnNode(script, args = [], { execArgv = [], env = {}, logFile, cwd = REPO } = {}) {
  let fd;
  if (logFile) fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...execArgv, script, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd ?? 'ignore', fd ?? 'inherit', 'ipc'],
  });
  if (fd !== undefined) closeSync(fd);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

/** Id-matched request/reply over a child's IPC channel. */
export class Rpc {
  #next = 1;
  #pending = new Map();
  constructor(child, name) {
    this.child = child;
    this.name = name;
    child.on('message', (m) => {
      const p = m && typeof m.rpcId === 'number' ? this.#pending.get(m.rpcId) : undefined;
      if (!p) return;
      this.#pending.delete(m.rpcId);
      clearTimeout(p.timer);
      if (m.error) p.reject(new Error(`${name}: ${m.error}`));
      else p.resolve(m);
    });
    child.once('exit', (code, signal) => {
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(`${name} exited (code ${code}, signal ${signal}) during a request`));
      }
      this.#pending.clear();
    });
  }

  call(msg, timeoutMs = 120_000) {
    const rpcId = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rpcId);
        reject(new Error(`${this.name}: '${msg.cmd ?? msg.probe}' timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(rpcId, { resolve, reject, timer });
      this.child.send({ ...msg, rpcId });
    });
  }

  /** Forced full GC in the child (probe.mjs), then its memory figures. */
  mem() {
    return this.call({ probe: 'mem' }, 60_000);
  }
}

/** In a child: exit when the bench (our IPC parent) goes away, so nothing is left behind. */
export function exitWithParent() {
  process.on('disconnect', () => process.exit(0));
}

/** Serves IPC requests in a child: handlers[cmd](msg) -> object (or Promise). Exits with the parent. */
export function serveRpc(handlers) {
  exitWithParent();
  process.on('message', (m) => {
    if (!m || typeof m.rpcId !== 'number' || typeof m.cmd !== 'string') return;
    const h = handlers[m.cmd];
    Promise.resolve()
      .then(() => {
        if (!h) throw new Error(`unknown command ${m.cmd}`);
        return h(m);
      })
      .then(
        (res) => process.send({ ...res, rpcId: m.rpcId }),
        (err) => process.send({ rpcId: m.rpcId, error: err?.stack ?? String(err) }),
      );
  });
}

/** Runs fn(i) for i in [0, count) with at most `concurrency` in flight. */
export async function pool(count, concurrency, fn) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

export function percentiles(values, ps = [50, 90, 99]) {
  const s = Float64Array.from(values).sort();
  const out = {};
  for (const p of ps) out[`p${p}`] = s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
  return out;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Polls a file until re matches a line; returns the match. */
export async function waitForLine(file, re, { timeoutMs = 20_000, child } = {}) {
  const t0 = Date.now();
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      /* not yet */
    }
    const m = re.exec(text);
    if (m) return m;
    if (child && child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before logging ${re}; see ${file}`);
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${re} in ${file}`);
    await sleep(50);
  }
}

/** SIGKILL a child we started and wait for it. */
export async function kill(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  // Seen three times: the suite waited here for ever with no child process left. Never wait more
  // than 10 s for the 'exit' of a process sent SIGKILL; say so when it happens.
  const late = await Promise.race([child.exited.then(() => false), new Promise((r) => setTimeout(() => r(true), 10_000).unref())]);
  if (late) process.stderr.write(`[bench] pid ${child.pid} got SIGKILL but no 'exit' event came within 10 s; going on\n`);
}
