import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { ROOT } from './fixture.js';

/** Where `npm run bundle` (scripts/bundle.mjs) writes the single-file builds. */
export const BUNDLE_DIR = join(ROOT, 'dist-bundle');

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const e of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, e)));
  return newest;
}

/**
 * The single binary and the JS bundle of the agent or the controller, built
 * now (`node scripts/bundle.mjs TARGET`, a few seconds) when missing or older
 * than what they are built from, so that a test never runs an old build.
 * Throws, saying how to build them, when that fails: a test that needs them
 * fails, never skips.
 */
export async function ensureBundle(target: 'agent' | 'controller'): Promise<{ binary: string; mjs: string }> {
  const binary = join(BUNDLE_DIR, `borgpull-${target}`);
  const mjs = `${binary}.mjs`;
  const sources = [
    join(ROOT, 'packages/protocol/dist'),
    join(ROOT, `packages/${target}/dist`),
    join(ROOT, `packages/${target}/package.json`),
    join(ROOT, 'scripts/bundle.mjs'),
    join(ROOT, 'package-lock.json'),
  ];
  const built = (p: string): number => (existsSync(p) ? statSync(p).mtimeMs : -1);
  const newest = Math.max(...sources.map(newestMtime));
  if (Math.min(built(binary), built(mjs)) >= newest) return { binary, mjs };
  const r = await execa(process.execPath, [join(ROOT, 'scripts/bundle.mjs'), target], {
    cwd: ROOT,
    reject: false,
    timeout: 300_000,
    all: true,
  });
  if (r.exitCode !== 0 || !existsSync(binary) || !existsSync(mjs)) {
    throw new Error(`the single-file ${target} (${binary}) could not be built; run 'npm run bundle' and see why:\n${r.all}`);
  }
  return { binary, mjs };
}
