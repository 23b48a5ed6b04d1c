/**
 * The tunnel sshd check, against the real sshd (`sshd -T`) with configs
 * written here: the README's rules pass; each hole of the earlier rules, and
 * each sibling, fails by name. Plus `sshd -T` output parsed as untrusted text.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSshd, clean, evaluate, parseSshdT, unsafeMessage } from './sshd-check.js';
import { ageMs, listeningInodes, uidIn } from './tunnel-sessions.js';

/** The README's quick-start rules (sshd_config.d/borgpull.conf). */
const README_RULES = [
  'Match User borgpull',
  '    AuthorizedKeysFile /var/lib/borgpull/tunnel/authorized_keys',
  '    AllowTcpForwarding remote',
  '    AllowStreamLocalForwarding no',
  '    GatewayPorts no',
  '    PermitTunnel no',
  '    X11Forwarding no',
  '    AllowAgentForwarding no',
  '    PermitTTY no',
  '    PermitUserRC no',
  '    ForceCommand /bin/false',
];

/** The README's rules before issue 7. */
const OLD_README_RULES = [
  'Match User borgpull',
  '    AuthorizedKeysFile /var/lib/borgpull/tunnel/authorized_keys',
  '    AllowTcpForwarding remote',
  '    X11Forwarding no',
  '    AllowAgentForwarding no',
  '    PermitTTY no',
];

let dir = '';
let hostKey = '';
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'bp-sshd-check-'));
  hostKey = join(dir, 'hostkey');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A config like Debian's (global settings permissive, as shipped), then `rules`. */
function config(rules: readonly string[], global: readonly string[] = ['X11Forwarding yes']): string {
  const file = join(dir, `sshd_config-${++n}`);
  writeFileSync(file, [`HostKey ${hostKey}`, 'PidFile none', 'UsePAM yes', ...global, ...rules, ''].join('\n'));
  return file;
}

function failing(report: { checks: Array<{ setting: string; ok: boolean }> }): string[] {
  return report.checks.filter((c) => !c.ok).map((c) => c.setting);
}

describe('checkSshd (real sshd -T)', () => {
  it("passes the README's rules, and fails the earlier ones on Unix-socket forwarding, command and rc", async () => {
    const ok = await checkSshd({ sshdConfig: config(README_RULES), tunnelUser: 'borgpull', sshPort: 22 });
    expect(failing(ok)).toEqual([]);
    expect(ok.ok).toBe(true);
    const old = await checkSshd({ sshdConfig: config(OLD_README_RULES), tunnelUser: 'borgpull', sshPort: 22 });
    expect(old.ok).toBe(false);
    expect(failing(old)).toEqual(['AllowStreamLocalForwarding', 'ForceCommand', 'PermitUserRC']);
    const line = unsafeMessage(old);
    expect(line).not.toContain('\n');
    expect(line).toContain('AllowStreamLocalForwarding is yes');
    expect(line).toContain("add 'AllowStreamLocalForwarding no' to its 'Match User borgpull' block");
  });

  it.each([
    ['AllowTcpForwarding yes', 'AllowTcpForwarding'],
    ['AllowTcpForwarding local', 'AllowTcpForwarding'],
    ['AllowTcpForwarding no', 'AllowTcpForwarding'],
    ['DisableForwarding yes', 'DisableForwarding'],
    ['AllowStreamLocalForwarding remote', 'AllowStreamLocalForwarding'],
    ['GatewayPorts clientspecified', 'GatewayPorts'],
    ['PermitTunnel point-to-point', 'PermitTunnel'],
    ['X11Forwarding yes', 'X11Forwarding'],
    ['AllowAgentForwarding yes', 'AllowAgentForwarding'],
    ['PermitTTY yes', 'PermitTTY'],
    ['ForceCommand internal-sftp', 'ForceCommand'],
    ['PermitUserRC yes', 'PermitUserRC'],
  ])('fails %s (in the Match block, before the README lines: the first value wins)', async (line, setting) => {
    const rules = ['Match User borgpull', `    ${line}`, ...README_RULES.slice(1)];
    const r = await checkSshd({ sshdConfig: config(rules), tunnelUser: 'borgpull', sshPort: 22 });
    expect(failing(r)).toEqual([setting]);
  });

  it('fails PermitUserEnvironment yes (global only), and says where the fix goes', async () => {
    const r = await checkSshd({ sshdConfig: config(README_RULES, ['PermitUserEnvironment yes']), tunnelUser: 'borgpull', sshPort: 22 });
    expect(failing(r)).toEqual(['PermitUserEnvironment']);
    expect(unsafeMessage(r)).toContain("set 'PermitUserEnvironment no' in the sshd config, outside any Match block");
  });

  it('catches a Match Address block that loosens the rules for remote clients only', async () => {
    const rules = ['Match User borgpull Address 192.0.2.0/24,10.0.0.0/8', '    AllowStreamLocalForwarding yes', ...README_RULES];
    const r = await checkSshd({ sshdConfig: config(rules), tunnelUser: 'borgpull', sshPort: 22 });
    const c = r.checks.find((x) => x.setting === 'AllowStreamLocalForwarding');
    expect(c?.ok).toBe(false);
    expect(c?.found).toBe('no (from 127.0.0.1), yes (from 192.0.2.1)');
  });

  it('checks the configured tunnel user, not borgpull', async () => {
    const r = await checkSshd({ sshdConfig: config(README_RULES), tunnelUser: 'tunnel', sshPort: 22 });
    expect(failing(r)).toContain('AllowStreamLocalForwarding');
  });

  it('says so when sshd -T fails, or the user name would inject criteria', async () => {
    await expect(checkSshd({ sshdConfig: join(dir, 'missing'), tunnelUser: 'borgpull', sshPort: 22 })).rejects.toMatchObject({
      code: 'E_SSHD_CHECK',
    });
    const bad = join(dir, 'bad_config');
    writeFileSync(bad, `HostKey ${hostKey}\nNoSuchKeyword yes\n`);
    await expect(checkSshd({ sshdConfig: bad, tunnelUser: 'borgpull', sshPort: 22 })).rejects.toMatchObject({ code: 'E_SSHD_CHECK' });
    await expect(checkSshd({ sshdConfig: config(README_RULES), tunnelUser: 'borgpull,addr=10.0.0.1', sshPort: 22 })).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
    });
    await expect(
      checkSshd({ sshdConfig: config(README_RULES), tunnelUser: 'borgpull', sshPort: 22, sshd: join(dir, 'no-sshd') }),
    ).rejects.toMatchObject({ code: 'E_SSHD_MISSING' });
  });
});

