import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { RestoreStreams } from './restore.js';

/**
 * Issue 7 item 2: a restore runs as root and must never write through a
 * symlink that a user other than root planted on the client. Every stream
 * here is made by GNU tar from a real tree; alice is the numeric uid 1000.
 */
const ALICE = 1000;

function fakeChannel(): Channel<AgentMessage, ControllerMessage> {
  return { notify: () => undefined, reply: () => undefined } as unknown as Channel<AgentMessage, ControllerMessage>;
}

/** GNU tar of `members` under `src`; `--no-recursion` so a partial stream has no parent dir members. */
function gnuTar(src: string, members: string[], recursive = true): Buffer {
  return execFileSync('tar', ['-c', '-f', '-', '--format=gnu', '-C', src, ...(recursive ? [] : ['--no-recursion']), ...members], {
    maxBuffer: 64 * 1024 * 1024,
  });
}

async function restore(target: string, tar: Buffer): Promise<Extract<AgentMessage, { type: 'restore.result' }>> {
  const streams = new RestoreStreams(fakeChannel(), pino({ level: 'silent' }));
  await streams.begin({ type: 'restore.begin', id: 1, stream: 1, target, owners: 'numeric' });
  for (let i = 0; i < tar.length; i += 7000) streams.data(1, tar.subarray(i, i + 7000));
  return streams.end({ type: 'restore.end', id: 2, stream: 1, bytes: tar.length, sha256: createHash('sha256').update(tar).digest() });
}

/** A symlink owned by alice, as if she had made it herself. */
function aliceLink(to: string, at: string): void {
  symlinkSync(to, at);
  lchownSync(at, ALICE, ALICE);
}

