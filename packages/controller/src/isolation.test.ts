import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from './config.js';
import { initController } from './cli/init.js';
import { CHROOT_WARNING, chrootWarning } from './isolation.js';

const base = { url: 'ws://backup.example:7400' };

describe('the chroot isolation warning', () => {
  it('names the agents a backup runs with chroot isolation', () => {
    const cfg = validateConfig({ ...base, agents: { a: { exclude: [], isolation: 'chroot' }, b: { exclude: [] } } });
    expect(chrootWarning(cfg, ['a', 'b'])).toBe(`warning: a: ${CHROOT_WARNING}`);
    expect(chrootWarning(cfg, ['b'])).toBeUndefined();
    expect(chrootWarning(cfg, 'all')).toBe(`warning: a: ${CHROOT_WARNING}`);
  });

  it('covers a global chroot setting, except for agents set to namespace', () => {
    const cfg = validateConfig({ ...base, isolation: 'chroot', agents: { b: { exclude: [], isolation: 'namespace' } } });
    expect(chrootWarning(cfg, ['a', 'b'])).toBe(`warning: a: ${CHROOT_WARNING}`);
    expect(chrootWarning(cfg, 'all')).toBe(`warning: every agent without an isolation setting of its own: ${CHROOT_WARNING}`);
  });

  it('says nothing for namespace isolation', () => {
    expect(chrootWarning(validateConfig(base), 'all')).toBeUndefined();
  });
});

describe('controller init --isolation chroot', () => {
  it('warns on stderr in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'borgpull-init-'));
    try {
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (s: string) => out.push(s), err: (s: string) => err.push(s) };
      const state = join(dir, 'state');
      expect(await initController(['--url', base.url, '--isolation', 'chroot', '--state-dir', state], io)).toBe(0);
      expect(err).toEqual([`warning: ${CHROOT_WARNING}`]);
      const err2: string[] = [];
      await initController(['--url', base.url, '--state-dir', join(dir, 'state2')], { out: () => undefined, err: (s) => err2.push(s) });
      expect(err2).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
