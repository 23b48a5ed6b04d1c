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
 * Knobs (environment): BENCH_AGENTS=1000,5000  BENCH_CONNECT_CONCURRENCY=32
 *   BENCH_HANDSHAKES=2000  BENCH_HS_CONCURRENCY=32  BENCH_HS_SMALL_REGISTRY=100
 *   BENCH_THROUGHPUT_MIB=512  BENCH_THROUGHPUT_REPS=3  BENCH_KEEP=1 (keep the temp dir)
 *   BENCH_FOUNDATION_PARTS=memory,handshakes,throughput (a subset, for development)
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
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
  agents: (process.env.BENCH_AGENTS ?? '1000,5000').split(',').map(Number).sort((a, b) => a - b),
  connectConcurrency: intEnv('BENCH_CONNECT_CONCURRENCY', 32),
  handshakes: intEnv('BENCH_HANDSHAKES', 2000),
  hsConcurrency: intEnv('BENCH_HS_CONCURRENCY', 32),
  hsSmallRegistry: intEnv('BENCH_HS_SMALL_REGISTRY', 100),
  throughputMiB: intEnv('BENCH_THROUGHPUT_MIB', 512),
  throughputReps: intEnv('BENCH_THROUGHPUT_REPS', 3),
  parts: (process.env.BENCH_FOUNDATION_PARTS ?? 'memory,handshakes,throughput').split(','),
};
const CLK_TCK = 100; // /proc/PID/stat ticks per second on Linux

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
  }

  track(child) {
    this.children.add(child);
    child.exited.then(() => this.children.delete(child));
    return child;
  }

  async cleanup(ok) {
    for (const c of [...this.children]) await kill(c);
    if (ok && process.env.BENCH_KEEP !== '1') rmSync(this.tmp, { recursive: true, force: true });
    else this.log(`temp dir kept: ${this.tmp}`);
  }

  setup() {
    const maxN = Math.max(...CFG.agents, CFG.hsSmallRegistry);
    this.hostKey = join(this.tmp, 'ssh_host_ed25519_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', this.hostKey]);
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
      CONTROLLER_BIN, 'init', '--state-dir', dir,
      '--url', 'ws://127.0.0.1:7400', '--listen', '127.0.0.1:0', '--ssh-host-key', `${this.hostKey}.pub`,
    ]);
    const now = Date.now();
    const agents = {};
    for (let i = 0; i < registered; i++) {
      const a = this.agents[i];
      agents[a.name] = { name: a.name, publicKey: encodePublicKey(a.publicKey), enrolledAt: now, port: 40000 + i, sshKey: this.agentSshKey };
    }
    writeFileSync(join(dir, 'registry.json'), JSON.stringify({ agents, tokens: [], revokedKeys: [] }, null, 2) + '\n', { mode: 0o600 });
    const logFile = join(this.tmp, `${label}.log`);
    const child = this.track(
      spawnNode(CONTROLLER_BIN, ['serve', '--state-dir', dir], { execArgv: ['--expose-gc', '--import', PROBE_URL], logFile }),
    );
    const m = await waitForLine(logFile, /"port":(\d+)[^\n]*"msg":"listening for agents"/, { child });
    const identity = parseIdentity(readFileSync(join(dir, 'identity.json'), 'utf8'));
    return {
      child,
      pid: child.pid,
      rpc: new Rpc(child, `controller(${label})`),
      url: `ws://127.0.0.1:${m[1]}`,
      controllerKey: Buffer.from(identity.publicKey).toString('hex'),
      logFile,
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

// ---------------------------------------------------------------- 1. memory

async function fillAndMeasure(run, sim, server, mode, extra) {
  await waitQuiet(server.pid);
  const base = await server.rpc.mem();
  const steps = [];
  let have = 0;
  for (const n of CFG.agents) {
    const r = await sim.rpc.call({ cmd: 'connect', mode, url: server.url, from: have, to: n, concurrency: CFG.connectConcurrency, ...extra }, 600_000);
    if (r.failed) throw new Error(`${mode}: ${r.failed} of ${n - have} connections failed: ${JSON.stringify(r.errors)}`);
    const rate = (n - have) / (r.ms / 1000);
    have = n;
    const quietMs = await waitQuiet(server.pid);
    const alive = await sim.rpc.call({ cmd: 'count' });
    if (alive.open !== n) throw new Error(`${mode}: only ${alive.open} of ${n} connections still open after settling`);
    const m = await server.rpc.mem();
    const s = { n, connectMs: r.ms, connectRate: rate, settleMs: quietMs, mem: m };
    s.perAgentKiB = (m.rssKiB - base.rssKiB) / n;
    s.perAgentHeapKiB = (m.heapUsedKiB - base.heapUsedKiB) / n;
    s.perAgentExternalKiB = (m.externalKiB - base.externalKiB) / n;
    steps.push(s);
    run.log(
      `${mode} N=${n}: RSS ${(m.rssKiB / 1024).toFixed(1)} MiB (${s.perAgentKiB.toFixed(1)} KiB/conn, heap ${s.perAgentHeapKiB.toFixed(1)}), ` +
        `peak ${(m.hwmKiB / 1024).toFixed(0)} MiB, filled at ${rate.toFixed(0)}/s, settled in ${quietMs} ms`,
    );
  }
  return { base, steps };
}

async function memorySuite(run) {
  const maxN = Math.max(...CFG.agents);
  const limits = nofileLimits();
  if (limits.hard < maxN + 256) {
    throw new Error(`RLIMIT_NOFILE hard limit ${limits.hard} < ${maxN + 256}: raise it (ulimit -Hn / prlimit --nofile) before running`);
  }
  const sim = run.startSim();
  const ctl = await run.startController('memory', maxN);
  run.log(`controller pid ${ctl.pid} at ${ctl.url}, ${maxN} agents registered (registry.json ${(ctl.registryBytes / 1024).toFixed(0)} KiB)`);
  const borg = await fillAndMeasure(run, sim, ctl, 'borgpull', { controllerKey: ctl.controllerKey });
  const ctlNofile = nofileLimits(ctl.pid);
  const logLines = readFileSync(ctl.logFile, 'utf8').split('\n').length;
  await kill(ctl.child); // SIGKILL: a graceful stop would rewrite the registry once per link
  await sim.rpc.call({ cmd: 'closeAll' });
  const simMem = await sim.rpc.mem();

  const raw = await run.startRawServer();
  const base = await fillAndMeasure(run, sim, raw, 'raw', {});
  await kill(raw.child);
  await sim.rpc.call({ cmd: 'closeAll' });
  await kill(sim.child);

  const rows = [];
  rows.push({ key: 'ctl_rss_idle', label: `controller RSS, 0 connected (${maxN} registered)`, value: borg.base.rssKiB / 1024, unit: 'MiB', baseline: { label: 'plain ws server', value: base.base.rssKiB / 1024 } });
  borg.steps.forEach((s, i) => {
    const b = base.steps[i];
    rows.push({
      key: `ctl_kib_per_agent_${s.n}`,
      label: `controller RSS per idle agent, N=${s.n}`,
      value: s.perAgentKiB,
      unit: 'KiB',
      baseline: { label: 'plain ws conn', value: b.perAgentKiB },
      ratio: s.perAgentKiB / b.perAgentKiB,
      target: { on: 'value', op: '<', value: 30 },
    });
  });
  const top = borg.steps.at(-1);
  const topRaw = base.steps.at(-1);
  rows.push({ key: 'ctl_heap_per_agent', label: `  of which V8 heap, N=${top.n}`, value: top.perAgentHeapKiB, unit: 'KiB', baseline: { label: 'plain ws conn', value: topRaw.perAgentHeapKiB }, ratio: top.perAgentHeapKiB / topRaw.perAgentHeapKiB });
  rows.push({ key: 'ctl_rss_peak', label: `controller peak RSS (VmHWM) while connecting ${top.n}`, value: top.mem.hwmKiB / 1024, unit: 'MiB', baseline: { label: 'plain ws server', value: topRaw.mem.hwmKiB / 1024 }, ratio: top.mem.hwmKiB / topRaw.mem.hwmKiB });
  rows.push({ key: 'ctl_rss_before_gc', label: `controller RSS before forced GC, N=${top.n}`, value: top.mem.rssBeforeGcKiB / 1024, unit: 'MiB', baseline: { label: 'plain ws server', value: topRaw.mem.rssBeforeGcKiB / 1024 } });
  for (const s of borg.steps) {
    const b = base.steps.find((x) => x.n === s.n);
    rows.push({ key: `connect_rate_${s.n}`, label: `connect storm up to N=${s.n} (${CFG.connectConcurrency} in flight)`, value: s.connectRate, unit: 'sessions/s', digits: 0, baseline: { label: 'plain ws', value: b.connectRate }, ratio: s.connectRate / b.connectRate });
  }
  const notes = [
    `RSS from /proc/PID/status VmRSS after a forced full GC (--expose-gc + bench/foundation/probe.mjs preloaded into the real 'controller serve'); per agent = (RSS(N) - RSS(0)) / N; baseline: raw-ws-server.mjs holding N plain ws connections, configured like AgentServer.`,
    `open files: each of controller and simulator holds N sockets, so RLIMIT_NOFILE must be >= N + ~100 (N=${maxN}: ~${maxN + 100}); Node raises its soft limit to the hard limit itself, so the hard limit is what counts (here ${limits.hard}; controller got ${ctlNofile.soft}/${ctlNofile.hard}); under 'ulimit -Hn 4096' N=5000 fails with EMFILE.`,
    `controller logged ${logLines} lines at info level (one 'agent connected' line per session) to a file.`,
    `simulator (client side, informational): RSS ${(simMem.rssKiB / 1024).toFixed(0)} MiB after closing, peak ${(simMem.hwmKiB / 1024).toFixed(0)} MiB.`,
  ];
  return { section: { title: 'Controller memory per idle agent', rows, notes }, details: { controller: borg, rawWs: base, controllerNofile: ctlNofile } };
}

// ------------------------------------------------------------ 2. handshakes

function cryptoOnlyHandshakes(run, count) {
  const ctlId = run.agents[0]; // any ed25519 identity will do for the controller role
  const controllerIdentity = { publicKey: new Uint8Array(ctlId.publicKey), secretKey: new Uint8Array(ctlId.secretKey) };
  const ids = run.agents.map((a) => ({ publicKey: new Uint8Array(a.publicKey), secretKey: new Uint8Array(a.secretKey) }));
  let ctlMs = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const a = new AgentHandshake({ identity: ids[(i + 1) % ids.length], controllerKey: controllerIdentity.publicKey, software: 'bench' });
    const c = new ControllerHandshake({ identity: controllerIdentity, checkAgent: () => {} });
    const hello = a.hello();
    let t = performance.now();
    const welcome = c.onHello(hello);
    ctlMs += performance.now() - t;
    const auth = a.onWelcome(welcome);
    t = performance.now();
    c.onAuth(auth);
    ctlMs += performance.now() - t;
  }
  const totalMs = performance.now() - t0;
  return { count, bothSidesPerS: count / (totalMs / 1000), controllerSidePerS: count / (ctlMs / 1000) };
}

