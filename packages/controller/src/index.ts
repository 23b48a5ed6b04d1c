export { ControllerDaemon, type DaemonState, type DaemonOptions } from './daemon.js';
export { ControllerError } from './errors.js';
export { loadConfig, validateConfig, DEFAULT_STATE_DIR, type ControllerConfig } from './config.js';
export { ADMIN_API, type AdminApi, type AdminCommand, type AgentView } from './admin/api.js';
export { AdminClient } from './admin/client.js';
export { adminSocketPath } from './admin/wire.js';
export { main, run } from './cli.js';
