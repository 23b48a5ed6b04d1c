/**
 * Issue 7 item 8: revoking an agent also ends its live tunnel session. A
 * compromised client holds a reverse tunnel open with its agent's key (its
 * own ssh, not the agent's, so nothing on the client will close it); after
 * `controller agents revoke`, nothing listens on its port on the server
 * within seconds, the tunnel sshd itself still runs, and neither the tunnel
 * nor the agent gets back in. A spare login it keeps with no forward (sshd
 * would let it ask for its port again later) is ended as well.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, SERVER_ADDRESS, waitFor } from '../harness/index.js';
import { agentsJson, startClient, startController, TUNNEL_SSHD_PORT, type Client, type Controller } from './fixture.js';

describe('revoking an agent whose tunnel is open', () => {
  let ctl: Controller;
  let client: Client;
  let knownHosts = '';

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    client = await startClient(ctl, 'gone');
    knownHosts = join(client.host.dir, 'gone_known_hosts');
    await client.host.exec([
      'sh',
      '-c',
      'printf "%s\\n" "$1" > "$2"',
      'sh',
      `[${SERVER_ADDRESS}]:${TUNNEL_SSHD_PORT} ${ctl.sshd.hostKeyPublic}`,
      knownHosts,
    ]);
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  /** ssh -N with the agent's key from inside the client: with `-R` of `port`, or (undefined) a login with no forward. */
  function tunnel(port: number | undefined): ReturnType<Client['host']['spawn']> {
    return client.host.spawn(
      [
        'ssh',
        '-F',
        '/dev/null',
        '-N',
        '-v',
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
        ...(port === undefined ? [] : ['-R', `127.0.0.1:${port}:127.0.0.1:22`]),
        `borgpull@${SERVER_ADDRESS}`,
      ],
      { stdin: 'ignore' },
    );
  }

  it('ends the sshd session holding its port and its spare login, and nothing else', async () => {
    const port = ((await agentsJson(ctl)).find((a) => a.name === 'gone') as unknown as { port: number }).port;
    const held = tunnel(port);
    let log = '';
    held.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    await waitFor(`the client's tunnel on port ${port}`, () => ctl.server.isListening(port), {
      timeoutMs: 20_000,
      abortIf: () => (held.exitCode === null ? undefined : `ssh exited: ${log}`),
    });

    // A spare login with no forward (it could ask for the port again later: sshd keeps the key's permitlisten).
    const spare = tunnel(undefined);
    let spareLog = '';
    spare.stderr?.on('data', (d: Buffer) => (spareLog += d.toString()));
    await waitFor('the spare login', () => /Entering interactive session/.test(spareLog), {
      timeoutMs: 20_000,
      abortIf: () => (spare.exitCode === null ? undefined : `ssh exited: ${spareLog}`),
    });
    // The controller leaves a session with no forward alone for its first IDLE_AFTER_MS (5 s): an agent's tunnel between login and forward.
    const loggedIn = Date.now();
    await waitFor('the spare login to be older than 5 s', () => Date.now() - loggedIn > 5_500, { timeoutMs: 10_000, intervalMs: 100 });

    const revoked = await ctl.cli(['agents', 'revoke', 'gone']);
    expect(revoked.exitCode, revoked.stderr).toBe(0);
    const t0 = Date.now();
    await waitFor(`nothing listening on ${port}`, () => !ctl.server.isListening(port), { timeoutMs: 5_000, intervalMs: 20 });
    const closedMs = Date.now() - t0;
    // The client's ssh saw its connection end.
    await held;
    expect(held.exitCode).not.toBe(0);
    await waitFor('the spare login to be ended too', () => spare.exitCode !== null, { timeoutMs: 5_000 });
    expect(spare.exitCode).not.toBe(0);
    console.log(`revoke -> port ${port} closed ${closedMs} ms after the CLI returned`);

    // Only the session died: the tunnel sshd and the controller still run.
    expect(() => process.kill(ctl.sshd.pid, 0)).not.toThrow();
    expect(ctl.proc.exitCode).toBeNull();

    // And it does not get back in: the tunnel key is gone, the agent is refused.
    const again = tunnel(port);
    let againLog = '';
    again.stderr?.on('data', (d: Buffer) => (againLog += d.toString()));
    await again;
    expect(again.exitCode).toBe(255);
    expect(againLog).toMatch(/Permission denied \(publickey\)/);
    expect(ctl.server.isListening(port)).toBe(false);
    const view = (await agentsJson(ctl)).find((a) => a.name === 'gone') as unknown as { connected: boolean; revoked: boolean };
    expect(view).toMatchObject({ connected: false, revoked: true });
  });
});
