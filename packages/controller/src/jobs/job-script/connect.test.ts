import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CONNECT_PY } from './script.js';

/** A stand-in for the agent's gate: records what the connector sent, answers as told. */
function gate(answer: (sock: Socket, secret: Buffer) => void): Promise<{ server: Server; port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const server = createServer((sock) => {
    let got = Buffer.alloc(0);
    let answered = false;
    sock.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]);
      received.push(b);
      if (!answered && got.length >= 32) {
        answered = true;
        answer(sock, got.subarray(0, 32));
      }
    });
    sock.on('error', () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, received })),
  );
}

function connector(port: number, secretFile: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      '/usr/bin/python3',
      ['-I', '-S', '-c', CONNECT_PY, String(port), secretFile, ...argv],
      { env: {}, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    );
  });
}

describe("the job's SFTP connector", () => {
  let dir: string;
  let secretFile: string;
  let secret: Buffer;
  let server: Server | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bp-connect-'));
    secret = randomBytes(32);
    secretFile = join(dir, 'sftp.secret');
    writeFileSync(secretFile, secret, { mode: 0o600 });
  });
  afterEach(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends the secret, waits for the ok byte, then becomes the program with the socket as stdin and stdout', async () => {
    let seen: Buffer | undefined;
    const g = await gate((sock, s) => {
      seen = s;
      sock.write(Buffer.of(1));
    });
    server = g.server;
    // The program it becomes reads from the socket and writes to it: no process in between.
    const r = await connector(g.port, secretFile, ['/bin/sh', '-c', 'printf pong; exec 1>&-']);
    expect(r.code, r.stderr).toBe(0);
    expect(seen).toEqual(secret);
    expect(Buffer.concat(g.received).subarray(32).toString()).toBe('pong');
  });

  it('runs nothing and fails when the client refuses (closes without the ok byte)', async () => {
    const g = await gate((sock) => sock.destroy());
    server = g.server;
    const marker = join(dir, 'ran');
    const r = await connector(g.port, secretFile, ['/bin/sh', '-c', `: > ${marker}`]);
    expect(r.code).toBe(70);
    expect(r.stderr).toMatch(/refused the SFTP connection/);
    expect(existsSync(marker)).toBe(false);
  });
});
