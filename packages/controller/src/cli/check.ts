import { loadConfig } from '../config.js';
import { checkSshd, placement } from '../sshd-check.js';
import { parse, stateDirOf } from './args.js';
import type { Io } from './io.js';
import { usageError } from './usage.js';

/** `controller check`: the same checks `controller serve` runs at start, one line each. */
export async function checkCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  if (positionals.length) throw usageError('check', `unexpected argument '${positionals[0]}'`);
  const config = await loadConfig(stateDirOf(values));
  const report = await checkSshd({ sshdConfig: config.sshdConfig, tunnelUser: config.tunnelUser, sshPort: config.sshPort });
  if (values['json']) {
    io.out(JSON.stringify(report, null, 2));
    return report.ok ? 0 : 1;
  }
  io.out(`${report.sshd} -T -f ${report.sshdConfig}, user ${report.tunnelUser}:`);
  for (const c of report.checks) {
    io.out(c.ok ? `ok    ${c.want}` : `FAIL  ${c.setting} is ${c.found} (${c.why}): ${placement(c, report.tunnelUser)}`);
  }
  const failed = report.checks.filter((c) => !c.ok).length;
  io.out(
    failed === 0
      ? 'the tunnel user may forward its own port and nothing else'
      : `${failed} rule(s) fail: fix them, reload sshd and check again; 'controller serve' refuses to start until then`,
  );
  return failed === 0 ? 0 : 1;
}
