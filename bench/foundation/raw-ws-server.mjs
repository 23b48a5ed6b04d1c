/**
 * Baseline for the idle-agent memory and connect-rate figures: a plain ws
 * server, configured like the controller's AgentServer (http server + ws,
 * no permessage-deflate, no client tracking, same maxPayload), holding each
 * connection with a message and an error listener and nothing else.
 * Reports its port over IPC ({ready, port}); memory via probe.mjs.
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { MAX_MESSAGE_BYTES } from '@borgpull/protocol';
import { exitWithParent } from './lib.mjs';

exitWithParent();

const conns = new Set();
const http = createServer((_req, res) => res.writeHead(426).end());
const wss = new WebSocketServer({ server: http, maxPayload: MAX_MESSAGE_BYTES + 1024, perMessageDeflate: false, clientTracking: false });
wss.on('connection', (ws) => {
  conns.add(ws);
  ws.on('message', () => {});
  ws.on('error', () => {});
  ws.on('close', () => conns.delete(ws));
});
http.listen(0, '127.0.0.1', () => process.send({ ready: true, port: http.address().port }));
