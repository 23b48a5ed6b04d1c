import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropInText } from '../../packages/controller/src/host-setup.js';
import {
  assertNoLeftovers,
  cleanupAll,
  createClientHost,
  findTool,
  requireTools,
  type ClientHost,
  type HostSubprocess,
} from '../harness/index.js';
import { ensureBundle } from './bundle-build.js';
import { startController, waitForAgent, CLIENT_GROUP, CLIENT_PASSWD, HEARTBEAT_MS, ROOT, type Controller } from './fixture.js';

/**
 * The Debian packages, installed, enrolled, upgraded, removed and purged with
 * the real dpkg, in a throwaway root: inside a harness client host's mount
 * namespace, an overlay whose lower layer is this machine's root file system
 * (read-only: its dpkg database, sshd_config, useradd, sshd, libc) and whose
 * upper layer is a directory of the test. `dpkg --root` runs the maintainer
 * scripts chrooted there, without systemd (as in a container). Nothing of it
 * reaches this machine: every write lands in the upper layer, and the
 * mounts die with the client's mount namespace.
 */

const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NAME = 'debclient';
const V1 = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const V2 = `${V1}+upgrade1`;
const DROP_IN = 'etc/ssh/sshd_config.d/borgpull.conf';
const AGENT_STATE = 'var/lib/borgpull-agent';
/** Where an enabled unit's link is. */
const WANTS = 'etc/systemd/system/multi-user.target.wants';

async function buildDebs(out: string, version: string): Promise<{ agent: string; controller: string }> {
  const r = await execa(process.execPath, [join(ROOT, 'scripts/package-deb.mjs'), '--out', out], {
    cwd: ROOT,
    env: { BORGPULL_DEB_VERSION: version, BORGPULL_DEB_COMPRESS: 'none' },
    reject: false,
    all: true,
    timeout: 300_000,
  });
  if (r.exitCode !== 0) throw new Error(`scripts/package-deb.mjs failed:\n${r.all}`);
  const arch = (await execa('dpkg', ['--print-architecture'])).stdout.trim();
  return { agent: join(out, `borgpull-agent_${version}_${arch}.deb`), controller: join(out, `borgpull-controller_${version}_${arch}.deb`) };
}

const userLines = (text: string, user: string) => text.split('\n').filter((l) => l.startsWith(`${user}:`));

