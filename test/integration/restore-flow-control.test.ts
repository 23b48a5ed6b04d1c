/**
 * A hostile agent against a real `controller serve` streaming a real borg
 * archive (issue 7, item 6): the agent's credit is checked, not trusted, and
 * the controller never buffers more than its window and its socket bound,
 * however the agent lies or stalls. The agent is fake (the protocol package's
 * handshake and Channel over a plain ws client); the controller, borg and its
 * repository are real. Needs a build.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentHandshake,
  Channel,
  MAX_SEALED_FRAME_BYTES,
  decodeControllerMessage,
  type AgentMessage,
  type ControllerMessage,
  type IdentityKeys,
  toBuffer,
} from '@borgpull/protocol';
import { MIB, childCommands, type Controller, Fixture } from './controller-fixture.js';
import { waitFor } from '../harness/wait.js';
import { CONTROLLER_BIN, cleanEnv } from './procs.js';

const NAME = 'victim';
const ARCHIVE = 'big';
/** Incompressible: what a controller that trusted the credit would end up holding. */
const ARCHIVE_MIB = 96;
/** The controller's window (8 MiB) and socket bound (4 MiB), and some room for the run itself. */
const RSS_BOUND_MIB = 64;

let fx: Fixture;
let c: Controller;
let identity: IdentityKeys;
const cleanups: Array<() => void> = [];

/** Env for the test's own borg runs on the controller's repository (same base dir, so borg knows it after). */
function borgEnv(passphrase: string): Record<string, string> {
  return cleanEnv({ BORG_BASE_DIR: join(c.dir, 'borg'), BORG_PASSPHRASE: passphrase, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' });
}

beforeAll(async () => {
  fx = await Fixture.create();
  c = await fx.controller();
  ({ identity } = await c.enroll(NAME));
  // The agent's repository as the controller keeps it, with one archive of random data.
  const passphrase = randomBytes(32).toString('base64url');
  await mkdir(join(c.dir, 'secrets'), { recursive: true, mode: 0o700 });
  await writeFile(join(c.dir, 'secrets', `${NAME}.passphrase`), passphrase, { mode: 0o600 });
  const repo = join(c.dir, 'repos', NAME);
  await execa('borg', ['init', '--encryption', 'repokey', repo], { env: borgEnv(passphrase), extendEnv: false });
  const data = fx.dir('data');
  await mkdir(data);
  for (let i = 0; i < ARCHIVE_MIB / 16; i++) await writeFile(join(data, `blob-${i}`), randomBytes(16 * MIB));
  await execa('borg', ['create', '--compression', 'none', `${repo}::${ARCHIVE}`, '.'], {
    cwd: data,
    env: borgEnv(passphrase),
    extendEnv: false,
  });
}, 180_000);

afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) f();
  // A restore left running by a failed test is cancelled with its CLI: wait for its borg.
  await borgGone();
});

afterAll(async () => {
  await fx?.dispose();
});

/** A hostile agent: genuine keys and handshake, then whatever the test makes it do. */
class FakeAgent {
  readonly channel: Channel<AgentMessage, ControllerMessage>;
  stream = 0;
  received = 0;
  onData: (chunk: Buffer) => void = () => undefined;

  private constructor(
    readonly ws: WebSocket,
    channel: Channel<AgentMessage, ControllerMessage>,
  ) {
    this.channel = channel;
    channel.onMessage = (m) => {
      if (m.type === 'restore.begin') {
        this.stream = m.stream;
        channel.reply({ type: 'ok', id: m.id });
      } else if ('id' in m && typeof m.id === 'number') {
        channel.reply({ type: 'error', id: m.id, code: 'E_TEST', message: 'the fake agent does only restores' });
      }
    };
    channel.onData = (stream, chunk) => {
      if (stream !== this.stream) return;
      this.received += chunk.length;
      this.onData(chunk);
    };
  }

