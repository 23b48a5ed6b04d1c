import { lchownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkRestoreTarget,
  describePolicy,
  formatPolicy,
  loadPolicy,
  parsePolicy,
  policyFromJson,
  savePolicy,
  type RestorePolicy,
} from './restore-policy.js';

describe('parsePolicy (the CLI argument)', () => {
  it.each([
    ['anywhere', { mode: 'anywhere' }],
    ['off', { mode: 'off' }],
    ['/srv/restore', { mode: 'dirs', dirs: ['/srv/restore'] }],
    ['/srv/restore/', { mode: 'dirs', dirs: ['/srv/restore'] }],
    ['/srv/restore,/home', { mode: 'dirs', dirs: ['/srv/restore', '/home'] }],
    ['/a,/a', { mode: 'dirs', dirs: ['/a'] }],
    ['/', { mode: 'dirs', dirs: ['/'] }],
  ])('accepts %j', (text, want) => {
    expect(parsePolicy(text)).toEqual(want);
    expect(parsePolicy(formatPolicy(parsePolicy(text)))).toEqual(want);
  });

  it.each([
    ['empty', ''],
    ['relative', 'srv/restore'],
    ["'..'", '/srv/restore/../etc'],
    ["'.'", '/srv/./restore'],
    ["'//'", '/srv//restore'],
    ['an empty entry', '/srv,'],
    ['a newline', '/srv\n/etc'],
    ['an escape sequence', '/srv/\u001b]0;x\u0007'],
    ['a C1 control', '/srv/\u009b'],
    ['Anywhere (case)', 'Anywhere'],
    ['too long', `/${'a'.repeat(5000)}`],
    ['too many dirs', Array.from({ length: 65 }, (_, i) => `/d${i}`).join(',')],
  ])('refuses %s', (_name, text) => {
    expect(() => parsePolicy(text)).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
  });

  it('describes itself in words', () => {
    expect(describePolicy(parsePolicy('/srv/restore,/home'))).toBe('restores only into /srv/restore, /home');
    expect(describePolicy(parsePolicy('off'))).toBe('restores off');
  });
});

