import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PeerError, PROTOCOL_CODES, ProtocolError, isCodeOf } from './errors.js';

/** Every 'E_...' literal in the package's sources (tests aside). */
function codesIn(dir: string): Set<string> {
  const codes = new Set<string>();
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
    for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/'(E_[A-Z0-9_]+)'/g)) codes.add(m[1] ?? '');
  }
  return codes;
}

describe('protocol error codes', () => {
  const used = codesIn(import.meta.dirname);

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
