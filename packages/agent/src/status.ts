/**
 * `agent status`: what this agent is enrolled to, what it lets a controller
 * restore, and the last restore orders it received (from its own record).
 */
import { terminalSafe } from '@borgpull/protocol';
import { RestoreLog, type RestoreRecord } from './restore-log.js';
import { describePolicy, formatPolicy, loadPolicy } from './restore-policy.js';
import { loadEnrollment, type AgentPaths, type Enrollment } from './state.js';

export const STATUS_RESTORES = 10;

export interface AgentStatus extends Enrollment {
  /** `anywhere`, `off` or the list of dirs; `damaged` (every restore refused) if the file cannot be read. */
  readonly restorePolicy: 'anywhere' | 'off' | readonly string[] | 'damaged';
  readonly restorePolicyProblem?: string;
  /** The last restore orders, newest first. */
  readonly restores: readonly RestoreRecord[];
}

export async function agentStatus(paths: AgentPaths): Promise<AgentStatus> {
  const { enrollment } = await loadEnrollment(paths);
  const state = await loadPolicy(paths.restorePolicy);
  const restores = await new RestoreLog(paths.restoreLog).recent(STATUS_RESTORES);
  const p = state.policy;
  return {
    ...enrollment,
    restorePolicy: p === undefined ? 'damaged' : p.mode === 'dirs' ? p.dirs : p.mode,
    ...(state.damaged !== undefined ? { restorePolicyProblem: state.damaged } : {}),
    restores,
  };
}

/** Human-readable status. Restore records were escaped when recorded; the enrollment's name and URL came from a controller too. */
export async function formatStatus(paths: AgentPaths, s: AgentStatus): Promise<string> {
  const state = await loadPolicy(paths.restorePolicy);
  const lines = [`enrolled as '${s.name}' with ${s.url} (tunnel port ${s.tunnel.port})`];
  lines.push(
    state.policy
      ? `restore policy: ${describePolicy(state.policy)} ('agent restores ${formatPolicy(state.policy)}'; change with 'agent restores anywhere|off|DIR[,DIR...]')`
      : `restore policy: DAMAGED, every restore is refused (${state.damaged}); set it again with 'agent restores ...'`,
  );
  if (s.restores.length === 0) {
    lines.push('no restore orders received');
    return lines.map(terminalSafe).join('\n');
  }
  lines.push(`last ${s.restores.length} restore orders (newest first):`);
  for (const r of s.restores) lines.push(`  ${restoreLine(r)}`);
  return lines.map(terminalSafe).join('\n');
}

export function restoreLine(r: RestoreRecord): string {
  const when = new Date(r.time).toISOString().replace('T', ' ').slice(0, 19);
  const what =
    r.archive !== undefined
      ? `${r.archive}${r.paths?.length ? ` [${r.paths.join(' ')}${(r.pathCount ?? 0) > r.paths.length ? ' ...' : ''}]` : ''}`
      : 'archive not named';
  const size = r.result === 'refused' ? '' : `, ${r.bytes} bytes${r.files !== undefined ? `, ${r.files} entries` : ''}`;
  const result = r.result === 'started' ? 'STARTED (no outcome yet)' : r.result.toUpperCase();
  return `${when} UTC  ${result}  -> ${r.target}  ${what}${size}${r.reason ? `: ${r.reason}` : ''}`;
}
