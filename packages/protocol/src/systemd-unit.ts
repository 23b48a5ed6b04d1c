/**
 * Installing a program as a systemd service: what `agent install-service` and
 * `controller install-service` share (each package writes its own unit text,
 * with the hardening it needs). Node built-ins only.
 *
 * A path the user gave (--state-dir) goes into the unit file: a newline in it
 * would add a directive of the caller's choosing (`ExecStartPre=...`), a `%`
 * would be a specifier and a `$` an environment variable. So every ExecStart
 * word is quoted here, and a word systemd cannot carry as plain text is refused.
 */
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { mkdir, readFile, rm, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { errnoCode, errorMessage, ProtocolError } from './errors.js';
import { exists } from './fs-exists.js';
import { writeFileAtomic } from './fs-atomic.js';

/** Where units go on the machine: `ROOT/etc/systemd/system` (ROOT `/` unless `--root`). */
export function unitPath(root: string, name: string): string {
  return join(root, 'etc', 'systemd', 'system', `${name}.service`);
}

/** Bounds on what goes into ExecStart: a path, not a document. */
const MAX_WORD = 4096;

/**
 * One ExecStart word, quoted for systemd: double quotes, `\` and `"` escaped,
 * `%` doubled (specifiers) and `$` doubled (variables). A control character
 * (a newline above all) or a non-absolute program is refused.
 */
export function execWord(word: string): string {
  if (word.length === 0 || word.length > MAX_WORD || /[\u0000-\u001f\u007f]/.test(word)) {
    throw new ProtocolError('E_SERVICE_ARG', `cannot put ${JSON.stringify(word)} in a unit file (empty, too long or a control character)`);
  }
  return `"${word
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replace(/%/g, '%%')
    .replace(/\$/g, '$$$$')}"`;
}

/**
 * An absolute path as the value of a path directive (ReadWritePaths=):
 * quoted, `%` doubled; no `$` expansion happens there.
 */
export function pathValue(path: string): string {
  if (!path.startsWith('/')) throw new ProtocolError('E_SERVICE_ARG', `${JSON.stringify(path)} is not an absolute path`);
  return execWord(path).replace(/\$\$/g, '$');
}

/** The ExecStart line's value: the program (absolute) and its arguments, each quoted. */
export function execStart(argv: readonly string[]): string {
  const [program] = argv;
  if (program === undefined || !program.startsWith('/'))
    throw new ProtocolError('E_SERVICE_ARG', 'the program in ExecStart must be an absolute path');
  return argv.map(execWord).join(' ');
}

/**
 * The command line that runs this very program again: the single binary when
 * that is what runs (a Node single executable application: `process.execPath`
 * is the binary), else `node` and the script (symlinks such as
 * node_modules/.bin/agent resolved, so the unit names the real file).
 */
export async function thisProgram(): Promise<string[]> {
  let sea = false;
  try {
    const mod = (await import('node:sea')) as { isSea?: () => boolean };
    sea = mod.isSea?.() === true;
  } catch {
    // node:sea is missing before Node 20.12: then this is no single binary.
  }
  const script = process.argv[1];
  if (sea || script === undefined) return [process.execPath];
  return [process.execPath, realpathSync(script)];
}

/** True when systemd is the running init: the test systemd itself documents (sd_booted). */
export async function systemdRunning(): Promise<boolean> {
  return exists('/run/systemd/system');
}

export interface ServiceIo {
  out: (s: string) => void;
}

/** Runs `systemctl ARGS`, raising E_SERVICE_SYSTEMCTL with its first line of stderr. */
function systemctl(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('systemctl', args, { timeout: 120_000 }, (err, _stdout, stderr) => {
      if (!err) {
        resolve();
        return;
      }
      const why = stderr.trim().split('\n')[0] || errorMessage(err);
      reject(new ProtocolError('E_SERVICE_SYSTEMCTL', `systemctl ${args.join(' ')} failed: ${why}`, { cause: err }));
    });
  });
}

