import { versionCell } from '../agent-version.js';
import { ago, table } from '../format.js';
import { adminClient } from './admin.js';
import { parse } from './args.js';
import type { Io } from './io.js';
import { usageError } from './usage.js';
import { UsageError } from './usage-error.js';

/** `controller token NAME`: a one-time enrollment token. */
export async function tokenCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { ttl: { type: 'string' } });
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw usageError('token');
  const ttl = values['ttl'] === undefined ? 60 : Number(values['ttl']);
  if (!Number.isFinite(ttl) || ttl <= 0 || ttl > 7 * 24 * 60) throw new UsageError('--ttl must be minutes, between 1 and 10080');
  const res = await adminClient(values).call('token', { name, ttlMs: Math.max(1, Math.round(ttl * 60_000)) });
  if (values['json']) io.out(JSON.stringify(res));
  else io.out(res.token);
  return 0;
}

/** `controller agents` (list) and `controller agents revoke NAME`. */
export async function agentsCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const admin = adminClient(values);
  if (positionals[0] === 'revoke') {
    const name = positionals[1];
    if (!name || positionals.length > 2) throw usageError('agents');
    await admin.call('revoke', { name });
    io.out(`agent '${name}' revoked: its key is refused from now on`);
    return 0;
  }
  if (positionals.length) throw usageError('agents', `unknown agents subcommand '${positionals[0]}'`);
  const list = await admin.call('agents', {});
  if (values['json']) {
    io.out(JSON.stringify(list, null, 2));
    return 0;
  }
  if (list.length === 0) {
    io.out("no agents enrolled yet: 'controller token NAME' makes a token for 'agent enroll'");
    return 0;
  }
  io.out(
    table(
      ['NAME', 'STATUS', 'SINCE', 'LAST SEEN', 'ADDRESS', 'VERSION'],
      list.map((a) => [
        a.name,
        a.revoked ? 'revoked' : a.connected ? 'connected' : 'offline',
        a.connected ? ago(a.since) : '-',
        a.connected ? 'now' : ago(a.lastSeen),
        a.address ?? '-',
        versionCell(a),
      ]),
    ),
  );
  return 0;
}
