#!/usr/bin/env node
// Builds the Debian packages from the single binaries (`npm run package` runs `npm run bundle` first):
//
//   dist-deb/borgpull-agent_VERSION_ARCH.deb       /usr/bin/borgpull-agent, its systemd unit,
//                                                  postinst/prerm/postrm (scripts/deb/agent)
//   dist-deb/borgpull-controller_VERSION_ARCH.deb  /usr/bin/borgpull-controller, its unit, the
//                                                  tunnel user and sshd rules (postinst: setup-host)
//
// Usage: node scripts/package-deb.mjs [--out DIR] [agent|controller]...
//   VERSION: package.json's, or BORGPULL_DEB_VERSION (a test builds a higher one to upgrade to).
//   ARCH: `dpkg --print-architecture`, which must be the binary's (it is this machine's node).
//   BORGPULL_DEB_COMPRESS: dpkg-deb's -Z (default xz; the tests use none).
//   BORGPULL_DEB_MAINTAINER: the Maintainer field (default: a placeholder lintian calls bogus).
//
// No debhelper: a staging tree and `dpkg-deb --build --root-owner-group`. The units are written
// by the same code as `install-service --print` (the packages' dist/), with the program
// /usr/bin/borgpull-* and the default state directory.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLE = join(ROOT, 'dist-bundle');

