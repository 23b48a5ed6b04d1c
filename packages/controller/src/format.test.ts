import { describe, expect, it } from 'vitest';
import { duration } from './format.js';

describe('duration', () => {
  it.each([
    [0, '0.0s'],
    [12_345, '12.3s'],
    [59_940, '59.9s'],
    [59_960, '1m00s'],
    [60_000, '1m00s'],
    [119_600, '2m00s'],
    [119_400, '1m59s'],
    [3_599_600, '1h00m00s'],
    [3_725_000, '1h02m05s'],
    [-5, '0.0s'],
  ])('%d ms is %s', (ms, text) => {
    expect(duration(ms)).toBe(text);
  });
});
