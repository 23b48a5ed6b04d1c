/**
 * Issue 11: SFTP straight through the tunnel. The client runs no sshd and has
 * no authorized_keys line; its agent's tunnel ends at a root-only Unix socket
 * that serves `sftp-server -R` only to a connection that first sends the job's
 * secret. While a backup runs, anyone on the backup server can connect to the
 * tunnel's port: a local user (uid 1000) who does, with no secret, a wrong
 * one, too many bytes or none at all, gets not one byte and is logged by the
 * agent. The secret appears in no process's argv or environment, and the
 * socket is gone when the job is over.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor } from '../harness/index.js';
import {
  agentsJson,
  backup,
  jobLeftovers,
  manyFiles,
  pidsMatching,
  sftpSessions,
  sftpSocket,
  signalAll,
  startClient,
  startController,
  waitForAgent,
  type Client,
  type Controller,
  logLines,
} from './fixture.js';

/**
 * A local user's probe of the tunnel port: connects, sends `send` (hex), then
 * reads until the peer closes or 15 s pass; prints JSON {got, closed}.
 */
const PROBE = String.raw`import json, socket, sys, time
port, payload = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=15)
if payload:
    try:
        s.sendall(payload)
    except OSError:
        pass
got, closed, t0 = b"", False, time.time()
while time.time() - t0 < 15:
    try:
        b = s.recv(65536)
    except socket.timeout:
        break
    except OSError:
        closed = True
        break
    if not b:
        closed = True
        break
    got += b
print(json.dumps({"got": got.hex(), "closed": closed, "secs": round(time.time() - t0, 2)}))
`;

