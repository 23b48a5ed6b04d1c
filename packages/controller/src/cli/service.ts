import { join, resolve } from 'node:path';
import { installUnit, purgeStateDir, thisProgram, uninstallUnit } from '@borgpull/protocol';
import { loadConfig } from '../config.js';
import { setupHost, undoHostSetup, type HostSetupOptions } from '../host-setup.js';
import { parse, stateDirOf } from './args.js';
import type { Io } from './io.js';
import { CONTROLLER_UNIT_NAME, controllerUnit } from './service-unit.js';
import { usageError } from './usage.js';

function rootOf(values: Record<string, unknown>): string {
  const r = values['root'];
  return typeof r === 'string' ? resolve(r) : '/';
}

/**
 * The tunnel user: --tunnel-user, else config.json's (under the root) when
 * the controller is initialised, else the default `borgpull` (a package is
 * installed before `controller init` runs).
 */
async function tunnelUserOf(values: Record<string, unknown>, root: string, stateDir: string): Promise<string> {
  const flag = values['tunnel-user'];
  if (typeof flag === 'string') return flag;
  try {
    return (await loadConfig(join(root, stateDir))).tunnelUser;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'E_CONFIG_MISSING') return 'borgpull';
    throw err;
  }
}

async function hostOptions(values: Record<string, unknown>, out: (s: string) => void): Promise<HostSetupOptions> {
  const root = rootOf(values);
  const stateDir = resolve(stateDirOf(values));
  return { root, stateDir, tunnelUser: await tunnelUserOf(values, root, stateDir), print: values['print'] === true, io: { out } };
}

/** `controller setup-host [--print] [--undo] [--root DIR] [--tunnel-user USER]`: the tunnel user, its sshd rules, an sshd reload. */
export async function setupHostCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    print: { type: 'boolean' },
    undo: { type: 'boolean' },
    root: { type: 'string' },
    'tunnel-user': { type: 'string' },
  });
  if (positionals.length) throw usageError('setup-host', `unexpected argument '${positionals[0]}'`);
  const o = await hostOptions(values, io.out);
  if (values['undo']) await undoHostSetup(o);
  else await setupHost(o);
  return 0;
}

/**
 * `controller install-service [--print] [--root DIR] [--tunnel-user USER]`:
 * setup-host's steps, then the systemd unit for `controller serve`. With
 * --print, the steps come first as `#` comments, so the output is still a unit.
 */
export async function installServiceCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { print: { type: 'boolean' }, root: { type: 'string' }, 'tunnel-user': { type: 'string' } });
  if (positionals.length) throw usageError('install-service', `unexpected argument '${positionals[0]}'`);
  const text = controllerUnit(await thisProgram(), resolve(stateDirOf(values)));
  if (values['print']) {
    await setupHost(await hostOptions(values, (s) => io.out(`# ${s}`)));
    io.out(text.trimEnd());
    return 0;
  }
  await setupHost(await hostOptions(values, io.out));
  await installUnit({ root: rootOf(values), name: CONTROLLER_UNIT_NAME, text, io });
  return 0;
}

/** `controller uninstall-service [--purge --yes] [--root DIR]`: stops, disables and removes the unit, and the sshd rules. */
export async function uninstallServiceCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    purge: { type: 'boolean' },
    yes: { type: 'boolean' },
    root: { type: 'string' },
    'tunnel-user': { type: 'string' },
  });
  if (positionals.length) throw usageError('uninstall-service', `unexpected argument '${positionals[0]}'`);
  const stateDir = resolve(stateDirOf(values));
  // Checked before anything is stopped: --purge deletes every key and every repository.
  if (values['purge'] && !values['yes']) {
    throw usageError('uninstall-service', `--purge deletes ${stateDir} (keys, registry, every backup repository): add --yes`);
  }
  // Read before the state dir may go: it names the tunnel user.
  const host = await hostOptions(values, io.out);
  await uninstallUnit({ root: rootOf(values), name: CONTROLLER_UNIT_NAME, io });
  await undoHostSetup(host);
  if (values['purge']) await purgeStateDir(stateDir, io);
  else io.out(`kept ${stateDir} (delete it with --purge --yes)`);
  return 0;
}
