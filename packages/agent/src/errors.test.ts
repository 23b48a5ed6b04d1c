import { describe, expect, it } from 'vitest';
import { codesInSources } from '../../../test/harness/error-codes.js';
import { isCodeOf, PROTOCOL_CODES } from '@borgpull/protocol';
import { AGENT_CODES, AgentError } from './errors.js';

describe('agent error codes', () => {
  const used = codesInSources(import.meta.dirname);

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
