import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every error code a package's sources name (tests aside): each `'E_...'`
 * literal, and each code a job script passes to its `fail` function. The
 * packages' errors.test.ts check these against their tables.
 */
export function codesInSources(dir: string): Set<string> {
  const codes = new Set<string>();
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
    const text = readFileSync(join(dir, f), 'utf8');
    for (const m of text.matchAll(/'(E_[A-Z0-9_]+)'|\bfail (E_[A-Z0-9_]+)/g)) codes.add(m[1] ?? m[2] ?? '');
  }
  return codes;
}
