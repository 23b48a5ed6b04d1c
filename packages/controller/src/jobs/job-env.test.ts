import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statePaths } from '../state.js';
import { borgEnv, JOB_PATH } from './borg.js';
import { jobEnv } from './job-env.js';

const p = statePaths('/var/lib/borgpull');
const opts = {
  agent: { name: 'web1', port: 41001 },
  jobId: 'j1',
  jobDir: '/var/lib/borgpull/jobs/j1',
  mountOpts: 'ro,no_contain_symlinks',
  files: {
    sftpSecret: '/var/lib/borgpull/jobs/j1/sftp.secret',
    passwd: '/var/lib/borgpull/jobs/j1/passwd',
    group: '/var/lib/borgpull/jobs/j1/group',
    nsswitch: '/var/lib/borgpull/jobs/j1/nsswitch.conf',
  },
};

/** What a daemon's own environment may hold; none of it may reach a job. */
const POLLUTION: Record<string, string> = {
  PATH: '/root/.pyenv/shims:/usr/local/bin:/usr/bin',
  HOME: '/root',
  LOGNAME: 'alice',
  PYTHONPATH: '/tmp/evil',
  PYTHONSTARTUP: '/tmp/evil.py',
  PYTHONHOME: '/tmp/evil',
  PYTHONUSERBASE: '/tmp/evil',
  PYTHONINSPECT: '1',
  BORG_LOGGING_CONF: '/tmp/evil.conf',
  BORG_PASSCOMMAND: 'sh -c evil',
  BORG_RSH: 'evil',
  BORG_REPO: '/tmp/evil',
  BORG_CACHE_DIR: '/tmp/evil',
  BORG_SECURITY_DIR: '/tmp/evil',
  XDG_CACHE_HOME: '/tmp/evil',
  XDG_CONFIG_HOME: '/tmp/evil',
  LD_PRELOAD: '/tmp/evil.so',
  LD_LIBRARY_PATH: '/tmp/evil',
  SSH_AUTH_SOCK: '/tmp/evil.sock',
  SSH_ASKPASS: '/tmp/evil',
  LIBMOUNT_FSTAB: '/tmp/evil',
  TMPDIR: '/tmp/evil',
  ENV: '/tmp/evil.sh',
};

describe("a job's environment", () => {
  const saved: Record<string, string | undefined> = {};
  beforeEach(() => {
    for (const [k, v] of Object.entries(POLLUTION)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  });
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('has exactly these variables, whatever the daemon inherited', () => {
    const env = jobEnv(p, opts);
    expect(Object.keys(env).sort()).toEqual(
      [
        'PATH',
        'HOME',
        'TMPDIR',
        'LANG',
        'LC_ALL',
        'LOGNAME',
        'PYTHONNOUSERSITE',
        'PYTHONDONTWRITEBYTECODE',
        'PYTHONSAFEPATH',
        'BORG_BASE_DIR',
        'BORG_PASSPHRASE_FD',
        'BORG_RELOCATED_REPO_ACCESS_IS_OK',
        'BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK',
        'BORG_DISPLAY_PASSPHRASE',
        'BORG_HOST_ID',
        'MNT',
        'MOUNT_OPTS',
        'PORT',
        'SFTP_SECRET',
        'PASSPHRASE_FILE',
        'REPO',
        'JOB_DIR',
        'CLIENT_PASSWD',
        'CLIENT_GROUP',
        'NSSWITCH',
      ].sort(),
    );
    expect(env).toMatchObject({
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/var/lib/borgpull/borg/web1',
      TMPDIR: '/var/lib/borgpull/borg/web1/tmp',
      BORG_BASE_DIR: '/var/lib/borgpull/borg/web1',
      PYTHONNOUSERSITE: '1',
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONSAFEPATH: '1',
      BORG_HOST_ID: 'borgpull-job-j1',
      MNT: '/var/lib/borgpull/mnt/web1',
      // A file name: the secret itself is never in an environment another local user could read.
      SFTP_SECRET: '/var/lib/borgpull/jobs/j1/sftp.secret',
      REPO: '/var/lib/borgpull/repos/web1',
    });
    for (const [k, v] of Object.entries(POLLUTION)) expect(env[k], k).not.toBe(v);
  });

  it("gives each agent its own borg base dir, HOME and TMPDIR on the server, never in the client's mount", () => {
    const a = jobEnv(p, opts);
    const b = jobEnv(p, { ...opts, agent: { name: 'web2', port: 41002 } });
    expect(a['BORG_BASE_DIR']).not.toBe(b['BORG_BASE_DIR']);
    for (const env of [a, b]) {
      for (const k of ['HOME', 'TMPDIR', 'BORG_BASE_DIR']) {
        expect(env[k]!.startsWith('/var/lib/borgpull/borg/')).toBe(true);
        expect(env[k]!.startsWith(env['MNT']!)).toBe(false);
      }
    }
  });

  it('is the same for borg runs outside a job (list, delete, export-tar), minus the job variables', () => {
    const env = borgEnv(p, 'web1', { PASSPHRASE_FILE: '/x' });
    expect(Object.keys(env).sort()).toEqual(
      [
        'PATH',
        'HOME',
        'TMPDIR',
        'LANG',
        'LC_ALL',
        'LOGNAME',
        'PYTHONNOUSERSITE',
        'PYTHONDONTWRITEBYTECODE',
        'PYTHONSAFEPATH',
        'BORG_BASE_DIR',
        'BORG_PASSPHRASE_FD',
        'BORG_RELOCATED_REPO_ACCESS_IS_OK',
        'BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK',
        'BORG_DISPLAY_PASSPHRASE',
        'PASSPHRASE_FILE',
      ].sort(),
    );
    expect(env['PATH']).toBe(JOB_PATH);
  });
});
