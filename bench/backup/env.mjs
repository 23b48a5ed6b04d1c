/**
 * The environment shared by the backup and restore suites: a backup server
 * (network namespace, real `controller serve`, its tunnel sshd) and one client
 * host (network + mount namespaces, own sshd, a real enrolled agent), built by
 * the e2e fixture in test/dist, plus a generated tree under the client's root.
 *
 * When `run.mjs backup restore` runs both suites, the backup suite hands its
 * environment (and the archive its borgpull run made) to the restore suite;
 * otherwise each suite builds and tears down its own. Teardown kills every
 * process and namespace (cleanupAll), deletes the generated data and the test
 * dirs, and checks that nothing of ours is left; it also runs on SIGINT/SIGTERM
 * and, as a last resort, synchronously at process exit.
 */
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cleanupAll, findLeftovers, generateSshKey, publicKeyOnly, requireTools, waitFor } from '../../test/dist/harness/index.js';
import { startClient, startController } from '../../test/dist/e2e/fixture.js';

export const MIB = 2 ** 20;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const intEnv = (k, d) => (process.env[k] ? Number(process.env[k]) : d);

/** Tree knobs (environment); defaults are the issue's sizes. */
export const TREE_CFG = {
  totalMiB: intEnv('BENCH_TREE_MB', 1024),
  smallFiles: intEnv('BENCH_SMALL_FILES', 20_000),
  smallMaxBytes: intEnv('BENCH_SMALL_MAX_BYTES', 6144),
  bigFiles: intEnv('BENCH_BIG_FILES', 4),
  textShare: process.env.BENCH_TEXT_SHARE ? Number(process.env.BENCH_TEXT_SHARE) : 0.25,
  symlinks: intEnv('BENCH_SYMLINKS', 400),
};

export const AGENT_NAME = 'benchpc';
const TUNNEL_ALIAS = 'borgpull-server';
const CLIENT_ALIAS = 'bench-client';

// ------------------------------------------------------------ small helpers

/** Runs a command (no shell), resolves {code, signal, stdout, stderr, ms}. */
export function run(file, args, { env, cwd, timeoutMs = 3_600_000, stdout = 'pipe' } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(file, args, { env: env ? { ...process.env, ...env } : process.env, cwd, stdio: ['ignore', stdout, 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (s) => (out = (out + s).slice(-1_000_000)));
    child.stderr.setEncoding('utf8').on('data', (s) => (err = (err + s).slice(-200_000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err, ms: performance.now() - t0 });
    });
  });
}

export async function syncDisks() {
  await run('sync', []);
}

/** Machine-wide CPU jiffies (busy, total) from /proc/stat. */
export function cpuSnapshot() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Sectors read and written on whole block devices (virtio, scsi, nvme), from /proc/diskstats. */
export function diskSnapshot() {
  let rd = 0;
  let wr = 0;
  for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (!/^(vd[a-z]+|sd[a-z]+|xvd[a-z]+|nvme\d+n\d+)$/.test(f[2] ?? '')) continue;
    rd += Number(f[5]);
    wr += Number(f[9]);
  }
  return { rd, wr };
}

