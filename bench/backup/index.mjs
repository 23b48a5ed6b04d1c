/**
 * Backup suite (issue 3): a pulled backup of a generated ~1 GiB tree
 * (a few large random files, compressible text, ~20,000 small files, symlinks)
 * from a client host in its own network + mount namespaces, three ways, each
 * to a fresh repokey repository, first run and unchanged runs:
 *
 *  (a) the reference recipe by hand, as a shell script on the backup server:
 *      sshfs of the client's / through the client's reverse tunnel (the
 *      agent's key, port and ssh options), `-o no_contain_symlinks`, then
 *      `borg create --files-cache ctime,size REPO::ARCHIVE .` with cwd at the
 *      mount and the client's passwd/group bound over the server's in a
 *      private mount namespace (the recipe's chroot gives the same archive,
 *      see facts.md), then unmount. No other borg flags.
 *  (b) `controller backup NAME` (the CLI, end to end) on the same tree: since
 *      issue 11, SFTP straight through the tunnel to the agent's sftp-server
 *      (no sshd on the client, no ssh inside the tunnel).
 *  (c) `borg create REPO::ARCHIVE .` run locally on the server path of the
 *      client's root (no network, no FUSE): the ceiling.
 *  (d) today's path before issue 11, by hand: the same borg command as (b),
 *      through sshfs -> ssh inside the agent's reverse tunnel (control master,
 *      TCP_NODELAY session, as the agent did) -> the client's sshd, with the
 *      sshfs options the controller used. Hand-run, so it pays none of (b)'s
 *      CLI, job and cleanup overhead: (b)/(d) is conservative.
 *
 * Targets: (b)/(a) <= 0.8 first run, <= 0.6 unchanged run;
 *          (b)/(d) <= 1.0 first run, <= 0.87 unchanged run (issue 11).
 *
 * Knobs: BENCH_TREE_MB=1024 BENCH_SMALL_FILES=20000 BENCH_BIG_FILES=4
 *   BENCH_TEXT_SHARE=0.25 BENCH_SYMLINKS=400 BENCH_SMALL_MAX_BYTES=6144
 *   BENCH_UNCHANGED_RUNS=2 (unchanged runs per method; medians reported)
 *   BENCH_LINK_PROBE_MB=64 (sshfs sequential read through the tunnel vs inside the client; 0 = skip)
 *   BENCH_TUNNEL_NODELAY=1: DIAGNOSTIC, not the product as shipped (see env.mjs nodelayTunnelSshd)
 *   BENCH_BACKUP_TIMEOUT_S=1800  BENCH_SHARE_ENV=0 (do not hand the hosts to the restore suite)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AGENT_NAME,
  archiveInfo,
  borgEnv,
  createEnv,
  linkProbe,
  median,
  openTunnel,
  restoreRunsLater,
  rssSampler,
  run as runCmd,
  syncDisks,
  timed,
} from './env.mjs';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const intEnv = (k, d) => (process.env[k] ? Number(process.env[k]) : d);
const CFG = {
  unchangedRuns: intEnv('BENCH_UNCHANGED_RUNS', 2),
  linkProbeMiB: intEnv('BENCH_LINK_PROBE_MB', 64),
  timeoutS: intEnv('BENCH_BACKUP_TIMEOUT_S', 1800),
};

/** The hand-run recipe (a). "$@" = MNT REPO ARCHIVE PORT KEY KNOWN_HOSTS TMP. */
const HAND_RECIPE = String.raw`
set -u
MNT="$1"; REPO="$2"; ARCHIVE="$3"; PORT="$4"; KEY="$5"; KH="$6"; TMP="$7"
mkdir -p "$MNT"
sshfs -o no_contain_symlinks \
  -o "IdentityFile=$KEY,IdentitiesOnly=yes,UserKnownHostsFile=$KH,GlobalKnownHostsFile=/dev/null,HostKeyAlias=bench-client,StrictHostKeyChecking=yes,BatchMode=yes,Port=$PORT" \
  -F /dev/null "root@127.0.0.1:/" "$MNT" || exit 90
cp "$MNT/etc/passwd" "$TMP/passwd" && cp "$MNT/etc/group" "$TMP/group" || exit 91
mount --bind "$TMP/passwd" /etc/passwd && mount --bind "$TMP/group" /etc/group && mount --bind "$TMP/nsswitch.conf" /etc/nsswitch.conf || exit 92
cd "$MNT" || exit 93
borg create --files-cache ctime,size "$REPO::$ARCHIVE" .
rc=$?
cd /
fusermount3 -u "$MNT" || umount -l "$MNT"
exit $rc
`;

