/**
 * wss://: the controller serves TLS when given a certificate, and an agent that
 * trusts it (NODE_EXTRA_CA_CERTS) enrolls and connects through it. The session
 * inside is sealed either way; TLS only wraps it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { AGENT_BIN, CONTROLLER_BIN, Procs, cli, freePort, safeSshdConfig } from './procs.js';
import { waitFor } from '../harness/wait.js';

const procs = new Procs();
let tmp = '';

afterAll(async () => {
  await procs.killAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('wss://', () => {
  it('enrolls and connects an agent over TLS with a certificate the agent trusts', async () => {
    tmp = await mkdtemp(join(tmpdir(), 'bp-tls-'));
    const cert = join(tmp, 'cert.pem');
    const key = join(tmp, 'key.pem');
    await execa('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(tmp, 'hostkey')]);
    const port = await freePort();
    const c = join(tmp, 'controller');
    const init = await cli(CONTROLLER_BIN, [
      'init',
      '--url',
      `wss://localhost:${port}`,
      '--listen',
      `127.0.0.1:${port}`,
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--ssh-host-key',
      join(tmp, 'hostkey.pub'),
      '--sshd-config',
      safeSshdConfig(tmp, join(tmp, 'hostkey')),
      // No job starts by itself in a test that did not ask for one.
      '--schedule',
      'off',
      '--state-dir',
      c,
    ]);
    expect(init.exitCode, init.stderr).toBe(0);
    const serve = procs.spawn('controller', CONTROLLER_BIN, ['serve', '--state-dir', c]);
    await serve.waitForLog({ msg: 'listening for agents' });
    const tok = await cli(CONTROLLER_BIN, ['token', 'tls1', '--state-dir', c]);
    expect(tok.exitCode, tok.stderr).toBe(0);
    const a = join(tmp, 'agent');
    const agentArgs = ['--state-dir', a];
    const common = ['--authorized-keys', join(tmp, 'ak'), '--sshd-host-key', join(tmp, 'hostkey.pub')];
    // Without trusting the certificate, the agent refuses the server.
    const untrusted = await cli(AGENT_BIN, ['enroll', tok.stdout, ...common, ...agentArgs]);
    expect(untrusted.exitCode).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate/i);
    const trusted = await cli(AGENT_BIN, ['enroll', tok.stdout, ...common, ...agentArgs], 20_000, { NODE_EXTRA_CA_CERTS: cert });
    expect(trusted.exitCode, trusted.stderr).toBe(0);
    procs.spawn('agent', AGENT_BIN, ['run', ...agentArgs], { NODE_EXTRA_CA_CERTS: cert });
    await waitFor('agent connected over wss', async () => {
      const r = await cli(CONTROLLER_BIN, ['agents', '--json', '--state-dir', c]);
      return (JSON.parse(r.stdout || '[]') as Array<{ name: string; connected: boolean }>).some((x) => x.name === 'tls1' && x.connected);
    });
  });
});
