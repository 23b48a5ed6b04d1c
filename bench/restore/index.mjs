/**
 * Restore suite (issue 4), on the archive borgpull made of the benchmark tree
 * (the backup suite's (b) archive when both suites run; otherwise this suite
 * builds the same hosts and tree and makes one `controller backup` first):
 *
 *  - stream: `controller restore NAME ARCHIVE --target DIR` (method stream:
 *    borg export-tar on the server, streamed over the agent's session into its
 *    `tar -x`), wall time of the CLI, while the controller's and the agent's
 *    VmRSS are polled every 100 ms;
 *  - ssh (the reference's "simple full restore"): on the server,
 *    `borg export-tar REPO::ARCHIVE - | ssh root@client 'tar -C DIR -x'`, ssh
 *    through the client's reverse tunnel (the agent's key, port and options)
 *    with a test key without command= restriction, into the client's sshd.
 *    That sshd chroots into the client's root, so for this baseline only the
 *    server's /usr is bound read-only into the client's root (in the client's
 *    own mount namespace, as the harness's system:true does) to give it a
 *    shell and tar.
 *
 * Both write ~the whole archive to the same file system; interleaved reps
 * (order alternates), sync and delete between them; every restore is checked
 * against the original tree (entries, bytes, links).
 *
 * Targets: stream/ssh throughput >= 0.9; controller and agent peak RSS < 150 MiB.
 *
 * Page cache: every borg process drops the segment files it read from the page cache when it
 * closes them (borg 1.2 repository.py _close_fd: posix_fadvise DONTNEED), so each restore reads
 * the repository from disk, both methods alike (the realistic case). BENCH_RESTORE_PREWARM=1
 * reads the repository right before each timed run instead. One untimed stream restore runs
 * first (BENCH_RESTORE_WARMUP=0 to skip): on this VM the first large write after setup ran about
 * twice as fast as every later one, for both methods and for a plain tar -x alike.
 *
 * Knobs: BENCH_RESTORE_REPS=3, BENCH_RESTORE_TIMEOUT_S=1800, BENCH_RSS_INTERVAL_MS=100,
 *   BENCH_RSS_GUARD_MIB=2048, and the tree knobs of the backup suite when it builds its own.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  AGENT_NAME,
  archiveInfo,
  createEnv,
  median,
  openTunnel,
  rssSampler,
  run as runCmd,
  sharedEnv,
  syncDisks,
  timed,
  treeSummary,
  warmPageCache,
} from '../backup/env.mjs';

const intEnv = (k, d) => (process.env[k] ? Number(process.env[k]) : d);
const CFG = {
  reps: intEnv('BENCH_RESTORE_REPS', 3),
  timeoutS: intEnv('BENCH_RESTORE_TIMEOUT_S', 1800),
  rssIntervalMs: intEnv('BENCH_RSS_INTERVAL_MS', 100),
  rssGuardMiB: intEnv('BENCH_RSS_GUARD_MIB', 2048),
  prewarm: process.env.BENCH_RESTORE_PREWARM === '1',
  warmup: process.env.BENCH_RESTORE_WARMUP !== '0',
};
const MB = 1e6;
const MIB = 2 ** 20;

/** Gives the client's sshd chroot a shell and tar: /usr bound read-only plus the merged-usr links. Returns undo(). */
async function chrootTools(env) {
  const host = env.client.host;
  const script = String.raw`
set -e
R="$1"
made=""
[ -e "$R/usr" ] && { echo "usr exists in the client root" >&2; exit 3; }
mkdir "$R/usr"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
for t in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$t" ] && [ ! -e "$R/$t" ] && [ ! -L "$R/$t" ]; then ln -s "$(readlink "/$t")" "$R/$t"; made="$made $t"; fi
done
echo "$made"
`;
  const r = await host.exec(['sh', '-c', script, 'chroot-tools', host.root], { reject: false });
  if (r.exitCode !== 0) throw new Error(`cannot give the client's sshd chroot a tar: ${r.stderr}`);
  const links = r.stdout.trim().split(/\s+/).filter(Boolean);
  return async () => {
    const u = await host.exec(['umount', join(host.root, 'usr')], { reject: false });
    if (u.exitCode !== 0) throw new Error(`umount ${host.root}/usr in the client: ${u.stderr}`);
    await host.exec(['rmdir', join(host.root, 'usr')], { reject: false });
    for (const l of links) rmSync(join(host.root, l), { force: true });
  };
}

function sameTree(a, b) {
  return a.files === b.files && a.dirs === b.dirs && a.links === b.links && a.bytes === b.bytes;
}