/** Times fn(); returns {result, s, cpuBusy (0..1 of all cores), load1, diskReadMB, diskWriteMB}. */
export async function timed(fn) {
  const load1 = loadavg()[0];
  const c0 = cpuSnapshot();
  const d0 = diskSnapshot();
  const t0 = performance.now();
  const result = await fn();
  const s = (performance.now() - t0) / 1000;
  const c1 = cpuSnapshot();
  const d1 = diskSnapshot();
  return {
    result,
    s,
    cpuBusy: (c1.busy - c0.busy) / Math.max(1, c1.total - c0.total),
    load1,
    diskReadMB: ((d1.rd - d0.rd) * 512) / 1e6,
    diskWriteMB: ((d1.wr - d0.wr) * 512) / 1e6,
  };
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function procKiB(pid, key) {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function exeOf(pid) {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return '';
  }
}

function childrenOf(pid) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** The node process behind a harness subprocess (its pid may be an nsenter wrapper). */
export function nodePid(pid) {
  const seen = [pid];
  while (seen.length) {
    const p = seen.shift();
    if (/\/node$/.test(exeOf(p)) || /^node/.test(exeOf(p).split('/').pop())) return p;
    seen.push(...childrenOf(p));
  }
  throw new Error(`no node process at or below pid ${pid}`);
}

/**
 * Polls VmRSS of the given pids every intervalMs; stop() returns per name
 * {peakKiB, startKiB, endKiB, hwmKiB, samples:[[ms, KiB]]}. A process past
 * guardMiB is SIGKILLed (a runaway must not take the machine down).
 */
export function rssSampler(pids, { intervalMs = 100, guardMiB = 2048 } = {}) {
  const t0 = performance.now();
  const st = {};
  for (const [name, pid] of Object.entries(pids))
    st[name] = { pid, startKiB: procKiB(pid, 'VmRSS'), peakKiB: 0, samples: [], killed: false };
  const tick = () => {
    const ms = Math.round(performance.now() - t0);
    for (const s of Object.values(st)) {
      const kib = procKiB(s.pid, 'VmRSS');
      if (!Number.isFinite(kib)) continue;
      s.samples.push([ms, kib]);
      s.peakKiB = Math.max(s.peakKiB, kib);
      if (kib > guardMiB * 1024 && !s.killed) {
        s.killed = true;
        try {
          process.kill(s.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      for (const s of Object.values(st)) {
        s.endKiB = procKiB(s.pid, 'VmRSS');
        s.hwmKiB = procKiB(s.pid, 'VmHWM');
        const n = s.samples.length;
        const q = Math.max(1, Math.floor(n / 4));
        s.peakFirstQuarterKiB = Math.max(...s.samples.slice(0, q).map((x) => x[1]));
        s.peakLastQuarterKiB = Math.max(...s.samples.slice(n - q).map((x) => x[1]));
      }
      return st;
    },
  };
}

// ------------------------------------------------------------ the tree

/** xorshift32: fast, deterministic per file. */
function prng(seed) {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function vocabulary(n) {
  const r = prng(12345);
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words = [];
  for (let i = 0; i < n; i++) {
    const len = 2 + (r() % 9);
    let w = '';
    for (let j = 0; j < len; j++) w += letters[Math.min(25, Math.floor(((r() % 1000) / 1000) ** 2 * 26))];
    words.push(Buffer.from(w));
  }
  return words;
}

/** Unique, compressible text (words drawn from a small vocabulary, lines of ~70 chars). */
function textBuffer(size, seed, words) {
  const r = prng(seed);
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  let col = 0;
  while (o < size) {
    const w = words[r() % words.length];
    const n = Math.min(w.length, size - o);
    w.copy(buf, o, 0, n);
    o += n;
    col += n;
    if (o < size) {
      buf[o++] = col > 70 ? 10 : 32;
      if (col > 70) col = 0;
    }
  }
  return buf;
}

/**
 * Writes the benchmark tree under root/data: a few large random files,
 * compressible text files, many small files (mixed text/random, several
 * owners and modes) and symlinks (absolute, relative, with .., dangling, to
 * directories). The newest file is written last after a pause, so borg's
 * files cache (which skips entries as new as the newest one) keeps all others.
 */
export function generateTree(root, cfg = TREE_CFG, log = () => undefined) {
  const t0 = performance.now();
  const data = join(root, 'data');
  const total = cfg.totalMiB * MIB;
  const small = { count: cfg.smallFiles, bytes: 0 };
  const owners = [
    [0, 0],
    [1000, 1000],
    [1001, 1001],
    [1002, 1002],
  ];
  const modes = [0o644, 0o640, 0o600, 0o755];
  const mk = (p) => mkdirSync(p, { recursive: true, mode: 0o755 });
  const words = vocabulary(3000);

  // small files first (their size is random), then text, then the big files fill up to the total
  const rs = prng(777);
  const dirsPer = 100;
  for (let i = 0; i < cfg.smallFiles; i++) {
    const dir = join(data, 'small', `g${Math.floor(i / (dirsPer * 20))}`, `d${Math.floor(i / dirsPer) % 20}`);
    if (i % dirsPer === 0) mk(dir);
    const size = rs() % (cfg.smallMaxBytes + 1);
    const p = join(dir, `f${String(i).padStart(6, '0')}${i % 2 ? '.txt' : '.bin'}`);
    writeFileSync(p, i % 2 ? textBuffer(size, i + 1, words) : randomBytes(size));
    const [u, g] = owners[i % owners.length];
    chownSync(p, u, g);
    chmodSync(p, modes[(i >> 2) % modes.length]);
    small.bytes += size;
  }
  const textBytes = Math.max(0, Math.floor((total - small.bytes) * cfg.textShare));
  const text = { count: 0, bytes: 0 };
  mk(join(data, 'text'));
  while (text.bytes < textBytes) {
    const size = Math.min(textBytes - text.bytes, (256 << 10) + (rs() % (4 << 20)));
    const p = join(data, 'text', `doc${String(text.count).padStart(4, '0')}.txt`);
    writeFileSync(p, textBuffer(size, 100_000 + text.count, words));
    const [u, g] = owners[text.count % owners.length];
    chownSync(p, u, g);
    text.count++;
    text.bytes += size;
  }
  const bigBytes = Math.max(0, total - small.bytes - text.bytes);
  const big = { count: cfg.bigFiles, bytes: 0 };
  mk(join(data, 'big'));
  const chunk = 4 * MIB;
  for (let i = 0; i < cfg.bigFiles; i++) {
    const size = Math.floor(bigBytes / cfg.bigFiles);
    const p = join(data, 'big', `blob${i}.bin`);
    const fd = openSync(p, 'w', 0o640);
    try {
      for (let o = 0; o < size; o += chunk) writeSync(fd, randomBytes(Math.min(chunk, size - o)));
    } finally {
      closeSync(fd);
    }
    chownSync(p, 1000 + (i % 3), 1000 + (i % 3));
    big.bytes += size;
  }
  const links = { count: 0 };
  mk(join(data, 'links'));
  const kinds = [
    (i) => `/etc/hostname`,
    (i) => `../small/g0/d0/f${String(i % 100).padStart(6, '0')}${i % 2 ? '.txt' : '.bin'}`,
    (i) => `../text`,
    (i) => `target-${i}-does-not-exist`,
    (i) => `/data/big/blob0.bin`,
    (i) => `../../data/links/l${i + 1}`,
  ];
  for (let i = 0; i < cfg.symlinks; i++) {
    symlinkSync(kinds[i % kinds.length](i), join(data, 'links', `l${i}`));
    links.count++;
  }
  const genS = (performance.now() - t0) / 1000;
  // Everything above is now older than the newest file (see the doc comment).
  const until = Date.now() + 1100;
  while (Date.now() < until) {
    /* a busy wait of ~1 s keeps this function synchronous */
  }
  writeFileSync(join(data, 'zz-newest'), 'newest\n');
  const out = { small, text, big, links, totalBytes: small.bytes + text.bytes + big.bytes + 7, generateS: genS };
  log(
    `tree: ${(out.totalBytes / MIB).toFixed(0)} MiB = ${big.count} random files ${(big.bytes / MIB).toFixed(0)} MiB, ${text.count} text files ${(text.bytes / MIB).toFixed(0)} MiB, ` +
      `${small.count} small files ${(small.bytes / MIB).toFixed(1)} MiB, ${links.count} symlinks; written in ${genS.toFixed(1)} s`,
  );
  return out;
}

/**
 * Reads every file under dir once (into one reused buffer), so that a timed run
 * finds it in the page cache. This VM reclaims cold page cache within tens of
 * seconds, so without it each run reads the repository from disk at whatever
 * rate the virtual disk gives at that moment. Returns MB read.
 */
export function warmPageCache(dir) {
  const buf = Buffer.allocUnsafe(4 * MIB);
  let bytes = 0;
  const walk = (p) => {
    for (const name of readdirSync(p)) {
      const q = join(p, name);
      const st = lstatSync(q);
      if (st.isDirectory()) walk(q);
      else if (st.isFile()) {
        const fd = openSync(q, 'r');
        try {
          let n;
          while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) bytes += n;
        } finally {
          closeSync(fd);
        }
      }
    }
  };
  walk(dir);
  return bytes / 1e6;
}

/** Entry count, file bytes and symlink count under dir (lstat walk). */
export function treeSummary(dir) {
  const s = { files: 0, dirs: 0, links: 0, bytes: 0 };
  const walk = (p) => {
    for (const name of readdirSync(p)) {
      const q = join(p, name);
      const st = lstatSync(q);
      if (st.isSymbolicLink()) s.links++;
      else if (st.isDirectory()) {
        s.dirs++;
        walk(q);
      } else {
        s.files++;
        s.bytes += st.size;
      }
    }
  };
  walk(dir);
  return s;
}

// ------------------------------------------------------------ the environment

let shared; // the live environment, if any
let hooks; // signal/exit hooks while an environment lives

function installHooks(env) {
  const onSignal = (sig) => {
    process.stderr.write(`\n[bench] ${sig}: cleaning up the benchmark hosts ...\n`);
    env
      .teardown()
      .catch((e) => process.stderr.write(`[bench] cleanup: ${e?.message ?? e}\n`))
      .finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  // Last resort (the harness kills its processes and namespaces at exit): remove the data.
  const onExit = () => {
    for (const d of env.dataDirs) {
      try {
        if (existsSync(d)) rmSync(d, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
  hooks = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  };
}

/**
 * Builds the environment: free-space check, controller, client (system:false),
 * tree, a test key for the hand-run baselines, the pinned host keys.
 */
export async function createEnv(ctx) {
  requireTools();
  const log = ctx.log;
  const cfg = { ...TREE_CFG };
  // Free space where the data goes (/run): the tree, three repos of it, one restore at a time, margin.
  const fs = statfsSync('/run');
  const freeMiB = (fs.bavail * fs.bsize) / MIB;
  const needMiB = cfg.totalMiB * 5.5 + 512;
  const notes = [];
  if (freeMiB < needMiB) {
    const fit = Math.floor((freeMiB - 512) / 5.5);
    if (fit < 64) throw new Error(`/run has only ${freeMiB.toFixed(0)} MiB free: not enough for a benchmark tree`);
    notes.push(
      `/run had ${freeMiB.toFixed(0)} MiB free, less than the ${needMiB.toFixed(0)} MiB a ${cfg.totalMiB} MiB tree needs: tree shrunk to ${fit} MiB.`,
    );
    log(notes.at(-1));
    cfg.totalMiB = fit;
  }
  const env = {
    cfg,
    notes,
    freeMiB,
    dataDirs: [],
    ctl: undefined,
    client: undefined,
    tree: undefined,
    archiveB: undefined,
    torn: false,
    async teardown(logNow = log) {
      if (this.torn) return;
      this.torn = true;
      if (shared === this) shared = undefined;
      const problems = [];
      try {
        await cleanupAll();
      } catch (e) {
        problems.push(e?.message ?? String(e));
      }
      for (const d of this.dataDirs) {
        if (existsSync(d)) {
          try {
            rmSync(d, { recursive: true, force: true });
          } catch (e) {
            problems.push(`cannot delete ${d}: ${e?.message ?? e}`);
          }
        }
      }
      hooks?.();
      hooks = undefined;
      // Ours only: other users of the machine may have harness hosts and sshfs mounts of their own.
      const myDirs = [this.ctl?.server?.dir, this.client?.host?.dir].filter(Boolean);
      const myNetns = [this.ctl?.server?.netns, this.client?.host?.netns].filter(Boolean);
      const left = findLeftovers();
      const isOurs = (l) => {
        if (l.startsWith('directory:')) return true; // the harness lists only dirs this process created
        if (l.startsWith('process ')) {
          // flagged for naming a harness dir (anyone's) or for living in a namespace this process created
          const named = l.match(/\/run\/bpt-[sc]-[0-9a-f]+/g) ?? [];
          return named.length === 0 || named.some((d) => myDirs.includes(d));
        }
        if (l.startsWith('network namespace:')) return myNetns.some((n) => l.endsWith(` ${n}`));
        return myDirs.some((d) => l.includes(`${d}/`) || l.includes(`${d} `)) || myNetns.some((n) => l.includes(`/run/netns/${n} `));
      };
      const ours = left.filter(isOurs);
      const others = left.filter((l) => !isOurs(l));
      if (others.length)
        logNow(`not ours, left alone: ${others.length} leftover(s) of other harness users (${others.slice(0, 3).join('; ')})`);
      if (ours.length) problems.push(`left behind:\n  ${ours.join('\n  ')}`);
      if (problems.length) throw new Error(`teardown: ${problems.join('\n')}`);
      logNow('torn down: hosts, namespaces, mounts and data removed');
    },
  };
  installHooks(env);
  try {
    log('starting the backup server (netns, controller, tunnel sshd) ...');
    env.ctl = await startController();
    log(`starting client '${AGENT_NAME}' (netns + mount ns, own sshd for the baselines only, enrolled agent; system:false) ...`);
    // borgpull needs no sshd on the client; the hand recipe and today's-path baseline do.
    env.client = await startClient(env.ctl, AGENT_NAME, { system: false, sshd: true });
    const host = env.client.host;
    env.dataDirs.push(join(host.root, 'data'));
    log(`generating a ${cfg.totalMiB} MiB tree under ${host.root}/data ...`);
    env.tree = generateTree(host.root, cfg, log);
    await syncDisks();

    // Pids of the real node processes (ctl.proc / agent may be nsenter wrappers).
    env.ctlPid = nodePid(env.ctl.proc.pid);
    env.agentPid = nodePid(env.client.agent.pid);
    // Keep the controller's log (pino, stdout) for diagnostics.
    env.ctlLog = [];
    env.ctl.proc.stdout?.on('data', (b) => {
      for (const line of String(b).split('\n')) if (line.trim()) env.ctlLog.push(line.length > 2000 ? line.slice(0, 2000) : line);
      if (env.ctlLog.length > 5000) env.ctlLog.splice(0, env.ctlLog.length - 5000);
    });

    // Tunnel settings the agent was enrolled with, and the agent's ssh key (same key, port, options as its own tunnel).
    const agentState = join(host.dir, 'agent-state');
    const enrollment = JSON.parse(readFileSync(join(agentState, 'enrollment.json'), 'utf8'));
    env.tunnel = {
      ...enrollment.tunnel,
      sshdPort: 22,
      key: join(agentState, 'id_ed25519'),
      knownHosts: join(host.dir, 'bench-tunnel-known_hosts'),
    };
    writeFileSync(env.tunnel.knownHosts, `${TUNNEL_ALIAS} ${enrollment.tunnel.hostKey}\n`, { mode: 0o600 });

    if (process.env.BENCH_TUNNEL_NODELAY === '1') await nodelayTunnelSshd(env, log);

    // A test key for the hand-run baselines: a plain root key line (no command=), from the tunnel only.
    const srv = env.ctl.server;
    env.testKey = join(srv.dir, 'bench_root_key');
    const pub = await generateSshKey(env.testKey, 'bench-baseline');
    appendFileSync(host.authorizedKeysFile, `from="127.0.0.1,::1" ${publicKeyOnly(pub)} bench-baseline\n`);
    env.clientKnownHosts = join(srv.dir, 'bench_client_known_hosts');
    writeFileSync(env.clientKnownHosts, `${CLIENT_ALIAS} ${host.sshdHostKeyPublic}\n`, { mode: 0o600 });
    env.sshBase = [
      '-F',
      '/dev/null',
      '-i',
      env.testKey,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${env.clientKnownHosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      `HostKeyAlias=${CLIENT_ALIAS}`,
      '-p',
      String(env.tunnel.port),
    ];
    // Repo passphrase for the hand-run repos (the same for all of them).
    env.passphrase = randomBytes(24).toString('base64url');
    shared = env;
    return env;
  } catch (err) {
    await env.teardown().catch((e) => log(`teardown after a failed setup: ${e?.message ?? e}`));
    throw err;
  }
}

/** The live environment left by the backup suite, if any. */
export function sharedEnv() {
  return shared && !shared.torn ? shared : undefined;
}

/** Whether a later suite in this process wants the environment (run.mjs runs suites in argv order). */
export function restoreRunsLater() {
  if (process.env.BENCH_SHARE_ENV === '0') return false;
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  if (wanted.length === 0) return true;
  const b = wanted.indexOf('backup');
  const r = wanted.indexOf('restore');
  return r >= 0 && (b < 0 || r > b);
}

// ------------------------------------------------------------ tunnel and borg helpers

/**
 * Opens a reverse tunnel from inside the client exactly like the agent's own
 * (its key, its permitted port, the same ssh options), so hand-run baselines
 * reach the client the way borgpull does. Only while no job runs (the port is
 * the agent's). `target`: where it forwards to (default the client's sshd;
 * the direct path gives a Unix socket). `nodelay`: like the agent, a control
 * master and one (refused) session over it, which makes sshd turn Nagle off
 * for the connection (facts.md). Returns close().
 */
export async function openTunnel(env, { target, nodelay = false } = {}) {
  const t = env.tunnel;
  const srv = env.ctl.server;
  if (srv.isListening(t.port)) throw new Error(`port ${t.port} is already forwarded (a job running?)`);
  const ctlPath = join(env.client.host.dir, `bench-tunnel-${process.pid}.ctl`);
  rmSync(ctlPath, { force: true });
  const sub = env.client.host.spawn(
    [
      'ssh',
      '-N',
      '-F',
      '/dev/null',
      ...(nodelay ? ['-M', '-S', ctlPath] : []),
      '-R',
      `127.0.0.1:${t.port}:${target ?? `127.0.0.1:${t.sshdPort}`}`,
      '-p',
      String(t.sshPort),
      '-i',
      t.key,
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
      `UserKnownHostsFile=${t.knownHosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      `HostKeyAlias=${TUNNEL_ALIAS}`,
      '-o',
      'ConnectTimeout=15',
      `${t.user}@${t.sshHost}`,
    ],
    { stdin: 'ignore' },
  );
  await waitFor('bench reverse tunnel', () => srv.isListening(t.port), {
    timeoutMs: 20_000,
    intervalMs: 50,
    abortIf: () =>
      sub.exitCode === undefined || sub.exitCode === null ? undefined : `ssh -R exited ${sub.exitCode}: ${String(sub.stderr ?? '')}`,
  });
  if (nodelay) {
    await env.client.host.exec(
      ['ssh', '-S', ctlPath, '-T', '-F', '/dev/null', '-o', 'BatchMode=yes', '-p', String(t.sshPort), `${t.user}@${t.sshHost}`],
      { reject: false, timeout: 10_000, stdin: 'ignore' },
    );
  }
  return async () => {
    sub.kill('SIGTERM');
    await sub;
    rmSync(ctlPath, { force: true });
    await waitFor('bench tunnel closed', () => !srv.isListening(t.port), { timeoutMs: 10_000, intervalMs: 50 });
  };
}

/**
 * The direct path by hand, for probes: the agent's own SFTP gate (built
 * packages/agent) on a Unix socket in the client's harness dir, with a secret
 * of ours, and a tunnel to it like the agent's. Returns {secretFile, close()}.
 */
export async function openDirectPath(env) {
  const { SftpGate, findSftpServer } = await import('../../packages/agent/dist/sftp-gate.js');
  const { pino } = await import('pino');
  const host = env.client.host;
  const dir = join(host.dir, 'bench-sftp');
  const secret = randomBytes(32);
  const secretFile = join(env.ctl.server.dir, 'bench-sftp.secret');
  writeFileSync(secretFile, secret, { mode: 0o600 });
  const gate = new SftpGate({
    socketPath: join(dir, 'sftp.sock'),
    secret,
    root: host.root,
    sftpServer: await findSftpServer(),
    log: pino({ level: 'silent' }),
  });
  await gate.start();
  let closeTunnel;
  try {
    closeTunnel = await openTunnel(env, { target: join(dir, 'sftp.sock'), nodelay: true });
  } catch (e) {
    await gate.stop();
    throw e;
  }
  return {
    secretFile,
    async close() {
      await closeTunnel();
      await gate.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(secretFile, { force: true });
    },
  };
}

/** The connector the controller's job script runs (built packages/controller), for hand-run direct-path mounts. */
export async function connectorSource() {
  const { CONNECT_PY } = await import('../../packages/controller/dist/jobs/job-script/script.js');
  return CONNECT_PY;
}

/** Environment for a hand-run borg on the server. */
export function borgEnv(env, base, extra = {}) {
  return {
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    BORG_PASSPHRASE: env.passphrase,
    BORG_BASE_DIR: base,
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
    ...extra,
  };
}

/** borg info --json of one archive, through the controller's own passphrase file for borgpull's repo. */
export async function archiveInfo(env, which, repo, archive, base) {
  const ctl = env.ctl;
  let r;
  if (which === 'borgpull') {
    r = await run(
      'sh',
      ['-c', 'exec borg info --json "$1::$2" 3<"$3"', 'sh', repo, archive, join(ctl.state, 'secrets', `${AGENT_NAME}.passphrase`)],
      {
        env: {
          LANG: 'C.UTF-8',
          LC_ALL: 'C.UTF-8',
          BORG_PASSPHRASE_FD: '3',
          BORG_BASE_DIR: join(ctl.state, 'borg', AGENT_NAME),
          BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
        },
      },
    );
  } else {
    r = await run('borg', ['info', '--json', `${repo}::${archive}`], { env: borgEnv(env, base) });
  }
  if (r.code !== 0) throw new Error(`borg info ${repo}::${archive} failed: ${r.stderr}`);
  const a = JSON.parse(r.stdout).archives[0];
  return { nfiles: a.stats.nfiles, originalSize: a.stats.original_size, compressedSize: a.stats.compressed_size, durationS: a.duration };
}

// ------------------------------------------------------------ diagnostics

const NODELAY_SHIM = String.raw`
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
static void nd(int fd) {
  int type = 0; socklen_t l = sizeof type;
  struct sockaddr_storage ss; socklen_t sl = sizeof ss;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 || type != SOCK_STREAM) return;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) return;
  int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
int accept(int fd, struct sockaddr *a, socklen_t *l) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = dlsym(RTLD_NEXT, "accept");
  int r = real(fd, a, l); if (r >= 0) nd(r); return r;
}
int accept4(int fd, struct sockaddr *a, socklen_t *l, int f) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = dlsym(RTLD_NEXT, "accept4");
  int r = real(fd, a, l, f); if (r >= 0) nd(r); return r;
}
`;

/**
 * DIAGNOSTIC (BENCH_TUNNEL_NODELAY=1), not the product as shipped: a second
 * tunnel sshd (same config, host key and authorized_keys, port 2223) whose
 * accepted sockets get TCP_NODELAY through an LD_PRELOAD shim, and the
 * controller's config pointed at it (sshPort is read at every job), so the
 * agent's tunnel and the hand-run baselines both use it. sshd sets
 * TCP_NODELAY on a connection only when it starts a session; a forward-only
 * `ssh -N -R` connection keeps Nagle on the server side.
 */
async function nodelayTunnelSshd(env, log) {
  const srv = env.ctl.server;
  const dir = join(srv.dir, 'nodelay');
  mkdirSync(dir, { mode: 0o755 });
  writeFileSync(join(dir, 'nodelay.c'), NODELAY_SHIM);
  const cc = await run('gcc', ['-O2', '-shared', '-fPIC', '-o', join(dir, 'nodelay.so'), join(dir, 'nodelay.c'), '-ldl']);
  if (cc.code !== 0) throw new Error(`BENCH_TUNNEL_NODELAY=1 needs gcc: ${cc.stderr}`);
  const orig = join(srv.dir, `tunnel-sshd-${env.tunnel.sshPort}`);
  const port = env.tunnel.sshPort + 1;
  const cfg = readFileSync(join(orig, 'sshd_config'), 'utf8').replace(
    `ListenAddress 0.0.0.0:${env.tunnel.sshPort}`,
    `ListenAddress 0.0.0.0:${port}`,
  );
  if (!cfg.includes(`:${port}`)) throw new Error('cannot derive the nodelay sshd config');
  writeFileSync(join(dir, 'sshd_config'), cfg, { mode: 0o644 });
  srv.spawn(
    [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && exec /usr/sbin/sshd -D -e -f "$3"',
      'sh',
      join(orig, 'passwd'),
      join(orig, 'group'),
      join(dir, 'sshd_config'),
    ],
    { env: { LD_PRELOAD: join(dir, 'nodelay.so') }, stdin: 'ignore' },
  );
  await srv.waitForPort(port);
  env.ctl.configure({ sshPort: port });
  env.tunnel.sshPort = port;
  env.diagnostic = `DIAGNOSTIC RUN (BENCH_TUNNEL_NODELAY=1): the agent's tunnel and the baselines' tunnels go to a second tunnel sshd (port ${port}, same config and keys) whose accepted sockets get TCP_NODELAY via LD_PRELOAD. Not the product as shipped.`;
  env.notes.push(env.diagnostic);
  log(env.diagnostic);
}

/**
 * Link probe, each through a fresh sshfs mount: a sequential read of the
 * first `mib` MiB of a large file (dd bs=1M), then every small file under
 * data/small (tar | cat: open, read, close per file: round trips),
 * (1) on the server through the client's reverse tunnel and its sshd (today's
 * shape, tunnel with TCP_NODELAY like the agent's), (2) on the server through
 * the tunnel straight to the agent's SFTP gate and sftp-server (the direct
 * path as shipped: the job's connector + sshfs -o passive), (2') the same
 * with a connector that leaves Nagle on (an alternative measured and
 * dropped), (3) inside the client against its own sshd (no tunnel).
 * Returns MB/s and small files/s for each.
 */
export async function linkProbe(env, relPath, mib = 64) {
  const srv = env.ctl.server;
  const host = env.client.host;
  const timing =
    's=$(date +%s%N); dd if="$M/$F" of=/dev/null bs=1M count="$C" status=none; e=$(date +%s%N); ' +
    's2=$(date +%s%N); tar -C "$M" -cf - data/small | cat >/dev/null; e2=$(date +%s%N); cd /; fusermount3 -u "$M"; ';
  const script =
    'set -e; M="$1"; F="$2"; C="$3"; shift 3; mkdir -p "$M"; sshfs "$@" "root@127.0.0.1:/" "$M"; ' +
    timing +
    'echo $((e - s)) $((e2 - s2))';
  const direct =
    'set -e; M="$1"; F="$2"; C="$3"; PORT="$4"; SECRET="$5"; CONNECT="$6"; mkdir -p "$M"; ' +
    // -f: a daemonizing sshfs points its stdin and stdout at /dev/null, which in passive mode are the connection.
    'python3 -I -S -c "$CONNECT" "$PORT" "$SECRET" sshfs -f -o passive,ro,no_contain_symlinks,max_read=1048576 borgpull: "$M" & ' +
    'i=0; until mountpoint -q "$M"; do i=$((i + 1)); [ "$i" -lt 300 ] || exit 71; sleep 0.1; done; ' +
    timing +
    'wait; echo $((e - s)) $((e2 - s2))';
  const opts = (port) => [
    '-o',
    'no_contain_symlinks',
    '-o',
    `IdentityFile=${env.testKey},IdentitiesOnly=yes,UserKnownHostsFile=${env.clientKnownHosts},GlobalKnownHostsFile=/dev/null,HostKeyAlias=${CLIENT_ALIAS},StrictHostKeyChecking=yes,BatchMode=yes,Port=${port}`,
    '-F',
    '/dev/null',
  ];
  const small = env.tree.small.count;
  const rates = (r, what) => {
    if (r.exitCode !== 0) throw new Error(`link probe ${what}: ${r.stderr}`);
    const [a, b] = r.stdout.trim().split('\n').pop().split(' ').map(Number);
    return { mbps: (mib * MIB) / 1e6 / (a / 1e9), filesPerS: small / (b / 1e9) };
  };
  const ns = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c'];
  const close = await openTunnel(env, { nodelay: true });
  let tunnel;
  try {
    const r = await srv.exec([...ns, script, 'probe', join(srv.dir, 'probe-mnt'), relPath, String(mib), ...opts(env.tunnel.port)], {
      reject: false,
      timeout: 600_000,
    });
    tunnel = rates(r, 'through the tunnel');
  } finally {
    await close();
  }
  const connector = await connectorSource();
  const viaGate = async (source, what) => {
    const d = await openDirectPath(env);
    try {
      const r = await srv.exec(
        [...ns, direct, 'probe', join(srv.dir, 'probe-mnt'), relPath, String(mib), String(env.tunnel.port), d.secretFile, source],
        { reject: false, timeout: 600_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
      );
      return rates(r, what);
    } finally {
      await d.close();
    }
  };
  const directPath = await viaGate(connector, 'direct path through the tunnel');
  const nagle = connector.replace('s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n', '');
  if (nagle === connector) throw new Error('cannot derive the Nagle variant of the connector');
  const directNagle = await viaGate(nagle, 'direct path, Nagle on');
  const inside = rates(
    await host.exec([...ns, script, 'probe', join(host.dir, 'probe-mnt'), relPath, String(mib), ...opts(22)], {
      reject: false,
      timeout: 600_000,
    }),
    'inside the client',
  );
  return {
    mib,
    smallFiles: small,
    tunnelMBps: tunnel.mbps,
    directPathMBps: directPath.mbps,
    directNagleMBps: directNagle.mbps,
    directMBps: inside.mbps,
    tunnelFilesPerS: tunnel.filesPerS,
    directPathFilesPerS: directPath.filesPerS,
    directNagleFilesPerS: directNagle.filesPerS,
    insideFilesPerS: inside.filesPerS,
  };
}
