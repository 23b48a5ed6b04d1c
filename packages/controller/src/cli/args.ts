import { errorMessage } from '@borgpull/protocol';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEFAULT_STATE_DIR } from '../config.js';
import { UsageError } from './usage-error.js';

/** Parsed flags: string or boolean values by flag name. */
export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** Parses a command's flags, plus those every command takes (--state-dir, --json, -h/--help); strict: an unknown flag is a UsageError. */
export function parse(argv: string[], options: ParseArgsConfig['options']): Parsed {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...options },
    });
  } catch (err) {
    throw new UsageError(errorMessage(err).split('\n')[0] ?? 'bad arguments');
  }
}

export function stateDirOf(values: Record<string, unknown>): string {
  const v = values['state-dir'];
  return typeof v === 'string' ? v : (process.env['BORGPULL_STATE_DIR'] ?? DEFAULT_STATE_DIR);
}

/** True when -h/--help comes before any `--`: the command is then described, never run. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '-h' || a === '--help') return true;
  }
  return false;
}