/**
 * Today's path before issue 11 (d), by hand: the controller's old sshfs
 * options through the tunnel to the client's sshd, and the controller's borg
 * command (namespace isolation). "$@" = MNT REPO ARCHIVE PORT KEY KNOWN_HOSTS TMP.
 */
const TODAY_PATH = String.raw`
set -u
MNT="$1"; REPO="$2"; ARCHIVE="$3"; PORT="$4"; KEY="$5"; KH="$6"; TMP="$7"
mkdir -p "$MNT"
sshfs -o "ro,no_contain_symlinks,ServerAliveInterval=15,ServerAliveCountMax=3,max_read=1048576,Ciphers=aes128-gcm@openssh.com"   -o "IdentityFile=$KEY,IdentitiesOnly=yes,UserKnownHostsFile=$KH,GlobalKnownHostsFile=/dev/null,HostKeyAlias=bench-client,StrictHostKeyChecking=yes,BatchMode=yes,Port=$PORT"   -F /dev/null "root@127.0.0.1:/" "$MNT" || exit 90
cp "$MNT/etc/passwd" "$TMP/passwd" && cp "$MNT/etc/group" "$TMP/group" || exit 91
mount --bind "$TMP/passwd" /etc/passwd && mount --bind "$TMP/group" /etc/group && mount --bind "$TMP/nsswitch.conf" /etc/nsswitch.conf || exit 92
cd "$MNT" || exit 93
borg create --log-json --progress --json --list --filter=AME --files-cache ctime,size --noflags --noxattrs --noacls "$REPO::$ARCHIVE" . >/dev/null 2>"$TMP/today.err"
rc=$?
cd /
fusermount3 -u "$MNT" || umount -l "$MNT"
exit $rc
`;

/** The sshfs and borg create options of the controller as built (packages/controller/dist), for the notes. */
function productCommand() {
  try {
    const text = readFileSync(join(REPO, 'packages', 'controller', 'dist', 'jobs', 'job-script', 'script.js'), 'utf8');
    const sshfs = /sshfs -f -o "([^"]+)"/.exec(text)?.[1];
    const mountOpts = /BACKUP_MOUNT_OPTS = '([^']+)'/.exec(text)?.[1];
    const ns = text.indexOf('NAMESPACE_CREATE');
    const borg =
      ns < 0
        ? undefined
        : text
            .slice(ns)
            .split('\n')
            .find((l) => l.startsWith('borg create'))
            ?.replace(/\s*\\$/, '');
    return `sshfs -o ${(sshfs ?? '?').replace('$MOUNT_OPTS', mountOpts ?? '$MOUNT_OPTS')}; ${borg ?? 'borg create ?'}`;
  } catch {
    return 'unknown (cannot read the built controller)';
  }
}

