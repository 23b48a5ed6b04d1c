import { describe, expect, it } from 'vitest';
import { BorgLogReader } from './output.js';

/** What a terminal could act on: C0, DEL, C1, lone surrogates. */
const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const HOSTILE = 'home/alice/\x1b]0;pwned\x07\u009b2J\nx\ud800';

describe('BorgLogReader escapes what the client named', () => {
  it('progress paths, log messages and plain stderr lines reach no terminal raw', () => {
    const paths: string[] = [];
    const r = new BorgLogReader((p) => paths.push(p.path));
    // borg writes JSON lines: a newline in a name is \n inside the JSON string.
    r.push(
      JSON.stringify({ type: 'archive_progress', finished: false, nfiles: 1, original_size: 2, deduplicated_size: 3, path: HOSTILE }) +
        '\n',
    );
    r.push(JSON.stringify({ type: 'log_message', levelname: 'ERROR', message: `${HOSTILE}: [Errno 5] Input/output error` }) + '\n');
    r.push(JSON.stringify({ type: 'log_message', levelname: 'WARNING', message: `${HOSTILE}: changed while we backed it up` }) + '\n');
    // sshfs or the job script writing plain text naming a file
    r.push(`sshfs: cannot read \x1b[31m\u0085bad\n`);
    r.push('BORGPULL-ERROR E_JOB_SETUP mount of \x1b]0;x\x07 failed\n');

    expect(paths).toEqual(['home/alice/\\x1b]0;pwned\\x07\\x9b2J\\x0ax\\ud800']);
    expect(r.outcome.errors).toHaveLength(2);
    expect(r.outcome.warnings).toHaveLength(1);
    for (const s of [...paths, ...r.outcome.errors, ...r.outcome.warnings, r.outcome.setupError?.message ?? '']) {
      expect(RAW_CONTROL.test(s), JSON.stringify(s)).toBe(false);
    }
    expect(r.outcome.errors[0]).toContain('\\x1b]0;pwned\\x07');
    expect(r.outcome.setupError).toEqual({ code: 'E_JOB_SETUP', message: 'mount of \\x1b]0;x\\x07 failed' });
  });
});
