import { describe, expect, it } from 'vitest';
import { validateConfig, configJson } from '../config.js';
import { BorgpullError } from '@borgpull/protocol';

const base = { url: 'ws://127.0.0.1:7400' };

function code(patch: Record<string, unknown>): string {
  try {
    validateConfig({ ...base, ...patch });
    return 'ok';
  } catch (err) {
    return err instanceof BorgpullError ? `${err.code}: ${err.message}` : String(err);
  }
}

describe('monitoring config', () => {
  it('defaults: no thresholds set, no hooks, metrics off', () => {
    const c = validateConfig(base);
    expect(c.status).toEqual({});
    expect(c.alerts.timeout).toBe(30);
    expect(c.alerts.hooks.failure).toEqual([]);
    expect(c.metrics).toBeUndefined();
    // init writes none of it
    expect(Object.keys(configJson(c))).not.toContain('alerts');
    expect(Object.keys(configJson(c))).not.toContain('status');
  });

  it('reads hooks, thresholds and metrics, and writes them back readable', () => {
    const c = validateConfig({
      ...base,
      status: { warnAfter: '26h', overdueAfter: '2d' },
      alerts: {
        timeout: '10s',
        failure: [{ command: ['/usr/local/bin/page', '--team', 'ops'] }, { url: 'https://ntfy.sh/topic', format: 'ntfy', timeout: 5 }],
        success: [{ url: 'https://hc-ping.com/uuid' }],
      },
      metrics: { listen: '9310' },
    });
    expect(c.status).toEqual({ warnAfter: 26 * 3600, overdueAfter: 2 * 86400 });
    expect(c.alerts.hooks.failure[1]).toEqual({ url: 'https://ntfy.sh/topic', format: 'ntfy', timeout: 5 });
    expect(c.alerts.hooks.success[0]).toEqual({ url: 'https://hc-ping.com/uuid', format: 'json' });
    expect(c.metrics).toEqual({ host: '127.0.0.1', port: 9310, allowRemote: false });
    expect(validateConfig(JSON.parse(JSON.stringify(configJson(c))))).toEqual(c);
  });

  it.each([
    ['a relative command', { alerts: { failure: [{ command: ['notify-send', 'x'] }] } }, 'alerts.failure[0].command[0]'],
    ['a shell line as command', { alerts: { failure: [{ command: '/bin/sh -c "rm -rf /"' }] } }, 'alerts.failure[0].command'],
    ['an empty command', { alerts: { failure: [{ command: [] }] } }, 'alerts.failure[0].command'],
    ['a NUL in an argument', { alerts: { failure: [{ command: ['/bin/echo', 'a\0b'] }] } }, 'alerts.failure[0].command[1]'],
    ['a number as argument', { alerts: { failure: [{ command: ['/bin/echo', 1] }] } }, 'alerts.failure[0].command[1]'],
    ['both command and url', { alerts: { failure: [{ command: ['/bin/true'], url: 'http://x/' }] } }, 'alerts.failure[0]'],
    ['a file: URL', { alerts: { success: [{ url: 'file:///etc/shadow' }] } }, 'alerts.success[0].url'],
    ['a format on a command', { alerts: { success: [{ command: ['/bin/true'], format: 'ntfy' }] } }, 'format'],
    ['an unknown format', { alerts: { success: [{ url: 'http://x/', format: 'slack' }] } }, 'alerts.success[0].format'],
    ['an unknown event', { alerts: { failed: [] } }, 'alerts.failed'],
    ['an unknown hook field', { alerts: { failure: [{ command: ['/bin/true'], shell: true }] } }, 'alerts.failure[0].shell'],
    ['too many hooks', { alerts: { failure: Array.from({ length: 17 }, () => ({ command: ['/bin/true'] })) } }, 'alerts.failure'],
    ['a timeout of 0', { alerts: { timeout: 0 } }, 'alerts.timeout'],
    ['a timeout of two hours', { alerts: { timeout: '2h' } }, 'alerts.timeout'],
    ['warnAfter past overdueAfter', { status: { warnAfter: '3d', overdueAfter: '1d' } }, 'status.warnAfter'],
    ['a bad duration', { status: { overdueAfter: 'soon' } }, 'status.overdueAfter'],
    ['metrics on every address', { metrics: { listen: '0.0.0.0:9310' } }, 'metrics.listen'],
    ['metrics on a public name', { metrics: { listen: 'backup.example.net:9310' } }, 'metrics.listen'],
    ['metrics on port 0', { metrics: { listen: '0' } }, 'metrics.listen'],
    ['metrics with a path', { metrics: { listen: '127.0.0.1:9310/x' } }, 'metrics.listen'],
    ['allowRemote a string', { metrics: { listen: '9310', allowRemote: 'yes' } }, 'metrics.allowRemote'],
  ])('refuses %s', (_what, patch, field) => {
    const r = code(patch);
    expect(r).toMatch(/^E_CONFIG_INVALID: config: /);
    expect(r).toContain(field);
  });

  it('serves metrics beyond loopback only when told to', () => {
    expect(validateConfig({ ...base, metrics: { listen: '0.0.0.0:9310', allowRemote: true } }).metrics?.host).toBe('0.0.0.0');
    expect(validateConfig({ ...base, metrics: { listen: '[::1]:9310' } }).metrics?.host).toBe('::1');
    expect(validateConfig({ ...base, metrics: { listen: 'localhost:9310' } }).metrics?.host).toBe('localhost');
  });
});
