import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from './registry.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bp-registry-'));
  dirs.push(d);
  return d;
}

const token = (id: string, name: string) => ({ id, name, verifier: 'A'.repeat(43), expiresAt: Date.now() + 60_000 });

describe('Registry', () => {
  it('persists enrollments at once and finds agents by key after a reopen', async () => {
    const d = dir();
    const reg = await Registry.open(d);
    await reg.addToken(token('t1', 'pc1'));
    const rec = await reg.enroll('t1', { name: 'pc1', publicKey: 'bp-ed25519:K1', enrolledAt: 1, sshKey: 'ssh-ed25519 AAAA' }, 40000);
    expect(rec.port).toBe(40000);
    const again = await Registry.open(d);
    expect(again.byKey('bp-ed25519:K1')?.name).toBe('pc1');
    expect(again.token('t1')?.usedAt).toBeTypeOf('number');
  });

  it('keeps connection details in memory and writes them lazily, once, at close', async () => {
    const d = dir();
    const reg = await Registry.open(d);
    await reg.addToken(token('t1', 'pc1'));
    await reg.enroll('t1', { name: 'pc1', publicKey: 'bp-ed25519:K1', enrolledAt: 1, sshKey: 'ssh-ed25519 AAAA' }, 40000);
    const before = readFileSync(join(d, 'registry.json'), 'utf8');
    for (let i = 0; i < 1000; i++) reg.touch('pc1', { lastSeen: i, lastAddress: `10.0.0.1:${i}` });
    expect(reg.get('pc1')?.lastSeen).toBe(999);
    expect(readFileSync(join(d, 'registry.json'), 'utf8')).toBe(before);
    await reg.close();
    expect(
      (JSON.parse(readFileSync(join(d, 'registry.json'), 'utf8')) as { agents: Record<string, { lastSeen: number }> }).agents['pc1']
        ?.lastSeen,
    ).toBe(999);
  });

  it('refuses a second enrollment of a key and remembers revoked keys', async () => {
    const reg = await Registry.open(dir());
    await reg.addToken(token('t1', 'pc1'));
    await reg.addToken(token('t2', 'pc2'));
    await reg.enroll('t1', { name: 'pc1', publicKey: 'bp-ed25519:K1', enrolledAt: 1, sshKey: 'ssh-ed25519 AAAA' }, 40000);
    await expect(
      reg.enroll('t2', { name: 'pc2', publicKey: 'bp-ed25519:K1', enrolledAt: 1, sshKey: 'ssh-ed25519 AAAA' }, 40000),
    ).rejects.toMatchObject({
      code: 'E_AUTH_TOKEN',
    });
    await reg.revoke('pc1');
    expect(reg.isRevokedKey('bp-ed25519:K1')).toBe(true);
  });
});

describe('Registry and token records from before verifiers', () => {
  it("drops an old record's secretHash (the HMAC key itself) and keeps the record, without a verifier", async () => {
    const d = dir();
    const { writeFileSync } = await import('node:fs');
    const old = { id: 'old1', name: 'pc9', secretHash: 'ab'.repeat(32), expiresAt: Date.now() + 60_000 };
    writeFileSync(join(d, 'registry.json'), JSON.stringify({ agents: {}, tokens: [old, { junk: true }], revokedKeys: [] }));
    const reg = await Registry.open(d);
    expect(reg.token('old1')).toEqual({ id: 'old1', name: 'pc9', expiresAt: old.expiresAt });
    await reg.addToken(token('t1', 'pc1'));
    const file = readFileSync(join(d, 'registry.json'), 'utf8');
    expect(file).not.toContain('secretHash');
    expect(file).not.toContain('ab'.repeat(32));
  });
});
