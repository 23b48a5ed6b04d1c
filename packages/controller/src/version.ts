import { readFileSync } from 'node:fs';

/**
 * Set by the bundler (`scripts/bundle.mjs`, esbuild `define`) to this
 * package's version: a bundle or single binary has no package.json beside it.
 */
declare const __BORGPULL_VERSION__: string | undefined;

/** This controller's version: injected at build time in a bundle, else read from package.json. */
export function controllerVersion(): string {
  if (typeof __BORGPULL_VERSION__ === 'string') return __BORGPULL_VERSION__;
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
