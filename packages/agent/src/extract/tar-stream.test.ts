import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { TarStream, type Member, type MemberSink } from './tar-stream.js';

/** Records members and their data. */
function collect(tar: Buffer, chunk = tar.length): { members: Array<Member & { body: string }>; stream: TarStream } {
  const members: Array<Member & { body: string }> = [];
  let body: Buffer[] = [];
  const sink: MemberSink = {
    begin: (m) => {
      body = [];
      members.push({ ...m, body: '' });
    },
    data: (c) => body.push(Buffer.from(c)),
    end: () => {
      members[members.length - 1]!.body = Buffer.concat(body).toString('latin1');
    },
  };
  const stream = new TarStream(sink);
  for (let i = 0; i < tar.length; i += chunk) stream.push(tar.subarray(i, i + chunk));
  stream.finish();
  return { members, stream };
}

/** A tar stream written by Python's tarfile, as borg export-tar writes them. */
function py(body: string, format = 'GNU_FORMAT'): Buffer {
  const script = `
import io, tarfile, sys
buf = io.BytesIO()
t = tarfile.open(fileobj=buf, mode='w', format=tarfile.${format})
def add(name, data=b'', **kw):
    i = tarfile.TarInfo(name); i.size = len(data)
    for k, v in kw.items(): setattr(i, k, v)
    t.addfile(i, io.BytesIO(data))
${body}
t.close()
sys.stdout.buffer.write(buf.getvalue())
`;
  return execFileSync('python3', ['-c', script]);
}

describe('tar stream reader', () => {
  it('reads what Python tarfile writes: GNU long names and links, base-256 ids and sizes, pax records, whatever the chunking', () => {
    const long = 'd/'.repeat(80) + 'f';
    const gnu = py(`add('${long}', b'x' * 700, uid=2**40, gid=7, mtime=2**40)\nadd('l', type=tarfile.SYMTYPE, linkname='${long}')`);
    const pax = py(`add('${long}', b'y', uid=5, uname='\\u00e9l\\u00e8ve', mtime=1.5)`, 'PAX_FORMAT');
    for (const chunk of [1, 511, 512, 513, 100_000]) {
      const g = collect(gnu, chunk).members;
      expect(g.map((m) => [m.name.toString(), m.type, m.uid, m.mtime, m.body.length])).toEqual([
        [long, 'file', 2 ** 40, 2 ** 40, 700],
        ['l', 'symlink', 0, 0, 0],
      ]);
      expect(g[1]!.linkname.toString()).toBe(long);
      const p = collect(pax, chunk).members;
      expect(p.map((m) => [m.name.toString(), m.uid, m.uname.toString(), m.mtime, m.body])).toEqual([[long, 5, 'élève', 1.5, 'y']]);
    }
  });

  it('ignores what follows the end-of-archive block, accepts an archive without one', () => {
    const tar = py(`add('a', b'1')`);
    expect(collect(Buffer.concat([tar, Buffer.from('garbage after the end')])).members).toHaveLength(1);
    expect(collect(tar.subarray(0, 1024)).members).toHaveLength(1);
  });

  const hostile: Array<[string, () => Buffer, RegExp]> = [
    [
      'a header with a wrong checksum',
      () => {
        const t = py(`add('a', b'1')`);
        t[0] = 0x62; // 'a' -> 'b' without fixing the checksum
        return t;
      },
      /checksum/,
    ],
    ['bytes that are not tar', () => Buffer.alloc(1024, 0x41), /checksum|bad/],
    ['a stream cut inside a member', () => py(`add('a', b'1' * 2000)`).subarray(0, 1024), /truncated/],
    ['an empty stream', () => Buffer.alloc(0), /empty/],
    ['a long-name entry larger than the limit', () => py(`add('${'n'.repeat(40)}' * 1700)`), /longname entry .* larger than the limit/],
    [
      'a pax record with a bad length',
      () => {
        const t = py(`add('a', b'1', pax_headers={'comment': 'x'})`, 'PAX_FORMAT');
        const i = t.indexOf('comment=x');
        t[i - 2] = 0x39; // the record's length digit
        return t;
      },
      /pax record/,
    ],
    ['a pax uid that is not a number', () => py(`add('a', b'1', pax_headers={'uid': '1e9'})`, 'PAX_FORMAT'), /pax uid/],
  ];
  for (const [what, make, err] of hostile) {
    it(`stops with a clear error on ${what}`, () => {
      expect(() => collect(make())).toThrow(err);
    });
  }
});
