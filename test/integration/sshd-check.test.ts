/**
 * `controller serve` refuses to run on top of a tunnel sshd that would let a
 * client do more than forward its own port, and `controller check` says which
 * rule fails. Real executables, real `sshd -T` on configs written here.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROLLER_BIN, cli, freePort, safeSshdConfig } from './procs.js';

let tmp = '';
let hostKey = '';
let seq = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bp-sshd-'));
  hostKey = join(tmp, 'hostkey');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** `controller init` with this sshd config; returns the state dir. */
async function init(sshdConfig: string): Promise<string> {
  const dir = join(tmp, `state-${++seq}`);
  const r = await cli(CONTROLLER_BIN, [
    'init',
    '--url',
    `ws://127.0.0.1:${await freePort()}`,
    '--ssh-host-key',
    `${hostKey}.pub`,
    '--sshd-config',
    sshdConfig,
    // No job starts by itself in a test that did not ask for one.
    '--schedule',
    'off',
    '--state-dir',
    dir,
  ]);
  expect(r.exitCode, r.stderr).toBe(0);
  return dir;
}

/** The README's rules before issue 7, in a Debian-like config. */
async function oldReadmeConfig(): Promise<string> {
  const file = join(tmp, 'old_sshd_config');
  await writeFile(
    file,
    [
      `HostKey ${hostKey}`,
      'X11Forwarding yes',
      'Match User borgpull',
      '    AuthorizedKeysFile /var/lib/borgpull/tunnel/authorized_keys',
      '    AllowTcpForwarding remote',
      '    X11Forwarding no',
      '    AllowAgentForwarding no',
      '    PermitTTY no',
      '',
    ].join('\n'),
  );
  return file;
}

describe('the tunnel sshd check', () => {
  it('controller serve refuses an unsafe sshd in one line, and controller check names each failing rule', async () => {
    const dir = await init(await oldReadmeConfig());
    const serve = await cli(CONTROLLER_BIN, ['serve', '--state-dir', dir], 20_000);
    expect(serve.exitCode).toBe(1);
    expect(serve.stderr.split('\n')).toHaveLength(1);
    expect(serve.stderr).toMatch(
      /^controller: the tunnel sshd \(.*old_sshd_config\) lets user borgpull do more than its tunnel: AllowStreamLocalForwarding is yes \(no Unix-socket forwarding, either way\); add 'AllowStreamLocalForwarding no' to its 'Match User borgpull' block; 2 more: ForceCommand, PermitUserRC/,
    );
    // It stopped before anything else: no admin socket, nobody listening.
    expect(existsSync(join(dir, 'admin.sock'))).toBe(false);

    const check = await cli(CONTROLLER_BIN, ['check', '--state-dir', dir]);
    expect(check.exitCode).toBe(1);
    const lines = check.stdout.split('\n');
    expect(lines).toContain('ok    AllowTcpForwarding remote');
    expect(lines).toContain(
      "FAIL  AllowStreamLocalForwarding is yes (no Unix-socket forwarding, either way): add 'AllowStreamLocalForwarding no' to its 'Match User borgpull' block",
    );
    expect(lines.filter((l) => l.startsWith('FAIL'))).toHaveLength(3);
    const json = await cli(CONTROLLER_BIN, ['check', '--json', '--state-dir', dir]);
    expect(json.exitCode).toBe(1);
    expect((JSON.parse(json.stdout) as { ok: boolean }).ok).toBe(false);
  });

  it('controller check passes the README rules', async () => {
    const dir = await init(safeSshdConfig(tmp, hostKey));
    const check = await cli(CONTROLLER_BIN, ['check', '--state-dir', dir]);
    expect(check.exitCode, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).not.toContain('FAIL');
    expect(check.stdout).toContain('the tunnel user may forward its own port and nothing else');
  });

  it('controller serve refuses, in one line, when sshd -T cannot read the config', async () => {
    const dir = await init(join(tmp, 'no_such_sshd_config'));
    const serve = await cli(CONTROLLER_BIN, ['serve', '--state-dir', dir], 20_000);
    expect(serve.exitCode).toBe(1);
    expect(serve.stderr.split('\n')).toHaveLength(1);
    expect(serve.stderr).toMatch(/^controller: cannot read the tunnel sshd's settings \('\/usr\/sbin\/sshd -T -f .*no_such_sshd_config'\)/);
  });
});