async function cycleAgainst(run, sim, server, mode, registered, extra) {
  await sim.rpc.call({ cmd: 'cycle', mode, url: server.url, from: 0, to: registered, count: 200, concurrency: CFG.hsConcurrency, ...extra }, 300_000); // warm-up
  await waitQuiet(server.pid);
  const c0 = cpuTicks(server.pid);
  const s0 = cpuTicks(sim.pid);
  const r = await sim.rpc.call({ cmd: 'cycle', mode, url: server.url, from: 0, to: registered, count: CFG.handshakes, concurrency: CFG.hsConcurrency, ...extra }, 600_000);
  const serverCpuS = (cpuTicks(server.pid) - c0) / CLK_TCK;
  const simCpuS = (cpuTicks(sim.pid) - s0) / CLK_TCK;
  if (r.failed) throw new Error(`${mode}: ${r.failed} of ${CFG.handshakes} cycles failed: ${JSON.stringify(r.errors)}`);
  const res = { ...r, perS: r.ok / (r.ms / 1000), serverCpuS, simCpuS, wallS: r.ms / 1000, registered };
  run.log(
    `${mode} cycles (registry ${registered ?? '-'}): ${res.perS.toFixed(0)}/s, p50 ${r.latencyMs.p50.toFixed(1)} ms p99 ${r.latencyMs.p99.toFixed(1)} ms, ` +
      `server CPU ${serverCpuS.toFixed(1)} s / sim CPU ${simCpuS.toFixed(1)} s over ${res.wallS.toFixed(1)} s`,
  );
  return res;
}

