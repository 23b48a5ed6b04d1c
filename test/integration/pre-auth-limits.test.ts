/**
 * Unauthenticated peers against a real `controller serve`: what a connection
 * may cost before it has proved who it is (issue 7, item 5). Needs a build.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_API, AdminClient, adminSocketPath } from '@borgpull/controller';
import { MIB, type Controller, Fixture } from './controller-fixture.js';
import { waitFor } from '../harness/wait.js';
import { AGENT_BIN } from './procs.js';
import { RawUpgrade } from './raw-upgrade.js';

// The controller's bounds (agent-server.ts), restated: a change there must show here.
const MAX_PENDING_PER_ADDRESS = 64;
const MAX_PENDING_HANDSHAKES = 512;

let fx: Fixture;
const opened: RawUpgrade[] = [];

beforeAll(async () => {
  fx = await Fixture.create();
});

afterAll(async () => {
  for (const c of opened.splice(0)) c.destroy();
  await fx?.dispose();
});

async function open(c: Controller, from: string): Promise<RawUpgrade> {
  const k = await RawUpgrade.open(c.listenPort, from);
  opened.push(k);
  return k;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

describe('before authentication (real controller)', () => {
  it('200 connections each starting a 4 MB frame: RSS < +50 MiB, the admin CLI answers within a second, the agent stays connected', async () => {
    const c = await fx.controller();
    const { dir } = await c.enroll('steady');
    const agent = await c.runAgent('steady', dir);
    const before = await c.agent('steady');
    const agentFrom = agent.mark();
    const from = c.serve.mark();
    const rss0 = await c.rss();

    // Four source addresses, 50 each: under the per-address bound, so each one meets the byte limit.
    const conns = await Promise.all(Array.from({ length: 200 }, (_, i) => open(c, `127.0.0.${2 + (i % 4)}`)));
    expect(conns.map((k) => k.status)).toEqual(conns.map(() => 101));
    const admin = (): Promise<unknown> => new AdminClient(adminSocketPath(c.dir), ADMIN_API).call('agents', {});
    const idle = await timed(() => c.agent('steady'));

    // Sample RSS while they send; give up sending (the test has failed) past +256 MiB.
    let peak = rss0;
    let runaway = false;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const rss = await c.rss();
        peak = Math.max(peak, rss);
        if (rss - rss0 > 256 * MIB) runaway = true;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const chunk = Buffer.alloc(256 * 1024, 0xa5);
    const FRAME = 4_000_000;
    // Everything but the last byte: the frame is never complete, so only a limit on what is buffered helps.
    const sending = Promise.all(conns.map((k) => k.startFrame(FRAME, FRAME - 1, chunk, () => runaway)));
    // The daemon's own answer, and the CLI's (whose node start-up alone is ~0.6 s on a loaded 2-core box).
    const [daemon, busy] = await Promise.all([timed(admin), timed(() => c.agent('steady'))]);
    await sending;
    await waitFor('the controller to cut off every connection', () => runaway || conns.every((k) => k.closed), { timeoutMs: 20_000 }).catch(
      () => undefined,
    );
    sampling = false;
    await sampler;

    const grownMiB = (peak - rss0) / MIB;
    const sentMiB = conns.reduce((n, k) => n + k.sent, 0) / MIB;
    console.log(
      `controller RSS +${grownMiB.toFixed(1)} MiB at peak; ${sentMiB.toFixed(1)} MiB sent by 200 peers; admin socket ${daemon.ms.toFixed(0)} ms, agents CLI ${idle.ms.toFixed(0)} ms before, ${busy.ms.toFixed(0)} ms while sending`,
    );
    expect(grownMiB, `the controller grew by ${grownMiB.toFixed(0)} MiB`).toBeLessThan(50);
    expect(conns.filter((k) => !k.closed).length, 'connections still open').toBe(0);
    expect(c.serve.filter({ code: 'E_PROTO_FRAME_TOO_LARGE' }, from).length).toBe(200);
    expect(daemon.ms).toBeLessThan(1000);
    expect(busy.ms).toBeLessThan(Math.max(1000, idle.ms + 500));
    const after = await c.agent('steady');
    expect(after).toMatchObject({ connected: true, since: before.since, address: before.address });
    expect(agent.find({ msg: 'agent state' }, agentFrom)).toBeUndefined();
  });

  it('bounds pending handshakes per source address and in total (503, logged E_PROTO_BUSY); the agent stays connected', async () => {
    const c = await fx.controller();
    const { dir } = await c.enroll('steady');
    await c.runAgent('steady', dir);
    const before = await c.agent('steady');
    let from = c.serve.mark();

    const first = await Promise.all(Array.from({ length: MAX_PENDING_PER_ADDRESS }, () => open(c, '127.0.1.1')));
    expect(first.every((k) => k.status === 101)).toBe(true);
    expect((await open(c, '127.0.1.1')).status).toBe(503);
    expect(await c.serve.waitForLog({ code: 'E_PROTO_BUSY' }, { from })).toMatchObject({ scope: 'address', address: '127.0.1.1' });
    // Another address is not held up by this one.
    expect((await open(c, '127.0.1.2')).status).toBe(101);
    // A slot comes back as soon as one of them is gone.
    first[0]!.destroy();
    await waitFor('a slot for 127.0.1.1 again', async () => (await open(c, '127.0.1.1')).status === 101);

    // Fill the server: 8 addresses of 64 (two of them started above).
    const more: Array<Promise<RawUpgrade>> = [];
    for (let a = 2; a <= 8; a++) {
      const need = MAX_PENDING_PER_ADDRESS - (a === 2 ? 1 : 0);
      for (let i = 0; i < need; i++) more.push(open(c, `127.0.1.${a}`));
    }
    expect((await Promise.all(more)).every((k) => k.status === 101)).toBe(true);
    from = c.serve.mark();
    // The refusal log is one line a second at most; wait for the line, not for a refusal.
    await waitFor('a refusal for a full server', async () => {
      expect((await open(c, '127.0.2.1')).status).toBe(503);
      return c.serve.find({ code: 'E_PROTO_BUSY', scope: 'total' }, from);
    });
    expect(c.serve.find({ code: 'E_PROTO_BUSY', scope: 'total' }, from)).toMatchObject({ pending: MAX_PENDING_HANDSHAKES });

    for (const k of opened.splice(0)) k.destroy();
    await waitFor('room for a new handshake', async () => (await open(c, '127.0.2.1')).status === 101);
    const after = await c.agent('steady');
    expect(after).toMatchObject({ connected: true, since: before.since });
  });

  it('an agent refused (503) while its address is full connects by itself once there is room', async () => {
    const c = await fx.controller();
    const { dir } = await c.enroll('late');
    // The agent dials from 127.0.0.1: take every slot of that address.
    const held = await Promise.all(Array.from({ length: MAX_PENDING_PER_ADDRESS }, () => open(c, '127.0.0.1')));
    expect(held.every((k) => k.status === 101)).toBe(true);
    const from = c.serve.mark();
    const agent = fx.procs.spawn('agent late', AGENT_BIN, ['run', '--state-dir', dir]);
    const refused = await agent.waitForLog({ msg: 'connection to controller failed' });
    expect(String(refused['reason'])).toMatch(/503/);
    expect(c.serve.find({ msg: 'agent connected' }, from)).toBeUndefined();
    for (const k of held) k.destroy();
    // Backoff starts at 500 ms with full jitter, doubling: a few seconds at most.
    await c.serve.waitForLog({ msg: 'agent connected', agentId: 'late' }, { from, timeoutMs: 15_000 });
    expect((await c.agent('late')).connected).toBe(true);
  });

  it('an upgrade request with 10 KiB of headers is refused (431) before any WebSocket exists', async () => {
    const c = await fx.controller();
    const answer = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: c.listenPort });
      let got = '';
      socket.on('error', () => undefined);
      socket.on('data', (d) => (got += d.toString('latin1')));
      socket.on('close', () => resolve(got));
      socket.write(
        'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nX-Pad: ${'a'.repeat(10 * 1024)}\r\n\r\n`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
  });
});