describe('restores never write through a symlink a user planted', () => {
  let base: string;
  let src: string;
  let target: string;
  let outside: string;

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'bp-links-'));
    src = join(base, 'src');
    target = join(base, 'target');
    outside = join(base, 'outside');
    for (const d of [join(src, 'home/alice/docs'), outside, join(target, 'home/alice')]) mkdirSync(d, { recursive: true });
    writeFileSync(join(src, 'home/alice/docs/x'), 'archived\n');
    execFileSync('chown', ['-R', `${ALICE}:${ALICE}`, join(src, 'home/alice'), join(target, 'home/alice')]);
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("replaces alice's link over a directory the stream has, and writes nothing through it", async () => {
    aliceLink(outside, join(target, 'home/alice/docs'));
    const r = await restore(target, gnuTar(src, ['home/alice/docs']));
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(target, 'home/alice/docs')).isDirectory()).toBe(true);
    expect(readFileSync(join(target, 'home/alice/docs/x'), 'utf8')).toBe('archived\n');
    expect(lstatSync(join(target, 'home/alice/docs/x')).uid).toBe(ALICE);
    expect(r.ok, r.stderr).toBe(true);
  });

  it("refuses a member under alice's link when the stream has no member for the link's path (partial restore)", async () => {
    aliceLink(outside, join(target, 'home/alice/docs'));
    const r = await restore(target, gnuTar(src, ['home/alice/docs/x'], false));
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(target, 'home/alice/docs')).isSymbolicLink()).toBe(true);
    expect(r.ok).toBe(false);
    expect(r.stderr).toContain('home/alice/docs/x');
    expect(r.stderr).toMatch(/symlink owned by uid 1000/);
  });

  it("refuses a target that is alice's link, or lies under one", async () => {
    const tar = gnuTar(src, ['home']);
    const linked = join(base, 'alice-target');
    aliceLink(outside, linked);
    await expect(restore(linked, tar)).rejects.toMatchObject({ code: 'E_RESTORE_TARGET' });
    await expect(restore(join(linked, 'below'), tar)).rejects.toMatchObject({
      code: 'E_RESTORE_TARGET',
      message: expect.stringMatching(/uid 1000/),
    });
    expect(readdirSync(outside)).toEqual([]);
  });

  it('follows root-owned system links: home -> var/home, and keeps bin -> usr/bin when the stream has a bin dir', async () => {
    rmSync(join(target, 'home'), { recursive: true });
    mkdirSync(join(target, 'var/home'), { recursive: true });
    mkdirSync(join(target, 'usr/bin'), { recursive: true });
    symlinkSync('var/home', join(target, 'home'));
    symlinkSync('usr/bin', join(target, 'bin'));
    mkdirSync(join(src, 'bin'));
    writeFileSync(join(src, 'bin/tool'), 'tool\n');
    const r = await restore(target, gnuTar(src, ['home', 'bin']));
    expect(r.ok, r.stderr).toBe(true);
    expect(lstatSync(join(target, 'home')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(target, 'bin')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(target, 'var/home/alice/docs/x'), 'utf8')).toBe('archived\n');
    expect(readFileSync(join(target, 'usr/bin/tool'), 'utf8')).toBe('tool\n');
  });

  it("refuses a root-owned link whose target passes through alice's link", async () => {
    rmSync(join(target, 'home'), { recursive: true });
    mkdirSync(join(target, 'var'));
    aliceLink(outside, join(target, 'var/home'));
    symlinkSync('var/home', join(target, 'home'));
    const r = await restore(target, gnuTar(src, ['home/alice/docs/x'], false));
    expect(readdirSync(outside)).toEqual([]);
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/var\/home.*symlink owned by uid 1000/);
  });

  it("does not follow a root-owned link that sits in alice's directory (she can move it there)", async () => {
    symlinkSync(outside, join(target, 'home/alice/docs'));
    const r = await restore(target, gnuTar(src, ['home/alice/docs/x'], false));
    expect(readdirSync(outside)).toEqual([]);
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/home\/alice\/docs/);
  });

  it("replaces alice's link where the stream has a file, and never writes the file through it", async () => {
    const secret = join(outside, 'secret');
    writeFileSync(secret, 'keep\n');
    aliceLink(secret, join(target, 'home/alice/docs'));
    writeFileSync(join(base, 'f'), 'data\n');
    rmSync(join(src, 'home/alice/docs'), { recursive: true });
    writeFileSync(join(src, 'home/alice/docs'), 'file now\n');
    const r = await restore(target, gnuTar(src, ['home/alice/docs'], false));
    expect(r.ok, r.stderr).toBe(true);
    expect(readFileSync(secret, 'utf8')).toBe('keep\n');
    expect(readFileSync(join(target, 'home/alice/docs'), 'utf8')).toBe('file now\n');
  });

  it('stays safe while alice swaps her directory for a link to outside, again and again, during the restore', async () => {
    for (let i = 0; i < 600; i++) writeFileSync(join(src, `home/alice/docs/f${i}`), `${i}\n`);
    execFileSync('chown', ['-R', `${ALICE}:${ALICE}`, join(src, 'home/alice')]);
    mkdirSync(join(target, 'home/alice/docs'));
    execFileSync('chown', [`${ALICE}:${ALICE}`, join(target, 'home/alice/docs')]);
    const home = join(target, 'home/alice');
    for (const d of [base, target, join(target, 'home')]) chmodSync(d, 0o755); // alice may reach her home
    const stop = join(base, 'stop');
    // alice herself (uid 1000, no privileges) moves the real directory away and plants a link, in a loop.
    const flipper = spawn(
      'setpriv',
      [
        '--reuid=1000',
        '--regid=1000',
        '--clear-groups',
        '/usr/bin/python3',
        '-c',
        `
import os, sys
home, outside, stop = sys.argv[1:4]
n = 0
while not os.path.exists(stop):
    try:
        os.rename(home + '/docs', home + '/docs.real')
        os.symlink(outside, home + '/docs')
        n += 1
        os.unlink(home + '/docs')
        os.rename(home + '/docs.real', home + '/docs')
    except OSError:
        pass
print(n)
`,
        home,
        outside,
        stop,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let flips = '';
    flipper.stdout.on('data', (d: Buffer) => (flips += d.toString()));
    try {
      for (const tar of [
        gnuTar(src, ['home/alice/docs']),
        gnuTar(
          src,
          readdirSync(join(src, 'home/alice/docs')).map((f) => `home/alice/docs/${f}`),
          false,
        ),
      ]) {
        const r = await restore(target, tar);
        expect(r.files).toBeGreaterThan(0);
        expect(readdirSync(outside)).toEqual([]);
      }
    } finally {
      writeFileSync(stop, '');
      if (flipper.exitCode === null) await once(flipper, 'exit');
    }
    expect(Number(flips)).toBeGreaterThan(10);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('does not give alice a name elsewhere for her own file through a hard link member whose source she replaced', async () => {
    // The stream's hard link says: usr/tool is root's file home/alice/docs/x. On disk, x is alice's now.
    mkdirSync(join(src, 'usr'));
    writeFileSync(join(src, 'home/alice/docs/x'), 'root file\n');
    execFileSync('chown', ['0:0', join(src, 'home/alice/docs/x')]);
    execFileSync('ln', [join(src, 'home/alice/docs/x'), join(src, 'usr/tool')]);
    const both = gnuTar(src, ['home/alice/docs/x', 'usr/tool'], false);
    const linkOnly = both.subarray(1024); // x's header and its one data block off: the hard link member comes first
    mkdirSync(join(target, 'home/alice/docs'));
    writeFileSync(join(target, 'home/alice/docs/x'), 'alice can write this\n');
    execFileSync('chown', ['-R', `${ALICE}:${ALICE}`, join(target, 'home/alice/docs')]);
    mkdirSync(join(target, 'usr'));
    const r = await restore(target, linkOnly);
    expect(() => lstatSync(join(target, 'usr/tool'))).toThrow();
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/usr\/tool: not written: its source is owned by uid 1000, not by uid 0/);
  });
});
