#!/usr/bin/env node
// Start-up time of the agent's and controller's forms (after `npm run bundle`):
// each command run 3 times to warm the page cache, then 20 times; the median
// wall time and the range are printed (hyperfine-style, without hyperfine).
// Usage: node scripts/startup-times.mjs [RUNS]
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.argv[2] ?? 20);
const node = process.execPath;
const forms = [
  ['agent (single binary)', [join(ROOT, 'dist-bundle/borgpull-agent'), '--version']],
  ['agent (node bundle.mjs)', [node, join(ROOT, 'dist-bundle/borgpull-agent.mjs'), '--version']],
  ['agent (node bin/agent.js)', [node, join(ROOT, 'packages/agent/bin/agent.js'), '--version']],
  ['controller (single binary)', [join(ROOT, 'dist-bundle/borgpull-controller'), '--version']],
  ['controller (node bundle.mjs)', [node, join(ROOT, 'dist-bundle/borgpull-controller.mjs'), '--version']],
  ['controller (node bin/controller.js)', [node, join(ROOT, 'packages/controller/bin/controller.js'), '--version']],
];

function once([cmd, ...args]) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return ms;
}

for (const [label, argv] of forms) {
  for (let i = 0; i < 3; i++) once(argv);
  const t = Array.from({ length: RUNS }, () => once(argv)).sort((a, b) => a - b);
  const median = RUNS % 2 ? t[(RUNS - 1) / 2] : (t[RUNS / 2 - 1] + t[RUNS / 2]) / 2;
  const size = argv[0] === node ? '' : `, ${(statSync(argv[0]).size / 1024 / 1024).toFixed(1)} MiB`;
  process.stdout.write(`${label.padEnd(38)} median ${median.toFixed(0).padStart(4)} ms (min ${t[0].toFixed(0)}, max ${t.at(-1).toFixed(0)}, ${RUNS} runs${size})\n`);
}
