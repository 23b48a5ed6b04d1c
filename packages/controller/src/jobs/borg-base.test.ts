import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statePaths, type StatePaths } from '../state.js';
import { ensureBorgBase } from './borg-base.js';

const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);

describe("each agent's borg base dir", () => {
  let root: string;
  let p: StatePaths;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'borgpull-base-'));
    p = statePaths(root);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function repo(agent: string, id: string): void {
    mkdirSync(p.repo(agent), { recursive: true });
    writeFileSync(join(p.repo(agent), 'config'), `[repository]\nversion = 1\nsegments_per_dir = 1000\nid = ${id}\n`);
  }
  function shared(sub: string, id: string): string {
    const d = join(p.borgDir, sub, id);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'marker'), id);
    return d;
  }

  it('is STATE/borg/NAME with a tmp dir, both 0700', async () => {
    expect(await ensureBorgBase(p, 'web1')).toBe(join(root, 'borg', 'web1'));
    for (const d of [p.borgDir, p.borgBase('web1'), join(p.borgBase('web1'), 'tmp')]) expect(statSync(d).mode & 0o777).toBe(0o700);
  });

  it("moves only its own repository's cache and security data out of the shared base dir, once", async () => {
    repo('web1', ID_A);
    repo('web2', ID_B);
    shared('.cache/borg', ID_A);
    shared('.config/borg/security', ID_A);
    const otherCache = shared('.cache/borg', ID_B);
    await ensureBorgBase(p, 'web1');
    expect(readFileSync(join(p.borgBase('web1'), '.cache/borg', ID_A, 'marker'), 'utf8')).toBe(ID_A);
    expect(readFileSync(join(p.borgBase('web1'), '.config/borg/security', ID_A, 'marker'), 'utf8')).toBe(ID_A);
    expect(existsSync(join(p.borgDir, '.cache/borg', ID_A))).toBe(false);
    // Another agent's data stays where it was until that agent's first job.
    expect(existsSync(otherCache)).toBe(true);
    expect(existsSync(join(p.borgBase('web1'), '.cache/borg', ID_B))).toBe(false);
    // A base dir that exists is never filled from the shared one again.
    shared('.cache/borg', ID_A);
    rmSync(join(p.borgBase('web1'), '.cache/borg', ID_A), { recursive: true });
    await ensureBorgBase(p, 'web1');
    expect(existsSync(join(p.borgBase('web1'), '.cache/borg', ID_A))).toBe(false);
  });

  it('ignores a repository config without a proper id', async () => {
    mkdirSync(p.repo('web1'), { recursive: true });
    writeFileSync(join(p.repo('web1'), 'config'), 'id = ../../../etc\n');
    shared('.cache/borg', ID_A);
    await ensureBorgBase(p, 'web1');
    expect(existsSync(join(p.borgDir, '.cache/borg', ID_A))).toBe(true);
  });
});
