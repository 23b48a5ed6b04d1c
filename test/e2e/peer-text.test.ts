/**
 * Issue 7, item 8: what a client names reaches the admin's terminal as text,
 * never as escape sequences; restore PATHs and archive names are never borg
 * options.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, type FileSpec } from '../harness/index.js';
import { CONTROLLER, manyFiles, startClient, startController, type Client, type Controller } from './fixture.js';

/** An OSC sequence that would retitle the admin's terminal, as a directory name on the client. */
const OSC = '\x1b]0;pwned\x07';
const OSC_ESCAPED = '\\x1b]0;pwned\\x07';
const HOSTILE_DIR = `data/${OSC}`;

const TREE: Record<string, FileSpec> = {
  // Enough files that borg's progress (every 0.2 s, thinned by the controller) names this dir.
  ...manyFiles(1500, HOSTILE_DIR),
  'data/new\nline.txt': 'a newline in a name\n',
  'data/c1\u009b2J.txt': 'a C1 CSI in a name\n',
};

/** What a terminal could act on, besides the newline and CR that end a line. */
const RAW_CONTROL = /[\u0000-\u0009\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

/** Every string in a parsed JSON value. */
function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (typeof v === 'object' && v !== null) return [...Object.keys(v), ...Object.values(v).flatMap(strings)];
  return [];
}

/** Single-quotes a word for sh. */
const q = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

describe('peer text and borg arguments', () => {
  let ctl: Controller;
  let c1: Client;
  let archive: string;
  const marker = (): string => join(ctl.server.dir, 'MARKER');
  /** The CLI with --state-dir right after the command, so that arguments after a `--` stay last. */
  const cli = async ([cmd, ...args]: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> => {
    const r = await ctl.server.exec(['node', CONTROLLER, cmd!, '--state-dir', ctl.state, ...args], { reject: false, timeout: 120_000 });
    return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles(TREE);
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it("a backup's live progress shows a client's hostile file names escaped, never as sequences", async () => {
    // On a terminal the CLI redraws on every event, so each progress path is printed:
    // run it on a pty (script), wide enough that the path is not cut off.
    const cmd = `stty cols 400; exec node ${q(CONTROLLER)} backup pc1 --state-dir ${q(ctl.state)}`;
    const r = await ctl.server.exec(['script', '-qefc', cmd, '/dev/null'], { reject: false, timeout: 300_000 });
    const out = r.stdout + r.stderr;
    expect(r.exitCode, out + ctl.server.logs()).toBe(0);
    const list = await ctl.cli(['archives', 'pc1', '--json']);
    archive = (JSON.parse(list.stdout) as Array<{ name: string }>).at(-1)!.name;
    // The CLI's own cursor movement is ESC [ ... ; an OSC (ESC ]), BEL or C1 can only come from a name.
    expect(out).not.toContain('\x1b]');
    expect(out).not.toContain('\x07');
    expect(out).not.toContain('\u009b');
    expect(out).toContain(`${HOSTILE_DIR.replace(OSC, OSC_ESCAPED)}/`);
  }, 300_000);

  it('a dry run lists them escaped, one line each', async () => {
    const r = await ctl.cli(['restore', 'pc1', archive, 'data', '--dry-run', '--target', '/tmp/x']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(RAW_CONTROL.test(r.stdout + r.stderr)).toBe(false);
    const lines = r.stdout.split('\n');
    expect(lines).toContain(`data/${OSC_ESCAPED}`);
    expect(lines).toContain('data/new\\x0aline.txt');
    expect(lines).toContain('data/c1\\x9b2J.txt');
    expect(lines).not.toContain('line.txt');
  });

  it("borg's stderr quoting such a name is escaped in the job record and on the terminal", async () => {
    // export-tar warns that this pattern matched nothing, quoting it: the restore fails with that text.
    const r = await ctl.cli(['restore', 'pc1', archive, `${HOSTILE_DIR}/nope`, '--target', join(c1.host.dir, 'r1')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(OSC_ESCAPED);
    expect(RAW_CONTROL.test(r.stdout + r.stderr)).toBe(false);
    const jobs = await ctl.cli(['jobs', '--json']);
    expect(jobs.exitCode).toBe(0);
    const all = strings(JSON.parse(jobs.stdout));
    expect(all.some((s) => s.includes(OSC_ESCAPED))).toBe(true);
    for (const s of all) expect(RAW_CONTROL.test(s), JSON.stringify(s)).toBe(false);
    const table = await ctl.cli(['jobs']);
    expect(RAW_CONTROL.test(table.stdout), table.stdout).toBe(false);
  });

  it('a restore PATH that looks like an option is a path: --tar-filter runs nothing on the server', async () => {
    rmSync(marker(), { force: true });
    const filter = `--tar-filter=sh -c "touch ${marker()}"`;
    // After the CLI's own `--`, and with a leading slash (stripped before borg sees it).
    for (const args of [['--', filter], [`/${filter}`]]) {
      const r = await cli(['restore', 'pc1', archive, '--target', join(c1.host.dir, 'r2'), ...args]);
      expect(existsSync(marker()), `${args.join(' ')} ran a command on the server`).toBe(false);
      expect(r.exitCode, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toMatch(/never matched/);
    }
  });

  it("a dry run's PATH is never a borg list option either", async () => {
    const r = await ctl.cli(['restore', 'pc1', archive, '/--format=PWNED {path}{NUL}', '--dry-run', '--target', '/tmp/x']);
    expect(r.stdout).not.toContain('PWNED');
    expect(r.stdout).toMatch(/dry run: 0 items/);
  });

  it('an archive name that looks like an option is refused as no such archive', async () => {
    rmSync(marker(), { force: true });
    for (const name of [`--tar-filter=sh -c "touch ${marker()}"`, '-h']) {
      const r = await cli(['restore', 'pc1', '--target', join(c1.host.dir, 'r3'), '--', name]);
      expect(r.exitCode).not.toBe(0);
      expect(existsSync(marker())).toBe(false);
      expect(r.stderr).toMatch(/no archive|name the archive/);
    }
  });
});
