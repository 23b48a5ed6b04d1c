import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ControllerMessage } from '@borgpull/protocol';
import type { AgentLink } from '../agent-link.js';
import type { ControllerConfig } from '../config.js';
import type { AgentRecord } from '../registry.js';
import { statePaths, type StatePaths } from '../state.js';
import type { Cleanup } from './cleanup.js';
import { openClientAccess } from './client-access.js';

/** An agent link that records the controller's requests and answers them as an agent of the given kind would. */
function fakeLink(sent: ControllerMessage[], opts: { sftp: boolean }): AgentLink {
  let id = 0;
  const channel = {
    request: (m: ControllerMessage): Promise<unknown> => {
      sent.push(m);
      id++;
      switch (m.type) {
        case 'tunnel.open':
          return Promise.resolve(opts.sftp ? { type: 'tunnel.opened', id, sftp: true } : { type: 'tunnel.opened', id });
        case 'host.report.get':
          return Promise.resolve({
            type: 'host.report',
            id,
            hostname: 'pc1',
            passwd: 'root:x:0:0::/root:/bin/sh\n',
            group: 'root:x:0:\n',
            mounts: '',
          });
        default:
          return Promise.resolve({ type: 'ok', id });
      }
    },
  };
  return { channel } as unknown as AgentLink;
}

describe("a job's client access", () => {
  let dir: string;
  let p: StatePaths;
  let config: ControllerConfig;
  const agent = { name: 'pc1', port: 40001 } as AgentRecord;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bp-access-'));
    p = statePaths(join(dir, 'state'));
    mkdirSync(p.jobsDir, { recursive: true });
    mkdirSync(p.mountsDir, { recursive: true });
    const key = join(dir, 'host_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    config = { sshHostKeyFile: `${key}.pub`, sshHost: '192.0.2.1', sshPort: 2222, tunnelUser: 'borgpull' } as ControllerConfig;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("sends a fresh 32-byte secret with the tunnel order and keeps it in a 0600 file of the job's 0700 dir, named (never held) in the environment", async () => {
    const sent: ControllerMessage[] = [];
    const cleanup: Cleanup = [];
    const access = await openClientAccess({
      p,
      config,
      link: fakeLink(sent, { sftp: true }),
      agent,
      jobId: 'j1',
      cleanup,
      mountOpts: 'ro',
    });
    const open = sent.find((m) => m.type === 'tunnel.open');
    expect(open?.type === 'tunnel.open' && open.sftpSecret?.length).toBe(32);
    const file = access.env['SFTP_SECRET']!;
    expect(file).toBe(join(p.jobsDir, 'j1', 'sftp.secret'));
    expect(readFileSync(file)).toEqual(Buffer.from(open?.type === 'tunnel.open' ? open.sftpSecret! : []));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(p.jobsDir, 'j1')).mode & 0o777).toBe(0o700);
    const secretText = [readFileSync(file).toString('hex'), readFileSync(file).toString('base64'), readFileSync(file).toString('latin1')];
    for (const v of Object.values(access.env)) for (const t of secretText) expect(v.includes(t)).toBe(false);

    // A second job gets another secret.
    const again: ControllerMessage[] = [];
    await openClientAccess({ p, config, link: fakeLink(again, { sftp: true }), agent, jobId: 'j2', cleanup: [], mountOpts: 'ro' });
    const open2 = again.find((m) => m.type === 'tunnel.open');
    expect(open2?.type === 'tunnel.open' && Buffer.from(open2.sftpSecret!).equals(readFileSync(file))).toBe(false);
  });

  it('fails an agent whose tunnel ends at its sshd (older than the controller) with E_JOB_AGENT_SFTP, and closes that tunnel', async () => {
    const sent: ControllerMessage[] = [];
    const cleanup: Cleanup = [];
    await expect(
      openClientAccess({ p, config, link: fakeLink(sent, { sftp: false }), agent, jobId: 'j1', cleanup, mountOpts: 'ro' }),
    ).rejects.toMatchObject({ code: 'E_JOB_AGENT_SFTP' });
    expect(cleanup.map(([step]) => step)).toContain('close the tunnel');
    expect(sent.some((m) => m.type === 'host.report.get')).toBe(false);
  });
});
