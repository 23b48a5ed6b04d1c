import { access, constants } from 'node:fs/promises';
import { execa } from 'execa';
import { ControllerError } from './errors.js';

/**
 * The controller depends on an sshd it does not run: the one agents open
 * their reverse tunnels to, as the tunnel user. That user's key lines say
 * `restrict,port-forwarding,permitlisten=...,permitopen=...`, and
 * `port-forwarding` turns OpenSSH's whole forwarding flag back on, Unix
 * sockets included: permitlisten does not cover socket paths (sshd 9.2 here:
 * a client holding its agent's key created a socket listener on the server
 * through `-R /path:...`). So the sshd's own rules for that user must allow
 * remote TCP forwarding and nothing else; this module reads sshd's effective
 * settings for the tunnel user (`sshd -T -C user=...`) and says which rule is
 * missing.
 */

export interface SshdCheckOptions {
  /** The sshd_config to check (`sshd -T -f`). */
  sshdConfig: string;
  tunnelUser: string;
  /** The port agents dial (for `Match LocalPort`). */
  sshPort: number;
  /** The sshd binary; default: the first of SSHD_PATHS that exists. */
  sshd?: string;
}

export interface SshdCheck {
  /** The sshd_config keyword, as the admin writes it. */
  setting: string;
  ok: boolean;
  /** What sshd said (per client address when they differ). */
  found: string;
  /** What it must be, as a config line. */
  want: string;
  /** Why it matters, in a few words. */
  why: string;
  /** Where the line goes: sshd allows some settings only outside Match blocks. */
  where: 'match' | 'global';
}

export interface SshdReport {
  sshd: string;
  sshdConfig: string;
  tunnelUser: string;
  checks: SshdCheck[];
  ok: boolean;
}

export const SSHD_PATHS = ['/usr/sbin/sshd', '/usr/bin/sshd', '/usr/local/sbin/sshd'] as const;

/**
 * Client addresses the settings are evaluated for: loopback and a remote
 * address (TEST-NET-1, standing for any agent): a `Match Address` block that
 * loosens the rules for either is caught.
 */
export const CHECK_ADDRESSES = ['127.0.0.1', '192.0.2.1'] as const;

/** The commands a ForceCommand may name: each exits at once and reads nothing. */
const SAFE_FORCED_COMMANDS = new Set(['/bin/false', '/usr/bin/false', '/usr/sbin/nologin', '/sbin/nologin']);

interface Rule {
  setting: string;
  /** sshd allows it only outside Match blocks. */
  global?: boolean;
  want: string;
  why: string;
  ok: (value: string) => boolean;
}

/** Every rule the tunnel user's effective settings must pass. `sshd -T` prints keywords in lowercase. */
export const RULES: readonly Rule[] = [
  { setting: 'AllowTcpForwarding', want: 'remote', why: "the agents' -R, and no -L/-W from the server", ok: (v) => v === 'remote' },
  {
    setting: 'DisableForwarding',
    want: 'no',
    why: "'yes' overrides AllowTcpForwarding: every tunnel would be refused",
    ok: (v) => v === 'no',
  },
  { setting: 'AllowStreamLocalForwarding', want: 'no', why: 'no Unix-socket forwarding, either way', ok: (v) => v === 'no' },
  { setting: 'GatewayPorts', want: 'no', why: 'forwarded ports stay on loopback', ok: (v) => v === 'no' },
  { setting: 'PermitTunnel', want: 'no', why: 'no tun/tap devices', ok: (v) => v === 'no' },
  { setting: 'X11Forwarding', want: 'no', why: 'no X11 listener', ok: (v) => v === 'no' },
  { setting: 'AllowAgentForwarding', want: 'no', why: 'no agent socket on the server', ok: (v) => v === 'no' },
  { setting: 'PermitTTY', want: 'no', why: 'no terminal', ok: (v) => v === 'no' },
  { setting: 'ForceCommand', want: '/bin/false', why: 'no command, shell or sftp', ok: (v) => SAFE_FORCED_COMMANDS.has(v) },
  { setting: 'PermitUserRC', want: 'no', why: 'no ~/.ssh/rc', ok: (v) => v === 'no' },
  { setting: 'PermitUserEnvironment', global: true, want: 'no', why: 'no environment from the user', ok: (v) => v === 'no' },
];

const MAX_OUTPUT = 1024 * 1024;
const MAX_LINES = 4096;
const MAX_VALUE = 1024;
const KEY_RE = /^[a-z][a-z0-9]{0,63}$/;

/**
 * Parses `sshd -T` output as untrusted text: bounded in size and lines,
 * keywords lowercase letters and digits only, values cut at MAX_VALUE and
 * stripped of control characters. The first value of a keyword wins (sshd
 * prints repeated keywords such as HostKey once per value).
 */
export function parseSshdT(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.slice(0, MAX_OUTPUT).split('\n', MAX_LINES);
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const key = (m[1] ?? '').toLowerCase();
    if (!KEY_RE.test(key) || out.has(key)) continue;
    out.set(key, clean(m[2] ?? ''));
  }
  return out;
}

