/**
 * What the backup server needs besides the controller itself: the tunnel user
 * agents log in as, and sshd's rules for that user (a drop-in in
 * /etc/ssh/sshd_config.d), then an sshd reload. One code path for
 * `controller setup-host`, `controller install-service` and the Debian
 * package's postinst, so the rules exist in one place (`sshd-check.ts`
 * verifies them; the README and test/harness TUNNEL_RULES say the same).
 *
 * Each step says what it found and did ("created", "already present"); with
 * `print` it says what it would do and does nothing. Under a `root` other
 * than `/` (an image, a test) it writes there (useradd --root) and never
 * signals a process.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errnoCode, errorMessage, systemdRunning, writeFileAtomic } from '@borgpull/protocol';
import { ControllerError } from './errors.js';
import { clean, findSshd } from './sshd-check.js';

/** The drop-in, relative to the root. Debian's sshd_config includes sshd_config.d/*.conf at its top. */
export const SSHD_DROP_IN = 'etc/ssh/sshd_config.d/borgpull.conf';
const SSHD_CONFIG = 'etc/ssh/sshd_config';
const NOLOGIN = '/usr/sbin/nologin';
/** Shells that run nothing: a tunnel user with any other is said to the admin, not changed. */
const NO_SHELLS = new Set(['/usr/sbin/nologin', '/sbin/nologin', '/bin/false', '/usr/bin/false']);
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
/**
 * A state dir that goes into sshd_config as AuthorizedKeysFile: sshd splits
 * on spaces, expands `%` tokens and a newline would start a directive of the
 * caller's choosing (`Match all` + `AllowTcpForwarding yes`). Plain path
 * characters only.
 */
const SSHD_PATH_RE = /^\/[A-Za-z0-9._/+-]{0,4000}$/;
const HASH_PREFIX = '# borgpull-sshd-rules sha256=';

export interface HostSetupOptions {
  /** `/`, or a tree to set up (useradd --root; nothing is signalled). */
  readonly root: string;
  readonly stateDir: string;
  readonly tunnelUser: string;
  /** Say what would be done; do nothing. */
  readonly print?: boolean;
  readonly io: { out: (s: string) => void };
}

/** The `Match User` block: the README's rules, which `controller check` verifies. */
export function tunnelRules(tunnelUser: string, stateDir: string): string[] {
  checkNames(tunnelUser, stateDir);
  return [
    `Match User ${tunnelUser}`,
    `    AuthorizedKeysFile ${stateDir}/tunnel/authorized_keys`,
    '    AllowTcpForwarding remote',
    '    AllowStreamLocalForwarding no',
    '    GatewayPorts no',
    '    PermitTunnel no',
    '    X11Forwarding no',
    '    AllowAgentForwarding no',
    '    PermitTTY no',
    '    PermitUserRC no',
    '    ForceCommand /bin/false',
  ];
}

