/**
 * The metrics endpoint: `GET /metrics` on `metrics.listen` (loopback unless
 * metrics.allowRemote). It reads the daemon's state and the cached repository
 * facts only, so a scrape never touches a repository or waits for a job.
 */
import { createServer, type Server } from 'node:http';
import { errorMessage } from '@borgpull/protocol';
import type { Logger } from 'pino';
import { ControllerError } from '../errors.js';
import { CONTENT_TYPE } from './metrics.js';
import type { MetricsSettings } from './monitor-config.js';

export class MetricsServer {
  private server?: Server;

  constructor(
    private readonly settings: MetricsSettings,
    private readonly render: () => Promise<string>,
    private readonly log: Logger,
  ) {}

  async start(): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
        return;
      }
      this.render().then(
        (text) => res.writeHead(200, { 'Content-Type': CONTENT_TYPE }).end(req.method === 'HEAD' ? undefined : text),
        (err: unknown) => {
          this.log.error({ reason: errorMessage(err) }, 'metrics failed');
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics failed\n');
        },
      );
    });
    // A scraper gets a few seconds: nothing here waits on anything slow.
    server.requestTimeout = 10_000;
    server.headersTimeout = 10_000;
    server.on('error', (err) => this.log.error({ reason: errorMessage(err) }, 'metrics server error'));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.settings.port, this.settings.host, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new ControllerError(
        'E_CONFIG_LISTEN',
        `cannot serve metrics on ${this.settings.host}:${this.settings.port}: ${errorMessage(err)}`,
        { cause: err },
      );
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : this.settings.port;
    this.log.info({ host: this.settings.host, port }, 'serving metrics');
    return { host: this.settings.host, port };
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
