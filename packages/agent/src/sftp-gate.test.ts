import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findSftpServer, SftpGate, SFTP_OK } from './sftp-gate.js';

/** The log lines the gate writes, parsed. */
function capture(): { log: ReturnType<typeof pino>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

/** A client of the socket: everything it received, and when the gate ended it. */
interface Conn {
  sock: Socket;
  got: Buffer[];
  ended: Promise<void>;
}

function dial(path: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const got: Buffer[] = [];
    sock.on('data', (b: Buffer) => got.push(b));
    const ended = new Promise<void>((r) => sock.on('close', () => r()));
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.on('error', () => undefined);
      resolve({ sock, got, ended });
    });
  });
}

function bytes(c: Conn): Buffer {
  return Buffer.concat(c.got);
}

async function until(what: string, f: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An SFTP packet: uint32 length, then type and body. */
function packet(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length + 1, 0);
  head.writeUInt8(type, 4);
  return Buffer.concat([head, body]);
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}
function sftpString(s: string): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
}
const SSH_FXP_INIT = 1;
const SSH_FXP_VERSION = 2;
const SSH_FXP_OPEN = 3;
const SSH_FXP_STATUS = 101;
const SSH_FX_PERMISSION_DENIED = 3;

describe('the SFTP gate', () => {
  let dir: string;
  let root: string;
  let gate: SftpGate | undefined;
  let secret: Buffer;
  let logs: ReturnType<typeof capture>;
  const conns: Conn[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bp-gate-'));
    root = join(dir, 'client-root');
    secret = randomBytes(32);
    logs = capture();
    mkdirSync(root);
    writeFileSync(join(root, 'hello.txt'), 'hello\n');
  });

  afterEach(async () => {
    for (const c of conns.splice(0)) c.sock.destroy();
    await gate?.stop();
    gate = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(secretTimeoutMs?: number): Promise<string> {
    const socketPath = join(dir, 'sftp', 'sftp.sock');
    gate = new SftpGate({ socketPath, secret, root, sftpServer: await findSftpServer(), log: logs.log, secretTimeoutMs });
    await gate.start();
    return socketPath;
  }

  async function client(path: string): Promise<Conn> {
    const c = await dial(path);
    conns.push(c);
    return c;
  }

  const refusals = (): unknown[] => logs.lines.filter((l) => l['msg'] === 'refused an SFTP connection').map((l) => l['reason']);

  it('keeps its socket in a root-only directory, 0600, and removes it when stopped', async () => {
    const path = await open();
    expect(statSync(join(dir, 'sftp')).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    await gate!.stop();
    expect(existsSync(path)).toBe(false);
    await expect(dial(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('serves read-only SFTP from sftp-server to the right secret, after one ok byte', async () => {
    const path = await open();
    const c = await client(path);
    c.sock.write(secret);
    await until('the ok byte', () => bytes(c).length >= 1);
    expect(bytes(c)[0]).toBe(SFTP_OK);
    c.sock.write(packet(SSH_FXP_INIT, u32(3)));
    await until('SSH_FXP_VERSION', () => bytes(c).length >= 1 + 9);
    expect(bytes(c).readUInt8(1 + 4)).toBe(SSH_FXP_VERSION);
    // A write is refused by sftp-server -R itself.
    const before = bytes(c).length;
    c.sock.write(packet(SSH_FXP_OPEN, Buffer.concat([u32(7), sftpString('new.txt'), u32(0x02 | 0x08), u32(0)])));
    await until('SSH_FXP_STATUS', () => bytes(c).length >= before + 9 + 8);
    const reply = bytes(c).subarray(before);
    expect(reply.readUInt8(4)).toBe(SSH_FXP_STATUS);
    expect(reply.readUInt32BE(5)).toBe(7);
    expect(reply.readUInt32BE(9)).toBe(SSH_FX_PERMISSION_DENIED);
    expect(existsSync(join(root, 'new.txt'))).toBe(false);
    // No Node in the data path: sftp-server's stdin and stdout are the connection itself,
    // and this (the agent's) process holds no descriptor of it any more.
    const pid = logs.lines.find((l) => l['msg'] === 'SFTP session started')?.['pid'] as number;
    const conn = readlinkSync(`/proc/${pid}/fd/0`);
    expect(conn).toMatch(/^socket:\[\d+\]$/);
    expect(readlinkSync(`/proc/${pid}/fd/1`)).toBe(conn);
    await until('the agent to close its descriptor', () =>
      readdirSync('/proc/self/fd').every((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) !== conn;
        } catch {
          return true;
        }
      }),
    );
  });

  it.each([
    ['a wrong secret', (s: Buffer) => Buffer.from(s.map((b) => b ^ 1)), 'wrong secret'],
    ['a secret one byte too long', (s: Buffer) => Buffer.concat([s, Buffer.of(0)]), 'more bytes than a secret'],
    ['the secret followed by an SFTP init', (s: Buffer) => Buffer.concat([s, packet(SSH_FXP_INIT, u32(3))]), 'more bytes than a secret'],
    ['a megabyte', () => Buffer.alloc(1 << 20, 0x41), 'more bytes than a secret'],
  ])('refuses %s: not one byte back, closed, logged', async (_what, send, reason) => {
    const path = await open();
    const c = await client(path);
    c.sock.write(send(secret));
    await c.ended;
    expect(bytes(c).length).toBe(0);
    expect(refusals()).toEqual([reason]);
  });

  it('refuses a short secret and a closed connection', async () => {
    const path = await open();
    const c = await client(path);
    c.sock.end(secret.subarray(0, 31));
    await c.ended;
    expect(bytes(c).length).toBe(0);
    expect(refusals()).toEqual(['closed before sending the secret']);
  });

  it('closes a connection that sends nothing (slow loris) after its timeout', async () => {
    const path = await open(300);
    const c = await client(path);
    const t0 = Date.now();
    await c.ended;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(bytes(c).length).toBe(0);
    expect(refusals()).toEqual(['no secret in time']);
  });

  it('closes a connection that sends the secret too slowly, byte by byte', async () => {
    const path = await open(300);
    const c = await client(path);
    let i = 0;
    const drip = setInterval(() => {
      if (i < secret.length && !c.sock.destroyed) c.sock.write(secret.subarray(i, ++i));
    }, 50);
    await c.ended;
    clearInterval(drip);
    expect(bytes(c).length).toBe(0);
    expect(refusals()).toEqual(['no secret in time']);
  });

  it('serves the secret once: a second connection with it gets nothing', async () => {
    const path = await open();
    const first = await client(path);
    first.sock.write(secret);
    await until('the ok byte', () => bytes(first).length >= 1);
    const second = await client(path);
    second.sock.write(secret);
    await second.ended;
    expect(bytes(second).length).toBe(0);
    expect(refusals()).toEqual(['the secret was already used']);
  });

  it('ends the sftp-server it started when stopped (the job is over)', async () => {
    const path = await open();
    const c = await client(path);
    c.sock.write(secret);
    await until('the ok byte', () => bytes(c).length >= 1);
    await gate!.stop();
    await c.ended;
    expect(logs.lines.some((l) => l['msg'] === 'SFTP session ended')).toBe(true);
  });

  it('fails with E_AGENT_SFTP_SERVER, naming the package, when no sftp-server is installed', async () => {
    await expect(findSftpServer(['/nonexistent/sftp-server'])).rejects.toMatchObject({
      code: 'E_AGENT_SFTP_SERVER',
      message: expect.stringMatching(/openssh-sftp-server/) as unknown,
    });
  });
});
