/**
 * Foundation suite: the controller and the sealed protocol, before any borg.
 *
 *  1. controller memory per idle agent (real `controller serve` process,
 *     N real agent sessions held by sim-agents.mjs) vs a plain ws server
 *     holding N plain connections;
 *  2. handshakes per second against the real controller (connect, full
 *     handshake, confirmation, close; pipelined), vs plain ws connection
 *     cycles and vs the handshake crypto alone, in-process;
 *  3. sealed data throughput (Channel/Session, 1 MiB frames) vs raw ws, both
 *     directions, between two processes.
 *
 * Every ratio is against a baseline measured in the same run. Everything is
 * on loopback; all processes share the machine's cores.
 *
 * A controller that runs away is stopped, not waited for: each connect storm
 * has a deadline (BENCH_STEP_DEADLINE_S), and the bench SIGKILLs a controller
 * whose RSS passes BENCH_RSS_GUARD_MIB; the row then says what happened.
 *
 * Knobs (environment): BENCH_AGENTS=1000,5000  BENCH_CONNECT_CONCURRENCY=32
 *   BENCH_HANDSHAKES=2000  BENCH_HS_CONCURRENCY=32  BENCH_HS_REGISTRIES=100,1000,5000
 *   BENCH_HS_DEADLINE_S=20  BENCH_STEP_DEADLINE_S=60  BENCH_SETTLE_MAX_S=20
 *   BENCH_RSS_GUARD_MIB=2048
 *   BENCH_CONTROLLER_NODE_ARGS='--max-old-space-size=512 --import ./x.mjs' (extra node flags
 *   for 'controller serve', for A/B experiments)
 *   BENCH_THROUGHPUT_MIB=512  BENCH_THROUGHPUT_REPS=3  BENCH_KEEP=1 (keep the temp dir)
 *   BENCH_FOUNDATION_PARTS=memory,handshakes,throughput (a subset, for development)
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { AgentHandshake, ControllerHandshake, encodePublicKey, parseIdentity } from '@borgpull/protocol';
import {
  HERE,
  PROBE_URL,
  REPO,
  Rpc,
  cpuTicks,
  kill,
  median,
  nofileLimits,
  procStatus,
  sleep,
  spawnNode,
  waitForLine,
  waitQuiet,
} from './lib.mjs';

const CONTROLLER_BIN = join(REPO, 'packages', 'controller', 'bin', 'controller.js');
const MIB = 2 ** 20;

const intEnv = (k, d) => (process.env[k] ? Number(process.env[k]) : d);
const CFG = {
  agents: (process.env.BENCH_AGENTS ?? '1000,5000')
    .split(',')
    .map(Number)
    .sort((a, b) => a - b),
  connectConcurrency: intEnv('BENCH_CONNECT_CONCURRENCY', 32),
  handshakes: intEnv('BENCH_HANDSHAKES', 2000),
  hsConcurrency: intEnv('BENCH_HS_CONCURRENCY', 32),
  throughputMiB: intEnv('BENCH_THROUGHPUT_MIB', 512),
  throughputReps: intEnv('BENCH_THROUGHPUT_REPS', 3),
  parts: (process.env.BENCH_FOUNDATION_PARTS ?? 'memory,handshakes,throughput').split(','),
  hsRegistries: (process.env.BENCH_HS_REGISTRIES ?? '100,1000,5000').split(',').map(Number),
  hsDeadlineS: intEnv('BENCH_HS_DEADLINE_S', 20),
  stepDeadlineS: intEnv('BENCH_STEP_DEADLINE_S', 60),
  settleMaxS: intEnv('BENCH_SETTLE_MAX_S', 20),
  rssGuardMiB: intEnv('BENCH_RSS_GUARD_MIB', 2048),
  controllerNodeArgs: (process.env.BENCH_CONTROLLER_NODE_ARGS ?? '').split(' ').filter(Boolean),
};
const CLK_TCK = 100; // /proc/PID/stat ticks per second on Linux
/** Tolerated share of failed connections in a step (reported); above it the step is a failure. */
const MAX_FAILED = 0.01;

/** ed25519 identities in tweetnacl's 64-byte layout (seed || public), made with node:crypto (fast). */
function makeIdentities(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
    const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    out.push({ name: `bench-agent-${String(i).padStart(5, '0')}`, secretKey: Buffer.concat([seed, pub]), publicKey: pub });
  }
  return out;
}

class Run {
  children = new Set();