describe('the policy file', () => {
  it.each([
    ['not JSON', '{'],
    ['an array', '["anywhere"]'],
    ['no restores field', '{}'],
    ['a number', '{"restores": 1}'],
    ['an empty list', '{"restores": []}'],
    ['a relative dir', '{"restores": ["srv"]}'],
    ['a dir with ..', '{"restores": ["/srv/.."]}'],
    ['a non-string dir', '{"restores": ["/srv", 3]}'],
    ['a proto key', '{"__proto__": {"restores": "anywhere"}}'],
    ['huge', `{"restores": ["/${'a'.repeat(70_000)}"]}`],
  ])('refuses %s (E_CONFIG_INVALID)', (_name, text) => {
    expect(() => policyFromJson(text)).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
  });

  it('round-trips through a 0600 file; a missing file is anywhere; a damaged one is reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bp-policy-'));
    try {
      const file = join(dir, 'restore-policy.json');
      expect(await loadPolicy(file)).toEqual({ policy: { mode: 'anywhere' } });
      await savePolicy(file, parsePolicy('/srv/restore,/home'));
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ restores: ['/srv/restore', '/home'] });
      expect(await loadPolicy(file)).toEqual({ policy: { mode: 'dirs', dirs: ['/srv/restore', '/home'] } });
      writeFileSync(file, '{"restores": "everywhere"}');
      const state = await loadPolicy(file);
      expect(state.policy).toBeUndefined();
      expect(state.damaged).toMatch(/damaged/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('checkRestoreTarget (the controller names the target: hostile)', () => {
  let base: string;
  let allowed: string;
  let policy: RestorePolicy;

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'bp-policy-'));
    allowed = join(base, 'srv', 'restore');
    mkdirSync(join(base, 'etc'), { recursive: true });
    mkdirSync(join(allowed, 'real', 'deeper'), { recursive: true });
    writeFileSync(join(allowed, 'file'), 'x');
    symlinkSync(join(base, 'etc'), join(allowed, 'root-link')); // root's link: still refused below DIR
    symlinkSync(join(base, 'etc'), join(allowed, 'real', 'user-link'));
    lchownSync(join(allowed, 'real', 'user-link'), 1000, 1000);
    symlinkSync('../../etc', join(allowed, 'rel-link'));
    // DIRs that are themselves links: root's is the admin's choice, a user's is a trap.
    symlinkSync(allowed, join(base, 'root-alias'));
    mkdirSync(join(base, 'home', 'alice'), { recursive: true });
    symlinkSync(join(base, 'etc'), join(base, 'home', 'alice', 'restore'));
    lchownSync(join(base, 'home', 'alice', 'restore'), 1000, 1000);
    policy = parsePolicy([allowed, join(base, 'root-alias'), join(base, 'home', 'alice', 'restore')].join(','));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it.each([
    ['the dir itself', () => allowed],
    ['the dir with a trailing slash', () => `${allowed}/`],
    ['an existing subdir', () => join(allowed, 'real', 'deeper')],
    ['a new subdir (non-existent tail)', () => join(allowed, 'new', 'tail', 'dirs')],
    ['a doubled slash inside', () => `${allowed}//real`],
    ["root's link naming the dir", () => join(base, 'root-alias', 'x')],
  ])('allows %s', async (_name, target) => {
    expect(await checkRestoreTarget(policy, target())).toEqual({ allowed: true });
  });

  it.each([
    ['outside', () => join(base, 'etc'), /outside/],
    ['a sibling with the dir as a prefix', () => `${allowed}-evil`, /outside/],
    ['the parent', () => join(base, 'srv'), /outside/],
    ["'..' out", () => `${allowed}/../../etc`, /'\.\.'/],
    ["'..' back in", () => `${allowed}/real/../real`, /'\.\.'/],
    ['relative', () => 'srv/restore', /absolute/],
    ['empty', () => '', /absolute/],
    ['a root-owned link below the dir', () => join(allowed, 'root-link'), /symbolic link/],
    ['under a root-owned link below the dir', () => join(allowed, 'root-link', 'new'), /symbolic link/],
    ["a user's link below the dir", () => join(allowed, 'real', 'user-link', 'x'), /symbolic link/],
    ['a relative link below the dir', () => join(allowed, 'rel-link'), /symbolic link/],
    ['a file below the dir', () => join(allowed, 'file', 'x'), /not a directory/],
    ["a DIR that is a user's link", () => join(base, 'home', 'alice', 'restore', 'x'), /owned by uid 1000/],
    ['a huge target', () => `${allowed}/${'a'.repeat(5000)}`, /longer than/],
    ['a NUL', () => `${allowed}/a\u0000b`, /control/],
    ['an escape sequence', () => `${allowed}/\u001b]0;x\u0007`, /control/],
  ])('refuses %s', async (_name, target, why) => {
    const d = await checkRestoreTarget(policy, target());
    expect(d.allowed).toBe(false);
    expect(!d.allowed && d.reason).toMatch(why);
    expect(!d.allowed && d.reason).not.toMatch(/[\u0000-\u001f]/);
  });

  it("'off' refuses everything, 'anywhere' leaves the target to the extractor", async () => {
    expect((await checkRestoreTarget(parsePolicy('off'), allowed)).allowed).toBe(false);
    expect((await checkRestoreTarget(parsePolicy('anywhere'), join(base, 'etc'))).allowed).toBe(true);
  });

  it("'/' as the dir still refuses links on the way", async () => {
    const d = await checkRestoreTarget(parsePolicy('/'), join(allowed, 'root-link', 'x'));
    expect(d.allowed).toBe(false);
  });
});
