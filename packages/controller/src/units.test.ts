import { describe, expect, it } from 'vitest';
import { formatDuration, formatSize, formatSizeExact, MAX_SIZE, parseDuration, parseSize } from './units.js';

describe('parseSize', () => {
  it.each([
    ['500G', 500 * 2 ** 30],
    ['2T', 2 * 2 ** 40],
    ['1.5T', 1.5 * 2 ** 40],
    ['10MiB', 10 * 2 ** 20],
    ['10M', 10 * 2 ** 20],
    ['4096', 4096],
    ['4096B', 4096],
    [0, 0],
    [1_000_000, 1_000_000],
  ])('reads %j', (v, want) => {
    expect(parseSize(v)).toBe(want);
  });

  // What a hand-edited or hostile config.json can hold: each must be an error text, never a number.
  it.each([
    -1,
    -0.5,
    1.5,
    NaN,
    Infinity,
    -Infinity,
    MAX_SIZE + 1,
    2 ** 53,
    '1e999',
    '1e3',
    '5X',
    '5 G',
    ' 5G',
    '5G ',
    '-5G',
    '+5G',
    '5g',
    '5GB',
    '5kb',
    '0x10',
    'Infinity',
    'NaN',
    '',
    '.5G',
    '5.G',
    '99999999999999999P',
    '9000P',
    '1.0000001G',
    '5G\n',
    'none',
    null,
    true,
    {},
    { valueOf: () => 5 },
    { toString: () => '5G' },
    ['5G'],
  ])('refuses %j', (v) => {
    expect(typeof parseSize(v)).toBe('string');
  });

  it('formats back exactly what it reads', () => {
    for (const b of [0, 1, 1023, 1024, 10 * 2 ** 20, 2 * 2 ** 30, 1.5 * 2 ** 40, MAX_SIZE, 3 * 2 ** 30 + 1]) {
      expect(parseSize(formatSizeExact(b))).toBe(b);
    }
    expect(formatSizeExact(2 * 2 ** 30)).toBe('2G');
    expect(formatSize(1.5 * 2 ** 30)).toBe('1.5 GiB');
    expect(formatSize(2 * 2 ** 30)).toBe('2 GiB');
    expect(formatSize(512)).toBe('512 B');
  });
});

describe('parseDuration', () => {
  it.each([
    ['24h', 86_400],
    ['90m', 5_400],
    ['1h30m', 5_400],
    ['2d', 172_800],
    ['45s', 45],
    ['1d2h3m4s', 93_784],
    [3600, 3600],
  ])('reads %j', (v, want) => {
    expect(parseDuration(v, 1, 30 * 86_400)).toBe(want);
  });

  it.each([
    0,
    -1,
    -3600,
    1.5,
    NaN,
    Infinity,
    2 ** 53,
    31 * 86_400,
    '0s',
    '-1h',
    '1e999',
    '1e3',
    '5X',
    '24 h',
    '24H',
    'h',
    '',
    '1m1h',
    '1.5h',
    '31d',
    '99999d',
    '24h\n',
    'none',
    'forever',
    null,
    false,
    {},
    { valueOf: () => 60 },
    ['24h'],
  ])('refuses %j', (v) => {
    expect(typeof parseDuration(v, 1, 30 * 86_400)).toBe('string');
  });

  it('formats for people, exactly', () => {
    expect(formatDuration(86_400)).toBe('24h');
    expect(formatDuration(5_400)).toBe('1h30m');
    expect(formatDuration(3 * 86_400)).toBe('3d');
    expect(formatDuration(45)).toBe('45s');
    for (const s of [1, 59, 61, 3599, 86_400, 2 * 86_400 + 1, 30 * 86_400])
      expect(parseDuration(formatDuration(s), 1, 30 * 86_400)).toBe(s);
  });
});
