/**
 * Agent simulator (its own process, driven over IPC by the foundation suite).
 *
 * borgpull mode opens real agent sessions the way packages/agent/src/dial.ts
 * does: ws (same options) + AgentHandshake + Channel from @borgpull/protocol.
 * A session counts as established when the controller answers a ws ping sent
 * right after the auth frame: frames are handled in order, so by then the
 * controller has verified the auth signature and registered the link (a
 * rejection arrives as an error frame before that pong and fails the session).
 * raw mode is the baseline: a plain ws connection, same ping/pong confirmation.
 *
 * argv[2]: identities file (JSON {agents: [[name, hex(secretKey64)], ...]})
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { AgentHandshake, Channel, MAX_SEALED_FRAME_BYTES, decodeControllerMessage } from '@borgpull/protocol';
import { percentiles, pool, serveRpc } from './lib.mjs';

const SOFTWARE = 'borgpull-bench-sim/0.1.0';
/** Like the agent's HANDSHAKE_TIMEOUT_MS: no single connection may stall a step. */
const OPEN_TIMEOUT_MS = 20_000;
const WS_OPTIONS = { handshakeTimeout: 30_000, maxPayload: MAX_SEALED_FRAME_BYTES + 1024, perMessageDeflate: false };

const agents = JSON.parse(readFileSync(process.argv[2], 'utf8')).agents;
const identities = new Array(agents.length);
function identity(i) {
  let id = identities[i];
  if (!id) {
    const sk = new Uint8Array(Buffer.from(agents[i][1], 'hex'));
    id = identities[i] = { publicKey: sk.slice(32), secretKey: sk };
  }
  return id;
}

/** Held (idle) connections: {ws, channel?}. */
let held = [];

function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Opens one confirmed agent session. Resolves {ws, channel}. */
function openSession(url, i, controllerKey) {
  return new Promise((resolve, reject) => {
    const hs = new AgentHandshake({ identity: identity(i), controllerKey, software: SOFTWARE });
    const ws = new WebSocket(url, WS_OPTIONS);
    let channel;
    let failure;
    let settled = false;
    let stage = 'connect';
    const fail = (err) => {
      failure ??= err;
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(failure);
      }
    };
    const timer = setTimeout(() => fail(new Error(`no session after ${OPEN_TIMEOUT_MS} ms (stuck at ${stage})`)), OPEN_TIMEOUT_MS);
    ws.on('upgrade', () => (stage = 'welcome'));
    ws.on('error', (err) => fail(err));
    ws.on('open', () => ws.send(hs.hello()));
    ws.on('message', (data, isBinary) => {
      const frame = toBuffer(data);
      if (channel) {
        channel.receive(frame);
        return;
      }
      try {
        if (!isBinary) throw new Error('text frame from the controller');
        ws.send(hs.onWelcome(frame));
        ws.ping();
        stage = 'pong';
      } catch (err) {
        fail(err);
        return;
      }
      channel = new Channel({ socket: ws, session: hs.session(), decode: decodeControllerMessage });
      channel.onError = (err) => fail(new Error(`after auth: ${err.message}`));
    });
    ws.once('pong', () => {
      if (settled) return;
      if (!channel) return fail(new Error('pong before welcome'));
      settled = true;
      clearTimeout(timer);
      resolve({ ws, channel });
    });
    ws.on('close', (code, reason) => fail(new Error(`closed ${code} ${reason.toString()}`)));
  });
}

/** Opens one confirmed plain ws connection. */
function openRaw(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, WS_OPTIONS);
    let settled = false;
    let stage = 'connect';
    const fail = (err) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(err);
      }
    };
    const timer = setTimeout(() => fail(new Error(`no connection after ${OPEN_TIMEOUT_MS} ms (stuck at ${stage})`)), OPEN_TIMEOUT_MS);
    ws.on('error', fail);
    ws.on('message', () => {});
    ws.on('open', () => {
      stage = 'pong';
      ws.ping();
    });
    ws.once('pong', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ws });
    });
    ws.on('close', (code) => fail(new Error(`closed ${code}`)));
  });
}

function open(msg, i) {
  return msg.mode === 'raw' ? openRaw(msg.url) : openSession(msg.url, i, Buffer.from(msg.controllerKey, 'hex'));
}

function closeAndWait(ws, timeoutMs = 5_000) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    const t = setTimeout(() => {
      ws.terminate();
      resolve();
    }, timeoutMs);
    ws.once('close', () => {
      clearTimeout(t);
      resolve();
    });
    ws.close(1000, 'bench');
  });
}

function noteError(errors, err) {
  const k = String(err?.message ?? err).slice(0, 120);
  errors[k] = (errors[k] ?? 0) + 1;
}

serveRpc({
  /** Opens sessions for identities [from, to) and keeps them idle; starts none after deadlineMs. */
  async connect(msg) {
    const errors = {};
    let ok = 0;
    let attempted = 0;
    const t0 = performance.now();
    const deadline = t0 + (msg.deadlineMs ?? Infinity);
    await pool(msg.to - msg.from, msg.concurrency, async (k) => {
      if (performance.now() > deadline) return;
      attempted++;
      try {
        const s = await open(msg, msg.from + k);
        // once established, a drop is not this step's failure: just forget it
        s.ws.removeAllListeners('close');
        s.ws.on('close', () => {});
        held.push(s);
        ok++;
      } catch (err) {
        noteError(errors, err);
      }
    });
    const ms = performance.now() - t0;
    return { ok, attempted, failed: attempted - ok, ms, errors, held: held.length, deadlineHit: attempted < msg.to - msg.from };
  },

  /** count connect + handshake + close cycles over identities [from, to), concurrency in flight; starts none after deadlineMs. */
  async cycle(msg) {
    const errors = {};
    const lat = [];
    let ok = 0;
    let attempted = 0;
    const span = msg.to - msg.from;
    const t0 = performance.now();
    const deadline = t0 + (msg.deadlineMs ?? Infinity);
    await pool(msg.count, msg.concurrency, async (k) => {
      if (performance.now() > deadline) return;
      attempted++;
      const t = performance.now();
      try {
        const s = await open(msg, msg.from + (k % span));
        lat.push(performance.now() - t);
        ok++;
        s.ws.removeAllListeners('close');
        await closeAndWait(s.ws);
      } catch (err) {
        noteError(errors, err);
      }
    });
    const ms = performance.now() - t0;
    return { ok, attempted, failed: attempted - ok, ms, errors, latencyMs: percentiles(lat), deadlineHit: attempted < msg.count };
  },

  async closeAll() {
    const n = held.length;
    for (const s of held) s.ws.terminate();
    held = [];
    return { closed: n };
  },

  /** How many held connections are still open. */
  async count() {
    return { open: held.filter((s) => s.ws.readyState === WebSocket.OPEN).length, held: held.length };
  },
});