describe('parseSshdT (untrusted text)', () => {
  it('keeps lowercase keywords, the first value, strips control characters and bounds everything', () => {
    const m = parseSshdT(
      [
        'allowstreamlocalforwarding no',
        'allowstreamlocalforwarding yes',
        'AllowTcpForwarding Remote',
        'x11forwarding \u001b]0;pwned\u0007no',
        'bad-key yes',
        '__proto__ polluted',
        `forcecommand ${'a'.repeat(5000)}`,
        '',
      ].join('\n'),
    );
    expect(m.get('allowstreamlocalforwarding')).toBe('no');
    expect(m.get('allowtcpforwarding')).toBe('Remote'); // values stay as printed: 'Remote' is not 'remote'
    expect(m.get('x11forwarding')).toBe('?]0;pwned?no');
    expect(m.has('bad-key')).toBe(false);
    expect(m.has('__proto__')).toBe(false);
    expect(m.get('forcecommand')?.length).toBe(1024);
    expect(parseSshdT('x'.repeat(2 * 1024 * 1024)).size).toBeLessThanOrEqual(1);
    expect(clean('a\u009bb')).toBe('a?b');
  });

  it('treats a setting sshd did not report as failing', () => {
    const checks = evaluate(new Map([['127.0.0.1', new Map<string, string>()]]));
    expect(checks.every((c) => !c.ok && c.found === '(not reported)')).toBe(true);
  });
});

describe('tunnel sessions: /proc parsing', () => {
  it('finds listening sockets on 127.0.0.1:PORT only', () => {
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 64999        0 111 1 0',
      '   1: 0100007F:9C40 0100007F:D000 01 00000000:00000000 00:00000000 00000000 64999        0 222 1 0',
      '   2: 0100007F:9C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000 64999        0 333 1 0',
      '   3: 0200007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 64999        0 444 1 0',
      'garbage',
    ].join('\n');
    expect(listeningInodes(tcp, 40000)).toEqual([111]);
  });

  it("reads a process's age from /proc/PID/stat, whatever its name holds", () => {
    // pid (comm) state ppid ... field 22 = starttime in clock ticks since boot
    const fields = ['S', ...Array.from({ length: 18 }, () => '0'), '12345', '0'];
    expect(ageMs(`42 (sshd: a) b) ${fields.join(' ')}`, 200)).toBe(200_000 - 123_450);
    expect(ageMs('garbage', 200)).toBeUndefined();
  });

  it('reads a uid from passwd text, or nothing', () => {
    const pw = 'root:x:0:0:root:/root:/bin/bash\nborgpull:x:64999:64999::/nonexistent:/usr/sbin/nologin\nbad:x:zz:1::/:/bin/sh\n';
    expect(uidIn(pw, 'borgpull')).toBe(64999);
    expect(uidIn(pw, 'bad')).toBeUndefined();
    expect(uidIn(pw, 'nobody')).toBeUndefined();
  });
});
