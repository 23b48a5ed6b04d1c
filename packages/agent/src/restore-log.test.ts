import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { escapeControls, orderRecord, outcome, parseRecord, RestoreLog } from './restore-log.js';

describe('the restore record', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bp-rlog-'));
    file = join(dir, 'restores.log');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('escapes C0, DEL and C1 controls from the controller, and bounds every string', () => {
    expect(escapeControls('a\u001b]0;x\u0007b\u009b\u007f\n')).toBe('a\\x1b]0;x\\x07b\\x9b\\x7f\\x0a');
    const r = orderRecord({
      stream: 1,
      target: `/srv/${'t'.repeat(10_000)}`,
      archive: `pc1\u001b[2J${'a'.repeat(1000)}`,
      paths: Array.from({ length: 5000 }, (_, i) => `p${i}\n${'x'.repeat(1000)}`),
      result: 'refused',
      reason: `why\r${'r'.repeat(10_000)}`,
    });
    const line = JSON.stringify(r);
    expect(line).not.toMatch(/\\u00[01]|\\u007f|\\u009/); // no control character reaches the JSON
    expect(line.length).toBeLessThan(16 * 1024);
    expect(r.archive).toMatch(/^pc1\\x1b\[2J/);
    expect(r.paths).toHaveLength(16);
    expect(r.pathCount).toBe(5000);
    expect(r.refused).toBe(true);
  });

  it('appends 0600 JSON lines and reads back the last orders, newest first, last state per order', async () => {
    const log = new RestoreLog(file);
    const a = orderRecord({ stream: 1, target: '/srv/a', archive: 'pc1-1', result: 'started' });
    await log.append(a);
    const b = { ...orderRecord({ stream: 2, target: '/etc', result: 'refused', reason: 'outside' }), time: a.time + 1 };
    await log.append(b);
    await log.append(outcome(a, { result: 'ok', bytes: 1234, files: 3 }));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(3);
    const recent = await log.recent(10);
    expect(recent.map((r) => [r.target, r.result])).toEqual([
      ['/etc', 'refused'],
      ['/srv/a', 'ok'],
    ]);
    expect(recent[1]).toMatchObject({ bytes: 1234, files: 3, archive: 'pc1-1', refused: false });
  });

  it('rotates: never more than two files of maxRecords lines, keeping the newest', async () => {
    const log = new RestoreLog(file, 10);
    for (let i = 0; i < 35; i++) await log.append({ ...orderRecord({ stream: i, target: `/t/${i}`, result: 'refused' }), time: 1000 + i });
    const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').length;
    expect(lines(file)).toBe(5);
    expect(lines(`${file}.1`)).toBe(10);
    expect(existsSync(`${file}.2`)).toBe(false);
    const recent = await log.recent(100);
    expect(recent).toHaveLength(15);
    expect(recent[0]!.target).toBe('/t/34');
    expect(recent.at(-1)!.target).toBe('/t/20');
  });

  it('counts the lines already in the file when the agent restarts', async () => {
    await new RestoreLog(file, 10).append(orderRecord({ stream: 0, target: '/x', result: 'refused' }));
    for (let i = 0; i < 9; i++) await new RestoreLog(file, 10).append(orderRecord({ stream: 0, target: '/x', result: 'refused' }));
    expect(existsSync(`${file}.1`)).toBe(false);
    await new RestoreLog(file, 10).append(orderRecord({ stream: 0, target: '/y', result: 'refused' }));
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('never writes through a symlink in place of the record', async () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep\n');
    symlinkSync(victim, file);
    await expect(new RestoreLog(file).append(orderRecord({ stream: 0, target: '/x', result: 'refused' }))).rejects.toMatchObject({
      code: 'ELOOP',
    });
    expect(readFileSync(victim, 'utf8')).toBe('keep\n');
  });

  it('reads damaged or hostile lines as nothing, and escapes what it reads back', async () => {
    writeFileSync(
      file,
      [
        'not json',
        '[]',
        '{"order":"a","time":1,"stream":1,"target":"/x","result":"pwned","bytes":0}',
        '{"order":"b","time":2,"stream":1,"target":"/x\\u001b[2J","result":"refused","refused":true,"bytes":0}',
        '',
      ].join('\n'),
    );
    const recent = await new RestoreLog(file).recent(10);
    expect(recent).toHaveLength(1);
    expect(recent[0]!.target).toBe('/x\\x1b[2J');
    expect(parseRecord('{"order":"c","time":-1,"stream":1,"target":"/x","result":"ok","bytes":0}')).toBeUndefined();
  });
});