  constructor(ctx) {
    this.ctx = ctx;
    this.log = ctx.log;
    this.tmp = mkdtempSync(join(tmpdir(), 'borgpull-bench-'));
    // Ctrl-C / kill: our children (the controllers among them) go with us.
    this.onSignal = (sig) => {
      this.log(`${sig}: stopping, killing ${this.children.size} child processes`);
      for (const c of this.children) c.kill('SIGKILL');
      rmSync(this.tmp, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    // A suite that ends without cleanup() must not vanish silently (e.g. an await nothing can settle).
    this.onExit = (code) =>
      process.stderr.write(`[bench foundation] process exiting (code ${code}) in the middle of the suite; temp dir ${this.tmp}\n`);
    process.on('exit', this.onExit);
  }

  track(child) {
    this.children.add(child);
    child.exited.then(() => this.children.delete(child));
    return child;
  }

  async cleanup(ok) {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    process.off('exit', this.onExit);
    for (const c of [...this.children]) await kill(c);
    if (ok && process.env.BENCH_KEEP !== '1') rmSync(this.tmp, { recursive: true, force: true });
    else this.log(`temp dir kept: ${this.tmp}`);
  }

  setup() {
    const maxN = Math.max(...CFG.agents, ...CFG.hsRegistries);
    this.hostKey = join(this.tmp, 'ssh_host_ed25519_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', this.hostKey]);
    // `controller serve` checks the tunnel sshd's rules with `sshd -T`: give it a config that passes (read, never run).
    this.sshdConfig = join(this.tmp, 'sshd_config');
    writeFileSync(
      this.sshdConfig,
      [
        `HostKey ${this.hostKey}`,
        'PidFile none',
        'UsePAM no',
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
        '',
      ].join('\n'),
    );
    // one real ssh key, reused by every agent record: only its shape matters here
    this.agentSshKey = readFileSync(`${this.hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
    const t = performance.now();
    this.agents = makeIdentities(maxN);
    this.identitiesFile = join(this.tmp, 'agents.json');
    writeFileSync(this.identitiesFile, JSON.stringify({ agents: this.agents.map((a) => [a.name, a.secretKey.toString('hex')]) }));
    this.log(`${maxN} agent identities in ${(performance.now() - t).toFixed(0)} ms; temp dir ${this.tmp}`);
  }

  /** `controller init` + a registry of `registered` agents written before `serve`; then `serve`. */
  async startController(label, registered) {
    const dir = join(this.tmp, label);
    execFileSync(process.execPath, [
      CONTROLLER_BIN,
      'init',
      '--state-dir',
      dir,
      '--url',
      'ws://127.0.0.1:7400',
      '--listen',
      '127.0.0.1:0',
      '--ssh-host-key',
      `${this.hostKey}.pub`,
      '--sshd-config',
      this.sshdConfig,
    ]);
    const now = Date.now();
    const agents = {};
    for (let i = 0; i < registered; i++) {
      const a = this.agents[i];
      agents[a.name] = {
        name: a.name,
        publicKey: encodePublicKey(a.publicKey),
        enrolledAt: now,
        port: 40000 + i,
        sshKey: this.agentSshKey,
      };
    }
    writeFileSync(join(dir, 'registry.json'), JSON.stringify({ agents, tokens: [], revokedKeys: [] }, null, 2) + '\n', { mode: 0o600 });
    const logFile = join(this.tmp, `${label}.log`);
    const child = this.track(
      spawnNode(CONTROLLER_BIN, ['serve', '--state-dir', dir], {
        execArgv: ['--expose-gc', '--import', PROBE_URL, ...CFG.controllerNodeArgs],
        logFile,
      }),
    );
    const m = await waitForLine(logFile, /"port":(\d+)[^\n]*"msg":"listening for agents"/, { child });
    const identity = parseIdentity(readFileSync(join(dir, 'identity.json'), 'utf8'));
    return {
      nofile: nofileLimits(child.pid),
      child,
      pid: child.pid,
      rpc: new Rpc(child, `controller(${label})`),
      url: `ws://127.0.0.1:${m[1]}`,
      controllerKey: Buffer.from(identity.publicKey).toString('hex'),
      logFile,
      dir,
      registryBytes: readFileSync(join(dir, 'registry.json')).length,
    };
  }

  async startRawServer() {
    const child = this.track(spawnNode(join(HERE, 'raw-ws-server.mjs'), [], { execArgv: ['--expose-gc', '--import', PROBE_URL] }));
    const ready = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', () => reject(new Error('raw ws server exited')));
    });
    return { child, pid: child.pid, rpc: new Rpc(child, 'raw-ws-server'), url: `ws://127.0.0.1:${ready.port}` };
  }

  startSim() {
    const child = this.track(
      spawnNode(join(HERE, 'sim-agents.mjs'), [this.identitiesFile], { execArgv: ['--expose-gc', '--import', PROBE_URL] }),
    );
    return { child, pid: child.pid, rpc: new Rpc(child, 'sim-agents') };
  }
}

