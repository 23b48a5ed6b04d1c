import { access, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { analyzeUnit } from '../../../../test/harness/systemd-analyze.js';
import { run } from '../cli.js';
import { controllerUnit } from './service-unit.js';

function io(): { out: string[]; io: { out: (s: string) => void; err: (s: string) => void } } {
  const out: string[] = [];
  return { out, io: { out: (s) => out.push(s), err: (s) => out.push(s) } };
}

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'borgpull-svc-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A throwaway root useradd --root can work in (this machine's users are never touched). */
async function minimalRoot(): Promise<string> {
  const root = await tempDir();
  await mkdir(join(root, 'etc/ssh'), { recursive: true });
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
  await writeFile(join(root, 'etc/gshadow'), 'root:*::\n', { mode: 0o640 });
  await writeFile(join(root, 'etc/ssh/sshd_config'), 'Include /etc/ssh/sshd_config.d/*.conf\n');
  return root;
}

describe('controller install-service', () => {
  it('--print shows the host set-up as comments, then the unit for this program with the custom state dir, and writes nothing', async () => {
    const root = await minimalRoot();
    const t = io();
    await expect(run(['install-service', '--print', '--root', root, '--state-dir', '/srv/borgpull-state'], t.io)).resolves.toBe(0);
    const text = t.out.join('\n');
    expect(t.out[0]).toMatch(/^# tunnel user borgpull: missing; would run: useradd --root /);
    expect(text).toContain('#   Match User borgpull\n#       AuthorizedKeysFile /srv/borgpull-state/tunnel/authorized_keys');
    // vitest runs the CLI from source: the program is node and vitest's own script.
    expect(text).toMatch(/^ExecStart="\/\S*node" "\/[^"]+" "serve" "--state-dir" "\/srv\/borgpull-state"$/m);
    expect(text).toMatch(/^Restart=on-failure$/m);
    expect(text).toMatch(/^RestrictNamespaces=mnt pid$/m);
    // Every line before [Unit] is a comment: the output is still a unit file.
    expect(
      t.out
        .slice(
          0,
          t.out.findIndex((l) => l.includes('[Unit]')),
        )
        .every((l) => l.startsWith('#')),
    ).toBe(true);
    expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toBe('root:x:0:0:root:/root:/bin/bash\n');
    await expect(access(join(root, 'etc/ssh/sshd_config.d/borgpull.conf'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('quotes a state dir with blanks, % and $ in the unit', () => {
    const text = controllerUnit([process.execPath, '/usr/lib/borgpull/controller.js'], '/srv/borg pull/%h$x');
    expect(text).toMatch(/^ExecStart="\/\S*node" "\/[^"]+" "serve" "--state-dir" "\/srv\/borg pull\/%%h\$\$x"$/m);
    expect(text).toMatch(/^ReadWritePaths="\/srv\/borg pull\/%%h\$x"$/m);
  });

  it('refuses a state dir that cannot go into sshd_config (the tunnel keys file is in it) before writing anything', async () => {
    const root = await minimalRoot();
    await expect(run(['install-service', '--root', root, '--state-dir', '/srv/borg pull/%h$x'], io().io)).rejects.toMatchObject({
      code: 'E_SETUP_ARG',
    });
    await expect(access(join(root, 'etc/systemd'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('the default state dir is not repeated in ExecStart', () => {
    expect(controllerUnit(['/usr/local/bin/borgpull-controller'], '/var/lib/borgpull')).toMatch(
      /^ExecStart="\/usr\/local\/bin\/borgpull-controller" "serve"$/m,
    );
  });

  it('passes systemd-analyze verify, with an exposure score of at most 4.0', async () => {
    const node = process.execPath;
    for (const stateDir of ['/var/lib/borgpull', '/srv/borg pull/%h$x']) {
      const r = await analyzeUnit('borgpull-controller', controllerUnit([node, '/usr/lib/borgpull/controller.js'], stateDir));
      expect(r.verify).toEqual({ exitCode: 0, output: '' });
      expect(r.exposure).toBeLessThanOrEqual(4.0);
    }
  });

  it('refuses a state dir that would add a directive to the unit', async () => {
    await expect(
      run(['install-service', '--print', '--state-dir', '/srv/x\nExecStartPre=/bin/touch /tmp/pwned'], io().io),
    ).rejects.toMatchObject({
      code: 'E_SERVICE_ARG',
    });
  });

  it('installs into --root with the tunnel user and sshd rules; uninstall removes unit and rules; the state dir is kept; --purge needs --yes', async () => {
    const root = await minimalRoot();
    const state = join(await tempDir(), 'state');
    await mkdir(state);
    await writeFile(join(state, 'identity.json'), '{}');
    const unit = join(root, 'etc/systemd/system/borgpull-controller.service');

    const i = io();
    await expect(run(['install-service', '--root', root, '--state-dir', state], i.io)).resolves.toBe(0);
    expect((await stat(unit)).mode & 0o777).toBe(0o644);
    expect(await readFile(unit, 'utf8')).toContain(`"serve" "--state-dir" "${state}"`);
    expect(i.out).toContain('  systemctl enable --now borgpull-controller.service');
    expect(i.out[0]).toMatch(/^tunnel user borgpull: created/);
    expect(i.out[1]).toBe(`sshd rules ${join(root, 'etc/ssh/sshd_config.d/borgpull.conf')}: created`);
    expect(await readFile(join(root, 'etc/ssh/sshd_config.d/borgpull.conf'), 'utf8')).toContain(
      `AuthorizedKeysFile ${state}/tunnel/authorized_keys`,
    );
    // Again: each step already done, the unit rewritten.
    const i2 = io();
    await expect(run(['install-service', '--root', root, '--state-dir', state], i2.io)).resolves.toBe(0);
    expect(i2.out.slice(0, 2)).toEqual([
      'tunnel user borgpull: already present',
      `sshd rules ${join(root, 'etc/ssh/sshd_config.d/borgpull.conf')}: already present`,
    ]);

    // --purge without --yes: a usage error before anything is stopped or removed.
    await expect(run(['uninstall-service', '--root', root, '--state-dir', state, '--purge'], io().io)).rejects.toMatchObject({
      code: 'E_USAGE',
    });
    await access(unit);

    const u = io();
    await expect(run(['uninstall-service', '--root', root, '--state-dir', state], u.io)).resolves.toBe(0);
    await expect(access(unit)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(access(join(root, 'etc/ssh/sshd_config.d/borgpull.conf'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toMatch(/^borgpull:/m);
    await access(join(state, 'identity.json'));
    expect(u.out).toContain(`kept ${state} (delete it with --purge --yes)`);

    // Again: idempotent, says so.
    const again = io();
    await expect(run(['uninstall-service', '--root', root, '--state-dir', state], again.io)).resolves.toBe(0);
    expect(again.out[0]).toBe(`${unit} is not installed`);

    await expect(run(['uninstall-service', '--root', root, '--state-dir', state, '--purge', '--yes'], io().io)).resolves.toBe(0);
    await expect(access(state)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('--purge refuses a directory that is not a state dir (no identity.json)', async () => {
    const root = await tempDir();
    const notState = await tempDir();
    await writeFile(join(notState, 'precious'), 'x');
    await expect(run(['uninstall-service', '--root', root, '--state-dir', notState, '--purge', '--yes'], io().io)).rejects.toMatchObject({
      code: 'E_SERVICE_PURGE',
    });
    await access(join(notState, 'precious'));
  });

  it('--purge refuses while anything is mounted inside the state dir (a live client mount)', async () => {
    const root = await tempDir();
    const state = await tempDir();
    await writeFile(join(state, 'identity.json'), '{}');
    const mnt = join(state, 'mnt', 'client');
    await mkdir(mnt, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    try {
      await writeFile(join(mnt, 'client-file'), 'x');
      await expect(run(['uninstall-service', '--root', root, '--state-dir', state, '--purge', '--yes'], io().io)).rejects.toMatchObject({
        code: 'E_SERVICE_PURGE',
        message: expect.stringContaining(`${mnt} is mounted inside`),
      });
      // Nothing deleted at all: not the client's file, not the keys beside the mount.
      await access(join(mnt, 'client-file'));
      await access(join(state, 'identity.json'));
    } finally {
      await execa('umount', [mnt]);
    }
  });
});
