import { describe, expect, it } from 'vitest';
import { codesInSources } from '../../../test/harness/error-codes.js';
import { isCodeOf, PROTOCOL_CODES } from '@borgpull/protocol';
import { CONTROLLER_CODES, ControllerError } from './errors.js';

describe('controller error codes', () => {
  const used = codesInSources(import.meta.dirname);

  it('every code in the sources is in CONTROLLER_CODES (or is a protocol code it passes on)', () => {
    expect([...used].filter((c) => !isCodeOf(CONTROLLER_CODES, c) && !isCodeOf(PROTOCOL_CODES, c))).toEqual([]);
  });

  it('every code in CONTROLLER_CODES is used somewhere (no dead entries)', () => {
    expect(Object.keys(CONTROLLER_CODES).filter((c) => !used.has(c))).toEqual([]);
  });

  it('the error class keeps its code', () => {
    expect(new ControllerError('E_USAGE', 'm')).toMatchObject({ code: 'E_USAGE', name: 'ControllerError' });
  });
});
