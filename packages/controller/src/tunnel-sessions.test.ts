/**
 * endTunnelSession kills only the tunnel user's sshd: a process of any other
 * kind listening on a revoked agent's port is left alone (here, this test's
 * own node process, root and not sshd), and a free port finds nothing.
 */
import { createServer, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { endTunnelSession } from './tunnel-sessions.js';

describe('endTunnelSession', () => {
  it("leaves a listener that is not the tunnel user's sshd alone, and reports it", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const r = await endTunnelSession(port, 'borgpull', pino({ level: 'silent' }));
      expect(r.ended).toEqual([]);
      expect(r.skipped).toEqual([{ pid: process.pid, reason: expect.stringMatching(/^not sshd/) }]);
      expect(server.listening).toBe(true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('finds nothing on a port nobody listens on', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(await endTunnelSession(port, 'borgpull', pino({ level: 'silent' }))).toEqual({ ended: [], skipped: [] });
  });
});
