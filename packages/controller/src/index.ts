export { ControllerDaemon, type AgentView, type DaemonState } from './daemon.js';
export { ControllerError } from './errors.js';
export { loadConfig, validateConfig, DEFAULT_STATE_DIR, type ControllerConfig } from './config.js';
export { adminRequest, adminSocketPath } from './admin-socket.js';
export { main, run } from './cli.js';