export interface InstallOptions {
  /** `/`, or the tree given with --root (then systemctl is never run). */
  readonly root: string;
  readonly name: string;
  readonly text: string;
  readonly io: ServiceIo;
}

/**
 * Writes the unit (atomically, 0644), then enables and starts it when systemd
 * runs this machine; otherwise, or under --root, says exactly what to run.
 */
export async function installUnit(o: InstallOptions): Promise<void> {
  const path = unitPath(o.root, o.name);
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await writeFileAtomic(path, o.text, 0o644);
  } catch (err) {
    throw new ProtocolError('E_SERVICE_WRITE', `cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  }
  o.io.out(`wrote ${path}`);
  const steps = [['daemon-reload'], ['enable', '--now', `${o.name}.service`]];
  if (o.root === '/' && (await systemdRunning())) {
    for (const s of steps) {
      o.io.out(`systemctl ${s.join(' ')}`);
      await systemctl(s);
    }
    o.io.out(`started; logs: journalctl -u ${o.name}`);
    return;
  }
  o.io.out(
    o.root === '/'
      ? 'systemd is not running on this machine (no /run/systemd/system): nothing started. Once it is, run:'
      : `installed under --root ${o.root}: nothing started. On that system, run:`,
  );
  for (const s of steps) o.io.out(`  systemctl ${s.join(' ')}`);
}

/**
 * Stops and disables the unit (when systemd runs and not under --root), then
 * removes its file. Idempotent: a unit that is not there is said, not an error.
 */
export async function uninstallUnit(o: Omit<InstallOptions, 'text'>): Promise<boolean> {
  const path = unitPath(o.root, o.name);
  let present = true;
  try {
    await readFile(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT')
      throw new ProtocolError('E_SERVICE_WRITE', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
    present = false;
  }
  const live = o.root === '/' && (await systemdRunning());
  if (live && present) {
    o.io.out(`systemctl disable --now ${o.name}.service`);
    await systemctl(['disable', '--now', `${o.name}.service`]);
  }
  if (!present) {
    o.io.out(`${path} is not installed`);
    return false;
  }
  try {
    await unlink(path);
  } catch (err) {
    throw new ProtocolError('E_SERVICE_WRITE', `cannot remove ${path}: ${errorMessage(err)}`, { cause: err });
  }
  o.io.out(`removed ${path}`);
  if (live) {
    o.io.out('systemctl daemon-reload');
    await systemctl(['daemon-reload']);
  } else {
    o.io.out(
      `not stopped (systemd is not running${o.root === '/' ? '' : ' here, or --root'}); on that system run: systemctl disable --now ${o.name}.service && systemctl daemon-reload`,
    );
  }
  return true;
}

/** Mount points in /proc/self/mountinfo (field 5, octal escapes undone). */
async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/**
 * `uninstall-service --purge`: deletes a state directory, and with it every
 * key (and, on the controller, every repository). Refused unless the
 * directory holds an identity.json (a mistyped --state-dir such as /home is
 * not a state dir), and refused while anything is mounted inside it: a
 * recursive delete under a live mount would delete the client's files.
 */
export async function purgeStateDir(dir: string, io: ServiceIo): Promise<void> {
  const abs = resolve(dir);
  if (abs === '/' || !(await exists(join(abs, 'identity.json')))) {
    throw new ProtocolError('E_SERVICE_PURGE', `${abs} is not a borgpull state directory (no identity.json): not deleted`);
  }
  const inside = (await mountPoints()).filter((m) => m === abs || m.startsWith(abs + sep));
  if (inside.length) {
    throw new ProtocolError('E_SERVICE_PURGE', `${inside[0]} is mounted inside ${abs}: not deleted (stop the service, unmount, try again)`);
  }
  try {
    await rm(abs, { recursive: true });
  } catch (err) {
    throw new ProtocolError('E_SERVICE_PURGE', `cannot delete ${abs}: ${errorMessage(err)}`, { cause: err });
  }
  io.out(`deleted ${abs}`);
}
