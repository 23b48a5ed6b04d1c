import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Channel, type FrameSocket } from './channel.js';
import { decodeAgentMessage, decodeControllerMessage } from './codec.js';
import { BorgpullError, ProtocolError } from './errors.js';
import type { AgentMessage, ControllerMessage } from './messages.js';
import { Session } from './session.js';

/** An in-memory socket pair: frames sent on one side are delivered to the other's channel. */
class MemSocket implements FrameSocket {
  bufferedAmount = 0;
  peer: ((frame: Buffer) => void) | undefined;
  closed: { code?: number; reason?: string } | undefined;
  sent: Buffer[] = [];
  send(data: Buffer): void {
    this.sent.push(data);
    this.peer?.(data);
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
}

function setup(requestTimeoutMs?: number): {
  ctl: Channel<ControllerMessage, AgentMessage>;
  agt: Channel<AgentMessage, ControllerMessage>;
  ctlSock: MemSocket;
  agtSock: MemSocket;
  a2c: Buffer;
  c2a: Buffer;
} {
  const a2c = randomBytes(32);
  const c2a = randomBytes(32);
  const ctlSock = new MemSocket();
  const agtSock = new MemSocket();
  const ctl = new Channel<ControllerMessage, AgentMessage>({
    socket: ctlSock,
    session: new Session(c2a, a2c),
    decode: decodeAgentMessage,
    ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs }),
  });
  const agt = new Channel<AgentMessage, ControllerMessage>({
    socket: agtSock,
    session: new Session(a2c, c2a),
    decode: decodeControllerMessage,
  });
  ctlSock.peer = (f) => agt.receive(f);
  agtSock.peer = (f) => ctl.receive(f);
  return { ctl, agt, ctlSock, agtSock, a2c, c2a };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('channel', () => {
  it('request/reply', async () => {
    const { ctl, agt } = setup();
    agt.onMessage = (m) => {
      if (m.type === 'host.report.get') {
        agt.reply({ type: 'host.report', id: m.id, hostname: 'web1', passwd: '', group: '', mounts: '', sshHostKey: 'ssh-ed25519 AAAA' });
      }
    };
    const reply = await ctl.request({ type: 'host.report.get' });
    expect(reply.type).toBe('host.report');
    expect(reply.hostname).toBe('web1');
  });

  it('an error reply rejects with its code and message', async () => {
    const { ctl, agt } = setup();
    agt.onMessage = (m) => {
      if ('id' in m && typeof m.id === 'number')
        agt.reply({ type: 'error', id: m.id, code: 'E_RESTORE_BUSY', message: 'a restore is running' });
    };
    const err = await ctl.request({ type: 'restore.begin', stream: 1, target: '/r' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BorgpullError);
    expect((err as BorgpullError).code).toBe('E_RESTORE_BUSY');
    expect((err as BorgpullError).message).toBe('a restore is running');
  });

  // A hostile peer answering with a reply of another type: the caller would
  // read fields that are not there (hostname, passwd: undefined). Before the
  // reply map, request() resolved with whatever reply carried the id.
  it.each([
    ['host.report.get answered with ok', { type: 'host.report.get' } as const, (id: number): AgentMessage => ({ type: 'ok', id })],
    [
      'restore.end answered with host.report',
      { type: 'restore.end', stream: 1, bytes: 0, sha256: new Uint8Array(32) } as const,
      (id: number): AgentMessage => ({ type: 'host.report', id, hostname: 'h', passwd: '', group: '', mounts: '', sshHostKey: 'k' }),
    ],
    [
      'tunnel.open answered with ok',
      { type: 'tunnel.open', sshHost: 'h', sshPort: 22, user: 'u', port: 4000, hostKey: 'k' } as const,
      (id: number): AgentMessage => ({ type: 'ok', id }),
    ],
    [
      'tunnel.close answered with tunnel.opened',
      { type: 'tunnel.close' } as const,
      (id: number): AgentMessage => ({ type: 'tunnel.opened', id }),
    ],
  ])('%s rejects with E_PROTO_REPLY', async (_name, request, answer) => {
    const { ctl, agt } = setup();
    agt.onMessage = (m) => {
      if ('id' in m && typeof m.id === 'number') agt.reply(answer(m.id));
    };
    const err = await ctl.request(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('E_PROTO_REPLY');
    // The reply was consumed by its request: it reaches no other handler.
    expect(ctl.closed).toBe(false);
  });

  it('an enroll answered with ok rejects with E_PROTO_REPLY (the other direction)', async () => {
    const { ctl, agt } = setup();
    ctl.onMessage = (m) => {
      if (m.type === 'enroll') ctl.reply({ type: 'ok', id: m.id });
    };
    await expect(agt.request({ type: 'enroll', sshKey: 'ssh-ed25519 AAAA' })).rejects.toMatchObject({ code: 'E_PROTO_REPLY' });
  });

  it('each request resolves with the reply type the map names', async () => {
    const { ctl, agt } = setup();
    agt.onMessage = (m) => {
      if (m.type === 'restore.begin') agt.reply({ type: 'ok', id: m.id });
      if (m.type === 'tunnel.open') agt.reply({ type: 'tunnel.opened', id: m.id });
    };
    const ok = await ctl.request({ type: 'restore.begin', stream: 1, target: '/r' });
    expect(ok).toEqual({ type: 'ok', id: 1 });
    const opened = await ctl.request({ type: 'tunnel.open', sshHost: 'h', sshPort: 22, user: 'u', port: 4000, hostKey: 'k' });
    expect(opened.type).toBe('tunnel.opened');
  });

  it('a message that is not a request is refused before it is sent', async () => {
    const { ctl, ctlSock } = setup();
    // Only a cast gets this past the compiler: the check is for JavaScript callers.
    const notARequest = { type: 'credit', stream: 1, bytes: 1 } as unknown as { type: 'tunnel.close' };
    await expect(ctl.request(notARequest)).rejects.toMatchObject({ code: 'E_PROTO_UNEXPECTED' });
    expect(ctlSock.sent).toHaveLength(0);
  });

  it('requests from both sides with the same id do not get confused', async () => {
    const { ctl, agt } = setup();
    const seenByAgent: ControllerMessage[] = [];
    agt.onMessage = (m) => seenByAgent.push(m);
    ctl.onMessage = (m) => {
      if (m.type === 'enroll')
        ctl.reply({
          type: 'enrolled',
          id: m.id,
          name: 'n',
          tunnel: { sshHost: 'h', sshPort: 22, user: 'u', port: 4000, hostKey: 'k' },
          sftpKey: 'k',
        });
    };
    const p1 = ctl.request({ type: 'tunnel.close' }); // id 1, agent does not answer yet
    const enrolled = await agt.request({ type: 'enroll', sshKey: 'ssh-ed25519 AAAA' }); // also id 1
    expect(enrolled.type).toBe('enrolled');
    expect(seenByAgent).toEqual([{ type: 'tunnel.close', id: 1 }]);
    agt.reply({ type: 'ok', id: 1 });
    await expect(p1).resolves.toEqual({ type: 'ok', id: 1 });
  });

  it('notifications and unsolicited replies go to onMessage', () => {
    const { ctl, agt } = setup();
    const got: AgentMessage[] = [];
    ctl.onMessage = (m) => got.push(m);
    agt.notify({ type: 'tunnel.closed', port: 4000, reason: 'ssh died' });
    agt.reply({ type: 'ok', id: 42 });
    expect(got).toEqual([
      { type: 'tunnel.closed', port: 4000, reason: 'ssh died' },
      { type: 'ok', id: 42 },
    ]);
  });

  it('data frames reach onData', () => {
    const { ctl, agt } = setup();
    const got: [number, Buffer][] = [];
    agt.onData = (s, c) => got.push([s, c]);
    ctl.sendData(3, Buffer.from('abc'));
    expect(got).toEqual([[3, Buffer.from('abc')]]);
  });

  it('times out with E_PROTO_TIMEOUT', async () => {
    vi.useFakeTimers();
    const { ctl } = setup(1000);
    const p = ctl.request({ type: 'host.report.get' });
    const p2 = ctl.request({ type: 'tunnel.close' }, 5000);
    const check = expect(p).rejects.toMatchObject({ code: 'E_PROTO_TIMEOUT' });
    await vi.advanceTimersByTimeAsync(999);
    let settled2 = false;
    void p2.catch(() => (settled2 = true));
    await vi.advanceTimersByTimeAsync(1);
    await check;
    expect(settled2).toBe(false);
    await vi.advanceTimersByTimeAsync(4000);
    await expect(p2).rejects.toMatchObject({ code: 'E_PROTO_TIMEOUT' });
  });

  it('close rejects pending requests with E_PROTO_CLOSED and is idempotent', async () => {
    vi.useFakeTimers();
    const { ctl, ctlSock } = setup();
    const closes: string[] = [];
    ctl.onClose = (r) => closes.push(r);
    const p = ctl.request({ type: 'host.report.get' });
    ctl.close('shutting down');
    ctl.close('again');
    await expect(p).rejects.toMatchObject({ code: 'E_PROTO_CLOSED' });
    await expect(ctl.request({ type: 'host.report.get' })).rejects.toMatchObject({ code: 'E_PROTO_CLOSED' });
    expect(ctlSock.closed).toEqual({ code: 1000, reason: 'shutting down' });
    expect(closes).toEqual(['shutting down']);
    expect(vi.getTimerCount()).toBe(0);
    ctl.notify({ type: 'credit', stream: 1, bytes: 1 }); // no-op, no throw
    expect(ctlSock.sent).toHaveLength(1);
  });

  it('a forged frame calls onError once, closes with 1008 and rejects pending', async () => {
    const { ctl, ctlSock } = setup();
    const errors: ProtocolError[] = [];
    ctl.onError = (e) => errors.push(e);
    const p = ctl.request({ type: 'host.report.get' });
    ctl.receive(randomBytes(64));
    ctl.receive(randomBytes(64));
    expect(errors).toHaveLength(1);
    expect(errors[0]?.code).toBe('E_AUTH_SEAL');
    expect(ctlSock.closed?.code).toBe(1008);
    await expect(p).rejects.toMatchObject({ code: 'E_PROTO_CLOSED' });
  });

  it('a well-sealed but invalid message is a protocol error too', () => {
    const { ctl, a2c, c2a } = setup();
    const errors: ProtocolError[] = [];
    ctl.onError = (e) => errors.push(e);
    // a correctly keyed peer sending a controller-only type to the controller
    const rogue = new Session(a2c, c2a);
    ctl.receive(rogue.sealMessage({ type: 'host.report.get', id: 1 }));
    expect(errors.map((e) => e.code)).toEqual(['E_PROTO_UNKNOWN_TYPE']);
    expect(ctl.closed).toBe(true);
  });

  it('a throwing handler is not turned into a protocol error', () => {
    const { ctl, agt } = setup();
    const errors: ProtocolError[] = [];
    ctl.onError = (e) => errors.push(e);
    ctl.onMessage = () => {
      throw new Error('handler bug');
    };
    expect(() => agt.notify({ type: 'credit', stream: 1, bytes: 5 })).toThrow('handler bug');
    expect(errors).toHaveLength(0);
    expect(ctl.closed).toBe(false);
  });
});
