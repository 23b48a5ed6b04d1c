import { describe, expect, it } from 'vitest';
import { execStart, execWord, pathValue } from './systemd-unit.js';

describe('values written into a systemd unit', () => {
  it('refuses a state dir that would add a directive (newline) or any control character', () => {
    for (const hostile of ['/srv/x\nExecStartPre=/bin/sh -c "touch /pwned"', '/srv/x\r', '/srv/\u0000x', '/srv/\u001b[2Jx', '']) {
      expect(() => execWord(hostile)).toThrow(expect.objectContaining({ code: 'E_SERVICE_ARG' }));
      expect(() => execStart(['/usr/bin/node', 'run', '--state-dir', hostile])).toThrow(expect.objectContaining({ code: 'E_SERVICE_ARG' }));
    }
  });

  it('quotes specifiers, variables, quotes and spaces so systemd passes them verbatim', () => {
    expect(execWord('/srv/a b')).toBe('"/srv/a b"');
    expect(execWord('/srv/%h')).toBe('"/srv/%%h"');
    expect(execWord('/srv/$HOME')).toBe('"/srv/$$HOME"');
    expect(execWord('/srv/"q"\\')).toBe('"/srv/\\"q\\"\\\\"');
    expect(pathValue('/srv/$x%i')).toBe('"/srv/$x%%i"');
  });

  it('needs an absolute program and an absolute path', () => {
    expect(() => execStart(['node', 'x'])).toThrow(expect.objectContaining({ code: 'E_SERVICE_ARG' }));
    expect(() => pathValue('var/lib/x')).toThrow(expect.objectContaining({ code: 'E_SERVICE_ARG' }));
  });
});