describe('the Debian packages in a throwaway root', () => {
  let ctl: Controller;
  let host: ClientHost;
  let debDir = '';
  let v1: { agent: string; controller: string };
  /** The throwaway root as this process sees its files: the overlay's merged view exists only in the client. */
  let R = '';
  /** The upper layer, where every write goes (readable from here). */
  let upper = '';
  let agent: HostSubprocess | undefined;

  /** Runs argv in the client (its netns and mount namespace) with a clean environment. */
  const inClient = (argv: string[], timeout = 120_000) => host.exec(['env', '-i', PATH, ...argv], { cwd: '/', reject: false, timeout });
  // dpkg itself runs in the chroot too: it resolves users and groups (statoverrides) through the root's own files.
  const dpkg = (...args: string[]) => inClient(['chroot', R, 'dpkg', '--force-unsafe-io', ...args], 300_000);
  /** Where the chroot sees the built packages (debDir, bind-mounted read-only). */
  const inDebs = (deb: string) => join('/borgpull-debs', deb.slice(debDir.length + 1));
  const inRoot = (argv: string[]) => inClient(['chroot', R, ...argv]);
  /** A file of the throwaway root, read through the client's view of the overlay. */
  const readRoot = async (rel: string): Promise<string | undefined> => {
    const r = await inClient(['cat', join(R, rel)]);
    return r.exitCode === 0 ? r.stdout + '\n' : undefined;
  };
  const statRoot = async (rel: string): Promise<string | undefined> => {
    const r = await inClient(['stat', '-c', '%a %U:%G %F', join(R, rel)]);
    return r.exitCode === 0 ? r.stdout.trim() : undefined;
  };

  beforeAll(async () => {
    requireTools();
    for (const t of ['dpkg', 'dpkg-deb', 'useradd', 'chroot']) {
      if (!findTool(t)) throw new Error(`${t} is missing: apt-get install -y dpkg passwd coreutils`);
    }
    await ensureBundle('agent');
    await ensureBundle('controller');
    debDir = mkdtempSync(join(tmpdir(), 'borgpull-deb-'));
    v1 = await buildDebs(debDir, V1);
    ctl = await startController();
    host = await createClientHost(ctl.server, { name: NAME, passwd: CLIENT_PASSWD, group: CLIENT_GROUP });
    const d = join(host.dir, 'deb');
    R = join(d, 'root');
    upper = join(d, 'upper');
    const setup = await host.exec(
      [
        'sh',
        '-euc',
        // Private mount namespace (the client's): none of these mounts reaches this machine's.
        `mkdir -p "$1/upper" "$1/work" "$1/root"
         mount -t overlay borgpull-deb-test -o "lowerdir=/,upperdir=$1/upper,workdir=$1/work" "$1/root"
         mount -t proc proc "$1/root/proc"
         mount --bind /dev "$1/root/dev"
         # No systemd and no sshd pid file in there: /run and /tmp are empty.
         mount -t tmpfs -o mode=0755 borgpull-deb-run "$1/root/run"
         mount -t tmpfs -o mode=1777 borgpull-deb-tmp "$1/root/tmp"
         # sshd -T (controller check) wants its privilege-separation dir, which ssh.service makes when it starts.
         mkdir -m 0755 "$1/root/run/sshd"
         mkdir "$1/root/borgpull-debs"
         mount --bind "$2" "$1/root/borgpull-debs"
         mount -o remount,bind,ro "$1/root/borgpull-debs"`,
        'setup',
        d,
        debDir,
      ],
      { cwd: '/', reject: false },
    );
    expect(setup.exitCode, setup.stderr).toBe(0);
    // This machine has a tunnel user of its own: gone in the throwaway root, so that the package creates one.
    const del = await inRoot(['sh', '-c', 'if id borgpull >/dev/null 2>&1; then userdel borgpull; fi; ! id borgpull 2>/dev/null']);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(await readRoot(DROP_IN)).toBeUndefined();
  }, 600_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await agent;
    }
    if (host && !host.stopped && R) {
      await host.exec(['sh', '-c', 'for m in proc dev run tmp borgpull-debs; do umount "$1/$m"; done; umount "$1"', 'unmount', R], {
        cwd: '/',
        reject: false,
      });
    }
    await cleanupAll();
    assertNoLeftovers();
    if (debDir) rmSync(debDir, { recursive: true, force: true });
  });

  it('builds two packages with the binary, the unit, the maintainer scripts and their dependencies', async () => {
    for (const [deb, name] of [
      [v1.agent, 'borgpull-agent'],
      [v1.controller, 'borgpull-controller'],
    ] as const) {
      const info = (await execa('dpkg-deb', ['--info', deb])).stdout;
      expect(info).toMatch(new RegExp(`^ Package: ${name}$`, 'm'));
      expect(info).toMatch(new RegExp(`^ Version: ${V1.replace(/\./g, '\\.')}$`, 'm'));
      for (const s of ['postinst', 'prerm', 'postrm', 'md5sums']) expect(info).toContain(` ${s} `);
      const contents = (await execa('dpkg-deb', ['--contents', deb])).stdout;
      expect(contents).toMatch(new RegExp(`^-rwxr-xr-x root/root .* \\./usr/bin/${name}$`, 'm'));
      expect(contents).toMatch(new RegExp(`^-rw-r--r-- root/root .* \\./lib/systemd/system/${name}\\.service$`, 'm'));
    }
    expect((await execa('dpkg-deb', ['--field', v1.controller, 'Depends'])).stdout).toMatch(/borgbackup, sshfs, openssh-server, fuse3/);
    // A client needs no sshd: ssh for the tunnel, sftp-server for the controller's reads.
    const agentDepends = (await execa('dpkg-deb', ['--field', v1.agent, 'Depends'])).stdout;
    expect(agentDepends).toMatch(/openssh-client, openssh-sftp-server/);
    expect(agentDepends).not.toMatch(/openssh-server/);
  });

  it('installs: binaries and units in place, the agent state dir, the tunnel user and sshd rules; each postinst says what is next', async () => {
    const r = await dpkg('-i', inDebs(v1.agent), inDebs(v1.controller));
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`borgpull-agent: state directory /${AGENT_STATE}: created`);
    expect(r.stdout).toContain('borgpull-agent: not enrolled yet.');
    expect(r.stdout).toMatch(/^tunnel user borgpull: created \(useradd --system /m);
    expect(r.stdout).toContain(`sshd rules /${DROP_IN}: created`);
    expect(r.stdout).toContain('sshd: no running sshd found (no live /run/sshd.pid)');
    expect(r.stdout).toContain('borgpull-controller: not initialised yet. Next:');

    for (const name of ['borgpull-agent', 'borgpull-controller']) {
      expect(await statRoot(`usr/bin/${name}`)).toBe('755 root:root regular file');
      expect(await statRoot(`lib/systemd/system/${name}.service`)).toBe('644 root:root regular file');
      // The packaged unit is what the installed binary's install-service --print shows (less the comment on line 1).
      const printed = await inRoot([`/usr/bin/${name}`, 'install-service', '--print']);
      expect(printed.exitCode, printed.stderr).toBe(0);
      const unit = (await readRoot(`lib/systemd/system/${name}.service`)) ?? '';
      const body = (t: string) => t.slice(t.indexOf('\n[Unit]')).trim();
      expect(body(unit)).toBe(body(printed.stdout));
      expect(unit).toMatch(new RegExp(`^ExecStart="/usr/bin/${name}" "${name === 'borgpull-agent' ? 'run' : 'serve'}"$`, 'm'));
      expect((await dpkg('-s', name)).stdout).toMatch(/^Status: install ok installed$/m);
    }
    expect(await statRoot(AGENT_STATE)).toBe('700 root:root directory');
    const passwd = (await readRoot('etc/passwd')) ?? '';
    expect(userLines(passwd, 'borgpull')).toHaveLength(1);
    expect(userLines(passwd, 'borgpull')[0]).toMatch(/^borgpull:x:\d{1,3}:\d+::\/nonexistent:\/usr\/sbin\/nologin$/);
    expect(userLines((await readRoot('etc/shadow')) ?? '', 'borgpull')[0]?.split(':')[1]).toBe('!');
    expect(await statRoot(DROP_IN)).toBe('644 root:root regular file');
    expect(await readRoot(DROP_IN)).toBe(dropInText('borgpull', '/var/lib/borgpull'));
    // And what matters: the installed controller, after init, finds sshd's effective rules for the tunnel user safe.
    const init = await inRoot(['/usr/bin/borgpull-controller', 'init', '--url', 'ws://backup.example:7400']);
    expect(init.exitCode, init.stderr).toBe(0);
    const check = await inRoot(['/usr/bin/borgpull-controller', 'check']);
    expect(check.exitCode, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('the tunnel user may forward its own port and nothing else');
  });

  it('the installed agent enrolls with the test controller and connects', async () => {
    const tok = await ctl.cli(['token', NAME]);
    expect(tok.exitCode, tok.stderr).toBe(0);
    const enroll = await inRoot(['/usr/bin/borgpull-agent', 'enroll', tok.stdout.trim()]);
    expect(enroll.exitCode, enroll.stdout + enroll.stderr).toBe(0);
    expect(enroll.stdout).toContain(`enrolled as '${NAME}'`);
    expect(existsSync(join(upper, AGENT_STATE, 'enrollment.json'))).toBe(true);
    // Enrollment writes no key for the controller: backups go through the agent's own SFTP gate (issue 11).
    expect((await readRoot('root/.ssh/authorized_keys')) ?? '').not.toMatch(/borgpull-controller-backup/);
    agent = host.spawn(['env', '-i', PATH, `BORGPULL_HEARTBEAT_MS=${HEARTBEAT_MS}`, 'chroot', R, '/usr/bin/borgpull-agent', 'run'], {
      cwd: '/',
      stdin: 'ignore',
    });
    await waitForAgent(ctl, NAME, true);
    agent.kill('SIGTERM');
    expect((await agent).exitCode).toBe(0);
    await waitForAgent(ctl, NAME, false);
  });

  it('upgrades to a higher version: state and enrollment kept, tunnel user and sshd rules not made twice, the agent connects again', async () => {
    const before = { passwd: await readRoot('etc/passwd'), group: await readRoot('etc/group'), dropIn: await readRoot(DROP_IN) };
    const enrollment = await readRoot(`${AGENT_STATE}/enrollment.json`);
    const v2 = await buildDebs(debDir, V2);
    const r = await dpkg('-i', inDebs(v2.agent), inDebs(v2.controller));
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`borgpull-agent: state directory /${AGENT_STATE}: already present`);
    // Enrolled (and initialised): enabled the debhelper way even without a running systemd, started when it runs.
    expect(r.stdout).toContain('borgpull-agent: enrolled; borgpull-agent.service enabled, but systemd is not running here');
    expect(r.stdout).toContain('borgpull-controller: initialised; borgpull-controller.service enabled, but systemd is not running here');
    expect(r.stdout).toContain('tunnel user borgpull: already present');
    expect(r.stdout).toContain(`sshd rules /${DROP_IN}: already present`);
    for (const name of ['borgpull-agent', 'borgpull-controller']) {
      expect((await dpkg('-s', name)).stdout).toMatch(new RegExp(`^Version: ${V2.replace(/[.+]/g, '\\$&')}$`, 'm'));
      expect(await statRoot(`usr/bin/${name}`)).toBe('755 root:root regular file');
      expect(await statRoot(`lib/systemd/system/${name}.service`)).toBe('644 root:root regular file');
    }
    expect({ passwd: await readRoot('etc/passwd'), group: await readRoot('etc/group'), dropIn: await readRoot(DROP_IN) }).toEqual(before);
    for (const name of ['borgpull-agent', 'borgpull-controller']) {
      const link = await inClient(['readlink', join(R, WANTS, `${name}.service`)]);
      expect(link.stdout.trim(), link.stderr).toBe(`/lib/systemd/system/${name}.service`);
    }
    expect(await readRoot(`${AGENT_STATE}/enrollment.json`)).toBe(enrollment);
    expect(await statRoot(AGENT_STATE)).toBe('700 root:root directory');

    agent = host.spawn(['env', '-i', PATH, `BORGPULL_HEARTBEAT_MS=${HEARTBEAT_MS}`, 'chroot', R, '/usr/bin/borgpull-agent', 'run'], {
      cwd: '/',
      stdin: 'ignore',
    });
    await waitForAgent(ctl, NAME, true);
    agent.kill('SIGTERM');
    expect((await agent).exitCode).toBe(0);
  });

  it('remove: binaries, units and sshd rules go; the agent state dir and the tunnel user stay', async () => {
    const r = await dpkg('-r', 'borgpull-agent', 'borgpull-controller');
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`sshd rules /${DROP_IN}: removed`);
    expect(r.stdout).toContain(`borgpull-agent: kept /${AGENT_STATE}`);
    for (const name of ['borgpull-agent', 'borgpull-controller']) {
      expect(await statRoot(`usr/bin/${name}`)).toBeUndefined();
      expect(await statRoot(`lib/systemd/system/${name}.service`)).toBeUndefined();
      expect((await dpkg('-s', name)).stdout).toMatch(/^Status: deinstall ok config-files$/m);
      expect(await statRoot(join(WANTS, `${name}.service`))).toBeUndefined();
    }
    expect(await statRoot(DROP_IN)).toBeUndefined();
    expect(await statRoot(`${AGENT_STATE}/enrollment.json`)).toBe('600 root:root regular file');
    expect(userLines((await readRoot('etc/passwd')) ?? '', 'borgpull')).toHaveLength(1);
    expect(await readRoot('var/lib/borgpull/config.json')).toBeDefined();
  });

  it("purge: the agent's state dir and the controller's key go; the controller's backups and the tunnel user stay", async () => {
    const r = await dpkg('-P', 'borgpull-agent', 'borgpull-controller');
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`borgpull-agent: deleted /${AGENT_STATE}`);
    expect(r.stdout).toContain('borgpull-controller: kept /var/lib/borgpull (keys, registry and every backup repository)');
    expect(await statRoot(AGENT_STATE)).toBeUndefined();
    // (Since issue 11 enrollment writes no such line; postrm still removes one an older version wrote.)
    expect((await readRoot('root/.ssh/authorized_keys')) ?? '').not.toMatch(/borgpull-controller-backup/);
    expect(await readRoot('var/lib/borgpull/config.json')).toBeDefined();
    expect(userLines((await readRoot('etc/passwd')) ?? '', 'borgpull')).toHaveLength(1);
    for (const name of ['borgpull-agent', 'borgpull-controller']) {
      expect((await dpkg('-s', name)).exitCode).not.toBe(0);
    }
    // Nothing of it on this machine: its own dpkg database never heard of the packages.
    expect((await execa('dpkg', ['-s', 'borgpull-agent'], { reject: false })).exitCode).not.toBe(0);
    expect(existsSync('/usr/bin/borgpull-agent') || existsSync('/etc/ssh/sshd_config.d/borgpull.conf')).toBe(false);
    expect(lstatSync(upper).isDirectory()).toBe(true);
  });
});
