import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Extractor } from './extractor.js';
import { OwnerMap } from './owners.js';
import { openTarget } from './safe-dir.js';
import { TarStream } from './tar-stream.js';

/** Everything about every entry under dir that a restore must bring back, names as raw bytes (hex). */
function snapshot(dir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const inodes = new Map<number, string>();
  const walk = (rel: Buffer): void => {
    for (const name of readdirSync(Buffer.concat([Buffer.from(dir + '/'), rel]), { encoding: 'buffer' })) {
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const p = Buffer.concat([Buffer.from(dir + '/'), r]);
      const st = lstatSync(p);
      const key = r.toString('latin1');
      const e: Record<string, unknown> = { mode: st.mode.toString(8), uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
      if (st.isSymbolicLink()) e['link'] = readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
      else if (st.isFile()) {
        e['sha'] = createHash('sha256').update(readFileSync(p)).digest('hex');
        if (st.nlink > 1) {
          e['sameAs'] = inodes.get(st.ino) ?? key;
          if (!inodes.has(st.ino)) inodes.set(st.ino, key);
        }
      } else if (st.isCharacterDevice()) e['rdev'] = st.rdev;
      out[key] = e;
      if (st.isDirectory()) walk(r);
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

function extract(target: string, tar: Buffer, owners: OwnerMap, chunk: number): Extractor {
  const x = new Extractor(openTarget(target), owners);
  const s = new TarStream(x);
  for (let i = 0; i < tar.length; i += chunk) s.push(tar.subarray(i, i + chunk));
  s.finish();
  x.close();
  return x;
}

describe('extractor round trip against GNU tar', () => {
  let base: string;
  let src: string;
  const T = 1_600_000_000;

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'bp-extract-'));
    src = join(base, 'src');
    const long = 'a-directory-name-that-is-long/'.repeat(5);
    const at = (p: string) => join(src, p);
    mkdirSync(at(`home/alice/${long}`), { recursive: true });
    mkdirSync(at('empty-dir'));
    writeFileSync(at('home/alice/report.txt'), 'quarterly\n');
    writeFileSync(at(`home/alice/${long}file-with-a-long-name-too.txt`), 'long\n');
    writeFileSync(at('home/alice/empty'), '');
    writeFileSync(Buffer.from(`${at('home/alice')}/caf\xe9-latin1`, 'latin1'), 'not utf-8\n');
    writeFileSync(at('suid-tool'), '#!/bin/sh\n');
    linkSync(at('home/alice/report.txt'), at('home/alice/hard'));
    symlinkSync('report.txt', at('home/alice/rel-link'));
    symlinkSync(`/${long}${long}target`, at('home/alice/long-link'));
    execFileSync('mkfifo', [at('home/alice/fifo')]);
    execFileSync('mknod', [at('null-dev'), 'c', '1', '3']);
    writeFileSync(at('big.bin'), Buffer.alloc(3 * 1024 * 1024 + 123, 7));
    execFileSync('chown', ['-R', '1000:1001', at('home/alice')]);
    lchownSync(at('home/alice/rel-link'), 1000, 1000);
    chownSync(at('suid-tool'), 1000, 1000);
    chmodSync(at('suid-tool'), 0o4755);
    chmodSync(at('empty-dir'), 0o750);
    chmodSync(at('home/alice/report.txt'), 0o640);
    // Times last, deepest first, so directories keep theirs.
    const all = execFileSync('find', [src, '-depth', '-print0']).toString('latin1').split('\0').filter(Boolean);
    all.forEach((p, i) => lutimesSync(Buffer.from(p, 'latin1'), T + i, T + i));
    utimesSync(src, T, T);
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  for (const format of ['gnu', 'pax', 'ustar'] as const) {
    it(`restores what GNU tar restores from a ${format} archive: modes (setuid), owners, links, hard links, long and non-UTF-8 names, times, a fifo, a device`, () => {
      const members = format === 'ustar' ? ['suid-tool', 'empty-dir', 'null-dev', 'big.bin'] : ['.'];
      const tar = execFileSync('tar', ['-c', '-f', '-', `--format=${format}`, '-C', src, ...members], { maxBuffer: 64 * 1024 * 1024 });
      const ref = join(base, `ref-${format}`);
      const ours = join(base, `ours-${format}`);
      mkdirSync(ref);
      execFileSync('tar', ['-x', '-f', '-', '-p', '--numeric-owner', '-C', ref], { input: tar });
      // Odd chunk sizes: headers and data split across pushes.
      const x = extract(ours, tar, OwnerMap.numeric(), 4093);
      expect(x.messages).toEqual([]);
      const want = snapshot(ref);
      expect(Object.keys(want).length).toBeGreaterThan(3);
      expect(snapshot(ours)).toEqual(want);
      if (format !== 'ustar') {
        expect(lstatSync(join(ours, 'suid-tool')).mode & 0o7777).toBe(0o4755);
        expect(lstatSync(join(ours, 'home/alice/fifo')).isFIFO()).toBe(true);
      }
    });
  }

  it("maps archived names through the given passwd and group with 'names', falling back to the archived id", () => {
    const tar = execFileSync('tar', [
      '-c',
      '-f',
      '-',
      '--owner=alice:1000',
      '--group=staff:1001',
      '-C',
      src,
      'home/alice/report.txt',
      'suid-tool',
    ]);
    const unknown = execFileSync('tar', [
      '-c',
      '-f',
      '-',
      '--owner=nobody-here:1234',
      '--group=nogroup-here:1235',
      '-C',
      src,
      'home/alice/empty',
    ]);
    writeFileSync(
      join(base, 'passwd'),
      'root:x:0:0::/root:/bin/sh\nalice:x:2000:2000::/home/alice:/bin/sh\nalice:x:3000:3000::/:/bin/sh\n',
    );
    writeFileSync(join(base, 'group'), 'root:x:0:\nstaff:x:50:\n');
    const target = join(base, 'names');
    const names = OwnerMap.names(join(base, 'passwd'), join(base, 'group'));
    extract(target, tar, names, 65536);
    extract(target, unknown, names, 65536);
    expect(lstatSync(join(target, 'home/alice/report.txt'))).toMatchObject({ uid: 2000, gid: 50 });
    expect(lstatSync(join(target, 'suid-tool')).mode & 0o7777).toBe(0o4755);
    expect(lstatSync(join(target, 'home/alice/empty'))).toMatchObject({ uid: 1234, gid: 1235 });
  });

  it('replaces a planted hard link to a file outside instead of writing into it', () => {
    const target = join(base, 'hardlinked');
    const outside = join(base, 'outside-file');
    writeFileSync(outside, 'keep\n');
    mkdirSync(join(target, 'home/alice'), { recursive: true });
    linkSync(outside, join(target, 'home/alice/report.txt'));
    extract(target, execFileSync('tar', ['-c', '-f', '-', '-C', src, 'home/alice/report.txt']), OwnerMap.numeric(), 65536);
    expect(readFileSync(outside, 'utf8')).toBe('keep\n');
    expect(readFileSync(join(target, 'home/alice/report.txt'), 'utf8')).toBe('quarterly\n');
  });

  it('refuses a member deeper than 2048 components instead of holding an fd per level', () => {
    const tar = execFileSync('python3', [
      '-c',
      `
import io, tarfile, sys
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as t:
    for name in ['a/' * 3000 + 'deep', 'shallow']:
        i = tarfile.TarInfo(name); i.size = 1; t.addfile(i, io.BytesIO(b'x'))
sys.stdout.buffer.write(buf.getvalue())
`,
    ]);
    const target = join(base, 'deep');
    const x = extract(target, tar, OwnerMap.numeric(), 65536);
    expect(x.messages).toEqual([expect.stringMatching(/not written: more than 2048 path components$/)]);
    expect(readdirSync(target)).toEqual(['shallow']);
  });

  it('skips a GNU sparse member (with its extension headers) with a message, and restores what follows', () => {
    const dir = join(base, 'sparse-src');
    mkdirSync(dir);
    execFileSync('python3', [
      '-c',
      `
f = open('${dir}/sparse', 'wb')
for i in range(10):
    f.seek(i * 1024 * 1024); f.write(b'x' * 10)
`,
    ]);
    writeFileSync(join(dir, 'z-after'), 'after\n');
    const tar = execFileSync('tar', ['-c', '-f', '-', '--format=gnu', '--sparse', '-C', dir, 'sparse', 'z-after']);
    const target = join(base, 'sparse');
    const x = extract(target, tar, OwnerMap.numeric(), 1000);
    expect(x.messages).toEqual(["sparse: not written: unsupported tar member type 'S', skipped"]);
    expect(readFileSync(join(target, 'z-after'), 'utf8')).toBe('after\n');
  });
});
