import { describe, expect, it } from 'vitest';
import { codesInSources } from '../../../test/harness/error-codes.js';
import { PeerError, PROTOCOL_CODES, ProtocolError, isCodeOf } from './errors.js';

describe('protocol error codes', () => {
  const used = codesInSources(import.meta.dirname);

  it('every code in the sources is in PROTOCOL_CODES', () => {
    expect([...used].filter((c) => !isCodeOf(PROTOCOL_CODES, c))).toEqual([]);
  });

  it('every code in PROTOCOL_CODES is raised somewhere (no dead entries)', () => {
    expect(Object.keys(PROTOCOL_CODES).filter((c) => !used.has(c))).toEqual([]);
  });

  it('a peer error keeps whatever code the peer sent; ours are typed', () => {
    expect(new PeerError('E_WHATEVER', 'm').code).toBe('E_WHATEVER');
    expect(new ProtocolError('E_PROTO_REPLY', 'm')).toBeInstanceOf(Error);
    expect(isCodeOf(PROTOCOL_CODES, 'toString')).toBe(false);
  });
});
