/**
 * Handshake crypto alone, both sides in this one process (run as a child of the foundation suite).
 * In a child because Node 20 deadlocked inside its crypto here (2026-11-29: the main thread blocked
 * for good in ExportJWKEdKey -> a GC -> ~KeyGenJob -> the key's mutex, in gdb). The handshake no
 * longer makes keys with generateKeyPairSync (handshake.ts ephemeral(), handshake-deadlock.test.ts);
 * the child stays so that a hang of any other cause is reported, not waited for.
 * Prints one JSON line: { count, bothSidesPerS, controllerSidePerS }.
 */
import { performance } from 'node:perf_hooks';
import { AgentHandshake, ControllerHandshake, generateIdentity } from '@borgpull/protocol';

const count = Number(process.argv[2] ?? 2000);
const ids = Array.from({ length: 16 }, () => generateIdentity());
const controllerIdentity = generateIdentity();
let ctlMs = 0;
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  const a = new AgentHandshake({ identity: ids[i % ids.length], controllerKey: controllerIdentity.publicKey, software: 'bench' });
  const c = new ControllerHandshake({ identity: controllerIdentity, checkAgent: () => {} });
  const hello = a.hello();
  let t = performance.now();
  const welcome = c.onHello(hello);
  ctlMs += performance.now() - t;
  const auth = a.onWelcome(welcome);
  t = performance.now();
  c.onAuth(auth);
  ctlMs += performance.now() - t;
}
const totalMs = performance.now() - t0;
process.stdout.write(`${JSON.stringify({ count, bothSidesPerS: count / (totalMs / 1000), controllerSidePerS: count / (ctlMs / 1000) })}\n`);
