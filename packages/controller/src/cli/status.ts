/**
 * `controller status [NAME...] [--json]`: each agent's health, with an exit
 * status a cron job or a Nagios/Icinga check can use: 0 all fine, 1 some
 * warning, 2 some agent overdue or failing (or the daemon is not running),
 * 3 the status could not be read (Nagios' UNKNOWN). The first line says the
 * verdict (Nagios shows it), the table follows.
 */
import { BorgpullError, errorMessage } from '@borgpull/protocol';
import type { AgentStatus } from '../monitor/agent-status.js';
import { ago, bytes, table } from '../format.js';
import { adminClient } from './admin.js';
import { parse } from './args.js';
import type { Io } from './io.js';

const VERDICT = ['OK', 'WARNING', 'CRITICAL'] as const;

function until(ms: number | null, now = Date.now()): string {
  if (ms === null) return '-';
  const s = Math.round((ms - now) / 1000);
  if (s <= 0) return 'due';
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.floor(s / 60)}m`;
  if (s < 86400) return `in ${Math.floor(s / 3600)}h`;
  return `in ${Math.floor(s / 86400)}d`;
}

function worstLevel(list: readonly AgentStatus[]): 0 | 1 | 2 {
  let w: 0 | 1 | 2 = 0;
  for (const a of list) if (a.level > w) w = a.level;
  return w;
}

/** The first line: the worst level, and every agent's problems that made it. */
export function verdictLine(list: readonly AgentStatus[]): string {
  const worst = worstLevel(list);
  if (list.length === 0) return 'OK: no agents enrolled';
  if (worst === 0) return `OK: ${list.length} agent${list.length === 1 ? '' : 's'}, all backed up in time`;
  const bad = list.filter((a) => a.level > 0).map((a) => `${a.name}: ${a.problems.join(', ')}`);
  return `${VERDICT[worst]}: ${bad.join('; ')}`;
}

export async function statusCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  let list: AgentStatus[];
  try {
    list = await adminClient(values).call('status', { names: positionals });
  } catch (err) {
    const code = err instanceof BorgpullError ? err.code : 'E_INTERNAL';
    if (code === 'E_USAGE' || code === 'E_CONFIG_NAME') throw err;
    const down = code === 'E_DAEMON_DOWN';
    const verdict = down ? 'CRITICAL' : 'UNKNOWN';
    if (values['json'])
      io.out(JSON.stringify({ level: down ? 2 : 3, verdict, error: { code, message: errorMessage(err) }, agents: [] }, null, 2));
    else io.out(`${verdict}: ${errorMessage(err)}`);
    return down ? 2 : 3;
  }
  const worst = worstLevel(list);
  if (values['json']) {
    io.out(JSON.stringify({ level: worst, verdict: VERDICT[worst], agents: list }, null, 2));
    return worst;
  }
  io.out(verdictLine(list));
  if (list.length) {
    io.out(
      table(
        ['AGENT', 'STATE', 'CONNECTED', 'LAST GOOD', 'LAST RESULT', 'NEXT RUN', 'ARCHIVES', 'REPO SIZE'],
        list.map((a) => [
          a.name,
          VERDICT[a.level],
          a.connected ? 'yes' : 'no',
          ago(a.lastGoodAt),
          a.lastBackup
            ? `${a.lastBackup.status}${a.lastBackup.code && a.lastBackup.status !== 'succeeded' ? ` ${a.lastBackup.code}` : ''}`
            : '-',
          until(a.nextRun),
          a.archives === null ? '-' : String(a.archives),
          a.repositorySize === null ? '-' : bytes(a.repositorySize),
        ]),
      ),
    );
  }
  return worst;
}
