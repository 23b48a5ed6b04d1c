import { describe, expect, it } from 'vitest';
import { escapeControl, terminalSafe } from './text.js';

/** Anything a terminal could act on: C0, DEL, C1, bidi controls, line separators, lone surrogates. */
const RAW_CONTROL =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

describe('escapeControl', () => {
  it.each([
    ['plain ASCII', 'home/alice/report.txt', 'home/alice/report.txt'],
    ['empty', '', ''],
    ['OSC title sequence (ESC, BEL)', '\x1b]0;pwned\x07', '\\x1b]0;pwned\\x07'],
    ['CSI', '\x1b[2J', '\\x1b[2J'],
    ['C1 CSI', 'a\u009b2Jb', 'a\\x9b2Jb'],
    ['C1 NEL and APC', '\u0085\u009f', '\\x85\\x9f'],
    ['NUL', 'a\0b', 'a\\x00b'],
    ['DEL', 'a\x7fb', 'a\\x7fb'],
    ['newline, CR, tab', 'one\ntwo\r\tthree', 'one\\x0atwo\\x0d\\x09three'],
    ['backslash', 'C:\\dir', 'C:\\\\dir'],
    ['already-escaped text stays distinguishable', '\\x1b]0;x', '\\\\x1b]0;x'],
    ['lone high surrogate', 'a\ud800b', 'a\\ud800b'],
    ['lone low surrogate', 'a\udc00b', 'a\\udc00b'],
    ['high surrogate at the end', 'a\ud83d', 'a\\ud83d'],
    ['a pair is kept', 'smile \ud83d\ude00', 'smile \ud83d\ude00'],
    ['reversed pair: both lone', '\ude00\ud83d', '\\ude00\\ud83d'],
    ['bidi override', 'txt.\u202egpj', 'txt.\\u202egpj'],
    ['line separator', 'a\u2028b', 'a\\u2028b'],
    ['other Unicode is kept', 'Grüße, 日本語, é', 'Grüße, 日本語, é'],
    ['NBSP and Latin-1 above C1 kept', '\u00a0\u00ff', '\u00a0\u00ff'],
  ])('%s', (_name, input, expected) => {
    const out = escapeControl(input);
    expect(out).toBe(expected);
    expect(RAW_CONTROL.test(out)).toBe(false);
  });

  it('is injective on a sample: escaped text never equals the escape of a different text', () => {
    const inputs = ['\x1b', '\\x1b', '\\\x1b', '\\\\x1b', '\n', '\\x0a', '\ud800', '\\ud800', ''];
    const outs = inputs.map(escapeControl);
    expect(new Set(outs).size).toBe(inputs.length);
  });

  it('escapes every C0, DEL and C1 code unit, and nothing printable in Latin-1', () => {
    for (let n = 0; n <= 0xff; n++) {
      const c = String.fromCharCode(n);
      const out = escapeControl(c);
      const control = n < 0x20 || (n >= 0x7f && n <= 0x9f);
      if (control) expect(out).toBe(`\\x${n.toString(16).padStart(2, '0')}`);
      else if (c === '\\') expect(out).toBe('\\\\');
      else expect(out).toBe(c);
    }
  });
});

describe('terminalSafe', () => {
  it('passes clean and already-escaped text through unchanged', () => {
    expect(terminalSafe('plain')).toBe('plain');
    const escaped = escapeControl('\x1b]0;x\x07 C:\\dir');
    expect(terminalSafe(escaped)).toBe(escaped);
  });

  it('escapes raw control text (backslashes included, so it stays unambiguous)', () => {
    expect(terminalSafe('\x1b]0;x\x07 C:\\dir')).toBe('\\x1b]0;x\\x07 C:\\\\dir');
    expect(terminalSafe('a\u009bb')).toBe('a\\x9bb');
    expect(terminalSafe('a\udc00')).toBe('a\\udc00');
  });
});
