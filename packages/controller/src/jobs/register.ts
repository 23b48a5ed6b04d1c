import type { Logger } from 'pino';
import type { ControllerDaemon } from '../daemon.js';

/** Adds the backup and restore admin commands to the daemon. */
export function registerJobs(_daemon: ControllerDaemon, _log: Logger): void {}