function fail(msg) {
  process.stderr.write(`package: ${msg}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
let out = join(ROOT, 'dist-deb');
const wanted = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') out = args[++i] ?? fail('--out needs a directory');
  else if (args[i] === 'agent' || args[i] === 'controller') wanted.push(args[i]);
  else fail(`unknown argument '${args[i]}' (--out DIR, agent, controller)`);
}
const targets = wanted.length > 0 ? wanted : ['agent', 'controller'];

const version = process.env['BORGPULL_DEB_VERSION'] || JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
// Debian's version syntax (no epoch, no revision: a native package); it goes into file names too.
if (!/^[0-9][A-Za-z0-9.+~]{0,63}$/.test(version)) fail(`'${version}' is not a Debian version (digits first, then A-Za-z0-9.+~)`);
const compress = process.env['BORGPULL_DEB_COMPRESS'] || 'xz';
if (!['xz', 'gzip', 'zstd', 'none'].includes(compress)) fail(`BORGPULL_DEB_COMPRESS=${compress}: xz, gzip, zstd or none`);

const maintainer = process.env['BORGPULL_DEB_MAINTAINER'] || 'borgpull developers <borgpull@localhost>';
if (!/^[^<>\n]+ <[^<>\s]+@[^<>\s]+>$/.test(maintainer)) fail(`BORGPULL_DEB_MAINTAINER='${maintainer}' is not 'Name <address>'`);

let arch;
try {
  arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
} catch {
  fail('dpkg is missing: build the packages on Debian (apt-get install dpkg-dev is not needed: dpkg and dpkg-deb suffice)');
}
const NODE_ARCH = { x64: 'amd64', arm64: 'arm64', arm: 'armhf', ppc64: 'ppc64el', s390x: 's390x', ia32: 'i386' };
if (NODE_ARCH[process.arch] !== arch)
  fail(`the binary is ${process.arch} (this node), dpkg says ${arch}: build on the target architecture`);

/** The Node.js single executable's own needs (Node's binary links libc, libstdc++ and libgcc_s), then the program's. */
const BINARY_DEPENDS = 'libc6 (>= 2.28), libstdc++6, libgcc-s1';

const PACKAGES = {
  agent: {
    name: 'borgpull-agent',
    unit: async () => {
      const { agentUnit } = await import(pathToFileURL(join(ROOT, 'packages/agent/dist/service-unit.js')).href);
      const { DEFAULT_AGENT_STATE_DIR } = await import(pathToFileURL(join(ROOT, 'packages/agent/dist/state.js')).href);
      return agentUnit(['/usr/bin/borgpull-agent'], DEFAULT_AGENT_STATE_DIR);
    },
    // ssh -R for the tunnel, and the sftp-server the controller reads this machine through (no sshd).
    depends: `${BINARY_DEPENDS}, openssh-client, openssh-sftp-server`,
    summary: 'pulled BorgBackup: the client agent (dials out to the controller)',
    description: [
      'The agent of borgpull, which runs BorgBackup in pull mode for machines the',
      'backup server cannot reach. It keeps one connection open to the controller',
      'on the backup server, opens a reverse ssh tunnel when told to, through which',
      'the controller reads this machine read-only with sshfs (served by sftp-server;',
      'no sshd needed) and runs borg, and it unpacks the restores the controller',
      'streams to it. One self-contained binary: no Node.js needed.',
    ],
  },
  controller: {
    name: 'borgpull-controller',
    unit: async () => {
      const { controllerUnit } = await import(pathToFileURL(join(ROOT, 'packages/controller/dist/cli/service-unit.js')).href);
      const { DEFAULT_STATE_DIR } = await import(pathToFileURL(join(ROOT, 'packages/controller/dist/config.js')).href);
      return controllerUnit(['/usr/bin/borgpull-controller'], DEFAULT_STATE_DIR);
    },
    // useradd (passwd) for the tunnel user; sshfs/fuse3 mount clients; borg; the tunnels' sshd.
    depends: `${BINARY_DEPENDS}, borgbackup, sshfs, openssh-server, fuse3, passwd`,
    summary: 'pulled BorgBackup: the controller on the backup server',
    description: [
      'The controller of borgpull, which runs BorgBackup in pull mode for machines',
      'the backup server cannot reach. Agents on the clients dial in; when a backup',
      'is due it has the agent open a reverse ssh tunnel, mounts the client through',
      "it with sshfs, runs borg with the client's user and group names, and cleans",
      'up. The package sets up the tunnel user and its sshd rules. One',
      'self-contained binary: no Node.js needed.',
    ],
  },
};

function md5(path) {
  return createHash('md5').update(readFileSync(path)).digest('hex');
}

function walk(dir, base = dir) {
  const files = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) files.push(...walk(p, base));
    else files.push(relative(base, p));
  }
  return files.sort();
}

function put(stage, rel, content, mode) {
  const path = join(stage, rel);
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (Buffer.isBuffer(content) || typeof content === 'string') writeFileSync(path, content);
  else copyFileSync(content.from, path);
  chmodSync(path, mode);
}

async function build(target) {
  const p = PACKAGES[target];
  const binary = join(BUNDLE, p.name);
  if (!existsSync(binary)) fail(`${relative(ROOT, binary)} is missing: run 'npm run bundle' first ('npm run package' does both)`);
  const said = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  if (!said.startsWith(`${p.name} `)) fail(`${relative(ROOT, binary)} says '${said}'`);

  const stage = join(out, `.stage-${p.name}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true, mode: 0o755 });
  put(stage, `usr/bin/${p.name}`, { from: binary }, 0o755);
  const unit = await p.unit();
  const [first, ...rest] = unit.split('\n');
  if (!first?.startsWith('# Written by')) fail(`${p.name}: the unit's first line changed: '${first}'`);
  put(
    stage,
    `lib/systemd/system/${p.name}.service`,
    [
      `# Installed by the ${p.name} package (apt remove ${p.name} removes it); 'install-service --print' shows the same unit.`,
      ...rest,
    ].join('\n'),
    0o644,
  );
  put(
    stage,
    `usr/share/doc/${p.name}/copyright`,
    [
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
      'Upstream-Name: borgpull',
      '',
      'Files: *',
      'Copyright: the borgpull developers',
      'License: none-stated',
      ' No license has been stated for borgpull yet; see its repository.',
      '',
    ].join('\n'),
    0o644,
  );
  // A native package's changelog (Debian policy 12.7), one entry: this build.
  const changelog = [
    `${p.name} (${version}) unstable; urgency=medium`,
    '',
    '  * Built from the borgpull repository (npm run package).',
    '',
    ` -- ${maintainer}  ${new Date().toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, '$1, $2 $3 $4 $5 +0000')}`,
    '',
  ].join('\n');
  put(stage, `usr/share/doc/${p.name}/changelog.gz`, gzipSync(changelog, { level: 9 }), 0o644);
  const files = walk(stage);
  const installedKiB = files.reduce((n, f) => n + Math.ceil(statSync(join(stage, f)).size / 1024), 0);
  for (const s of ['postinst', 'prerm', 'postrm']) put(stage, `DEBIAN/${s}`, { from: join(ROOT, 'scripts/deb', target, s) }, 0o755);
  put(stage, 'DEBIAN/md5sums', files.map((f) => `${md5(join(stage, f))}  ${f}\n`).join(''), 0o644);
  put(
    stage,
    'DEBIAN/control',
    [
      `Package: ${p.name}`,
      `Version: ${version}`,
      `Architecture: ${arch}`,
      `Maintainer: ${maintainer}`,
      `Installed-Size: ${installedKiB}`,
      `Depends: ${p.depends}`,
      'Section: admin',
      'Priority: optional',
      `Description: ${p.summary}`,
      ...p.description.map((l) => ` ${l}`),
      '',
    ].join('\n'),
    0o644,
  );
  const deb = join(out, `${p.name}_${version}_${arch}.deb`);
  try {
    execFileSync('dpkg-deb', ['--build', '--root-owner-group', `-Z${compress}`, stage, `${deb}.tmp`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    fail(`dpkg-deb failed for ${p.name}: ${err.stderr ?? err}`);
  }
  // Checked, then renamed into place: the stable path never holds half a package.
  execFileSync('dpkg-deb', ['--info', `${deb}.tmp`], { stdio: 'ignore' });
  execFileSync('mv', [`${deb}.tmp`, deb]);
  rmSync(stage, { recursive: true, force: true });
  process.stdout.write(`package: ${relative(process.cwd(), deb)} (${(statSync(deb).size / 1024 / 1024).toFixed(1)} MiB, ${compress})\n`);
}

mkdirSync(out, { recursive: true });
for (const t of targets) await build(t);
