import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  assertNoLeftovers,
  cleanupAll,
  createClientHost,
  createServerHost,
  findLeftovers,
  generateSshKey,
  probeTcp,
  requireTools,
  waitFor,
  type ClientHost,
  type ServerHost,
} from './index.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'sshd:x:102:65534::/run/sshd:/usr/sbin/nologin',
  'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
  'bob:x:1001:1001:Bob:/home/bob:/bin/bash',
].join('\n');
const GROUP = ['root:x:0:', 'nogroup:x:65534:', 'alice:x:1000:', 'bob:x:1001:'].join('\n');

const TUNNEL_SSHD_PORT = 2222;
const TUNNEL_PORT = 40_001;

describe('e2e harness', () => {
  let server: ServerHost;
  let client: ClientHost;

  beforeAll(async () => {
    requireTools();
    server = await createServerHost();
    client = await createClientHost(server, { name: 'client1', passwd: PASSWD, group: GROUP, system: true });
  });

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('lets the client reach the server over the veth', async () => {
    const port = 7001;
    const srv = server.spawn(['node', '-e', `require('net').createServer((s) => s.end('hello from server')).listen(${port}, '0.0.0.0')`]);
    await waitFor('tiny server', () => server.isListening(port), {
      abortIf: () => (srv.exitCode === null ? undefined : 'tiny server exited'),
    });
    const r = await probeTcp(client, client.serverAddress, port);
    expect(r).toMatchObject({ connected: true, banner: 'hello from server' });
    srv.kill();
    await srv;
  });

  it('does not let the server reach the client sshd (loopback only)', async () => {
    const fromServer = await probeTcp(server, client.address, 22);
    expect(fromServer.connected).toBe(false);
    const inside = await probeTcp(client, '127.0.0.1', 22, 1);
    expect(inside.connected).toBe(true);
    expect(inside.banner).toMatch(/^SSH-2\.0-OpenSSH/);
  });

  it("shows the client's own users, groups and hostname inside the client only", async () => {
    expect((await client.exec(['getent', 'passwd', 'alice'])).stdout).toBe('alice:x:1000:1000:Alice:/home/alice:/bin/bash');
    expect((await client.exec(['id', '-u', 'bob'])).stdout).toBe('1001');
    expect((await client.exec(['getent', 'group', '1000'])).stdout).toMatch(/^alice:/);
    expect((await client.exec(['hostname'])).stdout).toBe('client1');
    expect((await client.exec(['cat', '/etc/hostname'])).stdout).toBe('client1');
    // The host (and the server netns, which shares its file system) is untouched.
    expect((await server.exec(['getent', 'passwd', 'alice'], { reject: false })).exitCode).not.toBe(0);
    // system: true gives a chroot that can run the host's borg.
    expect((await client.exec(['chroot', client.root, '/usr/bin/borg', '--version'])).stdout).toMatch(/^borg /);
  });

  it('carries sshfs over a reverse tunnel to the chrooted, read-only client sshd', async () => {
    // --- server side: tunnel sshd with a per-agent key line
    const state = join(server.dir, 'state');
    mkdirSync(state, { mode: 0o755 });
    const akFile = join(state, 'tunnel_authorized_keys');
    const agentKeyDir = join(client.dir, 'agent');
    mkdirSync(agentKeyDir, { mode: 0o700 });
    const agentPub = await generateSshKey(join(agentKeyDir, 'tunnel_key'));
    writeFileSync(
      akFile,
      `restrict,port-forwarding,permitlisten="127.0.0.1:${TUNNEL_PORT}",permitopen="127.0.0.1:9",command="/bin/false" ${agentPub}\n`,
      { mode: 0o644 },
    );
    const sshd = await server.startTunnelSshd({ port: TUNNEL_SSHD_PORT, authorizedKeysFile: akFile });
    expect(sshd.hostKeyPublic).toMatch(/^ssh-ed25519 AAAA\S+$/);

    // --- client side: controller key in root's authorized_keys, data to back up
    const ctlKey = join(state, 'controller_key');
    const ctlPub = await generateSshKey(ctlKey);
    writeFileSync(client.authorizedKeysFile, `restrict,from="127.0.0.1,::1",command="internal-sftp -R" ${ctlPub}\n`);
    client.writeFiles({
      'data/hello.txt': { content: 'hello\n', uid: 1000, gid: 1000 },
      'data/bob/notes': { content: 'b\n', uid: 1001, gid: 1001, mode: 0o600 },
      'data/abs-link': { symlink: '/etc/passwd' },
    });
    // The agent, inside the client, sees the same authorized_keys at /root/.ssh (bindRootHome).
    expect((await client.exec(['cat', '/root/.ssh/authorized_keys'])).stdout).toContain(ctlPub);

    // --- agent: ssh -R from the client to the server's tunnel sshd, server key pinned
    const knownServer = join(agentKeyDir, 'known_hosts');
    writeFileSync(knownServer, `[${client.serverAddress}]:${TUNNEL_SSHD_PORT} ${sshd.hostKeyPublic}\n`);
    const tunnel = client.spawn(
      [
        'ssh',
        '-N',
        '-R',
        `127.0.0.1:${TUNNEL_PORT}:127.0.0.1:22`,
        '-o',
        'ExitOnForwardFailure=yes',
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `UserKnownHostsFile=${knownServer}`,
        '-o',
        'ServerAliveInterval=15',
        '-o',
        'ServerAliveCountMax=3',
        '-i',
        join(agentKeyDir, 'tunnel_key'),
        '-p',
        String(TUNNEL_SSHD_PORT),
        `${server.tunnelUser}@${client.serverAddress}`,
      ],
      { stdin: 'ignore' },
    );
    await waitFor('reverse tunnel listening on the server', () => server.isListening(TUNNEL_PORT), {
      abortIf: () => (tunnel.exitCode === null ? undefined : `ssh -R exited:\n${server.logs()}`),
    });

    // The key line allows that one port only.
    const other = await client.exec(
      [
        'ssh',
        '-N',
        '-R',
        `127.0.0.1:${TUNNEL_PORT + 1}:127.0.0.1:22`,
        '-o',
        'ExitOnForwardFailure=yes',
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `UserKnownHostsFile=${knownServer}`,
        '-i',
        join(agentKeyDir, 'tunnel_key'),
        '-p',
        String(TUNNEL_SSHD_PORT),
        `${server.tunnelUser}@${client.serverAddress}`,
      ],
      { reject: false, timeout: 10_000 },
    );
    expect(other.exitCode).toBe(255);
    expect(other.stderr).toMatch(/remote port forwarding failed/);

    // --- controller: sshfs through the tunnel in a private mount namespace
    const knownClient = join(state, 'known_hosts_client1');
    writeFileSync(knownClient, `client1 ${client.sshdHostKeyPublic}\n`);
    const mnt = join(server.dir, 'mnt-client1');
    mkdirSync(mnt, { mode: 0o700 });
    const script = `set -e
sshfs -o ro,no_contain_symlinks,BatchMode=yes,StrictHostKeyChecking=yes,HostKeyAlias=client1 \\
  -o "UserKnownHostsFile=$2,IdentityFile=$3,IdentitiesOnly=yes" -p "$4" root@127.0.0.1:/ "$1"
trap 'fusermount3 -u "$1"' EXIT
cat "$1/data/hello.txt"
stat -c '%u:%g %n' "$1/data/hello.txt" "$1/data/bob/notes"
readlink "$1/data/abs-link"
test -x "$1/usr/bin/borg" || echo NO-BORG
ls "$1"
if touch "$1/data/new" 2>/dev/null; then echo WRITABLE; fi
`;
    const r = await server.exec(
      ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'mount', mnt, knownClient, ctlKey, String(TUNNEL_PORT)],
      { reject: false },
    );
    expect(r.stderr, client.logs()).toBe('');
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('hello');
    expect(lines[1]).toBe(`1000:1000 ${mnt}/data/hello.txt`);
    expect(lines[2]).toBe(`1001:1001 ${mnt}/data/bob/notes`);
    expect(lines[3]).toBe('/etc/passwd');
    expect(lines.slice(4)).toEqual(expect.arrayContaining(['bin', 'data', 'etc', 'root', 'usr']));
    expect(r.stdout).not.toContain('WRITABLE');
    expect(r.stdout).not.toContain('NO-BORG');
    expect(existsSync(join(client.root, 'data', 'new'))).toBe(false);
    // The mount lived only in that namespace.
    expect(findLeftovers().filter((l) => l.includes('sshfs'))).toEqual([]);
    tunnel.kill();
    await tunnel;
  });

  it('leaves nothing behind after stop(), and stop() is idempotent', async () => {
    const dirs = [server.dir, client.dir];
    const names = [server.netns, client.netns];
    await server.stop(); // stops its clients too
    await client.stop();
    await server.stop();
    for (const d of dirs) expect(existsSync(d)).toBe(false);
    for (const n of names) expect(existsSync(`/run/netns/${n}`)).toBe(false);
    assertNoLeftovers();
  });
});
