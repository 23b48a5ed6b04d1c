import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { findTool } from './tools.js';

function tool(): string {
  const t = findTool('systemd-analyze');
  if (!t) throw new Error('systemd-analyze is missing: apt-get install systemd (scripts/setup.sh does)');
  return t;
}

/**
 * Runs `systemd-analyze verify` and `systemd-analyze security --offline=yes`
 * on a unit text (written to a temporary directory under its own name, as
 * both tools read the unit name from the file name). Never touches
 * /etc/systemd or a running systemd.
 */
export async function analyzeUnit(name: string, text: string): Promise<{ verify: { exitCode: number; output: string }; exposure: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'borgpull-unit-'));
  try {
    const file = join(dir, `${name}.service`);
    await writeFile(file, text);
    const v = await execa(tool(), ['verify', '--man=no', file], { reject: false, all: true });
    const s = await execa(tool(), ['security', '--offline=yes', '--no-pager', file], { reject: false, all: true });
    const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(s.all);
    if (!m?.[1]) throw new Error(`systemd-analyze security printed no exposure level: ${s.all.slice(-500)}`);
    return { verify: { exitCode: v.exitCode ?? -1, output: v.all }, exposure: Number(m[1]) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
