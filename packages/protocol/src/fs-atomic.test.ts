import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from './fs-atomic.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bp-atomic-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('replaces content, sets the mode and leaves no temp file', async () => {
    const p = join(dir, 'state.json');
    await writeFile(p, 'old');
    await writeFileAtomic(p, 'new', 0o600);
    expect(await readFile(p, 'utf8')).toBe('new');
    expect((await stat(p)).mode & 0o777).toBe(0o600);
    await writeFileAtomic(p, Buffer.from('bin'), 0o644);
    expect((await stat(p)).mode & 0o777).toBe(0o644);
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('fails cleanly when the directory does not exist', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'f'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(dir)).toEqual([]);
  });
});
