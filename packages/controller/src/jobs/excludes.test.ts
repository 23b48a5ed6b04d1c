import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { MAX_MOUNT_EXCLUDES, mountExcludes, parseMounts } from './excludes.js';

/** What borg 1.2 itself makes of exclude patterns: the paths (relative, as borg sees them) each one matches. */
function borgMatches(patterns: readonly string[], paths: readonly string[]): string[][] {
  const script = String.raw`
import json, sys, warnings
warnings.simplefilter('error')
from borg.patterns import parse_pattern
req = json.load(sys.stdin)
out = []
for p in req['patterns']:
    pat = parse_pattern(p, recurse_dir=False)
    out.append([x for x in req['paths'] if pat.match(x)])
print(json.dumps(out))
`;
  const res = execFileSync('/usr/bin/python3', ['-c', script], {
    input: JSON.stringify({ patterns, paths }),
    env: { PATH: '/usr/bin:/bin', PYTHONNOUSERSITE: '1', LANG: 'C.UTF-8' },
  });
  return JSON.parse(res.toString()) as string[][];
}

const line = (path: string, type = 'tmpfs'): string => `none ${path} ${type} rw 0 0`;

const PATHS = [
  'etc/passwd',
  'home/alice/notes.txt',
  'proc',
  'proc/1/status',
  'run/user/1000/x',
  'mnt/a*b',
  'mnt/a*b/f',
  'mnt/aXb/f',
  'mnt/a\\b/f',
  'mnt/a[b/f',
  'mnt/a b/f',
  'mnt/x\ny/f',
];

describe('excludes from the mount table the client reports', () => {
  const rows: Array<[string, string, string[], string[]]> = [
    // [what, /proc/mounts text, patterns, paths borg then excludes]
    ['/proc', line('/proc', 'proc'), ['re:^proc/'], ['proc/1/status']],
    ['a real file system is not excluded', line('/home', 'ext4'), [], []],
    ["'/' itself", line('/'), [], []],
    ["'/' in disguise: //", line('//'), [], []],
    ["'/' in disguise: /./", line('/./'), [], []],
    ["'/' in disguise: /\\057 (an escaped slash)", line('/\\057'), [], []],
    ['a path that goes up: /proc/..', line('/proc/..'), [], []],
    ['a path that goes up: /..', line('/..'), [], []],
    ['not absolute', line('proc'), [], []],
    ['a glob: /*', line('/*'), ['re:^\\*/'], []],
    ['a glob: /mnt/a*b', line('/mnt/a*b'), ['re:^mnt/a\\*b/'], ['mnt/a*b/f']],
    ['a glob: /mnt/a?b', line('/mnt/a?b'), ['re:^mnt/a\\?b/'], []],
    ['a bracket: /mnt/a[b', line('/mnt/a[b'), ['re:^mnt/a\\[b/'], ['mnt/a[b/f']],
    ['a backslash (\\134)', line('/mnt/a\\134b'), ['re:^mnt/a\\\\b/'], ['mnt/a\\b/f']],
    ['a space (\\040)', line('/mnt/a\\040b'), ['re:^mnt/a\\ b/'], ['mnt/a b/f']],
    ['a regex: /.*', line('/.*'), ['re:^\\.\\*/'], []],
    ['a regex anchor: /proc|etc', line('/proc|etc'), ['re:^proc\\|etc/'], []],
    ['an escaped newline (\\012)', line('/mnt/x\\012y'), [], []],
    ['an escaped ESC (\\033)', line('/mnt/\\033]0;x'), [], []],
    ['a raw C1 control', line('/mnt/\u009bx'), [], []],
    ['an octal escape above a byte (\\777)', line('/mnt/\\777'), ['re:^mnt/\\\\777/'], []],
    ['not UTF-8 on the client (U+FFFD)', line('/mnt/\ufffd'), [], []],
    ['a trailing slash and doubled slashes', line('//run//user/'), ['re:^run/user/'], ['run/user/1000/x']],
    [
      'a nested mount folds into its parent',
      [line('/run'), line('/run/user/1000'), line('/run\\040user')].join('\n'),
      ['re:^run/', 're:^run\\ user/'],
      ['run/user/1000/x'],
    ],
    ['a path longer than PATH_MAX', line(`/${'a'.repeat(5000)}`), [], []],
    ['garbage lines', 'x\n\n   \n a b\n', [], []],
  ];
  it.each(rows)('%s', (_what, text, want, excluded) => {
    const got = mountExcludes(parseMounts(text));
    expect(got).toEqual(want);
    const matched = got.length === 0 ? [] : borgMatches(got, PATHS).flat();
    expect([...new Set(matched)].sort()).toEqual([...excluded].sort());
  });

  it('never excludes a path outside the reported mounts, whatever the table (checked by borg)', () => {
    const text = ['//', '/./', '/.', '/*', '/**', '/?', '/[', '/.*', '/\\134', '/a/../..', '/proc/../etc', '/\\012etc']
      .map((p) => line(p))
      .join('\n');
    const got = mountExcludes(parseMounts(text));
    const matched = borgMatches(got, PATHS).flat();
    expect(matched).toEqual([]);
  });

  it('folds 10^5 nested entries quickly', () => {
    const text = Array.from({ length: 100_000 }, (_, i) => line(`/run/c${i % 100}/m${i}`)).join('\n');
    const t0 = performance.now();
    const got = mountExcludes(parseMounts(`${line('/run')}\n${text}`));
    // Generous for a loaded machine: pairwise comparison of 10^5 entries takes hours.
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(got).toEqual(['re:^run/']);
  });

  it('refuses a table with more patterns than borg can be handed (E_JOB_MOUNTS), quickly', () => {
    const text = Array.from({ length: 100_000 }, (_, i) => line(`/m${i}`)).join('\n');
    const t0 = performance.now();
    let code: unknown;
    try {
      mountExcludes(parseMounts(text));
    } catch (err) {
      code = (err as { code?: unknown }).code;
    }
    // Generous for a loaded machine: pairwise comparison of 10^5 entries takes hours.
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(code).toBe('E_JOB_MOUNTS');
    expect(mountExcludes(parseMounts(Array.from({ length: MAX_MOUNT_EXCLUDES }, (_, i) => line(`/m${i}`)).join('\n')))).toHaveLength(
      MAX_MOUNT_EXCLUDES,
    );
  });
});