  static connect(): Promise<FakeAgent> {
    const ws = new WebSocket(c.url, { perMessageDeflate: false, maxPayload: MAX_SEALED_FRAME_BYTES + 1024 });
    ws.on('error', () => undefined);
    cleanups.push(() => ws.terminate());
    const hs = new AgentHandshake({ identity, controllerKey: c.key, software: 'fake-agent' });
    return new Promise((resolve, reject) => {
      let agent: FakeAgent | undefined;
      ws.once('open', () => ws.send(hs.hello()));
      ws.on('message', (data) => {
        if (agent) {
          agent.channel.receive(toBuffer(data));
          return;
        }
        try {
          ws.send(hs.onWelcome(toBuffer(data)));
          agent = new FakeAgent(ws, new Channel({ socket: ws, session: hs.session(), decode: decodeControllerMessage }));
          resolve(agent);
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      ws.once('close', () => reject(new Error('the controller closed the fake agent')));
    });
  }

  credit(bytes: number): void {
    this.channel.notify({ type: 'credit', stream: this.stream, bytes });
  }

  /** Stops reading at the TCP level: the controller's sends pile up in its buffers, not ours. */
  stopReading(): void {
    this.ws.pause();
  }
}

/** `controller restore`, as an admin would run it. */
function restore(): ResultPromise<{ reject: false; extendEnv: false }> {
  const p = execa(
    process.execPath,
    [CONTROLLER_BIN, 'restore', NAME, ARCHIVE, '--target', '/srv/restore', '--json', '--state-dir', c.dir],
    {
      reject: false,
      extendEnv: false,
      env: cleanEnv(),
    },
  );
  cleanups.push(() => p.kill('SIGKILL'));
  return p;
}

/** Samples the controller's RSS until stopped; `over` turns true past the bound (the test has failed then). */
function rssWatch(): { stop: () => Promise<number>; over: () => boolean } {
  let running = true;
  let peak = 0;
  let base = 0;
  const loop = (async () => {
    base = await c.rss();
    while (running) {
      peak = Math.max(peak, (await c.rss()) - base);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    over: () => peak > RSS_BOUND_MIB * MIB,
    stop: async () => {
      running = false;
      await loop;
      return peak / MIB;
    },
  };
}

async function borgGone(): Promise<void> {
  await waitFor('borg export-tar to be gone', async () => !(await childCommands(c.serve.pid)).some((cmd) => cmd.includes('export-tar')), {
    timeoutMs: 10_000,
  });
}

/** Waits for the restore CLI, or gives up as soon as the controller outgrows the bound. */
async function outcome(
  run: ReturnType<typeof restore>,
  rss: ReturnType<typeof rssWatch>,
): Promise<{ job?: { status: string; code?: string; reason?: string }; grownMiB: number }> {
  let ended = false;
  void run.finally(() => (ended = true));
  await waitFor('the restore to end (or the controller to outgrow its bound)', () => ended || rss.over(), { timeoutMs: 60_000 });
  const grownMiB = await rss.stop();
  if (!ended) return { grownMiB };
  const r = await run;
  return { job: JSON.parse(String(r.stdout)) as { status: string; code?: string; reason?: string }, grownMiB };
}

describe('restore flow control against a hostile agent (real controller and borg)', () => {
  it('an agent that grants 2^53-1 bytes of credit and stops reading: E_PROTO_CREDIT, RSS flat, borg gone', async () => {
    const agent = await FakeAgent.connect();
    let granted = false;
    agent.onData = () => {
      if (granted) return;
      granted = true;
      // 2^53 itself is refused by the decoder (it is not a safe integer): this is the most a frame can grant.
      agent.credit(Number.MAX_SAFE_INTEGER);
      agent.stopReading();
    };
    const rss = rssWatch();
    const { job, grownMiB } = await outcome(restore(), rss);
    console.log(
      `2^53 credit: controller RSS +${grownMiB.toFixed(1)} MiB at peak; job ${JSON.stringify(job && { code: job.code, reason: job.reason })}`,
    );
    expect(grownMiB).toBeLessThan(RSS_BOUND_MIB);
    expect(job).toMatchObject({ status: 'failed', code: 'E_PROTO_CREDIT' });
    await borgGone();
  });

  it('an agent that keeps granting credit but stops reading the socket: RSS flat, the restore fails, borg gone', async () => {
    const agent = await FakeAgent.connect();
    let pending = 0;
    let granting: NodeJS.Timeout | undefined;
    cleanups.push(() => clearInterval(granting));
    agent.onData = (chunk) => {
      // Credit as the real agent does (256 KiB batches), for what arrived...
      pending += chunk.length;
      if (pending >= 256 * 1024) {
        agent.credit(pending);
        pending = 0;
      }
      // ...until 4 MiB in: then it stops reading and goes on granting 512 KiB
      // every 10 ms as if tar still took them. Against a controller that keeps
      // sending, each grant is for bytes it did send.
      if (agent.received >= 4 * MIB && !granting) {
        agent.stopReading();
        granting = setInterval(() => agent.credit(512 * 1024), 10);
      }
    };
    const rss = rssWatch();
    const { job, grownMiB } = await outcome(restore(), rss);
    clearInterval(granting);
    console.log(
      `credit without reading: controller RSS +${grownMiB.toFixed(1)} MiB at peak; job ${JSON.stringify(job && { code: job.code, reason: job.reason })}`,
    );
    expect(grownMiB).toBeLessThan(RSS_BOUND_MIB);
    expect(job).toMatchObject({ status: 'failed', code: 'E_PROTO_CREDIT' });
    await borgGone();
  });

  it('an agent that stops reading and granting: the restore holds one window until the admin cancels it; borg gone', async () => {
    const agent = await FakeAgent.connect();
    agent.onData = () => agent.stopReading();
    const rss = rssWatch();
    const from = c.serve.mark();
    const run = restore();
    const { jobId } = await c.serve.waitForLog({ msg: 'restore started', agentId: NAME }, { from });
    await waitFor('borg export-tar to run', async () => (await childCommands(c.serve.pid)).some((cmd) => cmd.includes('export-tar')));
    // An observation window, not a wait for an event: 3 s is long enough for borg
    // to produce the whole archive several times over if nothing held it back.
    const t0 = Date.now();
    await waitFor('the stall to last 3 s', () => Date.now() > t0 + 3000 || rss.over());
    // Ctrl-C: the CLI's admin socket closes, which cancels the job.
    run.kill('SIGINT');
    await run;
    const done = await c.serve.waitForLog({ msg: 'restore finished', jobId }, { from });
    const grownMiB = await rss.stop();
    console.log(
      `stalled agent: controller RSS +${grownMiB.toFixed(1)} MiB at peak; ${JSON.stringify({ status: done['status'], code: done['code'] })}`,
    );
    expect(grownMiB).toBeLessThan(RSS_BOUND_MIB);
    expect(done).toMatchObject({ status: 'failed', code: 'E_JOB_CANCELLED' });
    await borgGone();
  });
});
