import { resolve } from 'node:path';
import { installUnit, purgeStateDir, thisProgram, uninstallUnit } from '@borgpull/protocol';
import { parse, stateDirOf } from './args.js';
import type { Io } from './io.js';
import { CONTROLLER_UNIT_NAME, controllerUnit } from './service-unit.js';
import { usageError } from './usage.js';

function rootOf(values: Record<string, unknown>): string {
  const r = values['root'];
  return typeof r === 'string' ? resolve(r) : '/';
}

/** `controller install-service [--print] [--root DIR]`: the systemd unit for `controller serve`. */
export async function installServiceCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { print: { type: 'boolean' }, root: { type: 'string' } });
  if (positionals.length) throw usageError('install-service', `unexpected argument '${positionals[0]}'`);
  const text = controllerUnit(await thisProgram(), resolve(stateDirOf(values)));
  if (values['print']) {
    io.out(text.trimEnd());
    return 0;
  }
  await installUnit({ root: rootOf(values), name: CONTROLLER_UNIT_NAME, text, io });
  return 0;
}

/** `controller uninstall-service [--purge --yes] [--root DIR]`: stops, disables and removes the unit. */
export async function uninstallServiceCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { purge: { type: 'boolean' }, yes: { type: 'boolean' }, root: { type: 'string' } });
  if (positionals.length) throw usageError('uninstall-service', `unexpected argument '${positionals[0]}'`);
  const stateDir = resolve(stateDirOf(values));
  // Checked before anything is stopped: --purge deletes every key and every repository.
  if (values['purge'] && !values['yes']) {
    throw usageError('uninstall-service', `--purge deletes ${stateDir} (keys, registry, every backup repository): add --yes`);
  }
  await uninstallUnit({ root: rootOf(values), name: CONTROLLER_UNIT_NAME, io });
  if (values['purge']) await purgeStateDir(stateDir, io);
  else io.out(`kept ${stateDir} (delete it with --purge --yes)`);
  return 0;
}
