import { parse, stateDirOf, UsageError, type Io } from './cli.js';
import { loadConfig } from './config.js';
import { checkSshd, placement } from './sshd-check.js';

const CHECK_USAGE = `usage: controller check [--json]

Reads the tunnel sshd's effective settings for the tunnel user
(sshd -T -f SSHD-CONFIG -C user=TUNNEL-USER,...; sshdConfig in config.json,
default /etc/ssh/sshd_config) and prints each rule with ok or FAIL.
Exit status 1 if any rule fails: 'controller serve' refuses to start then.`;

/** `controller check`: the same checks `controller serve` runs at start, one line each. */
export async function checkCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {});
  if (values['help']) {
    io.out(CHECK_USAGE);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (usage: controller check [--json])`);
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
