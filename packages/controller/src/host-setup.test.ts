import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { TUNNEL_RULES } from '../../../test/harness/sshd-config.js';
import { dropInText, setupHost, SSHD_DROP_IN, tunnelRules, undoHostSetup, unmodifiedDropIn } from './host-setup.js';
import { checkSshd } from './sshd-check.js';

// Every test works in a throwaway root (useradd --root): this machine's own users and sshd are never touched.

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const STATE = '/var/lib/borgpull';

/** A root with what useradd and sshd's config need: passwd, group, shadow, gshadow, sshd_config with Debian's Include. */
async function throwawayRoot(extra: { passwd?: string; sshdConfig?: string } = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'borgpull-host-'));
  dirs.push(root);
  await mkdir(join(root, 'etc/ssh/sshd_config.d'), { recursive: true });
  await writeFile(join(root, 'etc/passwd'), `root:x:0:0:root:/root:/bin/bash\n${extra.passwd ?? ''}`);
  await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n');
  await writeFile(join(root, 'etc/gshadow'), 'root:*::\n');
  await chmod(join(root, 'etc/shadow'), 0o640);
  await chmod(join(root, 'etc/gshadow'), 0o640);
  await writeFile(join(root, 'etc/ssh/sshd_config'), extra.sshdConfig ?? 'Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n');
  return root;
}

function setup(root: string, more: { print?: boolean; tunnelUser?: string; stateDir?: string } = {}) {
  const out: string[] = [];
  const o = {
    root,
    stateDir: more.stateDir ?? STATE,
    tunnelUser: more.tunnelUser ?? 'borgpull',
    print: more.print,
    io: { out: (s: string) => out.push(s) },
  };
  return { out, o };
}

const read = (root: string, rel: string) => readFile(join(root, rel), 'utf8');

