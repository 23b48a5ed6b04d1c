import { pino } from 'pino';
import { ControllerDaemon } from '../daemon.js';
import { parse, stateDirOf } from './args.js';

/** BORGPULL_HEARTBEAT_MS: how often to ping peers (default 15000); a peer silent for two is cut off. */
export function heartbeatFromEnv(): number | undefined {
  const v = Number(process.env['BORGPULL_HEARTBEAT_MS']);
  return Number.isInteger(v) && v >= 100 ? v : undefined;
}

/**
 * `controller serve`: the daemon until SIGINT or SIGTERM. The only place that
 * makes the root logger and installs signal handlers; the daemon wires
 * everything else itself (agents, job runner, admin socket).
 *
 * SIGTERM/SIGINT: no new jobs; running ones get the config's stopGrace (as of
 * the last reload) to finish, then are cancelled with their cleanup. SIGHUP:
 * re-read config.json (the daemon logs what changed and what needs a restart;
 * a bad file keeps the running config).
 */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'log-level': { type: 'string' } });
  const level = typeof values['log-level'] === 'string' ? values['log-level'] : (process.env['BORGPULL_LOG_LEVEL'] ?? 'info');
  const log = pino({ level, base: { service: 'borgpull-controller' }, redact: ['passphrase', '*.passphrase', 'token', '*.token'] });
  const daemon = new ControllerDaemon(stateDirOf(values), log, { heartbeatMs: heartbeatFromEnv() });
  await daemon.start();
  await new Promise<void>((resolve) => {
    let stopping = false;
    // Kept while stopping too: without a handler, a SIGHUP would kill the process mid-cleanup.
    const reload = (): void => {
      if (stopping) {
        log.warn({ signal: 'SIGHUP' }, 'stopping: config not reloaded');
        return;
      }
      log.info({ signal: 'SIGHUP' }, 'reloading the config');
      // The daemon logs a bad file with its code and keeps the old config.
      daemon.reload().catch(() => undefined);
    };
    const shutdown = (signal: string): void => {
      // A second signal must not kill the process mid-cleanup (mounts, borg locks): it is said and ignored.
      if (stopping) {
        log.warn({ signal }, 'already stopping: waiting for running jobs, then their cleanup');
        return;
      }
      stopping = true;
      const graceMs = daemon.config.stopGrace * 1000;
      log.info({ signal, graceMs }, 'shutting down');
      void daemon.stop(signal, graceMs).then(resolve);
    };
    // 'on', never 'once': execa's exit hook (signal-exit) re-raises a signal it
    // finds no other listener for, and a 'once' listener is gone by then.
    process.on('SIGHUP', reload);
    process.on('SIGINT', shutdown);
    process.on('SIGTERM', shutdown);
  });
  return 0;
}
