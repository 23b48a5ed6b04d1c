import { describe, expect, it } from 'vitest';
import { MAX_ENTRIES, formatGroup, formatPasswd, parseGroup, parsePasswd } from './client-names.js';

/** Every line a job binds: name, fixed password field, ids, empty gecos, fixed home and shell. */
const SAFE_PASSWD_LINE = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}\$?:x:\d{1,10}:\d{1,10}::\/nonexistent:\/usr\/sbin\/nologin$/;
const SAFE_GROUP_LINE = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}\$?:x:\d{1,10}:$/;

function passwdOf(text: string): string {
  return formatPasswd(parsePasswd(text));
}

describe('the client passwd a job binds', () => {
  const rows: Array<[string, string, string]> = [
    // [what, reported text, passwd the job binds]
    ["root's home in the mount ('.')", 'root:x:0:0:root:.:/bin/sh', 'root:x:0:0::/nonexistent:/usr/sbin/nologin\n'],
    ["root's home /proc/self/cwd", 'root:x:0:0:root:/proc/self/cwd:/bin/sh', 'root:x:0:0::/nonexistent:/usr/sbin/nologin\n'],
    [
      'a shell and gecos of its own',
      'alice:x:1000:1000:Alice,,,\u001b]0;x\u0007:/home/alice:/tmp/evil',
      'alice:x:1000:1000::/nonexistent:/usr/sbin/nologin\n',
    ],
    ['a CR line ending', 'root:x:0:0:root:/root:/bin/sh\r', 'root:x:0:0::/nonexistent:/usr/sbin/nologin\n'],
    ['an extra field (a colon in gecos)', 'root:x:0:0:a:b:/root:/bin/sh', ''],
    ['too few fields', 'root:x:0:0:/root:/bin/sh', ''],
    ['a control character in a name', 'ro\u001bot:x:0:0::/:/bin/sh', ''],
    ['a NUL in a name', 'ro\u0000ot:x:0:0::/:/bin/sh', ''],
    ['a space in a name', 'a b:x:5:5::/:/bin/sh', ''],
    ['a name that is an option', '-rf:x:5:5::/:/bin/sh', ''],
    ['a NIS compat entry', '+:x:0:0::/:/bin/sh\n+@admins:x:0:0::/:/bin/sh\n-bob:x:0:0::/:/bin/sh', ''],
    ['a dot name', '..:x:5:5::/:/bin/sh', ''],
    ['a non-ASCII name', 'jos\u00e9:x:5:5::/:/bin/sh', ''],
    ['a C1 control in a name', 'a\u009bb:x:5:5::/:/bin/sh', ''],
    ['a 65-character name', `${'a'.repeat(65)}:x:5:5::/:/bin/sh`, ''],
    ['an empty name', ':x:5:5::/:/bin/sh', ''],
    ['uid -1', 'a:x:-1:0::/:/bin/sh', ''],
    ['uid 2^32-1', 'a:x:4294967295:0::/:/bin/sh', ''],
    ['uid 2^32-2 (largest kept)', 'a:x:4294967294:0::/:/bin/sh', 'a:x:4294967294:0::/nonexistent:/usr/sbin/nologin\n'],
    ['uid 2^40', 'a:x:1099511627776:0::/:/bin/sh', ''],
    ['a hex uid', 'a:x:0x10:0::/:/bin/sh', ''],
    ['an exponent uid', 'a:x:1e3:0::/:/bin/sh', ''],
    ['a uid with a space', 'a:x: 1:0::/:/bin/sh', ''],
    ['a uid with a leading zero', 'a:x:01:0::/:/bin/sh', ''],
    ['a fractional gid', 'a:x:1:1.0::/:/bin/sh', ''],
    ['an empty gid', 'a:x:1:::/:/bin/sh', ''],
    ['comments and blank lines', '# root:x:0:0::/:/bin/sh\n\n\nb:x:2:2::/:/bin/sh\n', 'b:x:2:2::/nonexistent:/usr/sbin/nologin\n'],
    [
      'a duplicate name (first kept)',
      'root:x:0:0::/root:/bin/sh\nroot:x:1000:1000::.:/bin/sh',
      'root:x:0:0::/nonexistent:/usr/sbin/nologin\n',
    ],
    ['an overlong line', `a:x:1:1:${'g'.repeat(5000)}:/:/bin/sh`, ''],
    [
      'Samba machine account, @ and dots',
      'host1$:x:3000:3000::/:/bin/false\nu@corp.example:x:3001:3001::/:/bin/sh',
      'host1$:x:3000:3000::/nonexistent:/usr/sbin/nologin\nu@corp.example:x:3001:3001::/nonexistent:/usr/sbin/nologin\n',
    ],
  ];
  it.each(rows)('%s', (_what, text, want) => {
    const got = passwdOf(text);
    expect(got).toBe(want);
    for (const line of got.split('\n').filter(Boolean)) expect(line).toMatch(SAFE_PASSWD_LINE);
  });

  it('keeps valid lines around invalid ones, in order', () => {
    const text = [
      'root:x:0:0:root:.:/bin/sh',
      'garbage',
      'sshd:x:102:65534::/run/sshd:/usr/sbin/nologin',
      'x\u001by:x:9:9::/:/bin/sh',
      'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
    ].join('\n');
    expect(parsePasswd(text)).toEqual([
      { name: 'root', uid: 0, gid: 0 },
      { name: 'sshd', uid: 102, gid: 65534 },
      { name: 'alice', uid: 1000, gid: 1000 },
    ]);
  });

  it('stops at MAX_ENTRIES, quickly, for 10^5 lines', () => {
    const text = Array.from({ length: 100_000 }, (_, i) => `u${i}:x:${i}:${i}::/home/u${i}:/bin/sh`).join('\n');
    const t0 = performance.now();
    const users = parsePasswd(text);
    // Generous for a loaded machine: pairwise comparison of 10^5 entries takes hours.
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(users).toHaveLength(MAX_ENTRIES);
    expect(users[0]).toEqual({ name: 'u0', uid: 0, gid: 0 });
  });

  it('parses 1 MiB of one garbage line (no newline) quickly, to nothing', () => {
    const t0 = performance.now();
    expect(parsePasswd(':'.repeat(1024 * 1024))).toEqual([]);
    expect(parsePasswd('\n'.repeat(1024 * 1024))).toEqual([]);
    // Generous for a loaded machine: pairwise comparison of 10^5 entries takes hours.
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

describe('the client group a job binds', () => {
  const rows: Array<[string, string, string]> = [
    ['members dropped', 'wheel:x:10:alice,bob', 'wheel:x:10:\n'],
    ['a member list with a newline escape attempt', 'staff:x:50:a\u001bb', 'staff:x:50:\n'],
    ['too few fields', 'wheel:x:10', ''],
    ['too many fields', 'wheel:x:10:a:b', ''],
    ['a bad gid', 'wheel:x:-10:', ''],
    ['gid 2^32-1', 'wheel:x:4294967295:', ''],
    ['a control character in a name', 'wh\u0007eel:x:10:', ''],
    ['a NIS compat entry', '+:::', ''],
    ['a duplicate name (first kept)', 'root:x:0:\nroot:x:1000:', 'root:x:0:\n'],
  ];
  it.each(rows)('%s', (_what, text, want) => {
    const got = formatGroup(parseGroup(text));
    expect(got).toBe(want);
    for (const line of got.split('\n').filter(Boolean)) expect(line).toMatch(SAFE_GROUP_LINE);
  });
});
