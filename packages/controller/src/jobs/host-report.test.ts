import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkHostReport, checkHostKey, clientHostname, knownHostsFile } from './host-report.js';

const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILTCW7GSfTmBunDXLmjYqUYxpN5DkrLNij5dew0sNAso';
const ECDSA =
  'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKaLORILAsglCBPy3UXCw0liL+z4/4gqNYW8bDFF2h5d6yeWbAoG88rOevMg4raehGKuVP5c6yY2L4PX/5XErFU=';
const OTHER_ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM5gcHeKB6mZKcmqB7I1TqwnmRrCTm+wH3jxYXLtHkPt';

function code(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe("the client's sshd host key written to known_hosts", () => {
  it.each([ED, ECDSA])('accepts %s as it is', (key) => {
    expect(checkHostKey(key)).toBe(key);
  });

  const hostile: Array<[string, string]> = [
    ['a second line: @cert-authority for every host', `${ED}\n@cert-authority * ${OTHER_ED}`],
    ['a second line: another host', `${ED}\n* ${OTHER_ED}`],
    ['a CR line break', `${ED}\r* ${OTHER_ED}`],
    ['a comment', `${ED} root@client`],
    ['two keys on one line', `${ED} ${OTHER_ED}`],
    ['a marker first', `@cert-authority ${ED}`],
    ['@revoked first', `@revoked ${ED}`],
    ['a host pattern first', `* ${ED}`],
    ['leading space', ` ${ED}`],
    ['trailing newline', `${ED}\n`],
    ['a tab between fields', ED.replace(' ', '\t')],
    ['a certificate type', `ssh-ed25519-cert-v01@openssh.com ${ED.split(' ')[1]}`],
    ['an unknown type', `ssh-dss ${ED.split(' ')[1]}`],
    ['a type that does not match the blob', `ssh-rsa ${ED.split(' ')[1]}`],
    ['base64 that does not round-trip', `ssh-ed25519 ${ED.split(' ')[1]!.slice(0, -1)}`],
    ['not base64', 'ssh-ed25519 AAAA$$$$AAAAAAAAAAAAAAAA'],
    ['a short blob', 'ssh-ed25519 AAAAAAAAAAAAAAAAAAAAAAAA'],
    ['empty', ''],
    ['not a key at all', 'hello world'],
    ['huge', `ssh-ed25519 ${'A'.repeat(20_000)}`],
  ];
  it.each(hostile)('refuses %s (E_JOB_HOSTKEY)', (_what, key) => {
    expect(code(() => checkHostKey(key))).toBe('E_JOB_HOSTKEY');
    expect(code(() => knownHostsFile('borgpull-agent-web1', key))).toBe('E_JOB_HOSTKEY');
  });

  it('writes one line that ssh reads as exactly one key for the alias', () => {
    const text = knownHostsFile('borgpull-agent-web1', ED);
    expect(text).toBe(`borgpull-agent-web1 ${ED}\n`);
    const dir = mkdtempSync(join(tmpdir(), 'borgpull-kh-'));
    try {
      const file = join(dir, 'known_hosts');
      writeFileSync(file, text);
      const found = execFileSync('ssh-keygen', ['-F', 'borgpull-agent-web1', '-f', file]).toString();
      expect(found.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([`borgpull-agent-web1 ${ED}`]);
      // Any other host name finds nothing (ssh-keygen -F exits 1).
      expect(() => execFileSync('ssh-keygen', ['-F', 'evil.example', '-f', file], { stdio: 'pipe' })).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the client's hostname", () => {
  it.each([
    ['web1', 'web1'],
    ['web-1.example.org', 'web-1.example.org'],
    ['a\nb', undefined],
    ['\u001b]0;owned\u0007', undefined],
    ['a\u009bb', undefined],
    ['-rf', undefined],
    ['h'.repeat(254), undefined],
    ['', undefined],
    ['caf\u00e9', undefined],
  ])('%j -> %j', (h, want) => {
    expect(clientHostname(h)).toBe(want);
  });
});

describe('a whole host report', () => {
  const report = {
    hostname: 'web1\u001b[2J',
    passwd: 'root:x:0:0:root:.:/bin/sh\nalice:x:1000:1000::/proc/self/cwd:/bin/sh\n',
    group: 'root:x:0:\nalice:x:1000:alice\n',
    mounts: 'proc /proc proc rw 0 0\nnone // tmpfs rw 0 0\n',
    sshHostKey: ED,
  };

  it('becomes checked fields and files written from them', () => {
    expect(checkHostReport(report, 'borgpull-agent-web1')).toEqual({
      hostname: undefined,
      passwd: 'root:x:0:0::/nonexistent:/usr/sbin/nologin\nalice:x:1000:1000::/nonexistent:/usr/sbin/nologin\n',
      group: 'root:x:0:\nalice:x:1000:\n',
      users: 2,
      groups: 2,
      knownHosts: `borgpull-agent-web1 ${ED}\n`,
      mountExcludes: ['re:^proc/'],
    });
  });

  it('fails the job on a host key line with a second line in it', () => {
    expect(code(() => checkHostReport({ ...report, sshHostKey: `${ED}\n@cert-authority * ${OTHER_ED}` }, 'borgpull-agent-web1'))).toBe(
      'E_JOB_HOSTKEY',
    );
  });
});
