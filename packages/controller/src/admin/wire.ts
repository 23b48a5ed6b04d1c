/**
 * The admin socket's framing, shared by server.ts and client.ts: one JSON
 * value per line. A request is `{cmd, args}`; replies are any number of
 * `{event}` lines, then one `{ok:true, result}` or `{ok:false, code, message}`.
 */
import { join } from 'node:path';

/** A request line longer than this is refused (in UTF-16 units, as read). */
export const MAX_REQUEST_BYTES = 64 * 1024;

export type Reply =
  | { readonly event: unknown }
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly code: string; readonly message: string };

/**
 * STATE/admin/admin.sock. The socket lives in a root-only (0700) directory of
 * its own: listen() creates it with the process's umask and only a chmod
 * after makes it 0600, a window in which another local user could connect
 * (the state dir itself is 0711 for sshd). Inside a 0700 directory there is
 * no such window, whatever the umask, and no process-wide umask to juggle.
 */
export function adminSocketPath(stateDir: string): string {
  return join(stateDir, 'admin', 'admin.sock');
}

export function encodeLine(value: unknown): string {
  return JSON.stringify(value) + '\n';
}
