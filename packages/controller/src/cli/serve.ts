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
 */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'log-level': { type: 'string' } });
  const level = typeof values['log-level'] === 'string' ? values['log-level'] : (process.env['BORGPULL_LOG_LEVEL'] ?? 'info');
  const log = pino({ level, base: { service: 'borgpull-controller' }, redact: ['passphrase', '*.passphrase', 'token', '*.token'] });
  const daemon = new ControllerDaemon(stateDirOf(values), log, { heartbeatMs: heartbeatFromEnv() });
  await daemon.start();
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'shutting down');
      void daemon.stop(signal).then(resolve);
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  return 0;
}