describe('SFTP through the tunnel, behind the job secret', () => {
  let ctl: Controller;
  let c1: Client;
  let agentLog: Array<Record<string, unknown>>;
  let port: number;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    agentLog = logLines(c1.agent!);
    c1.host.writeFiles({ ...manyFiles(2000), 'data/hello.txt': 'hello\n' });
    port = ((await agentsJson(ctl)).find((a) => a.name === 'pc1') as unknown as { port: number }).port;
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  /** Runs the probe as uid/gid 1000 (no groups) in the server's network namespace. */
  async function probeAsUser(payload: Buffer): Promise<{ got: string; closed: boolean; secs: number }> {
    const r = await ctl.server.exec(
      [
        'setpriv',
        '--reuid',
        '1000',
        '--regid',
        '1000',
        '--clear-groups',
        '/usr/bin/python3',
        '-I',
        '-S',
        '-c',
        PROBE,
        String(port),
        payload.toString('hex'),
      ],
      { reject: false, cwd: '/' },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { got: string; closed: boolean; secs: number };
  }

  const refusals = (): unknown[] => agentLog.filter((l) => l['msg'] === 'refused an SFTP connection').map((l) => l['reason']);

  it('backs up a client that runs no sshd and has no authorized_keys line', async () => {
    expect(c1.host.isListening(22)).toBe(false);
    expect(existsSync(c1.host.authorizedKeysFile) ? readFileSync(c1.host.authorizedKeysFile, 'utf8') : '').toBe('');
    const r = await backup(ctl, ['pc1']);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ status: 'succeeded' });
    // The socket exists only while a job runs.
    expect(existsSync(sftpSocket(c1))).toBe(false);
    expect(ctl.server.isListening(port)).toBe(false);
  }, 180_000);

  it('gives a local user on the server nothing without the secret, and hides the secret from every process', async () => {
    const run = backup(ctl, ['pc1']);
    await waitFor('borg create for pc1', () => pidsMatching('borg', 'create', `${ctl.state}/repos/pc1::`).length > 0, {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    // Hold the backup mid-way, its tunnel open.
    const stalled = sftpSessions(c1);
    expect(stalled.length).toBe(1);
    signalAll(stalled, 'SIGSTOP');
    try {
      expect(ctl.server.isListening(port)).toBe(true);
      const jobs = readdirSync(join(ctl.state, 'jobs'));
      expect(jobs.length).toBe(1);
      const secretFile = join(ctl.state, 'jobs', jobs[0]!, 'sftp.secret');
      const secret = readFileSync(secretFile);
      expect(secret.length).toBe(32);
      const before = refusals().length;

      // An SFTP client's first packet (SSH_FXP_INIT, version 3), with no secret: not one byte back
      // (shorter than a secret, so the agent waits for the rest and gives up at its timeout).
      const init = Buffer.from('000000050100000003', 'hex');
      expect(await probeAsUser(init)).toMatchObject({ got: '', closed: true });
      // A wrong secret of the right length.
      expect(await probeAsUser(Buffer.from(secret.map((b) => b ^ 0x5a)))).toMatchObject({ got: '', closed: true });
      // More bytes than a secret (what a guesser streaming candidates would send).
      expect(await probeAsUser(Buffer.alloc(4096, 0x41))).toMatchObject({ got: '', closed: true });
      // Nothing at all (slow loris): closed after the agent's timeout, still not one byte.
      const loris = await probeAsUser(Buffer.alloc(0));
      expect(loris).toMatchObject({ got: '', closed: true });
      expect(loris.secs).toBeLessThan(12);
      await waitFor('the agent to log four refusals', () => refusals().length >= before + 4, { timeoutMs: 10_000 });
      expect(refusals().slice(before)).toEqual(['no secret in time', 'wrong secret', 'more bytes than a secret', 'no secret in time']);

      // The user cannot read the secret file (job dir 0700 root, file 0600).
      const read = await ctl.server.exec(['setpriv', '--reuid', '1000', '--regid', '1000', '--clear-groups', 'cat', secretFile], {
        reject: false,
        cwd: '/',
      });
      expect(read.exitCode).not.toBe(0);

      // No process shows the secret in its argv or environment, raw, hex or base64.
      const forms = [secret, Buffer.from(secret.toString('hex')), Buffer.from(secret.toString('base64'))];
      const seen: string[] = [];
      for (const d of readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        for (const f of ['cmdline', 'environ']) {
          let text: Buffer;
          try {
            text = readFileSync(`/proc/${d}/${f}`);
          } catch {
            continue;
          }
          if (forms.some((x) => text.includes(x))) seen.push(`${d}/${f}`);
        }
      }
      expect(seen).toEqual([]);
    } finally {
      signalAll(stalled, 'SIGCONT');
    }
    const r = await run;
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ status: 'succeeded' });
    // The job is over: no socket, no port, no sftp-server, nothing left on the server.
    expect(existsSync(sftpSocket(c1))).toBe(false);
    expect(ctl.server.isListening(port)).toBe(false);
    expect(sftpSessions(c1)).toEqual([]);
    await waitFor('job processes and mounts gone', () => jobLeftovers(ctl).length === 0, { timeoutMs: 10_000 }).catch(() => undefined);
    expect(jobLeftovers(ctl)).toEqual([]);
  }, 240_000);

  it('removes, when upgraded, the authorized_keys line an older enrollment wrote, and nothing else', async () => {
    const admin = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM5gcHeKB6mZKcmqB7I1TqwnmRrCTm+wH3jxYXLtHkPt admin@laptop';
    const old =
      'restrict,from="127.0.0.1,::1",command="internal-sftp -R" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILTCW7GSfTmBunDXLmjYqUYxpN5DkrLNij5dew0sNAso borgpull-controller-backup';
    const file = c1.host.authorizedKeysFile;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${admin}\n${old}\n`, { mode: 0o600 });
    c1.agent!.kill('SIGTERM');
    await waitForAgent(ctl, 'pc1', false);
    await c1.startAgent();
    await waitFor('the old line removed', () => readFileSync(file, 'utf8') === `${admin}\n`, { timeoutMs: 10_000 });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  }, 120_000);
});
