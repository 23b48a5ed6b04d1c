import { describe, expect, it } from 'vitest';
import { toBuffer } from './frame-bytes.js';

describe('toBuffer', () => {
  it('takes each shape ws hands a message over in', () => {
    const b = Buffer.from('abc');
    expect(toBuffer(b)).toBe(b);
    expect(toBuffer([Buffer.from('ab'), Buffer.from('c')])).toEqual(b);
    expect(toBuffer(new Uint8Array([97, 98, 99]).buffer)).toEqual(b);
  });
});
