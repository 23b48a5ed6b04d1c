import { describe, expect, it } from 'vitest';
import { compareSemver, parseSemver, versionCell, versionStatus } from './agent-version.js';

function cmp(a: string, b: string): number {
  const x = parseSemver(a);
  const y = parseSemver(b);
  if (!x || !y) throw new Error(`not semver: ${a} or ${b}`);
  return compareSemver(x, y);
}

describe('parseSemver', () => {
  it.each([
    ['0.1.0'],
    ['1.2.3'],
    ['10.20.30'],
    ['1.0.0-alpha'],
    ['1.0.0-alpha.1'],
    ['1.0.0-0.3.7'],
    ['1.0.0-x.7.z.92'],
    ['1.0.0+20130313144700'],
    ['1.0.0-beta+exp.sha.5114f85'],
    ['1.0.0-x-y-z.--'],
    ['99999999999999999999999.0.0'],
  ])('accepts %s', (v) => expect(parseSemver(v)).toBeDefined());

  it.each([
    [''],
    ['1'],
    ['1.2'],
    ['1.2.3.4'],
    ['01.2.3'],
    ['1.02.3'],
    ['1.2.03'],
    ['v1.2.3'],
    ['1.2.3-'],
    ['1.2.3-01'],
    ['1.2.3-a..b'],
    ['1.2.3+'],
    ['1.2.3+a..b'],
    ['1.2.3-é'],
    [' 1.2.3'],
    ['1.2.3\n'],
    ['1.2.3\\x1b'],
    ['-1.2.3'],
    ['1.2.3-' + 'a.'.repeat(100) + 'a'],
  ])('refuses %j', (v) => expect(parseSemver(v)).toBeUndefined());
});

describe('compareSemver (semver.org precedence)', () => {
  it('orders the spec example chain', () => {
    const chain = [
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-alpha.beta',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
    ];
    for (const [i, lower] of chain.slice(0, -1).entries()) {
      const higher = chain[i + 1] ?? '';
      expect(cmp(lower, higher), `${lower} < ${higher}`).toBe(-1);
      expect(cmp(higher, lower)).toBe(1);
    }
  });

  it('compares numbers as numbers, not text, at any size', () => {
    expect(cmp('0.9.0', '0.10.0')).toBe(-1);
    expect(cmp('2.0.0', '10.0.0')).toBe(-1);
    expect(cmp('1.0.10', '1.0.9')).toBe(1);
    expect(cmp('99999999999999999999998.0.0', '99999999999999999999999.0.0')).toBe(-1);
  });

  it('ignores build metadata', () => {
    expect(cmp('1.0.0+a', '1.0.0+b')).toBe(0);
    expect(cmp('1.0.0-rc.1+x', '1.0.0-rc.1')).toBe(0);
  });
});

describe('versionStatus', () => {
  it.each([
    ['borgpull-agent/0.1.0', '0.1.0', 'current'],
    ['borgpull-agent/0.0.9', '0.1.0', 'outdated'],
    ['borgpull-agent/0.1.0-rc.1', '0.1.0', 'outdated'],
    ['borgpull-agent/0.9.0', '0.10.0', 'outdated'],
    ['borgpull-agent/0.2.0', '0.1.0', 'newer'],
    ['borgpull-agent/0.1.0+build', '0.1.0', 'current'],
    // not a borgpull agent's version string: the agent's word, never a claim we can compare
    ['test', '0.1.0', 'unknown'],
    ['borgpull-agent/', '0.1.0', 'unknown'],
    ['borgpull-agent/0.1', '0.1.0', 'unknown'],
    ['borgpull-agent/0.0.1 borgpull-agent/9.9.9', '0.1.0', 'unknown'],
    ['xborgpull-agent/9.9.9', '0.1.0', 'unknown'],
    ['evil\\x9b2J', '0.1.0', 'unknown'],
  ] as const)('%j against %s is %s', (software, own, status) => expect(versionStatus(software, own)).toBe(status));

  it('is unknown without a version, or when our own is not semver', () => {
    expect(versionStatus(null, '0.1.0')).toBe('unknown');
    expect(versionStatus('borgpull-agent/0.1.0', 'dev')).toBe('unknown');
  });
});

describe('versionCell', () => {
  it('flags outdated and unknown versions, and nothing else', () => {
    expect(versionCell({ version: 'borgpull-agent/0.1.0', outdated: false })).toBe('borgpull-agent/0.1.0');
    expect(versionCell({ version: 'borgpull-agent/0.0.9', outdated: true })).toBe('borgpull-agent/0.0.9 (outdated)');
    expect(versionCell({ version: 'evil\\x9b2J', outdated: false })).toBe('evil\\x9b2J (unknown)');
    expect(versionCell({ version: null, outdated: false })).toBe('-');
  });
});