describe('setup-host in a throwaway root', () => {
  it('creates a locked system user with no shell and the drop-in, once; a second run finds both', async () => {
    const root = await throwawayRoot();
    const first = setup(root);
    await setupHost(first.o);
    expect(first.out[0]).toMatch(/^tunnel user borgpull: created \(useradd --root .* --system .*--shell \/usr\/sbin\/nologin borgpull\)$/);
    expect(first.out).toContain(`sshd rules ${join(root, SSHD_DROP_IN)}: created`);
    expect(first.out.at(-1)).toBe(`sshd: not reloaded (set up under ${root}); on that system run: systemctl reload ssh`);

    const passwd = await read(root, 'etc/passwd');
    const line = passwd.split('\n').find((l) => l.startsWith('borgpull:')) ?? '';
    const [, , uid, , , home, shell] = line.split(':');
    expect(Number(uid)).toBeLessThan(1000); // --system
    expect(Number(uid)).toBeGreaterThan(0);
    expect([home, shell]).toEqual(['/nonexistent', '/usr/sbin/nologin']);
    expect(
      (await read(root, 'etc/shadow'))
        .split('\n')
        .find((l) => l.startsWith('borgpull:'))
        ?.split(':')[1],
    ).toBe('!'); // locked
    const dropIn = join(root, SSHD_DROP_IN);
    expect((await stat(dropIn)).mode & 0o777).toBe(0o644);
    expect(await readFile(dropIn, 'utf8')).toBe(dropInText('borgpull', STATE));

    const files = async () => Promise.all(['etc/passwd', 'etc/shadow', 'etc/group', SSHD_DROP_IN].map((f) => read(root, f)));
    const before = await files();
    const again = setup(root);
    await setupHost(again.o);
    expect(again.out).toEqual(['tunnel user borgpull: already present', `sshd rules ${dropIn}: already present`]);
    expect(await files()).toEqual(before);
  });

  it('--print says every step and changes nothing', async () => {
    const root = await throwawayRoot();
    const p = setup(root, { print: true });
    await setupHost(p.o);
    expect(p.out[0]).toMatch(/^tunnel user borgpull: missing; would run: useradd --root /);
    expect(p.out).toContain(`sshd rules ${join(root, SSHD_DROP_IN)}: would be created:`);
    expect(p.out).toContain('  Match User borgpull');
    expect(p.out.at(-1)).toMatch(/^sshd: would be reloaded/);
    expect(await read(root, 'etc/passwd')).toBe('root:x:0:0:root:/root:/bin/bash\n');
    await expect(stat(join(root, SSHD_DROP_IN))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it("the rules pass sshd -T's check and are the harness's TUNNEL_RULES (less the global PermitUserEnvironment, sshd's default)", async () => {
    const root = await throwawayRoot();
    await setupHost(setup(root).o);
    // The real sshd reads the drop-in the way Debian's sshd_config includes it.
    const hostKey = join(root, 'hostkey');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    const config = join(root, 'sshd_config');
    await writeFile(config, `Include ${join(root, 'etc/ssh/sshd_config.d')}/*.conf\nHostKey ${hostKey}\nUsePAM yes\n`);
    const report = await checkSshd({ sshdConfig: config, tunnelUser: 'borgpull', sshPort: 22 });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    const ours = tunnelRules('borgpull', STATE)
      .slice(2)
      .map((l) => l.trim());
    expect(new Set(ours)).toEqual(new Set(TUNNEL_RULES.filter((r) => r !== 'PermitUserEnvironment no')));
  });

  it("are the rules the README shows under 'The backup server'", async () => {
    const readme = await readFile(join(import.meta.dirname, '../../../README.md'), 'utf8');
    const m = /\n( *)```\n\1(Match User borgpull\n[\s\S]*?)\n\1```\n/.exec(readme);
    const indent = m?.[1] ?? '';
    expect(`${indent}${m?.[2] ?? ''}`.split('\n').map((l) => l.slice(indent.length))).toEqual(tunnelRules('borgpull', STATE));
  });

  it('refuses to replace a drop-in changed by hand (E_SETUP_CONFLICT) and leaves it as it was', async () => {
    const root = await throwawayRoot();
    await setupHost(setup(root).o);
    const dropIn = join(root, SSHD_DROP_IN);
    // An admin's edit (here a loosening; a tightening is refused the same way): not borgpull's to undo or keep quiet about.
    const edited = (await readFile(dropIn, 'utf8')).replace('AllowStreamLocalForwarding no', 'AllowStreamLocalForwarding yes');
    await writeFile(dropIn, edited);
    await expect(setupHost(setup(root).o)).rejects.toMatchObject({ code: 'E_SETUP_CONFLICT' });
    expect(await readFile(dropIn, 'utf8')).toBe(edited);
    // A file of someone else's at that path (no checksum line): the same.
    await writeFile(dropIn, 'Match User borgpull\n    AllowTcpForwarding yes\n');
    await expect(setupHost(setup(root).o)).rejects.toMatchObject({ code: 'E_SETUP_CONFLICT' });
    expect(await readFile(dropIn, 'utf8')).toBe('Match User borgpull\n    AllowTcpForwarding yes\n');
    // uninstall keeps it too, and says so.
    const u = setup(root);
    await undoHostSetup(u.o);
    expect(u.out[0]).toBe(`sshd rules ${dropIn}: changed by hand: kept (delete it yourself if it is no longer wanted)`);
    expect(await readFile(dropIn, 'utf8')).toContain('AllowTcpForwarding yes');
  });

  it("replaces a drop-in an earlier borgpull wrote (its checksum still matches): that is an upgrade's new rules", async () => {
    const root = await throwawayRoot();
    const old = dropInText('borgpull', '/srv/old-state');
    expect(unmodifiedDropIn(old)).toBe(true);
    await writeFile(join(root, SSHD_DROP_IN), old);
    const s = setup(root);
    await setupHost(s.o);
    expect(s.out).toContain(`sshd rules ${join(root, SSHD_DROP_IN)}: updated (an earlier version of borgpull wrote it)`);
    expect(await read(root, SSHD_DROP_IN)).toBe(dropInText('borgpull', STATE));
  });

  it('says so, and changes nothing, when the tunnel user exists with a login shell', async () => {
    const root = await throwawayRoot({ passwd: 'borgpull:x:998:998::/home/borgpull:/bin/bash\n' });
    const s = setup(root);
    await setupHost(s.o);
    expect(s.out[0]).toMatch(
      /^tunnel user borgpull: already present, with the shell \/bin\/bash: left as it is .*usermod --shell \/usr\/sbin\/nologin borgpull\)$/,
    );
    expect(await read(root, 'etc/passwd')).toContain('borgpull:x:998:998::/home/borgpull:/bin/bash\n');
  });

  it('refuses a tunnel user with uid 0 before writing any rule for it', async () => {
    const root = await throwawayRoot({ passwd: 'toor:x:0:0::/root:/bin/bash\n' });
    await expect(setupHost(setup(root, { tunnelUser: 'toor' }).o)).rejects.toMatchObject({ code: 'E_SETUP_CONFLICT' });
    await expect(stat(join(root, SSHD_DROP_IN))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a state dir or user name that would add sshd directives, before touching anything', async () => {
    const root = await throwawayRoot();
    for (const bad of [
      { stateDir: '/srv/x\nMatch all\n    AllowTcpForwarding yes' },
      { stateDir: '/srv/x /etc/ssh/other_keys' },
      { stateDir: '/srv/%h' },
      { stateDir: '/srv/../etc' },
      { tunnelUser: 'borgpull\nMatch all' },
      { tunnelUser: 'borgpull,root' },
    ]) {
      await expect(setupHost(setup(root, bad).o), JSON.stringify(bad)).rejects.toMatchObject({ code: 'E_SETUP_ARG' });
    }
    expect(await read(root, 'etc/passwd')).toBe('root:x:0:0:root:/root:/bin/bash\n');
    await expect(stat(join(root, SSHD_DROP_IN))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('warns when sshd_config does not include sshd_config.d', async () => {
    const root = await throwawayRoot({ sshdConfig: 'UsePAM yes\n' });
    const s = setup(root);
    await setupHost(s.o);
    expect(s.out.some((l) => l.startsWith('warning:') && l.includes("add 'Include /etc/ssh/sshd_config.d/*.conf' at its top"))).toBe(true);
  });

  it('--undo removes the drop-in it wrote and keeps the user', async () => {
    const root = await throwawayRoot();
    await setupHost(setup(root).o);
    const u = setup(root);
    await undoHostSetup(u.o);
    expect(u.out.slice(0, 2)).toEqual([
      `sshd rules ${join(root, SSHD_DROP_IN)}: removed`,
      'tunnel user borgpull: kept (files may belong to it; userdel borgpull removes it)',
    ]);
    await expect(stat(join(root, SSHD_DROP_IN))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await read(root, 'etc/passwd')).toMatch(/^borgpull:/m);
    const again = setup(root);
    await undoHostSetup(again.o);
    expect(again.out[0]).toBe(`sshd rules ${join(root, SSHD_DROP_IN)}: not present`);
  });
});