async function handshakeSuite(run) {
  const sim = run.startSim();
  const big = Math.max(...CFG.agents);
  const results = {};
  for (const registered of [CFG.hsSmallRegistry, big]) {
    const ctl = await run.startController(`handshakes-${registered}`, registered);
    await waitQuiet(ctl.pid);
    results[registered] = await cycleAgainst(run, sim, ctl, 'borgpull', registered, { controllerKey: ctl.controllerKey });
    results[registered].peakRssMiB = procStatus(ctl.pid).hwmKiB / 1024;
    await kill(ctl.child);
  }
  const raw = await run.startRawServer();
  const rawRes = await cycleAgainst(run, sim, raw, 'raw', 1, {});
  await kill(raw.child);
  await kill(sim.child);
  const crypto = cryptoOnlyHandshakes(run, 2000);
  run.log(`crypto only, in-process: ${crypto.bothSidesPerS.toFixed(0)}/s both sides, ${crypto.controllerSidePerS.toFixed(0)}/s controller side`);

  const rows = [];
  for (const registered of [CFG.hsSmallRegistry, big]) {
    const r = results[registered];
    rows.push({
      key: `hs_per_s_registry_${registered}`,
      label: `controller handshakes/s, ${registered} agents registered`,
      value: r.perS,
      unit: '/s',
      digits: 0,
      baseline: { label: 'plain ws connect+close', value: rawRes.perS },
      ratio: r.perS / rawRes.perS,
      target: { on: 'value', op: '>=', value: 500 },
    });
  }
  for (const registered of [CFG.hsSmallRegistry, big]) {
    const r = results[registered];
    rows.push({ key: `hs_p99_registry_${registered}`, label: `  latency p50 / p99, registry ${registered}`, value: `${r.latencyMs.p50.toFixed(1)} / ${r.latencyMs.p99.toFixed(1)}`, unit: 'ms', baseline: { label: 'plain ws', value: `${rawRes.latencyMs.p50.toFixed(1)} / ${rawRes.latencyMs.p99.toFixed(1)}` } });
    rows.push({ key: `hs_cpu_registry_${registered}`, label: `  controller CPU per handshake, registry ${registered}`, value: (r.serverCpuS / r.ok) * 1e6, unit: 'us', digits: 0, baseline: { label: 'plain ws server', value: (rawRes.serverCpuS / rawRes.ok) * 1e6 }, ratio: r.serverCpuS / r.ok / (rawRes.serverCpuS / rawRes.ok) });
  }
  rows.push({ key: 'hs_crypto_both', label: 'handshake crypto only, both sides, 1 core', value: crypto.bothSidesPerS, unit: '/s', digits: 0 });
  rows.push({ key: 'hs_crypto_ctl', label: 'handshake crypto only, controller side, 1 core', value: crypto.controllerSidePerS, unit: '/s', digits: 0 });
  const notes = [
    `one cycle = TCP connect + HTTP upgrade + hello/welcome/auth + ws ping/pong (proves the controller verified auth and registered the link) + close; ${CFG.handshakes} cycles, ${CFG.hsConcurrency} in flight, after 200 warm-up cycles; distinct agents round-robin over the registry.`,
    `controller and simulator share the 2 cores (simulator does the agent half: x25519, ed25519 sign+verify, ws client). CPU s over the run: registry ${CFG.hsSmallRegistry}: controller ${results[CFG.hsSmallRegistry].serverCpuS.toFixed(1)} / sim ${results[CFG.hsSmallRegistry].simCpuS.toFixed(1)}; registry ${big}: controller ${results[big].serverCpuS.toFixed(1)} / sim ${results[big].simCpuS.toFixed(1)}; plain ws: server ${rawRes.serverCpuS.toFixed(1)} / sim ${rawRes.simCpuS.toFixed(1)}.`,
  ];
  return { section: { title: 'Handshakes per second (real controller)', rows, notes }, details: { controller: results, rawWs: rawRes, cryptoOnly: crypto } };
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
      run.log(`${c.dir} ${c.mode} rep ${rep + 1}: ${r.mbps.toFixed(0)} MB/s (sender+receiver CPU ${((r.clientCpuMs + r.serverCpuMs) / 1000).toFixed(2)} s)`);
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
    const cpu = (mode) => median(runs.filter((r) => r.dir === dir && r.mode === mode).map((r) => (r.clientCpuMs + r.serverCpuMs) / (r.bytes / 2 ** 30)));
    byCombo[dir] = { rawMBps: rawMed, sealedMBps: sealedMed, ratio: sealedMed / rawMed, pairRatios, cpuMsPerGiB: { raw: cpu('raw'), sealed: cpu('sealed') } };
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
  rows.push({ key: 'tp_seal_inproc', label: 'Session.sealData alone, 1 core, in-process', value: crypto.sealMBps, unit: 'MB/s', digits: 0, baseline: { label: 'memcpy 1 MiB', value: crypto.memcpyMBps } });
  rows.push({ key: 'tp_open_inproc', label: 'Session.open alone, 1 core, in-process', value: crypto.openMBps, unit: 'MB/s', digits: 0, baseline: { label: 'memcpy 1 MiB', value: crypto.memcpyMBps } });
  const fmtRatios = (d) => byCombo[d].pairRatios.map((x) => x.toFixed(2)).join(', ');
  const notes = [
    `${CFG.throughputMiB} MiB per run in 1 MiB frames, ${CFG.throughputReps} interleaved reps (medians shown) after a 64 MiB warm-up; sender keeps ws.bufferedAmount < 8 MiB; sender and receiver are separate processes on loopback; MB = 10^6 bytes.`,
    `per-rep sealed/raw ratios: agent->controller ${fmtRatios('c2s')}; controller->agent ${fmtRatios('s2c')}.`,
    `CPU ms per GiB (sender+receiver): agent->controller raw ${byCombo.c2s.cpuMsPerGiB.raw.toFixed(0)} / sealed ${byCombo.c2s.cpuMsPerGiB.sealed.toFixed(0)}; controller->agent raw ${byCombo.s2c.cpuMsPerGiB.raw.toFixed(0)} / sealed ${byCombo.s2c.cpuMsPerGiB.sealed.toFixed(0)}.`,
  ];
  return { section: { title: 'Sealed throughput, 1 MiB data frames (ChaCha20-Poly1305)', rows, notes }, details: { config: { bytes, reps: CFG.throughputReps }, byDirection: byCombo, runs, inProcess: crypto } };
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
