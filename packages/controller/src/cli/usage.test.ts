import { describe, expect, it } from 'vitest';
import { run } from '../cli.js';
import { COMMAND_USAGE, synopsis, usageError, USAGE } from './usage.js';

function io(): { out: string[]; err: string[]; io: { out: (s: string) => void; err: (s: string) => void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s) => out.push(s), err: (s) => err.push(s) } };
}

describe('usage, from one place', () => {
  it("prints each command's usage for -h/--help and runs nothing (no daemon, no state dir needed)", async () => {
    for (const cmd of Object.keys(COMMAND_USAGE)) {
      const t = io();
      // A state dir that does not exist: any command that ran would fail on it.
      await expect(run([cmd, 'x', '--help', '--state-dir', '/nonexistent/borgpull'], t.io)).resolves.toBe(0);
      expect(t.out.join('\n')).toMatch(new RegExp(`^usage: controller ${cmd}`));
      expect(t.err).toEqual([]);
    }
  });

  it('lists every command in the overview', () => {
    for (const cmd of Object.keys(COMMAND_USAGE)) expect(USAGE).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
  });

  it('a usage error shows the same synopsis as --help', () => {
    expect(synopsis('agents')).toBe('usage: controller agents [--json]\n       controller agents revoke NAME');
    expect(synopsis('check')).toBe('usage: controller check [--json]');
    expect(usageError('token')).toMatchObject({ code: 'E_USAGE', message: COMMAND_USAGE.token.split('\n')[0] });
    expect(usageError('check', "unexpected argument 'x'").message).toBe("unexpected argument 'x' (usage: controller check [--json])");
  });
});
