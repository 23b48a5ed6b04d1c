export { AgentService, type ServiceOptions, type ServiceState } from './service.js';
export { Backoff, sleep } from './backoff.js';
export { enroll, type EnrollOptions } from './enroll.js';
export { AgentError } from './errors.js';
export { agentPaths, loadEnrollment, DEFAULT_AGENT_STATE_DIR, type Enrollment } from './state.js';
export { main, run } from './cli.js';
