import { describe, expect, it } from 'vitest';
import { duration, table } from './format.js';

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

describe('table', () => {
  it("prints a peer's raw control characters escaped, and clean or already-escaped cells as they are", () => {
    const out = table(
      ['AGENT', 'RESULT'],
      [
        ['pc1', 'FAILED: tar: \x1b]0;pwned\x07: Cannot open'],
        ['pc2', 'FAILED: tar: \\x1b]0;x\\x07 (escaped by the daemon)'],
        ['pc3', 'ok'],
      ],
    );
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    const lines = out.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toContain('tar: \\x1b]0;pwned\\x07: Cannot open');
    expect(lines[2]).toContain('tar: \\x1b]0;x\\x07 (escaped by the daemon)');
  });

  it('a newline in a cell does not break the table into more rows', () => {
    expect(table(['A'], [['one\ntwo']]).split('\n')).toEqual(['A', 'one\\x0atwo']);
  });
});
