import type { ControllerConfig } from './config.js';

/** Said wherever chroot isolation is chosen or used: it is not a sandbox. */
export const CHROOT_WARNING =
  "chroot isolation runs the client's own borg as root on this server: use it only for clients you trust as much as the server";

/**
 * One line naming the agents a backup runs with chroot isolation (`names`,
 * or every agent for `--all`), or undefined when there are none.
 */
export function chrootWarning(cfg: ControllerConfig, names: readonly string[] | 'all'): string | undefined {
  const who =
    names === 'all'
      ? [
          ...(cfg.isolation === 'chroot' ? ['every agent without an isolation setting of its own'] : []),
          ...Object.entries(cfg.agents)
            .filter(([, a]) => a.isolation === 'chroot')
            .map(([n]) => n),
        ]
      : names.filter((n) => (cfg.agents[n]?.isolation ?? cfg.isolation) === 'chroot');
  return who.length > 0 ? `warning: ${who.join(', ')}: ${CHROOT_WARNING}` : undefined;
}
