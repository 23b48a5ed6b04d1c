import { encodePublicKey, exists, keyFingerprint } from '@borgpull/protocol';
import { configPath, INIT_CHECKS, INIT_RETENTION, INIT_SCHEDULE, parseUrl, saveConfig, validateConfig } from '../config.js';
import { keepArgs } from '../jobs/retention.js';
import { ControllerError } from '../errors.js';
import { CHROOT_WARNING } from '../isolation.js';
import { describeSchedule } from '../schedule/schedule.js';
import { createIdentity, createStateDirs, statePaths } from '../state.js';
import { parse, stateDirOf } from './args.js';
import type { Io } from './io.js';
import { UsageError } from './usage-error.js';

/** `controller init`: state directory, identity keys, ssh key and config. */
export async function initController(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    url: { type: 'string' },
    listen: { type: 'string' },
    'ssh-host': { type: 'string' },
    'ssh-port': { type: 'string' },
    'tunnel-user': { type: 'string' },
    'ssh-host-key': { type: 'string' },
    'sshd-config': { type: 'string' },
    'tunnel-port-base': { type: 'string' },
    parallel: { type: 'string' },
    isolation: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    exclude: { type: 'string', multiple: true },
    'time-limit': { type: 'string' },
    quota: { type: 'string' },
    'min-free-space': { type: 'string' },
    schedule: { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const url = values['url'];
  if (typeof url !== 'string') throw new UsageError('controller init needs --url ws://HOST:PORT (the address agents dial)');
  parseUrl(url);
  const stateDir = stateDirOf(values);
  const p = statePaths(stateDir);
  if (await exists(configPath(stateDir))) {
    throw new ControllerError(
      'E_STATE_EXISTS',
      `${stateDir} is already initialized (config.json exists); edit it or pick another --state-dir`,
    );
  }
  const num = (k: string): number | undefined => {
    const v = values[k];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new UsageError(`--${k} must be a whole number`);
    return n;
  };
  const raw: Record<string, unknown> = {
    url,
    listen: values['listen'],
    sshHost: values['ssh-host'],
    sshPort: num('ssh-port'),
    tunnelUser: values['tunnel-user'],
    sshHostKeyFile: values['ssh-host-key'],
    sshdConfig: values['sshd-config'],
    tunnelPortBase: num('tunnel-port-base'),
    parallel: num('parallel'),
    isolation: values['isolation'],
    tlsCert: values['tls-cert'],
    tlsKey: values['tls-key'],
    exclude: values['exclude'],
    timeLimit: values['time-limit'],
    quota: values['quota'],
    minFreeSpace: values['min-free-space'],
    // Written out, so config.json shows when backups run (INIT_SCHEDULE says why this default).
    schedule: values['schedule'] ?? INIT_SCHEDULE,
    // Written out too: a config without them (from before they existed) prunes and checks nothing.
    retention: INIT_RETENTION,
    checks: INIT_CHECKS,
  };
  const cfg = validateConfig(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)));
  await createStateDirs(p);
  const id = await createIdentity(p);
  await saveConfig(stateDir, cfg);
  io.out(`initialized ${stateDir}`);
  io.out(`controller key ${encodePublicKey(id.publicKey)} (fingerprint ${keyFingerprint(id.publicKey)})`);
  io.out(`agents dial ${cfg.url}; tunnels go to ${cfg.tunnelUser}@${cfg.sshHost}:${cfg.sshPort}`);
  io.out(`backups run by themselves: ${describeSchedule(cfg.schedule)} ('schedule' in config.json)`);
  if (cfg.retention !== 'off') {
    const rules = keepArgs(cfg.retention).map((a) => a.replace(/^--keep-(.*)=/, '$1 '));
    io.out(`after each good backup, old archives are pruned, keeping: ${rules.join(', ')} ('retention' in config.json; "off" keeps all)`);
  }
  io.out(`repositories are checked: ${describeSchedule(cfg.checks.schedule)} ('checks' in config.json)`);
  io.out(`next: 'controller check' (the tunnel sshd's rules), 'controller serve', then 'controller token NAME' for each client`);
  if (cfg.isolation === 'chroot') io.err(`warning: ${CHROOT_WARNING}`);
  return 0;
}
