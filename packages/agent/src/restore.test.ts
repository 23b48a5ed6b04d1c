import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { RestoreStreams, checkTarget } from './restore.js';

/** A channel that records what the agent sends: the one module under test is the restore sink. */
function fakeChannel(sent: AgentMessage[]): Channel<AgentMessage, ControllerMessage> {
  return { notify: (m: AgentMessage) => sent.push(m), reply: (m: AgentMessage) => sent.push(m) } as unknown as Channel<
    AgentMessage,
    ControllerMessage
  >;
}

/** A tar stream with hostile members, made by Python's tarfile (GNU tar will not write them). */
function hostileTar(dir: string): Buffer {
  const script = `
import io, tarfile, sys
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as t:
    for name, data in [('../escape.txt', b'up'), ('/abs-escape.txt', b'abs'), ('ok/inside.txt', b'fine'), ('ok/../../escape2.txt', b'up2')]:
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    link = tarfile.TarInfo('ok/link'); link.type = tarfile.SYMTYPE; link.linkname = '${dir}'; t.addfile(link)
    via = tarfile.TarInfo('ok/link/through-link.txt'); via.size = 3; t.addfile(via, io.BytesIO(b'via'))
sys.stdout.buffer.write(buf.getvalue())
`;
  return execFileSync('python3', ['-c', script]);
}

describe('agent restore sink', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('writes nothing outside TARGET for ../ members, absolute members and links out', async () => {
    const base = mkdtempSync(join(tmpdir(), 'bp-restore-'));
    dirs.push(base);
    const target = join(base, 'target');
    const outside = join(base, 'outside');
    const sent: AgentMessage[] = [];
    const streams = new RestoreStreams(fakeChannel(sent), pino({ level: 'silent' }));
    await streams.begin({ type: 'restore.begin', id: 1, stream: 7, target });
    execFileSync('mkdir', ['-p', outside]);
    const tar = hostileTar(outside);
    for (let i = 0; i < tar.length; i += 1000) streams.data(7, tar.subarray(i, i + 1000));
    const result = await streams.end({
      type: 'restore.end',
      id: 2,
      stream: 7,
      bytes: tar.length,
      sha256: createHash('sha256').update(tar).digest(),
    });
    // Nothing escaped: not next to the target, not through the planted link.
    expect(readdirSync(base).sort()).toEqual(['outside', 'target']);
    expect(readdirSync(outside)).toEqual([]);
    expect(existsSync(join(base, 'escape.txt'))).toBe(false);
    // The harmless member landed inside, the absolute one was made relative.
    expect(readFileSync(join(target, 'ok/inside.txt'), 'utf8')).toBe('fine');
    expect(readFileSync(join(target, 'abs-escape.txt'), 'utf8')).toBe('abs');
    // tar said what it refused, and the result is not a success.
    expect(result.ok).toBe(false);
    expect(result.tarExit).not.toBe(0);
    expect(result.stderr).toMatch(/\.\./);
  });

  it('reports a stream that does not match what the controller sent', async () => {
    const base = mkdtempSync(join(tmpdir(), 'bp-restore-'));
    dirs.push(base);
    const streams = new RestoreStreams(fakeChannel([]), pino({ level: 'silent' }));
    await streams.begin({ type: 'restore.begin', id: 1, stream: 1, target: base });
    const tar = execFileSync('tar', ['-c', '-f', '-', '-C', tmpdir(), '--files-from', '/dev/null']);
    streams.data(1, tar);
    const result = await streams.end({ type: 'restore.end', id: 2, stream: 1, bytes: tar.length + 1, sha256: Buffer.alloc(32) });
    expect(result.ok).toBe(false);
    expect(result.stderr).toMatch(/stream check failed/);
  });

  it('stops at a corrupt header, keeps what was written before it and reports the stream as broken (tarExit 2)', async () => {
    const base = mkdtempSync(join(tmpdir(), 'bp-restore-'));
    dirs.push(base);
    execFileSync('sh', [
      '-c',
      `mkdir -p ${base}/src && echo one > ${base}/src/a && echo two > ${base}/src/b && tar -cf ${base}/t.tar -C ${base}/src a b`,
    ]);
    const tar = readFileSync(join(base, 't.tar'));
    tar[512 + 512] ^= 0x20; // b's header name: its checksum no longer matches
    const target = join(base, 'target');
    const streams = new RestoreStreams(fakeChannel([]), pino({ level: 'silent' }));
    await streams.begin({ type: 'restore.begin', id: 1, stream: 1, target });
    streams.data(1, tar);
    const r = await streams.end({
      type: 'restore.end',
      id: 2,
      stream: 1,
      bytes: tar.length,
      sha256: createHash('sha256').update(tar).digest(),
    });
    expect(readdirSync(target)).toEqual(['a']);
    expect(r).toMatchObject({ ok: false, tarExit: 2, files: 1 });
    expect(r.stderr).toMatch(/restore stopped: .*checksum/);
  });

  it('refuses a relative target', async () => {
    await expect(checkTarget('relative/dir')).rejects.toMatchObject({ code: 'E_RESTORE_TARGET' });
  });
});

describe('agent restore owners', () => {
  it("maps archived names through this machine's passwd with owners 'names', keeps ids with 'numeric'", async () => {
    const base = mkdtempSync(join(tmpdir(), 'bp-owners-'));
    try {
      execFileSync('sh', [
        '-c',
        `mkdir -p ${base}/src && echo x > ${base}/src/f && tar --owner=root:4321 --group=root:4321 -cf ${base}/t.tar -C ${base}/src f`,
      ]);
      const tar = readFileSync(join(base, 't.tar'));
      for (const [owners, uid] of [
        ['names', 0],
        ['numeric', 4321],
      ] as const) {
        const target = join(base, owners);
        const streams = new RestoreStreams(fakeChannel([]), pino({ level: 'silent' }));
        await streams.begin({ type: 'restore.begin', id: 1, stream: 1, target, owners });
        streams.data(1, tar);
        const r = await streams.end({
          type: 'restore.end',
          id: 2,
          stream: 1,
          bytes: tar.length,
          sha256: createHash('sha256').update(tar).digest(),
        });
        expect(r.ok, r.stderr).toBe(true);
        expect(statSync(join(target, 'f')).uid).toBe(uid);
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
