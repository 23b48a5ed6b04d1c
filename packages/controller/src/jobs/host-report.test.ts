import { describe, expect, it } from 'vitest';
import { checkHostReport, clientHostname } from './host-report.js';

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
  };

  it('becomes checked fields and files written from them', () => {
    expect(checkHostReport(report)).toEqual({
      hostname: undefined,
      passwd: 'root:x:0:0::/nonexistent:/usr/sbin/nologin\nalice:x:1000:1000::/nonexistent:/usr/sbin/nologin\n',
      group: 'root:x:0:\nalice:x:1000:\n',
      users: 2,
      groups: 2,
      mountExcludes: ['re:^proc/'],
    });
  });
});