export async function run_(ctx, env) {
  const log = ctx.log;
  const srv = env.ctl.server;
  const dirs = {
    handRepo: join(srv.dir, 'hand-repo'),
    handBase: join(srv.dir, 'hand-borgbase'),
    handMnt: join(srv.dir, 'hand-mnt'),
    handTmp: join(srv.dir, 'hand-tmp'),
    localRepo: join(srv.dir, 'local-repo'),
    localBase: join(srv.dir, 'local-borgbase'),
    todayRepo: join(srv.dir, 'today-repo'),
    todayBase: join(srv.dir, 'today-borgbase'),
    todayMnt: join(srv.dir, 'today-mnt'),
  };
  await runCmd('mkdir', ['-p', dirs.handTmp, dirs.handBase, dirs.localBase, dirs.todayBase]);
  await runCmd('sh', [
    '-c',
    'printf "passwd: files\\ngroup: files\\nshadow: files\\nhosts: files\\n" > "$1"',
    'sh',
    join(dirs.handTmp, 'nsswitch.conf'),
  ]);

  // Fresh repos of the kind borgpull makes (repokey); borgpull's own is made by its first job.
  const inits = {};
  for (const [k, repo, base] of [
    ['hand', dirs.handRepo, dirs.handBase],
    ['local', dirs.localRepo, dirs.localBase],
    ['today', dirs.todayRepo, dirs.todayBase],
  ]) {
    const r = await runCmd('borg', ['init', '--encryption', 'repokey', repo], { env: borgEnv(env, base) });
    if (r.code !== 0) throw new Error(`borg init ${repo}: ${r.stderr}`);
    inits[k] = r.ms / 1000;
  }
  log(`hand/local repos initialised (borg init ${inits.hand.toFixed(1)} s / ${inits.local.toFixed(1)} s, outside the timings)`);

  // Link probe: what one sshfs stream gets through the client's reverse tunnel, vs without it.
  let probe;
  if (CFG.linkProbeMiB > 0 && env.tree.big.count > 0) {
    probe = await linkProbe(
      env,
      'data/big/blob0.bin',
      Math.min(CFG.linkProbeMiB, Math.floor(env.tree.big.bytes / env.tree.big.count / 2 ** 20)),
    );
    log(
      `link probe (sshfs, dd ${probe.mib} MiB; ${probe.smallFiles} small files): through the tunnel to the client's sshd ${probe.tunnelMBps.toFixed(1)} MB/s, ${probe.tunnelFilesPerS.toFixed(0)} files/s; ` +
        `through the tunnel straight to sftp-server ${probe.directPathMBps.toFixed(1)} MB/s, ${probe.directPathFilesPerS.toFixed(0)} files/s ` +
        `(connector without TCP_NODELAY: ${probe.directNagleMBps.toFixed(1)} MB/s, ${probe.directNagleFilesPerS.toFixed(0)} files/s); ` +
        `inside the client without a tunnel ${probe.directMBps.toFixed(0)} MB/s, ${probe.insideFilesPerS.toFixed(0)} files/s`,
    );
  }

  let n = 0;
  const hand = async () => {
    const archive = `hand-${++n}`;
    const close = await openTunnel(env);
    try {
      await syncDisks();
      const t = await timed(() =>
        srv.exec(
          [
            'unshare',
            '--mount',
            '--propagation',
            'private',
            '--pid',
            '--fork',
            '--kill-child=SIGKILL',
            '--',
            'sh',
            '-c',
            HAND_RECIPE,
            'hand-recipe',
            dirs.handMnt,
            dirs.handRepo,
            archive,
            String(env.tunnel.port),
            env.testKey,
            env.clientKnownHosts,
            dirs.handTmp,
          ],
          { env: borgEnv(env, dirs.handBase, { BORG_HOST_ID: `bench-hand-${n}` }), reject: false, timeout: CFG.timeoutS * 1000 },
        ),
      );
      if (t.result.exitCode !== 0) throw new Error(`hand recipe exited ${t.result.exitCode}: ${t.result.stderr.slice(-2000)}`);
      return {
        archive,
        s: t.s,
        cpuBusy: t.cpuBusy,
        load1: t.load1,
        disk: [t.diskReadMB, t.diskWriteMB],
        warnings: t.result.stderr.trim().split('\n').filter(Boolean).slice(0, 5),
      };
    } finally {
      await close();
    }
  };
  let k = 0;
  const today = async () => {
    const archive = `today-${++k}`;
    await syncDisks();
    // Timed like a job: the agent opened its tunnel for each job and closed it after.
    const t = await timed(async () => {
      const close = await openTunnel(env, { nodelay: true });
      try {
        return await srv.exec(
          [
            'unshare',
            '--mount',
            '--propagation',
            'private',
            '--pid',
            '--fork',
            '--kill-child=SIGKILL',
            '--',
            'sh',
            '-c',
            TODAY_PATH,
            'today-path',
            dirs.todayMnt,
            dirs.todayRepo,
            archive,
            String(env.tunnel.port),
            env.testKey,
            env.clientKnownHosts,
            dirs.handTmp,
          ],
          { env: borgEnv(env, dirs.todayBase, { BORG_HOST_ID: `bench-today-${k}` }), reject: false, timeout: CFG.timeoutS * 1000 },
        );
      } finally {
        await close();
      }
    });
    if (t.result.exitCode !== 0 && t.result.exitCode !== 1)
      throw new Error(`today's path exited ${t.result.exitCode}: ${t.result.stderr.slice(-2000)}`);
    return { archive, s: t.s, cpuBusy: t.cpuBusy, load1: t.load1, disk: [t.diskReadMB, t.diskWriteMB], exit: t.result.exitCode };
  };
  const pulled = async () => {
    await syncDisks();
    const rss = rssSampler({ controller: env.ctlPid }, { intervalMs: 200 });
    let t;
    let mem;
    try {
      t = await timed(() => env.ctl.cli(['backup', AGENT_NAME, '--json'], CFG.timeoutS * 1000));
    } finally {
      mem = rss.stop();
    }
    let jobs = [];
    try {
      jobs = JSON.parse(t.result.stdout);
    } catch {
      /* below */
    }
    const job = jobs[0];
    if (t.result.exitCode !== 0 || !job || job.status !== 'succeeded') {
      throw new Error(`controller backup: exit ${t.result.exitCode}, job ${JSON.stringify(job)}: ${t.result.stderr.slice(-2000)}`);
    }
    return {
      archive: job.archive,
      s: t.s,
      disk: [t.diskReadMB, t.diskWriteMB],
      jobS: (job.endedAt - job.startedAt) / 1000,
      cpuBusy: t.cpuBusy,
      load1: t.load1,
      stats: job.stats,
      ctlPeakMiB: mem.controller.peakKiB / 1024,
    };
  };
  let m = 0;
  const local = async () => {
    const archive = `local-${++m}`;
    await syncDisks();
    const t = await timed(() =>
      runCmd('borg', ['create', `${dirs.localRepo}::${archive}`, '.'], { cwd: env.client.host.root, env: borgEnv(env, dirs.localBase) }),
    );
    if (t.result.code !== 0) throw new Error(`local borg create exited ${t.result.code}: ${t.result.stderr.slice(-2000)}`);
    return { archive, s: t.s, cpuBusy: t.cpuBusy, load1: t.load1, disk: [t.diskReadMB, t.diskWriteMB] };
  };

  // borgpull makes its repository at its first job; (a), (c) and (d) had theirs made outside the timer.
  // One untimed job with data/ excluded does the same for (b), so first runs compare like with like.
  const cfgFile = join(env.ctl.state, 'config.json');
  const cfgBefore = readFileSync(cfgFile, 'utf8');
  env.ctl.configure({ agents: { [AGENT_NAME]: { exclude: ['data'] } } });
  const prime = await timed(() => env.ctl.cli(['backup', AGENT_NAME, '--json'], CFG.timeoutS * 1000));
  writeFileSync(cfgFile, cfgBefore);
  if (prime.result.exitCode !== 0) throw new Error(`the untimed first job failed: ${prime.result.stderr.slice(-2000)}`);
  log(`(b) repository made by an untimed job with data/ excluded (${prime.s.toFixed(1)} s)`);

  const res = { hand: [], today: [], pulled: [], local: [] };
  const fmt = (r) => `${r.s.toFixed(1)} s (CPU ${(r.cpuBusy * 100).toFixed(0)}% of 2 cores, load ${r.load1.toFixed(1)})`;
  for (let round = 0; round <= CFG.unchangedRuns; round++) {
    const what = round === 0 ? 'first run' : `unchanged run ${round}`;
    const a = await hand();
    res.hand.push(a);
    log(`(a) hand recipe, ${what}: ${fmt(a)}`);
    const d = await today();
    res.today.push(d);
    log(`(d) today's path (sshfs -> ssh in the tunnel -> client sshd), ${what}: ${fmt(d)}`);
    const b = await pulled();
    res.pulled.push(b);
    log(
      `(b) controller backup, ${what}: ${fmt(b)}; controller peak RSS ${b.ctlPeakMiB.toFixed(0)} MiB; changed files ${b.stats?.changedFiles}`,
    );
    const c = await local();
    res.local.push(c);
    log(`(c) local borg create, ${what}: ${fmt(c)}`);
  }
  env.archiveB = res.pulled[0].archive;

  // Same data in every archive? And borg's own duration of every run (wall time minus this = what is around borg).
  const where = {
    hand: ['hand', dirs.handRepo, dirs.handBase],
    today: ['today', dirs.todayRepo, dirs.todayBase],
    pulled: ['borgpull', join(env.ctl.state, 'repos', AGENT_NAME), undefined],
    local: ['local', dirs.localRepo, dirs.localBase],
  };
  for (const [k, [kind, repo, base]] of Object.entries(where)) {
    for (const r of res[k]) r.borg = await archiveInfo(env, kind, repo, r.archive, base);
  }
  const infos = { hand: res.hand[0].borg, today: res.today[0].borg, pulled: res.pulled[0].borg, local: res.local[0].borg };
  log(
    `archives: ${Object.entries(infos)
      .map(([k, v]) => `${k} ${v.nfiles} files ${(v.originalSize / 2 ** 20).toFixed(0)} MiB`)
      .join('; ')}`,
  );
  for (const k of Object.keys(where))
    log(
      `borg's own duration, ${k}: ${res[k].map((r) => r.borg.durationS.toFixed(1)).join(' / ')} s (wall ${res[k].map((r) => r.s.toFixed(1)).join(' / ')} s)`,
    );

  const first = (k) => res[k][0].s;
  const unchanged = (k) => median(res[k].slice(1).map((r) => r.s));
  const rows = [
    { key: 'hand_first_s', label: '(a) hand recipe (sshfs + borg create), first run', value: first('hand'), unit: 's', digits: 1 },
    {
      key: 'pulled_first_s',
      label: '(b) controller backup, first run',
      value: first('pulled'),
      unit: 's',
      digits: 1,
      baseline: { label: '(a) hand recipe', value: first('hand') },
      ratio: first('pulled') / first('hand'),
      target: { on: 'ratio', op: '<=', value: 0.8 },
    },
    {
      key: 'pulled_first_vs_today',
      label: "  (b) vs (d) today's path (sshfs through the client's sshd), first run",
      value: first('pulled'),
      unit: 's',
      digits: 1,
      baseline: { label: "(d) today's path", value: first('today') },
      ratio: first('pulled') / first('today'),
      target: { on: 'ratio', op: '<=', value: 1.0 },
    },
    {
      key: 'pulled_first_vs_local',
      label: '  (b) vs (c) local borg create, first run',
      value: first('pulled'),
      unit: 's',
      digits: 1,
      baseline: { label: '(c) local', value: first('local') },
      ratio: first('pulled') / first('local'),
    },
  ];
  if (CFG.unchangedRuns > 0) {
    rows.push(
      {
        key: 'hand_unchanged_s',
        label: `(a) hand recipe, unchanged run${CFG.unchangedRuns > 1 ? ` (median of ${CFG.unchangedRuns})` : ''}`,
        value: unchanged('hand'),
        unit: 's',
        digits: 1,
      },
      {
        key: 'pulled_unchanged_s',
        label: `(b) controller backup, unchanged run${CFG.unchangedRuns > 1 ? ` (median of ${CFG.unchangedRuns})` : ''}`,
        value: unchanged('pulled'),
        unit: 's',
        digits: 1,
        baseline: { label: '(a) hand recipe', value: unchanged('hand') },
        ratio: unchanged('pulled') / unchanged('hand'),
        target: { on: 'ratio', op: '<=', value: 0.6 },
      },
      {
        key: 'pulled_unchanged_vs_today',
        label: "  (b) vs (d) today's path (sshfs through the client's sshd), unchanged run",
        value: unchanged('pulled'),
        unit: 's',
        digits: 1,
        baseline: { label: "(d) today's path", value: unchanged('today') },
        ratio: unchanged('pulled') / unchanged('today'),
        target: { on: 'ratio', op: '<=', value: 0.87 },
      },
      {
        key: 'pulled_unchanged_borg_vs_today',
        label: "  borg's own duration (the archive's), (b) vs (d), unchanged run: the transport alone",
        value: median(res.pulled.slice(1).map((r) => r.borg.durationS)),
        unit: 's',
        digits: 2,
        baseline: { label: '(d)', value: median(res.today.slice(1).map((r) => r.borg.durationS)) },
        ratio: median(res.pulled.slice(1).map((r) => r.borg.durationS)) / median(res.today.slice(1).map((r) => r.borg.durationS)),
      },
      {
        key: 'pulled_unchanged_vs_local',
        label: '  (b) vs (c) local borg create, unchanged run',
        value: unchanged('pulled'),
        unit: 's',
        digits: 1,
        baseline: { label: '(c) local', value: unchanged('local') },
        ratio: unchanged('pulled') / unchanged('local'),
      },
    );
  }
  rows.push(
    { key: 'local_first_s', label: '(c) local borg create (ceiling), first run', value: first('local'), unit: 's', digits: 1 },
    ...(CFG.unchangedRuns > 0
      ? [
          {
            key: 'local_unchanged_s',
            label: '(c) local borg create (ceiling), unchanged run',
            value: unchanged('local'),
            unit: 's',
            digits: 1,
          },
        ]
      : []),
    {
      key: 'pulled_ctl_peak_rss',
      label: 'controller peak RSS during (b) (all runs)',
      value: Math.max(...res.pulled.map((r) => r.ctlPeakMiB)),
      unit: 'MiB',
      digits: 0,
    },
  );
  const t = env.tree;
  const per = (k) => res[k].map((r) => r.s.toFixed(1)).join(' / ');
  const notes = [
    ...env.notes,
    `tree: ${(t.totalBytes / 2 ** 20).toFixed(0)} MiB under the client's /data: ${t.big.count} random files (${(t.big.bytes / 2 ** 20).toFixed(0)} MiB), ${t.text.count} compressible text files (${(t.text.bytes / 2 ** 20).toFixed(0)} MiB), ${t.small.count} small files 0-${env.cfg.smallMaxBytes} B (${(t.small.bytes / 2 ** 20).toFixed(1)} MiB, 4 owners, 4 modes), ${t.links.count} symlinks (absolute, relative, with .., dangling); plus the harness's etc/ and root/. system:false client.`,
    `archives hold the same items: (a) ${infos.hand.nfiles} files ${(infos.hand.originalSize / 2 ** 20).toFixed(0)} MiB, (b) ${infos.pulled.nfiles} / ${(infos.pulled.originalSize / 2 ** 20).toFixed(0)} MiB, (c) ${infos.local.nfiles} / ${(infos.local.originalSize / 2 ** 20).toFixed(0)} MiB (borg info of the first archives).`,
    `(a) ran, on the server in a private mount + PID namespace: sshfs -o no_contain_symlinks -o IdentityFile=<test root key>,HostKeyAlias,StrictHostKeyChecking=yes,BatchMode=yes,Port=<agent's tunnel port> -F /dev/null root@127.0.0.1:/ MNT; copy the client's etc/passwd and etc/group from the mount and bind them (and a files-only nsswitch.conf) over the server's; cd MNT; borg create --files-cache ctime,size REPO::ARCHIVE .; cd /; fusermount3 -u MNT. Timed: the whole script. The tunnel: ssh -N -R 127.0.0.1:PORT:127.0.0.1:22 from inside the client with the agent's own key, port and ssh options (opened before the timer, like the agent's tunnel exists before borg starts). Repo init (${inits.hand.toFixed(1)} s) outside the timer; (b)'s repository was made by one untimed job with data/ excluded before the first run.`,
    `(b) = wall time of 'controller backup ${AGENT_NAME} --json' (CLI start to exit: tunnel order, identity, job dir, repo check, sshfs, borg, cleanup); the built controller runs: ${productCommand()}. (c) = borg create REPO::ARCHIVE . with cwd at the client's root on the server, borg defaults.`,
    `all runs (s): (a) ${per('hand')}; (d) ${per('today')}; (b) ${per('pulled')}; (c) ${per('local')} (first, then unchanged). Order per round: a, d, b, c; sync before each run; page cache warm (tree written just before).`,
    `(d) today's path = by hand, on the server in a private mount + PID namespace: sshfs -o ro,no_contain_symlinks,ServerAliveInterval=15,ServerAliveCountMax=3,max_read=1048576,Ciphers=aes128-gcm@openssh.com (the controller's options before issue 11) to the client's sshd through ssh -N -M -R 127.0.0.1:PORT:127.0.0.1:22 with the agent's key and one session over its control socket (TCP_NODELAY, as the agent did); the controller's borg create flags. Timed: opening the tunnel (as the agent did for each job), the script, closing it; not the CLI start, job dir, repo checks and cleanup, which (b) pays.`,
    `machine CPU busy during runs (2 cores): (a) ${res.hand.map((r) => `${(r.cpuBusy * 100).toFixed(0)}%`).join(' / ')}; (b) ${res.pulled.map((r) => `${(r.cpuBusy * 100).toFixed(0)}%`).join(' / ')}; (c) ${res.local.map((r) => `${(r.cpuBusy * 100).toFixed(0)}%`).join(' / ')}; 1-min load at start ${res.hand
      .concat(res.pulled, res.local)
      .map((r) => r.load1.toFixed(1))
      .join(',')} (includes any other work on the machine).`,
    `borg's own duration (from the archive) vs wall time, s: (a) ${res.hand.map((r) => `${r.borg.durationS.toFixed(1)}/${r.s.toFixed(1)}`).join(', ')}; (b) ${res.pulled.map((r) => `${r.borg.durationS.toFixed(1)}/${r.s.toFixed(1)} (job ${r.jobS.toFixed(1)})`).join(', ')}; (c) ${res.local.map((r) => `${r.borg.durationS.toFixed(1)}/${r.s.toFixed(1)}`).join(', ')}. For (b), wall - job = CLI start-up and admin socket; job - borg = tunnel, identity, job dir, repo check, sshfs mount, cleanup.`,
    `(b) changed files reported: ${res.pulled.map((r) => r.stats?.changedFiles).join(' / ')}.`,
  ];
  const sections = [
    {
      title: `Backup of a ${(t.totalBytes / 2 ** 20).toFixed(0)} MiB tree (${t.small.count} small files)${env.diagnostic ? ' [DIAGNOSTIC: nodelay tunnel sshd]' : ''}`,
      rows,
      notes,
    },
  ];
  if (probe) {
    sections.push({
      title: 'Link probe: one sshfs sequential read (dd bs=1M) of a large file',
      rows: [
        {
          key: 'probe_tunnel_mbps',
          label: "through the client's reverse tunnel (server side)",
          value: probe.tunnelMBps,
          unit: 'MB/s',
          digits: 1,
          baseline: { label: 'inside the client, no tunnel', value: probe.directMBps },
          ratio: probe.tunnelMBps / probe.directMBps,
        },
        {
          key: 'probe_direct_path_files_per_s',
          label: 'small files read (tar | cat) through the tunnel straight to sftp-server',
          value: probe.directPathFilesPerS,
          unit: 'files/s',
          digits: 0,
          baseline: { label: "through the tunnel to the client's sshd", value: probe.tunnelFilesPerS },
          ratio: probe.directPathFilesPerS / probe.tunnelFilesPerS,
        },
        {
          key: 'probe_direct_nagle_files_per_s',
          label: '  the same with a connector that leaves Nagle on (not shipped)',
          value: probe.directNagleFilesPerS,
          unit: 'files/s',
          digits: 0,
          baseline: { label: 'the direct path as shipped', value: probe.directPathFilesPerS },
          ratio: probe.directNagleFilesPerS / probe.directPathFilesPerS,
        },
        {
          key: 'probe_direct_path_mbps',
          label: 'through the tunnel straight to sftp-server (the direct path, as shipped)',
          value: probe.directPathMBps,
          unit: 'MB/s',
          digits: 1,
          baseline: { label: 'inside the client, no tunnel', value: probe.directMBps },
          ratio: probe.directPathMBps / probe.directMBps,
        },
      ],
      notes: [
        `${probe.mib} MiB of data/big/blob0.bin, fresh sshfs mount each (-o no_contain_symlinks); through the tunnel = sshfs on the server to 127.0.0.1:<agent's port> -> tunnel sshd -> ssh -R (agent's key and options, TCP_NODELAY session) -> client sshd; direct path = the job's connector + sshfs -o passive on the server -> tunnel sshd -> ssh -R -> the agent's SFTP gate (its own code, our secret) -> sftp-server -R; inside the client = sshfs in the client's namespaces to its sshd on 127.0.0.1:22, no tunnel.`,
      ],
    });
  }
  return {
    title: `pulled backup: controller vs hand-run recipe vs local borg${env.diagnostic ? ' [DIAGNOSTIC]' : ''}`,
    sections,
    details: {
      config: { ...CFG, tree: env.cfg },
      tree: env.tree,
      inits,
      runs: res,
      archives: infos,
      linkProbe: probe,
      diagnostic: env.diagnostic,
      freeRunMiB: env.freeMiB,
    },
  };
}

export async function run(ctx) {
  const env = await createEnv(ctx);
  let keep = false;
  try {
    const r = await run_(ctx, env);
    keep = restoreRunsLater();
    if (keep) ctx.log('keeping the hosts and the archive for the restore suite');
    return r;
  } finally {
    if (!keep) await env.teardown();
  }
}
