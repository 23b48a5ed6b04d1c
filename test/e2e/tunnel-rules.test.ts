/**
 * Issue 7 item 4: the tunnel user's sshd rules. A client that owns its machine
 * holds the agent's ssh key; with it, against an sshd set up as the README
 * says, it may forward its own TCP port from the server and nothing else: no
 * Unix socket either way, no other TCP port, no command, no sftp.
 * `restrict,port-forwarding` in the key line turns streamlocal forwarding back
 * on and permitlisten does not cover socket paths: with the README's earlier
 * rules the -R socket test failed (a listener appeared on the server). A -L
 * to a socket was refused even then on sshd 9.2, but only by the key's
 * permitopen (it names no path); the test checks that sshd's own rule
 * refuses it now (its log line), which failed with the earlier rules too.
 */
import { existsSync, mkdirSync, chownSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tunnelRules } from '../../packages/controller/src/host-setup.js';
import { assertNoLeftovers, cleanupAll, requireTools, SERVER_ADDRESS, TUNNEL_UID, waitFor } from '../harness/index.js';
import { agentsJson, startClient, startController, TUNNEL_SSHD_PORT, WS_PORT, type Client, type Controller } from './fixture.js';

/**
 * The sshd rules `controller setup-host` writes (and the README shows:
 * host-setup.test.ts checks they are the same), with the tunnel keys file
 * moved to this test's state dir: the test checks what people get.
 */
function readmeRules(authorizedKeysFile: string): string[] {
  const lines = tunnelRules('borgpull', '/var/lib/borgpull');
  if (!lines.some((l) => /^\s*AuthorizedKeysFile\s/.test(l))) throw new Error('setup-host sets no AuthorizedKeysFile');
  return lines.map((l) => (/^\s*AuthorizedKeysFile\s/.test(l) ? `    AuthorizedKeysFile ${authorizedKeysFile}` : l));
}