// ------------------------------------------------------------ shared steps

/**
 * Runs fn while watching the controller: SIGKILLs it if its RSS passes the
 * guard (so a runaway controller cannot take the machine or the time budget
 * down with it). Returns fn's result plus {guard, peakKiB}.
 */
async function guarded(ctl, fn) {
  const guardKiB = CFG.rssGuardMiB * 1024;
  const g = { tripped: false, peakKiB: 0, ticks: cpuTicks(ctl.pid) };
  // CPU ticks of the controller, still answering after it was killed (last reading)
  ctl.ticks = () => {
    try {
      return (g.ticks = cpuTicks(ctl.pid));
    } catch {
      return g.ticks;
    }
  };
  const timer = setInterval(() => {
    try {
      const { rssKiB } = procStatus(ctl.pid);
      g.ticks = cpuTicks(ctl.pid);
      g.peakKiB = Math.max(g.peakKiB, rssKiB);
      if (rssKiB > guardKiB && !g.tripped) {
        g.tripped = true;
        g.atKiB = rssKiB;
        ctl.child.kill('SIGKILL');
      }
    } catch {
      /* exited */
    }
  }, 200);
  try {
    return { result: await fn(), guard: g };
  } finally {
    clearInterval(timer);
  }
}

/** Whether the controller is still up after a step; if not, why (from its log). */
async function controllerFate(ctl, guard) {
  await Promise.race([ctl.child.exited, sleep(200)]);
  if (guard.tripped) {
    return {
      alive: false,
      why: `killed by the bench at ${(guard.atKiB / 1024).toFixed(0)} MiB RSS (BENCH_RSS_GUARD_MIB=${CFG.rssGuardMiB}; raise it to let the controller run into V8's heap limit)`,
    };
  }
  if (ctl.child.exitCode === null && ctl.child.signalCode === null) return { alive: true };
  const log = readFileSync(ctl.logFile, 'utf8');
  const why = /heap out of memory/.test(log)
    ? 'controller crashed: V8 heap out of memory'
    : `controller exited (code ${ctl.child.exitCode}, signal ${ctl.child.signalCode})`;
  return { alive: false, why };
}

/** Quiet = controller CPU idle and its registry no longer being rewritten. */
function settleController(ctl, maxMs = CFG.settleMaxS * 1000) {
  const sig = () => {
    try {
      const names = readdirSync(ctl.dir)
        .filter((f) => f.startsWith('.registry.json.'))
        .join(',');
      return `${statSync(join(ctl.dir, 'registry.json')).mtimeMs}|${names}`;
    } catch {
      return 'gone';
    }
  };
  return waitQuiet(ctl.pid, { maxMs, signature: sig });
}

// ---------------------------------------------------------------- 1. memory