async function run_(ctx, env) {
  const log = ctx.log;
  const ctl = env.ctl;
  const host = env.client.host;
  const repo = join(ctl.state, 'repos', AGENT_NAME);
  const passFile = join(ctl.state, 'secrets', `${AGENT_NAME}.passphrase`);
  const serverBorgEnv = {
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    BORG_PASSPHRASE_FD: '3',
    BORG_BASE_DIR: join(ctl.state, 'borg', AGENT_NAME),
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  const notes = env.diagnostic ? [env.diagnostic] : [];

  let archive = env.archiveB;
  if (!archive) {
    log('no archive from the backup suite: making one with controller backup ...');
    const r = await ctl.cli(['backup', AGENT_NAME, '--json'], CFG.timeoutS * 1000);
    const job = JSON.parse(r.stdout || '[]')[0];
    if (r.exitCode !== 0 || job?.status !== 'succeeded') throw new Error(`controller backup failed: ${r.stdout} ${r.stderr}`);
    archive = job.archive;
    notes.push(`the archive was made by this suite's own 'controller backup' (the backup suite did not run first in this process).`);
  }
  const infoT0 = performance.now();
  const info = await archiveInfo(env, 'borgpull', repo, archive);
  const infoS = (performance.now() - infoT0) / 1000;
  const original = treeSummary(join(host.root, 'data'));
  log(`archive ${archive}: ${info.nfiles} files, ${(info.originalSize / MIB).toFixed(0)} MiB`);

  const streamT = join(host.dir, 'restore-stream');
  const sshIn = '/restore-ssh';
  const sshT = join(host.root, 'restore-ssh');
  env.dataDirs.push(streamT, sshT);
  const wipe = async (dir) => {
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    await syncDisks();
  };
  const warm = () => {
    if (CFG.prewarm) {
      warmPageCache(repo);
      warmPageCache(join(ctl.state, 'borg', AGENT_NAME));
    }
  };
  const check = (dir, what) => {
    const got = treeSummary(join(dir, 'data'));
    if (!sameTree(got, original))
      throw new Error(`${what} restore differs from the original data/: got ${JSON.stringify(got)}, want ${JSON.stringify(original)}`);
    return got;
  };

  // Context: borg export-tar alone, to /dev/null, on the server.
  await syncDisks();
  warm();
  const alone = await timed(() =>
    runCmd('sh', ['-c', 'exec borg export-tar "$1" - 3<"$2" >/dev/null', 'sh', `${repo}::${archive}`, passFile], { env: serverBorgEnv }),
  );
  if (alone.result.code !== 0) throw new Error(`borg export-tar alone: ${alone.result.stderr}`);
  log(`borg export-tar alone (to /dev/null): ${alone.s.toFixed(1)} s`);

  const stream = async () => {
    await wipe(streamT);
    warm();
    const pids = { controller: env.ctlPid, agent: env.agentPid };
    const rss = rssSampler(pids, { intervalMs: CFG.rssIntervalMs, guardMiB: CFG.rssGuardMiB });
    let t;
    let mem;
    try {
      t = await timed(() => ctl.cli(['restore', AGENT_NAME, archive, '--target', streamT, '--json'], CFG.timeoutS * 1000));
    } finally {
      mem = rss.stop();
    }
    for (const [name, m] of Object.entries(mem))
      if (m.killed) throw new Error(`${name} passed ${CFG.rssGuardMiB} MiB RSS during the restore and was killed`);
    let job;
    try {
      job = JSON.parse(t.result.stdout);
    } catch {
      /* below */
    }
    if (t.result.exitCode !== 0 || job?.status !== 'succeeded')
      throw new Error(`controller restore: exit ${t.result.exitCode}: ${t.result.stdout.slice(-1000)} ${t.result.stderr.slice(-1000)}`);
    check(streamT, 'stream');
    await wipe(streamT);
    return {
      s: t.s,
      cpuBusy: t.cpuBusy,
      load1: t.load1,
      disk: [t.diskReadMB, t.diskWriteMB],
      jobS: (job.endedAt - job.startedAt) / 1000,
      stats: job.stats,
      mem,
    };
  };

  const ssh = async () => {
    await wipe(sshT);
    mkdirSync(sshT, { mode: 0o755 });
    const close = await openTunnel(env);
    let t;
    try {
      await syncDisks();
      warm();
      t = await timed(() =>
        ctl.server.exec(
          [
            'bash',
            '-c',
            'set -o pipefail; borg export-tar "$1" - 3<"$2" | ssh "${@:4}" root@127.0.0.1 "tar -C $3 -x"',
            'restore-ssh',
            `${repo}::${archive}`,
            passFile,
            sshIn,
            ...env.sshBase,
          ],
          { env: serverBorgEnv, reject: false, timeout: CFG.timeoutS * 1000 },
        ),
      );
    } finally {
      await close();
    }
    if (t.result.exitCode !== 0) throw new Error(`export-tar | ssh tar -x exited ${t.result.exitCode}: ${t.result.stderr.slice(-2000)}`);
    check(sshT, 'ssh');
    await wipe(sshT);
    return { s: t.s, cpuBusy: t.cpuBusy, load1: t.load1, disk: [t.diskReadMB, t.diskWriteMB] };
  };

  const undoTools = await chrootTools(env);
  const res = { stream: [], ssh: [] };
  try {
    const probe = await ctl.server.exec(['true'], { reject: false });
    if (probe.exitCode !== 0) throw new Error('server exec does not work');
    if (CFG.warmup) {
      const w = await stream();
      res.warmup = { s: w.s, disk: w.disk, peakKiB: { controller: w.mem.controller.peakKiB, agent: w.mem.agent.peakKiB } };
      log(`warm-up stream restore (not counted): ${w.s.toFixed(1)} s`);
    }
    for (let rep = 0; rep < CFG.reps; rep++) {
      const order = rep % 2 === 0 ? ['stream', 'ssh'] : ['ssh', 'stream'];
      for (const m of order) {
        if (m === 'stream') {
          const r = await stream();
          res.stream.push(r);
          log(
            `stream rep ${rep + 1}: ${r.s.toFixed(1)} s (${(info.originalSize / MB / r.s).toFixed(0)} MB/s; job ${r.jobS.toFixed(1)} s; CPU ${(r.cpuBusy * 100).toFixed(0)}%, load ${r.load1.toFixed(1)}; disk r/w ${r.disk[0].toFixed(0)}/${r.disk[1].toFixed(0)} MB); ` +
              `RSS peak controller ${(r.mem.controller.peakKiB / 1024).toFixed(0)} MiB, agent ${(r.mem.agent.peakKiB / 1024).toFixed(0)} MiB`,
          );
        } else {
          const r = await ssh();
          res.ssh.push(r);
          log(
            `ssh rep ${rep + 1}: ${r.s.toFixed(1)} s (${(info.originalSize / MB / r.s).toFixed(0)} MB/s; CPU ${(r.cpuBusy * 100).toFixed(0)}%, load ${r.load1.toFixed(1)}; disk r/w ${r.disk[0].toFixed(0)}/${r.disk[1].toFixed(0)} MB)`,
          );
        }
      }
    }
  } finally {
    await undoTools();
  }

  const sStream = median(res.stream.map((r) => r.s));
  const sSsh = median(res.ssh.map((r) => r.s));
  const mbps = (s) => info.originalSize / MB / s;
  const peak = (who) => Math.max(...res.stream.map((r) => r.mem[who].peakKiB), res.warmup?.peakKiB[who] ?? 0) / 1024;
  const memRow = (who) => {
    const m = res.stream.map((r) => r.mem[who]);
    return {
      key: `${who}_rss_flat`,
      label: `  ${who} RSS start -> peak 1st/last quarter -> end`,
      value: m
        .map(
          (x) =>
            `${(x.startKiB / 1024).toFixed(0)} -> ${(x.peakFirstQuarterKiB / 1024).toFixed(0)} / ${(x.peakLastQuarterKiB / 1024).toFixed(0)} -> ${(x.endKiB / 1024).toFixed(0)}`,
        )
        .join('; '),
      unit: 'MiB',
    };
  };
  const rows = [
    {
      key: 'restore_stream_mbps',
      label: `stream restore (controller restore), ${(info.originalSize / MIB).toFixed(0)} MiB archive`,
      value: mbps(sStream),
      unit: 'MB/s',
      digits: 0,
      baseline: { label: 'export-tar | ssh tar -x', value: mbps(sSsh) },
      ratio: mbps(sStream) / mbps(sSsh),
      target: { on: 'ratio', op: '>=', value: 0.9 },
    },
    {
      key: 'restore_stream_s',
      label: '  stream wall time (CLI start to exit)',
      value: sStream,
      unit: 's',
      digits: 1,
      baseline: { label: 'ssh', value: sSsh },
    },
    {
      key: 'restore_stream_job_s',
      label: '  of which the job (after borg info)',
      value: median(res.stream.map((r) => r.jobS)),
      unit: 's',
      digits: 1,
    },
    { key: 'restore_export_alone', label: 'borg export-tar alone (to /dev/null)', value: mbps(alone.s), unit: 'MB/s', digits: 0 },
    {
      key: 'restore_borg_info_s',
      label: "borg info --json REPO::ARCHIVE (the controller's size lookup)",
      value: infoS,
      unit: 's',
      digits: 1,
    },
    {
      key: 'restore_ctl_peak_rss',
      label: 'controller peak RSS during the restores (incl. warm-up)',
      value: peak('controller'),
      unit: 'MiB',
      digits: 0,
      target: { on: 'value', op: '<', value: 150 },
    },
    memRow('controller'),
    {
      key: 'restore_agent_peak_rss',
      label: 'agent peak RSS during the restores (incl. warm-up)',
      value: peak('agent'),
      unit: 'MiB',
      digits: 0,
      target: { on: 'value', op: '<', value: 150 },
    },
    memRow('agent'),
  ];
  notes.push(
    `archive ${archive}: ${info.nfiles} files, ${(info.originalSize / MIB).toFixed(0)} MiB original size (throughput = original size / wall time, MB = 10^6 B); every restore was checked against the client's data/ (entries, bytes, symlinks) and deleted, then sync.`,
    `stream = wall time of 'controller restore ${AGENT_NAME} ARCHIVE --target ${streamT} --json' (CLI start to exit; includes the controller's borg info for the total size, then export-tar -> session -> the agent's own extractor, which never writes through a user's symlink).`,
    `ssh baseline = on the server: bash -c 'set -o pipefail; borg export-tar REPO::ARCHIVE - 3<passphrase | ssh -i <test root key> -p <agent's tunnel port> root@127.0.0.1 "tar -C ${sshIn} -x"' through a reverse tunnel opened from the client with the agent's own key, port and ssh options (open before the timer); the client's sshd chroots into the client's root (${sshIn} = ${sshT}), where the server's /usr was bound read-only for this baseline only. Same repo, cache dir and passphrase as the controller's.`,
    `runs (s): stream ${res.stream.map((r) => r.s.toFixed(1)).join(' / ')}; ssh ${res.ssh.map((r) => r.s.toFixed(1)).join(' / ')} (medians in the rows; order alternates per rep). Machine CPU busy: stream ${res.stream.map((r) => `${(r.cpuBusy * 100).toFixed(0)}%`).join(' / ')}, ssh ${res.ssh.map((r) => `${(r.cpuBusy * 100).toFixed(0)}%`).join(' / ')}; 1-min load at start ${[...res.stream, ...res.ssh].map((r) => r.load1.toFixed(1)).join(',')}.`,
    `${CFG.prewarm ? "BENCH_RESTORE_PREWARM=1: the repository was read once right before each timed run; the stream's own borg info then drops the segments it touched from the cache again (borg's DONTNEED on close), so stream re-reads those from disk and ssh does not" : 'cold repository, as in a real restore: each borg run drops the segments it read from the page cache (posix_fadvise DONTNEED on close), so every run reads the repository from disk'}.${CFG.warmup ? ` One untimed stream restore ran first (${res.warmup.s.toFixed(1)} s): the first large write after setup is much faster on this VM than later ones (also seen with a plain tar -x), which would favour whichever method runs first.` : ''}`,
    `disk I/O during the runs (MB read / written on the block device; the rest came from or stayed in the page cache): stream ${res.stream.map((r) => `${r.disk[0].toFixed(0)}/${r.disk[1].toFixed(0)}`).join(', ')}; ssh ${res.ssh.map((r) => `${r.disk[0].toFixed(0)}/${r.disk[1].toFixed(0)}`).join(', ')}; export-tar alone ${alone.diskReadMB.toFixed(0)}/${alone.diskWriteMB.toFixed(0)}.`,
    `RSS: VmRSS of the controller's and the agent's node processes polled every ${CFG.rssIntervalMs} ms during each stream restore (quarters of the samples show whether it grows with the bytes sent); VmHWM over the processes' lifetimes: controller ${(Math.max(...res.stream.map((r) => r.mem.controller.hwmKiB)) / 1024).toFixed(0)} MiB, agent ${(Math.max(...res.stream.map((r) => r.mem.agent.hwmKiB)) / 1024).toFixed(0)} MiB.`,
  );
  const samples = Object.fromEntries(['controller', 'agent'].map((w) => [w, res.stream.map((r) => r.mem[w].samples)]));
  for (const r of res.stream) for (const m of Object.values(r.mem)) delete m.samples;
  return {
    title: `restore: controller stream vs export-tar | ssh tar${env.diagnostic ? ' [DIAGNOSTIC]' : ''}`,
    sections: [
      {
        title: `Restore of a ${(info.originalSize / MIB).toFixed(0)} MiB archive${env.diagnostic ? ' [DIAGNOSTIC: nodelay tunnel sshd]' : ''}`,
        rows,
        notes,
      },
    ],
    details: { config: CFG, archive, info, original, exportTarAloneS: alone.s, runs: res, rssSamples: samples },
  };
}

export async function run(ctx) {
  let env = sharedEnv();
  if (env) ctx.log('using the hosts and archive left by the backup suite');
  else env = await createEnv(ctx);
  try {
    return await run_(ctx, env);
  } finally {
    await env.teardown(ctx.log);
  }
}
