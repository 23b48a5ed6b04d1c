/**
 * The demo: a backup server and a client host built on this machine (network
 * and mount namespaces; the server runs its tunnel sshd, the client none and has its own users),
 * the real controller and agent, one pulled backup, and a streamed restore
 * that is verified file by file. Everything is removed at the end.
 *
 *   npm run demo        (scripts/demo.sh: installs what it needs, builds, runs this)
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupAll, requireTools } from './harness/index.js';
import { listItems, startClient, startController, type Controller } from './e2e/fixture.js';

const say = (s: string): void => {
  process.stdout.write(`${s}\n`);
};

function fingerprint(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      const owner = `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
      if (st.isSymbolicLink()) out.set(r, `link ${readlinkSync(join(dir, r))}`);
      else if (st.isDirectory()) {
        out.set(r, `dir ${owner}`);
        walk(r);
      } else
        out.set(
          r,
          `file ${owner} ${createHash('sha256')
            .update(readFileSync(join(dir, r)))
            .digest('hex')}`,
        );
    }
  };
  walk('');
  return out;
}

async function run(ctl: Controller, args: string[]): Promise<string> {
  say(`\n$ controller ${args.join(' ')}`);
  const r = await ctl.cli(args, 600_000);
  if (r.stdout.trim()) say(r.stdout.trimEnd());
  if (r.exitCode !== 0) throw new Error(`controller ${args[0]} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

async function main(): Promise<void> {
  requireTools();
  say('borgpull demo: building a backup server (netns) with the controller and its tunnel sshd ...');
  const ctl = await startController();
  say('building a client host "laptop" behind its own network namespace: own passwd (alice=1000, bob=1001, carol=1002),');
  say('no sshd, and an agent enrolled with a one-time token ...');
  const client = await startClient(ctl, 'laptop');
  client.host.writeFiles({
    'home/alice/notes.txt': { content: 'alice: buy milk\n', uid: 1000, gid: 1000, mode: 0o600 },
    'home/alice/photos/cat.jpg': { content: new Uint8Array(200_000).map((_, i) => (i * 7919) % 251), uid: 1000, gid: 1000 },
    'home/bob/todo.md': { content: '# todo\n- back up\n', uid: 1001, gid: 1001 },
    'srv/shared/report.txt': { content: 'quarterly report\n', uid: 1002, gid: 1002, mode: 0o640 },
    'srv/shared/latest': { symlink: 'report.txt' },
    'srv/shared/passwd-link': { symlink: '/etc/passwd' },
  });
  await run(ctl, ['agents']);
  await run(ctl, ['backup', '--all']);
  const archives = JSON.parse((await ctl.cli(['archives', 'laptop', '--json'])).stdout) as Array<{ name: string }>;
  const archive = archives.at(-1)!.name;
  await run(ctl, ['archives', 'laptop']);
  say(`\nthe archive records the client's own user and group names (the server has no alice, bob or carol):`);
  for (const item of await listItems(ctl, 'laptop', archive)) {
    if (item.path.startsWith('home/') || item.path.startsWith('srv/')) {
      say(
        `  ${item.type === 'l' ? 'l' : item.type === 'd' ? 'd' : '-'} ${`${item.user}:${item.group}`.padEnd(14)} ${String(item.uid).padStart(4)}:${String(item.gid).padEnd(4)} ${item.path}${item.linktarget ? ` -> ${item.linktarget}` : ''}`,
      );
    }
  }
  const before = new Map(
    [...fingerprint(join(client.host.root, 'home')), ...fingerprint(join(client.host.root, 'srv'))].map(([k, v]) => [k, v]),
  );
  say('\nthe client loses its files ...');
  rmSync(join(client.host.root, 'home'), { recursive: true });
  rmSync(join(client.host.root, 'srv'), { recursive: true });
  // Backups see the client's files under this path (the demo's agent was enrolled with --sftp-root it).
  await run(ctl, ['restore', 'laptop', archive, 'home', 'srv', '--target', client.host.root]);
  const after = new Map([...fingerprint(join(client.host.root, 'home')), ...fingerprint(join(client.host.root, 'srv'))]);
  const diff = [...before].filter(([k, v]) => after.get(k) !== v).map(([k]) => k);
  if (diff.length || after.size !== before.size) throw new Error(`restore differs from the original: ${diff.join(', ')}`);
  say(`\nverified: all ${before.size} restored entries match the originals (content sha256, mode, owner, link target)`);
  await run(ctl, ['jobs']);
}

let failed = false;
const stop = (): void => {
  void cleanupAll().finally(() => process.exit(130));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
try {
  await main();
} catch (err) {
  failed = true;
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
} finally {
  say('\ncleaning up the demo hosts ...');
  await cleanupAll();
}
say(failed ? 'demo FAILED' : 'demo finished: backup and verified restore done, nothing left behind');
process.exitCode = failed ? 1 : 0;
