/**
 * Preloaded (node --expose-gc --import probe.mjs) into every measured process,
 * the real controller daemon included: on {probe:'mem'} over IPC it forces a
 * full GC and reports VmRSS (from /proc) and V8 heap figures. Passive
 * otherwise: it does not touch the program it rides along with, except that
 * the process exits when its IPC parent (the bench) goes away. (Its IPC
 * listener keeps the event loop referenced: the bench SIGKILLs these processes.)
 */
import { readFileSync } from 'node:fs';

function vm() {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

if (typeof process.send === 'function') {
  // if the bench dies without cleaning up, take this process with it
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m) => {
    if (!m || m.probe !== 'mem') return;
    const before = vm();
    if (typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    const after = vm();
    const mu = process.memoryUsage();
    process.send({
      probe: 'mem',
      rpcId: m.rpcId,
      gc: typeof globalThis.gc === 'function',
      rssBeforeGcKiB: before.rssKiB,
      rssKiB: after.rssKiB,
      hwmKiB: after.hwmKiB,
      heapUsedKiB: Math.round(mu.heapUsed / 1024),
      heapTotalKiB: Math.round(mu.heapTotal / 1024),
      externalKiB: Math.round(mu.external / 1024),
      arrayBuffersKiB: Math.round(mu.arrayBuffers / 1024),
    });
  });
}
