import { execa } from 'execa';
import type { BorgLogReader, BorgOutcome } from './output.js';

/** Wraps a script: dies with the daemon (pdeathsig), private mounts, own PID namespace. */
export function jobCommand(script: string, extraArgs: readonly string[]): { file: string; args: string[] } {
  return {
    file: 'setpriv',
    args: [
      '--pdeathsig',
      'SIGKILL',
      '--',
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--kill-child=SIGKILL',
      '--',
      '/bin/sh',
      '-c',
      script,
      'borgpull-job',
      ...extraArgs,
    ],
  };
}

/**
 * Runs a job script (script.ts) to its end, with the environment it is given
 * and nothing else (job-env.ts); its stderr, borg's log and the script's own
 * result lines, goes to `reader` as it comes (output.ts).
 */
export async function runJobScript(opts: {
  script: string;
  args: readonly string[];
  env: Record<string, string>;
  signal: AbortSignal;
  reader: BorgLogReader;
}): Promise<{ outcome: BorgOutcome; stdout: string; exit: string }> {
  const { file, args } = jobCommand(opts.script, opts.args);
  const proc = execa(file, args, {
    env: opts.env,
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    cancelSignal: opts.signal,
    forceKillAfterDelay: 3000,
    stripFinalNewline: false,
  });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c: string) => opts.reader.push(c));
  const res = await proc;
  opts.reader.push('\n');
  return { outcome: opts.reader.outcome, stdout: res.stdout, exit: String(res.exitCode ?? res.signal) };
}
