#!/usr/bin/env node
/**
 * borgpull benchmarks. `npm run bench` (= tsc -b && node --expose-gc bench/run.mjs).
 *
 *   node --expose-gc bench/run.mjs [SUITE...]   run the named suites (default: all)
 *
 * Prints a report and writes it as JSON to bench/out/results.json.
 * Progress goes to stderr, the report to stdout. Exit status 1 if a suite
 * crashed; with BENCH_STRICT=1 also if a target was missed.
 *
 * A suite is a module exporting `async run(ctx)` that returns
 *   { title, sections: [{ title, rows: [Row], notes: [string] }], details: {...} }
 * Row: { key, label, value, unit, digits?, display? (shown instead of value, e.g.
 *        when the measurement could not complete; value is then null),
 *        baseline?: {label, value}, ratio?,
 *        target?: {on: 'value'|'ratio', op: '<'|'<='|'>='|'>', value}, pass? }
 * ctx: { log(msg), outDir, env } (see bench/foundation/index.mjs).
 */
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, totalmem, platform, arch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT_DIR = join(HERE, 'out');

// One line per suite; order is run order.
const SUITES = {
  foundation: () => import('./foundation/index.mjs'),
  backup: () => import('./backup/index.mjs'),
  restore: () => import('./restore/index.mjs'),
  history: () => import('./history/index.mjs'),
};

function wsInfo() {
  const req = createRequire(join(HERE, '..', 'package.json'));
  const wsPkg = req.resolve('ws/package.json');
  const fromWs = createRequire(wsPkg);
  const probe = (name) => {
    try {
      const p = fromWs.resolve(`${name}/package.json`);
      return { installed: true, version: JSON.parse(readFileSync(p, 'utf8')).version };
    } catch {
      return { installed: false };
    }
  };
  return {
    version: JSON.parse(readFileSync(wsPkg, 'utf8')).version,
    bufferutil: probe('bufferutil'),
    utf8Validate: probe('utf-8-validate'),
    noBufferUtilEnv: process.env.WS_NO_BUFFER_UTIL ?? null,
  };
}

function nofile() {
  const line =
    readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files')) ?? '';
  const [soft, hard] = line.trim().split(/\s+/).slice(3, 5);
  return { soft, hard };
}

function environment() {
  const c = cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    openssl: process.versions.openssl,
    platform: `${platform()} ${arch()}`,
    cpuModel: c[0]?.model ?? 'unknown',
    cpus: c.length,
    memTotalMiB: Math.round(totalmem() / 2 ** 20),
    loadavgAtStart: loadavg().map((x) => +x.toFixed(2)),
    exposeGc: typeof globalThis.gc === 'function',
    ws: wsInfo(),
    nofile: nofile(),
  };
}

// ---- report formatting ----

function fmt(v, digits = 1) {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function targetText(t, unit) {
  if (!t) return '';
  return t.on === 'ratio' ? `${t.op} ${t.value}x` : `${t.op} ${fmt(t.value, 0)} ${unit ?? ''}`.trim();
}

function table(rows) {
  const head = ['metric', 'value', 'baseline (same run)', 'ratio', 'target', ''];
  const body = rows.map((r) => [
    r.label,
    r.display ?? `${fmt(r.value, r.digits)} ${r.unit ?? ''}`.trim(),
    r.baseline ? `${fmt(r.baseline.value, r.digits)} ${r.unit ?? ''} (${r.baseline.label})` : '',
    r.ratio === undefined ? '' : `${fmt(r.ratio, 2)}x`,
    targetText(r.target, r.unit),
    r.pass === undefined ? '' : r.pass ? 'ok' : 'MISS',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) =>
    cells
      .map((c, i) => (i === 1 || i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function render(results, env) {
  const out = [];
  out.push('borgpull benchmark report');
  out.push(
    `node ${env.node} | ${env.cpuModel} x${env.cpus} | ${env.memTotalMiB} MiB RAM | ws ${env.ws.version}, bufferutil ${
      env.ws.bufferutil.installed ? env.ws.bufferutil.version : 'not installed'
    } | nofile ${env.nofile.soft}/${env.nofile.hard} | load at start ${env.loadavgAtStart.join(' ')}`,
  );
  for (const [name, r] of Object.entries(results)) {
    out.push('', `== ${name}: ${r.title ?? ''} (${fmt(r.durationS, 1)} s)`);
    if (r.error) {
      out.push(`  SUITE FAILED: ${r.error}`);
      continue;
    }
    for (const s of r.sections ?? []) {
      out.push('', `-- ${s.title}`, table(s.rows));
      for (const n of s.notes ?? []) out.push(`  * ${n}`);
    }
  }
  return out.join('\n');
}

// ---- main ----

function assess(row) {
  const t = row.target;
  if (!t) return row;
  const v = t.on === 'ratio' ? row.ratio : row.value;
  if (typeof v !== 'number' || !Number.isFinite(v)) return { ...row, pass: false };
  const pass = { '<': v < t.value, '<=': v <= t.value, '>': v > t.value, '>=': v >= t.value }[t.op];
  return { ...row, pass };
}

async function main() {
  const wanted = process.argv.slice(2);
  for (const w of wanted) if (!SUITES[w]) throw new Error(`unknown suite '${w}' (known: ${Object.keys(SUITES).join(', ')})`);
  const names = wanted.length ? wanted : Object.keys(SUITES);
  mkdirSync(OUT_DIR, { recursive: true });
  const env = environment();
  const startedAt = new Date();
  const t0 = performance.now();
  const log = (suite) => (msg) =>
    process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s ${suite}] ${msg}\n`);
  const results = {};
  let crashed = false;
  for (const name of names) {
    const ts = performance.now();
    try {
      const mod = await SUITES[name]();
      const r = await mod.run({ log: log(name), outDir: OUT_DIR, env });
      for (const s of r.sections ?? []) s.rows = s.rows.map(assess);
      results[name] = { ...r, durationS: (performance.now() - ts) / 1000 };
    } catch (err) {
      crashed = true;
      log(name)(`FAILED: ${err?.stack ?? err}`);
      results[name] = { title: name, error: String(err?.message ?? err), durationS: (performance.now() - ts) / 1000 };
    }
  }
  env.loadavgAtEnd = loadavg().map((x) => +x.toFixed(2));
  const report = render(results, env);
  const json = {
    schema: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    durationS: (performance.now() - t0) / 1000,
    env,
    suites: results,
    report,
  };
  const file = join(OUT_DIR, 'results.json');
  writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  process.stdout.write(report + `\n\nwritten to ${file}\n`);
  const missed = Object.values(results).some((r) => (r.sections ?? []).some((s) => s.rows.some((row) => row.pass === false)));
  if (crashed || (process.env.BENCH_STRICT === '1' && missed)) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
