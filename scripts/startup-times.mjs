#!/usr/bin/env node
// Start-up time of the agent's and controller's forms (after `npm run bundle`):
// each command run 3 times to warm the page cache, then 20 times; prints the
// median wall time with its range (hyperfine-style, without hyperfine) and the
// median CPU time (user + system), which a busy machine inflates much less.
// Usage: node scripts/startup-times.mjs [RUNS]
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.argv[2] ?? 20);
const node = process.execPath;
const forms = [
  ['node -e 0 (Node.js alone, for scale)', [node, '-e', '0']],
  ['agent (single binary)', [join(ROOT, 'dist-bundle/borgpull-agent'), '--version']],
  ['agent (node bundle.mjs)', [node, join(ROOT, 'dist-bundle/borgpull-agent.mjs'), '--version']],
  ['agent (node bin/agent.js)', [node, join(ROOT, 'packages/agent/bin/agent.js'), '--version']],
  ['controller (single binary)', [join(ROOT, 'dist-bundle/borgpull-controller'), '--version']],
  ['controller (node bundle.mjs)', [node, join(ROOT, 'dist-bundle/borgpull-controller.mjs'), '--version']],
  ['controller (node bin/controller.js)', [node, join(ROOT, 'packages/controller/bin/controller.js'), '--version']],
];

/** One run: wall ms, and the child's CPU ms from its parent shell's cutime + cstime (clock ticks of 10 ms). */
function once(argv) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/bin/sh', ['-c', '"$@" >/dev/null || exit 1; cat /proc/$$/stat', 'sh', ...argv], { encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  // Fields after the ")" of comm: state is 3rd; cutime and cstime are the 16th and 17th.
  const f = r.stdout.slice(r.stdout.lastIndexOf(')') + 2).split(' ');
  return { wall, cpu: (Number(f[13]) + Number(f[14])) * 10 };
}

const median = (xs) => {
  const t = [...xs].sort((a, b) => a - b);
  return t.length % 2 ? t[(t.length - 1) / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
};

for (const [label, argv] of forms) {
  for (let i = 0; i < 3; i++) once(argv);
  const runs = Array.from({ length: RUNS }, () => once(argv));
  const wall = runs.map((r) => r.wall);
  const size = argv[0] === node ? '' : `, ${(statSync(argv[0]).size / 1024 / 1024).toFixed(1)} MiB`;
  process.stdout.write(
    `${label.padEnd(38)} median ${median(wall).toFixed(0).padStart(4)} ms (min ${Math.min(...wall).toFixed(0)}, max ${Math.max(...wall).toFixed(0)}), ` +
      `CPU ${median(runs.map((r) => r.cpu))
        .toFixed(0)
        .padStart(4)} ms, ${RUNS} runs${size}\n`,
  );
}