async function memoryStep(run, sim, n) {
  const ctl = await run.startController(`memory-${n}`, n);
  const step = { n, registryKiB: ctl.registryBytes / 1024, nofile: ctl.nofile };
  try {
    await settleController(ctl);
    step.base = await ctl.rpc.mem();
    const { result: r, guard } = await guarded(ctl, () =>
      sim.rpc.call(
        {
          cmd: 'connect',
          mode: 'borgpull',
          url: ctl.url,
          controllerKey: ctl.controllerKey,
          from: 0,
          to: n,
          concurrency: CFG.connectConcurrency,
          deadlineMs: CFG.stepDeadlineS * 1000,
        },
        (CFG.stepDeadlineS + 120) * 1000,
      ),
    );
    step.connect = { ok: r.ok, attempted: r.attempted, ms: r.ms, rate: r.ok / (r.ms / 1000), errors: r.errors };
    step.peakRssKiB = guard.peakKiB;
    const fate = await controllerFate(ctl, guard);
    if (!fate.alive) {
      step.failure = `${fate.why} after ${r.ok} of ${n} sessions (${(r.ms / 1000).toFixed(0)} s in)`;
    } else if (r.deadlineHit) {
      step.failure = `only ${r.ok} of ${n} sessions within the ${CFG.stepDeadlineS} s step deadline`;
    } else if (r.failed > n * MAX_FAILED) {
      step.failure = `${r.failed} of ${n} sessions failed with the controller up: ${JSON.stringify(r.errors)}`;
    } else {
      if (r.failed)
        step.note = `${r.failed} of ${n} sessions failed (${JSON.stringify(r.errors)}); per-agent figures use the ${r.ok} that connected`;
      step.settleMs = await settleController(ctl);
      const alive = await sim.rpc.call({ cmd: 'count' });
      if (alive.open < r.ok * (1 - MAX_FAILED)) throw new Error(`only ${alive.open} of ${r.ok} sessions still open after settling`);
      step.connected = alive.open;
      step.mem = await ctl.rpc.mem();
      step.perAgentKiB = (step.mem.rssKiB - step.base.rssKiB) / alive.open;
      step.perAgentHeapKiB = (step.mem.heapUsedKiB - step.base.heapUsedKiB) / alive.open;
      step.peakRssKiB = Math.max(step.peakRssKiB, step.mem.hwmKiB);
    }
  } finally {
    step.logLines = readFileSync(ctl.logFile, 'utf8').split('\n').length - 1;
    await kill(ctl.child); // SIGKILL: a graceful stop would rewrite the registry once per link
    await sim.rpc.call({ cmd: 'closeAll' });
  }
  run.log(
    step.failure
      ? `borgpull N=${n}: FAILED: ${step.failure}; peak RSS ${(step.peakRssKiB / 1024).toFixed(0)} MiB`
      : `borgpull N=${n}: RSS ${(step.base.rssKiB / 1024).toFixed(1)} -> ${(step.mem.rssKiB / 1024).toFixed(1)} MiB ` +
          `(${step.perAgentKiB.toFixed(1)} KiB/agent, heap ${step.perAgentHeapKiB.toFixed(1)}), peak ${(step.peakRssKiB / 1024).toFixed(0)} MiB, ` +
          `connected at ${step.connect.rate.toFixed(0)}/s, settled in ${(step.settleMs / 1000).toFixed(1)} s`,
  );
  return step;
}

async function rawMemory(run, sim) {
  const raw = await run.startRawServer();
  await waitQuiet(raw.pid);
  const base = await raw.rpc.mem();
  const steps = [];
  let have = 0;
  for (const n of CFG.agents) {
    const r = await sim.rpc.call(
      { cmd: 'connect', mode: 'raw', url: raw.url, from: have, to: n, concurrency: CFG.connectConcurrency },
      300_000,
    );
    if (r.failed > (n - have) * MAX_FAILED)
      throw new Error(`raw: ${r.failed} of ${n - have} connections failed: ${JSON.stringify(r.errors)}`);
    const rate = r.ok / (r.ms / 1000);
    have = n;
    await waitQuiet(raw.pid);
    const { open } = await sim.rpc.call({ cmd: 'count' });
    const m = await raw.rpc.mem();
    const s = {
      n,
      connected: open,
      rate,
      mem: m,
      perAgentKiB: (m.rssKiB - base.rssKiB) / open,
      perAgentHeapKiB: (m.heapUsedKiB - base.heapUsedKiB) / open,
      errors: r.errors,
    };
    steps.push(s);
    run.log(
      `raw N=${n}: RSS ${(m.rssKiB / 1024).toFixed(1)} MiB (${s.perAgentKiB.toFixed(1)} KiB/conn, heap ${s.perAgentHeapKiB.toFixed(1)}), connected at ${rate.toFixed(0)}/s`,
    );
  }
  await kill(raw.child);
  await sim.rpc.call({ cmd: 'closeAll' });
  return { base, steps };
}

