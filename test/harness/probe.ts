import type { ExecOptions, ExecResult } from './runner.js';

interface CanExec {
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
}

export interface ProbeResult {
  connected: boolean;
  /** First read from the peer (one read of up to 64 bytes), if any arrived within the timeout. */
  banner: string;
  error: string;
}

/** TCP connect from inside a host to address:port (bash /dev/tcp), reading a short banner. */
export async function probeTcp(host: CanExec, address: string, port: number, timeoutSec = 2): Promise<ProbeResult> {
  const script = 'exec 3<>"/dev/tcp/$1/$2" || exit 7; timeout "$3" dd bs=64 count=1 status=none <&3; exit 0';
  const r = await host.exec(['timeout', String(timeoutSec + 1), 'bash', '-c', script, 'probe', address, String(port), String(timeoutSec)], {
    reject: false,
  });
  return { connected: r.exitCode === 0, banner: r.stdout, error: r.stderr.trim() };
}