function checkNames(tunnelUser: string, stateDir: string): void {
  if (!USER_RE.test(tunnelUser)) throw new ControllerError('E_SETUP_ARG', `'${clean(tunnelUser)}' is not a user name for the tunnel user`);
  if (!SSHD_PATH_RE.test(stateDir) || stateDir.split('/').includes('..')) {
    throw new ControllerError(
      'E_SETUP_ARG',
      `the state dir ${JSON.stringify(stateDir)} cannot go into sshd_config (letters, digits, . _ / + - only, absolute, no '..')`,
    );
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * The drop-in's text. Its first line is the checksum of the rest: a file
 * whose body still matches it was written by borgpull and may be replaced by
 * a newer version; one that does not was changed by a person and is left alone.
 */
export function dropInText(tunnelUser: string, stateDir: string): string {
  const body = [
    `# sshd rules for borgpull's tunnel user '${tunnelUser}', written by 'borgpull-controller setup-host'.`,
    "# Agents may forward their own port on the server's loopback, nothing else;",
    "# 'controller check' verifies what sshd makes of them. Edited, this file is no",
    '# longer replaced by borgpull (setup-host refuses); deleted, it is written again.',
    ...tunnelRules(tunnelUser, stateDir),
    '',
  ].join('\n');
  return `${HASH_PREFIX}${sha256(body)}\n${body}`;
}

/** True when the text is a drop-in borgpull wrote and nobody changed since (its checksum line matches). */
export function unmodifiedDropIn(text: string): boolean {
  const nl = text.indexOf('\n');
  if (nl < 0 || !text.startsWith(HASH_PREFIX)) return false;
  return text.slice(HASH_PREFIX.length, nl) === sha256(text.slice(nl + 1));
}

interface PasswdEntry {
  uid: number;
  shell: string;
}

/** The user's entry in ROOT/etc/passwd (parsed, bounded), or undefined. */
async function passwdEntry(root: string, user: string): Promise<PasswdEntry | undefined> {
  const path = join(root, 'etc', 'passwd');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ControllerError('E_SETUP_FAILED', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  for (const line of text.split('\n', 100_000)) {
    const f = line.split(':');
    if (f[0] !== user || f.length < 7) continue;
    return { uid: Number(f[2]), shell: clean(f[6] ?? '') };
  }
  return undefined;
}

function run(cmd: string, args: readonly string[]): Promise<{ ok: boolean; why: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } }, (err, _out, stderr) => {
      const why = clean(stderr.split('\n').find((l) => l.trim() !== '' && !l.includes('Warning: missing or non-executable shell')) ?? '');
      resolve({ ok: !err, why: why || (err ? errorMessage(err) : '') });
    });
  });
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ControllerError('E_SETUP_FAILED', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Step 1: the tunnel user: a system user, no home, no shell, password locked (useradd leaves `!`). */
async function ensureTunnelUser(o: HostSetupOptions): Promise<void> {
  const u = o.tunnelUser;
  const found = await passwdEntry(o.root, u);
  if (found) {
    // A root-equivalent tunnel user would make every agent key a root login (ForceCommand aside).
    if (found.uid === 0) throw new ControllerError('E_SETUP_CONFLICT', `tunnel user ${u}: has uid 0 (root); choose another tunnel user`);
    if (!NO_SHELLS.has(found.shell)) {
      o.io.out(
        `tunnel user ${u}: already present, with the shell ${found.shell}: left as it is (sshd's ForceCommand /bin/false stops every ` +
          `command over ssh; to take the shell away: usermod --shell ${NOLOGIN} ${u})`,
      );
    } else {
      o.io.out(`tunnel user ${u}: already present`);
    }
    return;
  }
  const args = [
    ...(o.root === '/' ? [] : ['--root', o.root]),
    '--system',
    '--user-group',
    '--home-dir',
    '/nonexistent',
    '--no-create-home',
    '--shell',
    NOLOGIN,
    u,
  ];
  if (o.print) {
    o.io.out(`tunnel user ${u}: missing; would run: useradd ${args.join(' ')}`);
    return;
  }
  const r = await run('useradd', args);
  if (!r.ok) throw new ControllerError('E_SETUP_FAILED', `tunnel user ${u}: useradd failed: ${r.why}`);
  o.io.out(`tunnel user ${u}: created (useradd ${args.join(' ')})`);
}

/** Step 2: the drop-in. Returns true when it was written (sshd must reload). */
async function ensureDropIn(o: HostSetupOptions): Promise<boolean> {
  const path = join(o.root, SSHD_DROP_IN);
  const want = dropInText(o.tunnelUser, o.stateDir);
  const have = await readText(path);
  const config = await readText(join(o.root, SSHD_CONFIG));
  if (config === undefined) {
    o.io.out(`warning: ${join(o.root, SSHD_CONFIG)} is missing: install openssh-server (agents tunnel into it)`);
  } else if (!/^\s*Include\s+(\S*\s+)*(\/etc\/ssh\/)?sshd_config\.d\/\*\.conf(\s|$)/im.test(config)) {
    o.io.out(
      `warning: ${join(o.root, SSHD_CONFIG)} does not include sshd_config.d/*.conf: sshd will not read ${path}; ` +
        `add 'Include /etc/ssh/sshd_config.d/*.conf' at its top ('controller check' shows what sshd does)`,
    );
  }
  if (have === want) {
    o.io.out(`sshd rules ${path}: already present`);
    return false;
  }
  if (have !== undefined && !unmodifiedDropIn(have)) {
    // Someone changed it: perhaps tightened it (a Match Address, AllowUsers), perhaps it is another program's.
    // Replacing it would throw their choice away, keeping it silently could leave rules that fail the check.
    throw new ControllerError(
      'E_SETUP_CONFLICT',
      `sshd rules ${path}: changed by hand (or not written by borgpull): not replaced. Compare it with ` +
        `'controller setup-host --print', then edit it ('controller check' verifies it) or delete it and run this again`,
    );
  }
  const verb = have === undefined ? 'created' : 'updated (an earlier version of borgpull wrote it)';
  if (o.print) {
    o.io.out(`sshd rules ${path}: would be ${have === undefined ? 'created' : 'updated'}:`);
    for (const l of want.trimEnd().split('\n')) o.io.out(`  ${l}`);
    return true;
  }
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await writeFileAtomic(path, want, 0o644);
  } catch (err) {
    throw new ControllerError('E_SETUP_FAILED', `cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  }
  o.io.out(`sshd rules ${path}: ${verb}`);
  return true;
}

/**
 * Step 3: sshd re-reads its config. Checked first with `sshd -t`: a reload
 * with a config sshd rejects stops sshd, and with it every admin's way in.
 */
async function reloadSshd(o: HostSetupOptions): Promise<void> {
  if (o.print) {
    o.io.out('sshd: would be reloaded (systemctl reload ssh, or SIGHUP to /run/sshd.pid) after sshd -t accepts the config');
    return;
  }
  if (o.root !== '/') {
    o.io.out(`sshd: not reloaded (set up under ${o.root}); on that system run: systemctl reload ssh`);
    return;
  }
  const validate = async (): Promise<void> => {
    const sshd = await findSshd();
    const t = await run(sshd, ['-t']);
    if (!t.ok) {
      throw new ControllerError(
        'E_SETUP_FAILED',
        `sshd: ${sshd} -t rejects the configuration (${t.why}): not reloaded, since sshd would stop; fix it, then: systemctl reload ssh`,
      );
    }
  };
  if (await systemdRunning()) {
    if (!(await run('systemctl', ['is-active', '--quiet', 'ssh.service'])).ok) {
      o.io.out('sshd: ssh.service is not running; it reads the rules when it starts: systemctl enable --now ssh');
      return;
    }
    await validate();
    const r = await run('systemctl', ['reload', 'ssh.service']);
    if (!r.ok) throw new ControllerError('E_SETUP_FAILED', `sshd: systemctl reload ssh.service failed: ${r.why}`);
    o.io.out('sshd: reloaded (systemctl reload ssh.service)');
    return;
  }
  const pid = Number((await readText('/run/sshd.pid'))?.trim());
  const comm = Number.isInteger(pid) && pid > 1 ? (await readText(`/proc/${pid}/comm`))?.trim() : undefined;
  if (comm !== 'sshd') {
    o.io.out(
      'sshd: no running sshd found (no live /run/sshd.pid); it reads the rules when it starts: mkdir -p /run/sshd && /usr/sbin/sshd',
    );
    return;
  }
  await validate();
  process.kill(pid, 'SIGHUP');
  o.io.out(`sshd: reloaded (SIGHUP to pid ${pid} from /run/sshd.pid)`);
}

/** The tunnel user, its sshd rules, an sshd reload: each step idempotent and said. */
export async function setupHost(o: HostSetupOptions): Promise<void> {
  checkNames(o.tunnelUser, o.stateDir);
  await ensureTunnelUser(o);
  if (await ensureDropIn(o)) await reloadSshd(o);
}

/**
 * The reverse, for uninstall-service and the package's removal: the drop-in
 * goes (unless changed by hand: then it is said and kept), so the tunnel
 * user's keys no longer open anything; the user stays (files may belong to
 * its uid; Debian removes no system users).
 */
export async function undoHostSetup(o: HostSetupOptions): Promise<void> {
  checkNames(o.tunnelUser, o.stateDir);
  const path = join(o.root, SSHD_DROP_IN);
  const have = await readText(path);
  let removed = false;
  if (have === undefined) o.io.out(`sshd rules ${path}: not present`);
  else if (!unmodifiedDropIn(have)) o.io.out(`sshd rules ${path}: changed by hand: kept (delete it yourself if it is no longer wanted)`);
  else if (o.print) o.io.out(`sshd rules ${path}: would be removed`);
  else {
    try {
      await unlink(path);
    } catch (err) {
      throw new ControllerError('E_SETUP_FAILED', `cannot remove ${path}: ${errorMessage(err)}`, { cause: err });
    }
    o.io.out(`sshd rules ${path}: removed`);
    removed = true;
  }
  o.io.out(`tunnel user ${o.tunnelUser}: kept (files may belong to it; userdel ${o.tunnelUser} removes it)`);
  if (removed || (o.print && have !== undefined && unmodifiedDropIn(have))) await reloadSshd(o);
}