/** Printable, one line, bounded: for values and messages that came from another program. */
export function clean(s: string): string {
  return s
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')
    .trim()
    .slice(0, MAX_VALUE);
}

/** Evaluates the rules over the settings sshd reported for each client address. */
export function evaluate(perAddress: ReadonlyMap<string, ReadonlyMap<string, string>>): SshdCheck[] {
  return RULES.map((rule) => {
    const key = rule.setting.toLowerCase();
    const seen = new Map<string, string[]>();
    let ok = true;
    for (const [addr, settings] of perAddress) {
      const v = settings.get(key) ?? '(not reported)';
      if (!rule.ok(v)) ok = false;
      seen.set(v, [...(seen.get(v) ?? []), addr]);
    }
    const found =
      seen.size === 1 ? ([...seen.keys()][0] ?? '') : [...seen].map(([v, addrs]) => `${v} (from ${addrs.join(', ')})`).join(', ');
    return {
      setting: rule.setting,
      ok,
      found,
      want: `${rule.setting} ${rule.want}`,
      why: rule.why,
      where: rule.global ? 'global' : 'match',
    };
  });
}

export async function findSshd(explicit?: string): Promise<string> {
  for (const p of explicit ? [explicit] : SSHD_PATHS) {
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      /* try the next one */
    }
  }
  throw new ControllerError(
    'E_SSHD_MISSING',
    `no sshd found (looked for ${(explicit ? [explicit] : SSHD_PATHS).join(', ')}): agents tunnel into it; install openssh-server`,
  );
}

/** Runs `sshd -T` for the tunnel user from each of CHECK_ADDRESSES and evaluates the rules. */
export async function checkSshd(opts: SshdCheckOptions): Promise<SshdReport> {
  // The name goes into sshd's -C spec, where a comma would add criteria.
  if (!/^[a-z_][a-z0-9_.-]{0,31}$/.test(opts.tunnelUser)) {
    throw new ControllerError('E_CONFIG_INVALID', `config: tunnelUser '${clean(opts.tunnelUser)}' is not a user name`);
  }
  const sshd = await findSshd(opts.sshd);
  const perAddress = new Map<string, Map<string, string>>();
  for (const addr of CHECK_ADDRESSES) {
    const spec = `user=${opts.tunnelUser},host=${addr},addr=${addr},lport=${opts.sshPort}`;
    const res = await execa(sshd, ['-T', '-f', opts.sshdConfig, '-C', spec], {
      reject: false,
      timeout: 10_000,
      maxBuffer: MAX_OUTPUT,
      stdin: 'ignore',
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      extendEnv: false,
    });
    if (res.exitCode !== 0 || res.failed) {
      const why =
        clean(res.stderr.split('\n').find((l) => l.trim() !== '') ?? '') || (res.timedOut ? 'timed out' : `exit ${res.exitCode ?? '?'}`);
      throw new ControllerError(
        'E_SSHD_CHECK',
        `cannot read the tunnel sshd's settings ('${sshd} -T -f ${opts.sshdConfig}'): ${why}; fix the sshd config, or set sshdConfig in config.json to the one the tunnel sshd uses`,
      );
    }
    perAddress.set(addr, parseSshdT(res.stdout));
  }
  const checks = evaluate(perAddress);
  return { sshd, sshdConfig: opts.sshdConfig, tunnelUser: opts.tunnelUser, checks, ok: checks.every((c) => c.ok) };
}

/** Where the fix goes, as advice. */
export function placement(c: SshdCheck, tunnelUser: string): string {
  return c.where === 'global'
    ? `set '${c.want}' in the sshd config, outside any Match block`
    : `add '${c.want}' to its 'Match User ${tunnelUser}' block`;
}

/** The one line `controller serve` fails with when the report has a failing check. */
export function unsafeMessage(report: SshdReport): string {
  const bad = report.checks.filter((c) => !c.ok);
  const first = bad[0];
  if (!first) return '';
  const more =
    bad.length > 1
      ? `; ${bad.length - 1} more: ${bad
          .slice(1)
          .map((c) => c.setting)
          .join(', ')}`
      : '';
  return (
    `the tunnel sshd (${report.sshdConfig}) lets user ${report.tunnelUser} do more than its tunnel: ` +
    `${first.setting} is ${first.found} (${first.why}); ${placement(first, report.tunnelUser)}${more} ` +
    `(see 'controller check')`
  );
}

/** For `controller serve`: throws E_SSHD_UNSAFE (or E_SSHD_MISSING / E_SSHD_CHECK) unless every check passes. */
export async function requireSafeSshd(opts: SshdCheckOptions): Promise<SshdReport> {
  const report = await checkSshd(opts);
  if (!report.ok) throw new ControllerError('E_SSHD_UNSAFE', unsafeMessage(report));
  return report;
}