describe("the agent's ssh key against the README's tunnel sshd rules", () => {
  let ctl: Controller;
  let client: Client;
  let port = 0;
  let knownHosts = '';
  let probe: Server;
  let probeConnections = 0;
  const probeSocket = (): string => join(ctl.server.dir, 'probe.sock');

  beforeAll(async () => {
    requireTools();
    ctl = await startController({ tunnelRules: readmeRules });
    client = await startClient(ctl, 'evil');
    port = ((await agentsJson(ctl)).find((a) => a.name === 'evil') as unknown as { port: number }).port;
    knownHosts = join(client.host.dir, 'evil_known_hosts');
    await client.host.exec([
      'sh',
      '-c',
      'printf "%s\\n" "$1" > "$2"',
      'sh',
      `[${SERVER_ADDRESS}]:${TUNNEL_SSHD_PORT} ${ctl.sshd.hostKeyPublic}`,
      knownHosts,
    ]);
    // A Unix socket on the server that anyone may connect to (like D-Bus's): it counts connections.
    probe = createServer((sock) => {
      probeConnections++;
      sock.end('probe says hello\n');
    });
    await new Promise<void>((resolve) => probe.listen(probeSocket(), resolve));
    chmodSync(probeSocket(), 0o666);
    // A directory the tunnel user may write: where an -R socket listener would go.
    mkdirSync(join(ctl.server.dir, 'tunnel-writable'), { mode: 0o700 });
    chownSync(join(ctl.server.dir, 'tunnel-writable'), TUNNEL_UID, TUNNEL_UID);
  }, 120_000);

  afterAll(async () => {
    await new Promise<void>((resolve) => (probe ? probe.close(() => resolve()) : resolve()));
    await cleanupAll();
    assertNoLeftovers();
  });

  /** ssh from inside the client with the agent's own key, to the tunnel sshd. */
  function sshArgs(...extra: string[]): string[] {
    return [
      'ssh',
      '-F',
      '/dev/null',
      '-p',
      String(TUNNEL_SSHD_PORT),
      '-i',
      join(client.host.dir, 'agent-state', 'id_ed25519'),
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'ConnectTimeout=10',
      ...extra,
      `borgpull@${SERVER_ADDRESS}`,
    ];
  }

  /**
   * Starts `ssh -N -R SPEC` and waits until ssh exits (the forward was
   * refused: ExitOnForwardFailure) or `listening()` says the server listens.
   */
  async function remoteForward(spec: string, listening: () => boolean): Promise<{ refused: boolean; stderr: string }> {
    const p = client.host.spawn(sshArgs('-N', '-v', '-R', spec), { stdin: 'ignore' });
    let out = '';
    p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(`ssh -R ${spec} refused or listening`, () => p.exitCode !== null || listening() || /remote forward success/.test(out), {
      timeoutMs: 20_000,
    });
    const refused = p.exitCode !== null;
    if (!refused) p.kill('SIGTERM');
    await p;
    return { refused, stderr: out };
  }

  it("may forward its own port from the server's loopback (the control: the key works)", async () => {
    const r = await remoteForward(`127.0.0.1:${port}:127.0.0.1:22`, () => ctl.server.isListening(port));
    expect(r.refused, `${r.stderr}\n${ctl.server.logs()}`).toBe(false);
  });

  it("may forward its own port to a Unix socket on the client (the agent's SFTP tunnel) under the same rules", async () => {
    // The socket is the client's end: sshd sees a plain TCP listen request (permitlisten), and
    // AllowStreamLocalForwarding concerns sockets on the server only.
    const r = await remoteForward(`127.0.0.1:${port}:${join(client.host.dir, 'agent-state', 'sftp', 'sftp.sock')}`, () =>
      ctl.server.isListening(port),
    );
    expect(r.refused, `${r.stderr}\n${ctl.server.logs()}`).toBe(false);
  });

  it('cannot -R a Unix socket listener onto the server', async () => {
    const sock = join(ctl.server.dir, 'tunnel-writable', 'evil.sock');
    const r = await remoteForward(`${sock}:127.0.0.1:22`, () => existsSync(sock));
    expect(r.refused, `a socket listener was created on the server:\n${r.stderr}`).toBe(true);
    expect(existsSync(sock)).toBe(false);
  });

  /**
   * `ssh -N -L 127.0.0.1:LPORT:TARGET` in the client, then one connection to
   * LPORT from inside the client: returns what came back through it.
   */
  async function localForward(target: string): Promise<{ got: string; stderr: string }> {
    const lport = 17001;
    const p = client.host.spawn(sshArgs('-N', '-v', '-L', `127.0.0.1:${lport}:${target}`), { stdin: 'ignore' });
    let out = '';
    p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(`ssh -L ${target} listening in the client`, () => client.host.isListening(lport), {
        timeoutMs: 20_000,
        abortIf: () => (p.exitCode === null ? undefined : `ssh exited:\n${out}`),
      });
      // The server opens the target only now, when a connection comes in: a refusal closes it at once.
      const r = await client.host.exec(['bash', '-c', 'exec 3<>"/dev/tcp/127.0.0.1/$1" && cat <&3', 'bash', String(lport)], {
        reject: false,
        timeout: 20_000,
      });
      return { got: r.stdout, stderr: out };
    } finally {
      p.kill('SIGTERM');
      await p;
    }
  }

  it('cannot reach a Unix socket on the server through -L', async () => {
    const before = probeConnections;
    const r = await localForward(probeSocket());
    expect(probeConnections - before, `the server's socket was reached:\n${r.stderr}`).toBe(0);
    expect(r.got).not.toContain('probe says hello');
    expect(r.stderr).toMatch(/open failed|administratively prohibited/);
    // Refused by sshd's own rule, not only by the key's permitopen (which alone refused it on 9.2 before).
    await waitFor(
      'sshd to log the refusal',
      () => ctl.server.logs().includes(`refused streamlocal port forward: originator 127.0.0.1 port`),
      {
        timeoutMs: 5_000,
        abortIf: () =>
          ctl.server.logs().includes(`connect to path ${probeSocket()}, but the request was denied`)
            ? "refused by the key's permitopen only"
            : undefined,
      },
    );
  });

  it('cannot forward a TCP port that is not its own, either way', async () => {
    const other = port + 1;
    const r1 = await remoteForward(`127.0.0.1:${other}:127.0.0.1:22`, () => ctl.server.isListening(other));
    expect(r1.refused, r1.stderr).toBe(true);
    const r2 = await remoteForward(`0.0.0.0:${port}:127.0.0.1:22`, () => ctl.server.isListening(port));
    expect(r2.refused, r2.stderr).toBe(true);
    // -L to a TCP port on the server: the controller's own (it would answer an HTTP request).
    const r3 = await localForward(`127.0.0.1:${WS_PORT}`);
    expect(r3.stderr).toMatch(/open failed|administratively prohibited/);
  });

  it('cannot run a command, get a TTY or start sftp', async () => {
    const cmd = await client.host.exec(sshArgs('echo', 'PWNED'), { reject: false, timeout: 20_000, input: '' });
    expect(cmd.stdout).not.toContain('PWNED');
    expect(cmd.exitCode).not.toBe(0);
    const sftp = await client.host.exec(sshArgs('-s', 'sftp'), { reject: false, timeout: 20_000, input: '' });
    expect(sftp.exitCode).not.toBe(0);
  });
});
