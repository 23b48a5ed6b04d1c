import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCodeOf, PROTOCOL_CODES } from '@borgpull/protocol';
import { AGENT_CODES, AgentError } from './errors.js';

/** Every 'E_...' literal in the package's sources (tests aside), and every code a job script passes to fail(). */
function codesIn(dir: string): Set<string> {
  const codes = new Set<string>();
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
    const text = readFileSync(join(dir, f), 'utf8');
    for (const m of text.matchAll(/'(E_[A-Z0-9_]+)'|\bfail (E_[A-Z0-9_]+)/g)) codes.add(m[1] ?? m[2] ?? '');
  }
  return codes;
}

describe('agent error codes', () => {
  const used = codesIn(import.meta.dirname);

  it('every code in the sources is in AGENT_CODES (or is a protocol code it passes on)', () => {
    expect([...used].filter((c) => !isCodeOf(AGENT_CODES, c) && !isCodeOf(PROTOCOL_CODES, c))).toEqual([]);
  });

  it('every code in AGENT_CODES is used somewhere (no dead entries)', () => {
    expect(Object.keys(AGENT_CODES).filter((c) => !used.has(c))).toEqual([]);
  });

  it('the error class keeps its code', () => {
    expect(new AgentError('E_USAGE', 'm')).toMatchObject({ code: 'E_USAGE', name: 'AgentError' });
  });
});
