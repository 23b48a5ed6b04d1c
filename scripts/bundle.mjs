#!/usr/bin/env node
// Builds the agent and the controller into files that run without this
// repository (run `npx tsc -b` first; `npm run bundle` does both):
//
//   dist-bundle/borgpull-agent.mjs       one JavaScript file for `node` (>= 20), no node_modules
//   dist-bundle/borgpull-agent           a single executable: Node.js itself with the bundle
//                                        injected (Node's single executable applications), no
//                                        Node.js needed on the client
//   dist-bundle/borgpull-controller.mjs  the same for the controller
//   dist-bundle/borgpull-controller
//
// Usage: node scripts/bundle.mjs [--no-sea] [agent|controller]...
//
// Bundled from the packages' dist/ with esbuild. What a bundle cannot carry:
// - native addons: msgpackr's optional string extractor (msgpackr-extract) and
//   ws's optional bufferutil/utf-8-validate are replaced by a module that
//   throws, which their loaders already catch (msgpackr and ws fall back to
//   their pure-JS code), so a bundle never loads a .node file from whatever
//   node_modules happens to lie around it;
// - package.json: the version is injected as __BORGPULL_VERSION__ (version.ts);
// - pino's worker-thread transports: never configured (logs are JSON on stdout),
//   so pino's transport code is bundled but never starts a worker.
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist-bundle');
const WORK = join(OUT, '.work');
/** The fuse string Node's official binaries carry (Node's SEA docs); postject flips it. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const NATIVE_OPTIONAL = /^(msgpackr-extract|bufferutil|utf-8-validate)$/;

const TARGETS = {
  agent: { name: 'borgpull-agent', pkg: 'packages/agent' },
  controller: { name: 'borgpull-controller', pkg: 'packages/controller' },
};

const args = process.argv.slice(2);
const sea = !args.includes('--no-sea');
const wanted = args.filter((a) => !a.startsWith('--'));
for (const w of wanted) if (!(w in TARGETS)) fail(`unknown target '${w}' (agent, controller)`);
const targets = wanted.length > 0 ? wanted : Object.keys(TARGETS);

function fail(msg) {
  process.stderr.write(`bundle: ${msg}\n`);
  process.exit(1);
}

/** Optional native addons resolve to a module that throws: their callers catch it and use pure JS. */
const noNativeAddons = {
  name: 'no-native-addons',
  setup(b) {
    b.onResolve({ filter: NATIVE_OPTIONAL }, (a) => ({ path: a.path, namespace: 'no-native' }));
    b.onLoad({ filter: /.*/, namespace: 'no-native' }, (a) => ({
      contents: `throw new Error(${JSON.stringify(`${a.path}: native addon left out of the borgpull bundle`)});`,
      loader: 'js',
    }));
  },
};

function entry(pkg) {
  const cli = join(ROOT, pkg, 'dist', 'cli.js');
  try {
    readFileSync(cli);
  } catch {
    fail(`${relative(ROOT, cli)} is missing: run 'npx tsc -b' first (or 'npm run bundle', which does)`);
  }
  // The bin scripts' two lines, without their relative import.
  return `import { main } from ${JSON.stringify(cli)};\nmain(process.argv.slice(2));\n`;
}

async function bundle(pkg, format, outfile, version) {
  const common = {
    stdin: { contents: entry(pkg), resolveDir: ROOT, sourcefile: `${pkg}-entry.js`, loader: 'js' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format,
    outfile,
    define: { __BORGPULL_VERSION__: JSON.stringify(version) },
    plugins: [noNativeAddons],
    legalComments: 'none',
    minifySyntax: true,
    minifyWhitespace: true,
    metafile: true,
    logLevel: 'error',
  };
  const r = await build(
    format === 'esm'
      ? {
          ...common,
          // pino, ws and sonic-boom are CommonJS and require() Node's builtins: give the ESM file a real require.
          banner: {
            js: "#!/usr/bin/env node\nimport { createRequire as __bpRequire } from 'node:module';\nconst require = __bpRequire(import.meta.url);",
          },
        }
      : {
          ...common,
          // A SEA runs one CommonJS script; import.meta (msgpackr's ESM entry) has no meaning there.
          define: { ...common.define, 'import.meta.url': '__bpImportMetaUrl' },
          banner: { js: "const __bpImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
        },
  );
  const inputs = Object.keys(r.metafile.inputs);
  const native = inputs.filter((i) => /\.node$|node-gyp-build/.test(i));
  if (native.length > 0) fail(`${outfile}: a native addon loader was bundled: ${native.join(', ')}`);
  return inputs.length;
}

/** Runs a build step with its chatter captured; prints it only if the step fails. */
function quiet(cmd, argv) {
  try {
    execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    process.stderr.write(`${err.stdout ?? ''}${err.stderr ?? ''}`);
    fail(
      `${relative(ROOT, argv[0] ?? cmd)} ${argv
        .slice(1)
        .map((a) => relative(ROOT, a))
        .join(' ')} failed`,
    );
  }
}

async function buildSea(name, cjs, version) {
  // A distribution's node built against a shared libnode has no fuse: say so rather than fail inside postject.
  if (!readFileSync(process.execPath).includes(SEA_FUSE)) {
    fail(`${process.execPath} cannot make single executables (no ${SEA_FUSE}): use Node.js's own build, or --no-sea`);
  }
  const blob = join(WORK, `${name}.blob`);
  const config = join(WORK, `${name}.sea-config.json`);
  // No code cache: it made no difference to `--version` here (140 ms CPU either way, 30 runs) and
  // Node's SEA docs say import() fails with it. No snapshot: the code would have to be written for one.
  writeFileSync(config, JSON.stringify({ main: cjs, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false }, null, 2));
  quiet(process.execPath, ['--experimental-sea-config', config]);
  const tmp = join(WORK, name);
  rmSync(tmp, { force: true });
  copyFileSync(process.execPath, tmp);
  chmodSync(tmp, 0o755);
  // postject's ELF library warns about every note section it cannot name: harmless, and shown only on failure.
  quiet(process.execPath, [join(ROOT, 'node_modules/postject/dist/cli.js'), tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);
  // Checked, then renamed into place: the stable path never holds half a binary or a broken one.
  const said = execFileSync(tmp, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  if (said !== `${name} ${version}`) fail(`${name}: the built binary says '${said}', not '${name} ${version}'`);
  renameSync(tmp, join(OUT, name));
}

mkdirSync(WORK, { recursive: true });
for (const t of targets) {
  const { name, pkg } = TARGETS[t];
  const version = JSON.parse(readFileSync(join(ROOT, pkg, 'package.json'), 'utf8')).version;
  const t0 = performance.now();
  const mjs = join(OUT, `${name}.mjs`);
  const n = await bundle(pkg, 'esm', `${mjs}.tmp`, version);
  chmodSync(`${mjs}.tmp`, 0o755);
  renameSync(`${mjs}.tmp`, mjs);
  let line = `${relative(ROOT, mjs)} (${n} modules, ${(readFileSync(mjs).length / 1024).toFixed(0)} KiB)`;
  if (sea) {
    const cjs = join(WORK, `${name}.cjs`);
    await bundle(pkg, 'cjs', cjs, version);
    await buildSea(name, cjs, version);
    line += ` and ${relative(ROOT, join(OUT, name))} (${(readFileSync(join(OUT, name)).length / 1024 / 1024).toFixed(1)} MiB)`;
  }
  process.stdout.write(`bundle: ${name} ${version}: ${line} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