async function memorySuite(run) {
  const maxN = Math.max(...CFG.agents);
  const limits = nofileLimits();
  if (limits.hard < maxN + 256) {
    throw new Error(`RLIMIT_NOFILE hard limit ${limits.hard} < ${maxN + 256}: raise it (ulimit -Hn / prlimit --nofile) before running`);
  }
  const sim = run.startSim();
  const raw = await rawMemory(run, sim);
  const borg = [];
  for (const n of CFG.agents) borg.push(await memoryStep(run, sim, n));
  const simMem = await sim.rpc.mem();
  await kill(sim.child);

  const rows = [];
  for (const s of borg) {
    const b = raw.steps.find((x) => x.n === s.n);
    rows.push({
      key: `ctl_kib_per_agent_${s.n}`,
      label: `controller RSS per idle agent, N=${s.n}`,
      value: s.failure ? null : s.perAgentKiB,
      display: s.failure ? 'n/a: see notes' : undefined,
      unit: 'KiB',
      baseline: { label: 'plain ws conn', value: b.perAgentKiB },
      ratio: s.failure ? undefined : s.perAgentKiB / b.perAgentKiB,
      target: { on: 'value', op: '<', value: 30 },
    });
    if (!s.failure) {
      rows.push({
        key: `ctl_heap_per_agent_${s.n}`,
        label: `  of which V8 heap used`,
        value: s.perAgentHeapKiB,
        unit: 'KiB',
        baseline: { label: 'plain ws conn', value: b.perAgentHeapKiB },
        ratio: s.perAgentHeapKiB / b.perAgentHeapKiB,
      });
      rows.push({
        key: `ctl_rss_${s.n}`,
        label: `  controller RSS 0 -> N connected`,
        value: `${(s.base.rssKiB / 1024).toFixed(1)} -> ${(s.mem.rssKiB / 1024).toFixed(1)}`,
        unit: 'MiB',
        baseline: { label: 'plain ws server', value: `${(raw.base.rssKiB / 1024).toFixed(1)} -> ${(b.mem.rssKiB / 1024).toFixed(1)}` },
      });
    }
    rows.push({
      key: `ctl_peak_${s.n}`,
      label: `  controller peak RSS while connecting`,
      value: s.peakRssKiB / 1024,
      unit: 'MiB',
      digits: 0,
      baseline: { label: 'plain ws server', value: b.mem.hwmKiB / 1024 },
      ratio: s.peakRssKiB / b.mem.hwmKiB,
    });
    rows.push({
      key: `ctl_connect_rate_${s.n}`,
      label: `  connect storm rate (${CFG.connectConcurrency} in flight)`,
      value: s.connect.rate,
      unit: 'sessions/s',
      digits: 0,
      baseline: { label: 'plain ws', value: b.rate },
      ratio: s.connect.rate / b.rate,
    });
  }
  const notes = [];
  for (const s of borg.filter((x) => x.failure || x.note))
    notes.push(`N=${s.n} (${s.n} registered, registry.json ${s.registryKiB.toFixed(0)} KiB): ${s.failure ?? s.note}.`);
  notes.push(
    `one fresh 'controller serve' per N with exactly N agents registered; RSS = /proc/PID/status VmRSS after a forced full GC (--expose-gc + bench/foundation/probe.mjs preloaded); per agent = (RSS(N) - RSS(0)) / N, measured once the controller is idle and no longer rewriting registry.json; baseline: raw-ws-server.mjs (ws configured like AgentServer) holding N plain connections.`,
    `open files: controller and simulator each hold N sockets, so RLIMIT_NOFILE must be >= N + ~100 (N=${maxN}: ~${maxN + 100}). Node raises its soft limit to the hard limit at startup, so the hard limit is what counts: here ${limits.hard}${
      borg.find((x) => x.nofile) ? `, controller ran with ${borg.find((x) => x.nofile).nofile.soft}` : ''
    }; no ulimit change was needed.`,
    `controller log at info level: one line per connect (${borg.map((s) => `N=${s.n}: ${s.logLines} lines`).join(', ')}).`,
    `simulator (client side, informational): peak RSS ${(simMem.hwmKiB / 1024).toFixed(0)} MiB.`,
  );
  return { section: { title: 'Controller memory per idle agent', rows, notes }, details: { controller: borg, rawWs: raw } };
}

// ------------------------------------------------------------ 2. handshakes

