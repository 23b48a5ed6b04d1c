/**
 * Sealed vs raw bulk throughput over a real ws loopback connection, between
 * two processes (argv[2] = 'server' | 'client'), so that sealing and opening
 * run on different cores as they would on two machines.
 *
 *   raw:    ws.send(1 MiB buffer)                    -> count message bytes
 *   sealed: Channel.sendData -> Session.sealData     -> Channel.receive -> Session.open -> onData
 *
 * Directions: c2s = client sends (masked frames: the agent -> controller way),
 *             s2c = server sends (unmasked: controller -> agent).
 * The sender keeps ws.bufferedAmount under HIGH_WATER (refilling from send
 * callbacks), so memory stays bounded. The client times each run: from its
 * first send (c2s) or its 'go' (s2c) to the last byte being accounted for at
 * the receiver. Session keys come from the environment (both sides share
 * them); the handshake is measured separately.
 */
import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import WebSocket, { WebSocketServer } from 'ws';
import { Channel, MAX_DATA_BYTES, MAX_SEALED_FRAME_BYTES, Session, decodeAgentMessage } from '@borgpull/protocol';
import { exitWithParent, serveRpc } from './lib.mjs';

const CHUNK = MAX_DATA_BYTES; // 1 MiB
const HIGH_WATER = 8 * CHUNK;
const WS_OPTIONS = { maxPayload: MAX_SEALED_FRAME_BYTES + 1024, perMessageDeflate: false };
const KEY_C2S = Buffer.from(process.env.BENCH_KEY_C2S ?? '', 'hex');
const KEY_S2C = Buffer.from(process.env.BENCH_KEY_S2C ?? '', 'hex');
const payload = randomFillSync(Buffer.allocUnsafe(CHUNK));

const cpuMs = (since) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};

/** Sends total bytes in CHUNK frames, keeping bufferedAmount bounded. */
function sendAll(ws, mode, session, total) {
  return new Promise((resolve, reject) => {
    const frames = Math.ceil(total / CHUNK);
    const channel = mode === 'sealed' ? new Channel({ socket: ws, session, decode: decodeAgentMessage }) : undefined;
    let sent = 0;
    let done = 0;
    let failed = false;
    const onSent = (err) => {
      if (failed) return;
      if (err) {
        failed = true;
        return reject(err);
      }
      if (++done === frames) resolve();
      else pump();
    };
    const pump = () => {
      while (sent < frames && ws.bufferedAmount < HIGH_WATER) {
        sent++;
        if (channel) channel.sendData(1, payload, onSent);
        else ws.send(payload, onSent);
      }
    };
    pump();
  });
}

/** Resolves once total payload bytes were received (opened, for sealed). */
function receiveAll(ws, mode, session, total) {
  return new Promise((resolve, reject) => {
    let got = 0;
    const count = (n) => {
      got += n;
      if (got >= total) {
        ws.off('message', onMessage);
        resolve(got);
      }
    };
    let channel;
    if (mode === 'sealed') {
      channel = new Channel({ socket: ws, session, decode: decodeAgentMessage });
      channel.onData = (_stream, chunk) => count(chunk.length);
      channel.onError = (err) => reject(err);
    }
    const onMessage = (data, isBinary) => {
      if (!isBinary) return; // control frames are handled by the caller
      if (channel) channel.receive(data);
      else count(data.length);
    };
    ws.on('message', onMessage);
  });
}

function server() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, clientTracking: false, ...WS_OPTIONS });
  wss.on('connection', (ws, req) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    const mode = q.get('mode');
    const dir = q.get('dir');
    const bytes = Number(q.get('bytes'));
    const session = new Session(KEY_S2C, KEY_C2S);
    ws.on('error', () => {});
    if (dir === 'c2s') {
      const cpu0 = process.cpuUsage();
      receiveAll(ws, mode, session, bytes).then(
        (got) => ws.send(JSON.stringify({ done: true, got, cpuMs: cpuMs(cpu0) })),
        (err) => ws.send(JSON.stringify({ error: String(err) })),
      );
    } else {
      ws.once('message', () => {
        const cpu0 = process.cpuUsage();
        sendAll(ws, mode, session, bytes).then(
          () => ws.send(JSON.stringify({ sent: true, cpuMs: cpuMs(cpu0) })),
          (err) => ws.send(JSON.stringify({ error: String(err) })),
        );
      });
    }
  });
  wss.on('listening', () => process.send({ ready: true, port: wss.address().port }));
}

/** One timed run from the client side. */
function run({ port, mode, dir, bytes }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/?mode=${mode}&dir=${dir}&bytes=${bytes}`, WS_OPTIONS);
    const session = new Session(KEY_C2S, KEY_S2C);
    let t0 = 0;
    let t1 = 0;
    let cpu0;
    let clientCpuMs = 0;
    let serverCpuMs = NaN;
    let received = dir === 'c2s'; // s2c: all bytes in
    let report = false; // server's JSON arrived
    const finish = () => {
      if (!received || !report) return;
      ws.close(1000);
      resolve({ mode, dir, bytes, ms: t1 - t0, mbps: bytes / 1e6 / ((t1 - t0) / 1000), clientCpuMs, serverCpuMs });
    };
    ws.on('error', reject);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const m = JSON.parse(data.toString());
      if (m.error) return reject(new Error(`server: ${m.error}`));
      if (m.done) {
        t1 = performance.now();
        clientCpuMs = cpuMs(cpu0);
      }
      serverCpuMs = m.cpuMs;
      report = true;
      finish();
    });
    ws.on('open', () => {
      cpu0 = process.cpuUsage();
      t0 = performance.now();
      if (dir === 'c2s') {
        sendAll(ws, mode, session, bytes).catch(reject);
      } else {
        receiveAll(ws, mode, session, bytes).then(() => {
          t1 = performance.now();
          clientCpuMs = cpuMs(cpu0);
          received = true;
          finish();
        }, reject);
        ws.send('go');
      }
    });
  });
}

/** In-process Session cost, no socket: seal N frames, then open them. */
function crypto({ bytes }) {
  const frames = Math.ceil(bytes / CHUNK);
  const a = new Session(KEY_C2S, KEY_S2C);
  const b = new Session(KEY_S2C, KEY_C2S);
  // batches of 16 sealed frames, so memory stays small
  let sealMs = 0;
  let openMs = 0;
  for (let left = frames; left > 0; left -= 16) {
    const n = Math.min(16, left);
    const sealed = new Array(n);
    let t = performance.now();
    for (let i = 0; i < n; i++) sealed[i] = a.sealData(1, payload);
    sealMs += performance.now() - t;
    t = performance.now();
    for (let i = 0; i < n; i++) b.open(sealed[i]);
    openMs += performance.now() - t;
  }
  let copyMs = 0;
  for (let left = frames; left > 0; left--) {
    const t = performance.now();
    Buffer.concat([payload.subarray(0, 5), payload], CHUNK + 5);
    copyMs += performance.now() - t;
  }
  const mb = (frames * CHUNK) / 1e6;
  return { bytes: frames * CHUNK, sealMBps: mb / (sealMs / 1000), openMBps: mb / (openMs / 1000), memcpyMBps: mb / (copyMs / 1000) };
}

if (process.argv[2] === 'server') {
  exitWithParent();
  server();
} else serveRpc({ run, crypto: async (m) => crypto(m) });