/** Handshake crypto alone, in a child process with a deadline (see crypto-only.mjs for why). */
function cryptoOnlyHandshakes(run, count) {
  try {
    const out = execFileSync(process.execPath, [fileURLToPath(new URL('./crypto-only.mjs', import.meta.url)), String(count)], {
      encoding: 'utf8',
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    return JSON.parse(out.trim().split('\n').pop());
  } catch (err) {
    const why =
      err.signal === 'SIGKILL' ? 'hung for 120 s (Node crypto deadlock, see crypto-only.mjs)' : `failed: ${err.message.split('\n')[0]}`;
    run.log(`crypto only: ${why}`);
    return { count, bothSidesPerS: null, controllerSidePerS: null, failure: why };
  }
}

async function cycles(run, sim, server, mode, registered, extra, settle) {
  const base = { mode, url: server.url, from: 0, to: registered, concurrency: CFG.hsConcurrency, ...extra };
  await sim.rpc.call({ cmd: 'cycle', ...base, count: 200, deadlineMs: 5_000 }, 300_000); // warm-up
  await settle();
  const ticks = server.ticks ?? (() => cpuTicks(server.pid));
  const c0 = ticks();
  const s0 = cpuTicks(sim.pid);
  const r = await sim.rpc.call(
    { cmd: 'cycle', ...base, count: CFG.handshakes, deadlineMs: CFG.hsDeadlineS * 1000 },
    (CFG.hsDeadlineS + 120) * 1000,
  );
  const serverCpuS = (ticks() - c0) / CLK_TCK;
  const simCpuS = (cpuTicks(sim.pid) - s0) / CLK_TCK;
  return { ...r, perS: r.ok / (r.ms / 1000), serverCpuS, simCpuS, wallS: r.ms / 1000, registered };
}

async function handshakeSuite(run) {
  const sim = run.startSim();
  const raw = await run.startRawServer();
  const rawRes = await cycles(run, sim, raw, 'raw', 1, {}, () => waitQuiet(raw.pid));
  if (rawRes.failed > rawRes.attempted * MAX_FAILED)
    throw new Error(`raw: ${rawRes.failed} cycles failed: ${JSON.stringify(rawRes.errors)}`);
  run.log(
    `raw ws cycles: ${rawRes.perS.toFixed(0)}/s, p50 ${rawRes.latencyMs.p50.toFixed(1)} ms, server CPU ${rawRes.serverCpuS.toFixed(1)} s / sim ${rawRes.simCpuS.toFixed(1)} s`,
  );
  await kill(raw.child);

  const results = {};
  for (const registered of CFG.hsRegistries) {
    const ctl = await run.startController(`handshakes-${registered}`, registered);
    await settleController(ctl);
    const { result: r, guard } = await guarded(ctl, () =>
      cycles(run, sim, ctl, 'borgpull', registered, { controllerKey: ctl.controllerKey }, () => settleController(ctl, 10_000)),
    );
    r.peakRssKiB = guard.peakKiB;
    const fate = await controllerFate(ctl, guard);
    if (!fate.alive) r.failure = `${fate.why} after ${r.ok} handshakes`;
    else if (r.failed > r.attempted * MAX_FAILED)
      r.failure = `${r.failed} of ${r.attempted} cycles failed with the controller up: ${JSON.stringify(r.errors)}`;
    else {
      const parts = [];
      if (r.deadlineHit) parts.push(`stopped at the ${CFG.hsDeadlineS} s deadline after ${r.ok} of ${CFG.handshakes}`);
      if (r.failed) parts.push(`${r.failed} failed: ${JSON.stringify(r.errors)}`);
      if (parts.length) r.note = parts.join('; ');
    }
    results[registered] = r;
    run.log(
      `controller cycles, ${registered} registered: ${r.perS.toFixed(0)}/s over ${r.ok} (${r.failure ?? r.note ?? 'complete'}), p50 ${r.latencyMs.p50.toFixed(1)} ms p99 ${r.latencyMs.p99.toFixed(1)} ms, ` +
        `controller CPU ${r.serverCpuS.toFixed(1)} s / sim ${r.simCpuS.toFixed(1)} s over ${r.wallS.toFixed(1)} s, peak RSS ${(r.peakRssKiB / 1024).toFixed(0)} MiB`,
    );
    await kill(ctl.child);
  }
  await kill(sim.child);
  const crypto = cryptoOnlyHandshakes(run, 2000);
  if (crypto.failure === undefined)
    run.log(
      `crypto only, one process: ${crypto.bothSidesPerS.toFixed(0)}/s both sides, ${crypto.controllerSidePerS.toFixed(0)}/s controller side`,
    );

  const rows = [];
  for (const registered of CFG.hsRegistries) {
    const r = results[registered];
    const cpuUs = (r.serverCpuS / r.ok) * 1e6;
    const rawCpuUs = (rawRes.serverCpuS / rawRes.ok) * 1e6;
    rows.push({
      key: `hs_per_s_registry_${registered}`,
      label: `handshakes/s, ${registered} agents registered`,
      value: r.perS,
      display: r.failure ? `${r.perS.toFixed(0)} /s until stopped` : undefined,
      unit: '/s',
      digits: 0,
      baseline: { label: 'plain ws connect+close', value: rawRes.perS },
      ratio: r.perS / rawRes.perS,
      target: { on: 'value', op: '>=', value: 500 },
    });
    rows.push({
      key: `hs_latency_registry_${registered}`,
      label: `  latency p50 / p99`,
      value: `${r.latencyMs.p50.toFixed(1)} / ${r.latencyMs.p99.toFixed(1)}`,
      unit: 'ms',
      baseline: { label: 'plain ws', value: `${rawRes.latencyMs.p50.toFixed(1)} / ${rawRes.latencyMs.p99.toFixed(1)}` },
    });
    rows.push({
      key: `hs_cpu_registry_${registered}`,
      label: `  controller CPU per cycle`,
      value: cpuUs,
      unit: 'us',
      digits: 0,
      baseline: { label: 'plain ws server', value: rawCpuUs },
      ratio: cpuUs / rawCpuUs,
    });
    rows.push({
      key: `hs_peak_registry_${registered}`,
      label: `  controller peak RSS`,
      value: r.peakRssKiB / 1024,
      unit: 'MiB',
      digits: 0,
    });
  }
  rows.push({
    key: 'hs_crypto_both',
    label: 'handshake crypto alone, both sides, 1 core',
    value: crypto.bothSidesPerS,
    unit: '/s',
    digits: 0,
    ...(crypto.failure ? { display: crypto.failure } : {}),
  });
  rows.push({
    key: 'hs_crypto_ctl',
    label: 'handshake crypto alone, controller half, 1 core',
    value: crypto.controllerSidePerS,
    unit: '/s',
    digits: 0,
    ...(crypto.failure ? { display: crypto.failure } : {}),
  });
  const notes = [];
  for (const registered of CFG.hsRegistries) {
    const r = results[registered];
    if (r.failure || r.note) notes.push(`registry ${registered}: ${r.failure ?? r.note}.`);
  }
  notes.push(
    `one cycle = TCP connect + HTTP upgrade + hello/welcome/auth + ws ping/pong (proves the controller verified auth and registered the link) + close, so the controller's connect and disconnect work is in it; up to ${CFG.handshakes} cycles (deadline ${CFG.hsDeadlineS} s), ${CFG.hsConcurrency} in flight, after a warm-up; distinct registered agents round-robin; a fresh controller per registry size.`,
    `the controller and the simulator (agent half: x25519, ed25519 sign+verify, ws client) share the machine's ${cpus().length} cores. CPU seconds controller / simulator: ${CFG.hsRegistries
      .map(
        (n) =>
          `registry ${n}: ${results[n].serverCpuS.toFixed(1)} / ${results[n].simCpuS.toFixed(1)} over ${results[n].wallS.toFixed(1)} s`,
      )
      .join('; ')}; plain ws: ${rawRes.serverCpuS.toFixed(1)} / ${rawRes.simCpuS.toFixed(1)} over ${rawRes.wallS.toFixed(1)} s.`,
  );
  return {
    section: { title: 'Handshakes per second (real controller)', rows, notes },
    details: { controller: results, rawWs: rawRes, cryptoOnly: crypto },
  };
}

// ------------------------------------------------------------ 3. throughput

async function throughputSuite(run) {
  const env = { BENCH_KEY_C2S: randomBytes(32).toString('hex'), BENCH_KEY_S2C: randomBytes(32).toString('hex') };
  const peer = join(HERE, 'throughput-peer.mjs');
  const server = run.track(spawnNode(peer, ['server'], { env }));
  const ready = await new Promise((resolve, reject) => {
    server.once('message', resolve);
    server.once('exit', () => reject(new Error('throughput server exited')));
  });
  const client = run.track(spawnNode(peer, ['client'], { env }));
  const rpc = new Rpc(client, 'throughput-client');
  const bytes = CFG.throughputMiB * MIB;
  const combos = [];
  for (const dir of ['c2s', 's2c']) for (const mode of ['raw', 'sealed']) combos.push({ dir, mode });
  for (const c of combos) await rpc.call({ cmd: 'run', port: ready.port, ...c, bytes: 64 * MIB }); // warm-up
  const runs = [];
  for (let rep = 0; rep < CFG.throughputReps; rep++) {
    for (const c of combos) {
      const r = await rpc.call({ cmd: 'run', port: ready.port, ...c, bytes }, 300_000);
      runs.push({ rep, ...r });
      run.log(
        `${c.dir} ${c.mode} rep ${rep + 1}: ${r.mbps.toFixed(0)} MB/s (sender+receiver CPU ${((r.clientCpuMs + r.serverCpuMs) / 1000).toFixed(2)} s)`,
      );
    }
  }
  const crypto = await rpc.call({ cmd: 'crypto', bytes: 256 * MIB }, 300_000);
  await kill(client);
  await kill(server);

  const rows = [];
  const byCombo = {};
  const dirLabel = { c2s: 'agent->controller (client sends, masked)', s2c: 'controller->agent (server sends)' };
  for (const dir of ['c2s', 's2c']) {
    const rawMed = median(runs.filter((r) => r.dir === dir && r.mode === 'raw').map((r) => r.mbps));
    const sealedMed = median(runs.filter((r) => r.dir === dir && r.mode === 'sealed').map((r) => r.mbps));
    const pairRatios = [];
    for (let rep = 0; rep < CFG.throughputReps; rep++) {
      const a = runs.find((r) => r.rep === rep && r.dir === dir && r.mode === 'raw');
      const b = runs.find((r) => r.rep === rep && r.dir === dir && r.mode === 'sealed');
      pairRatios.push(b.mbps / a.mbps);
    }
    const cpu = (mode) =>
      median(runs.filter((r) => r.dir === dir && r.mode === mode).map((r) => (r.clientCpuMs + r.serverCpuMs) / (r.bytes / 2 ** 30)));
    byCombo[dir] = {
      rawMBps: rawMed,
      sealedMBps: sealedMed,
      ratio: sealedMed / rawMed,
      pairRatios,
      cpuMsPerGiB: { raw: cpu('raw'), sealed: cpu('sealed') },
    };
    rows.push({ key: `tp_raw_${dir}`, label: `raw ws, ${dirLabel[dir]}`, value: rawMed, unit: 'MB/s', digits: 0 });
    rows.push({
      key: `tp_sealed_${dir}`,
      label: `sealed (Channel.sendData/receive), ${dirLabel[dir]}`,
      value: sealedMed,
      unit: 'MB/s',
      digits: 0,
      baseline: { label: 'raw ws', value: rawMed },
      ratio: sealedMed / rawMed,
      target: { on: 'ratio', op: '>=', value: 0.7 },
    });
  }
  rows.push({
    key: 'tp_seal_inproc',
    label: 'Session.sealData alone, 1 core, in-process',
    value: crypto.sealMBps,
    unit: 'MB/s',
    digits: 0,
    baseline: { label: 'memcpy 1 MiB', value: crypto.memcpyMBps },
  });
  rows.push({
    key: 'tp_open_inproc',
    label: 'Session.open alone, 1 core, in-process',
    value: crypto.openMBps,
    unit: 'MB/s',
    digits: 0,
    baseline: { label: 'memcpy 1 MiB', value: crypto.memcpyMBps },
  });
  const fmtRatios = (d) => byCombo[d].pairRatios.map((x) => x.toFixed(2)).join(', ');
  const bufferutil = run.ctx.env?.ws?.bufferutil?.installed;
  const notes = [
    `${CFG.throughputMiB} MiB per run in 1 MiB frames, ${CFG.throughputReps} interleaved reps (medians shown) after a 64 MiB warm-up; sender keeps ws.bufferedAmount < 8 MiB; sender and receiver are separate processes on loopback; MB = 10^6 bytes.`,
    `per-rep sealed/raw ratios: agent->controller ${fmtRatios('c2s')}; controller->agent ${fmtRatios('s2c')}.`,
    bufferutil
      ? `ws's optional bufferutil is installed: frame masking is native.`
      : `ws's optional bufferutil is NOT installed: client->server frames are masked/unmasked in JS, which caps raw agent->controller at ${byCombo.c2s.rawMBps.toFixed(0)} MB/s (vs ${byCombo.s2c.rawMBps.toFixed(0)} unmasked), so that direction's ratio flatters sealing.`,
    `CPU ms per GiB (sender+receiver): agent->controller raw ${byCombo.c2s.cpuMsPerGiB.raw.toFixed(0)} / sealed ${byCombo.c2s.cpuMsPerGiB.sealed.toFixed(0)}; controller->agent raw ${byCombo.s2c.cpuMsPerGiB.raw.toFixed(0)} / sealed ${byCombo.s2c.cpuMsPerGiB.sealed.toFixed(0)}.`,
  ];
  return {
    section: { title: 'Sealed throughput, 1 MiB data frames (ChaCha20-Poly1305)', rows, notes },
    details: { config: { bytes, reps: CFG.throughputReps }, byDirection: byCombo, runs, inProcess: crypto },
  };
}

// ------------------------------------------------------------------ entry

export async function run(ctx) {
  const r = new Run(ctx);
  let ok = false;
  try {
    r.setup();
    const parts = [];
    for (const [name, fn] of [
      ['memory', memorySuite],
      ['handshakes', handshakeSuite],
      ['throughput', throughputSuite],
    ].filter(([name]) => CFG.parts.includes(name))) {
      const t = performance.now();
      r.log(`-- ${name}`);
      const p = await fn(r);
      p.durationS = (performance.now() - t) / 1000;
      parts.push([name, p]);
      await sleep(200);
    }
    ok = true;
    return {
      title: 'controller memory, handshakes, sealed throughput',
      config: CFG,
      sections: parts.map(([, p]) => p.section),
      details: Object.fromEntries(parts.map(([n, p]) => [n, { durationS: p.durationS, ...p.details }])),
    };
  } finally {
    await r.cleanup(ok);
  }
}
