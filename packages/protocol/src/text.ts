/**
 * Text that came from a peer (file names, error messages, tar and borg
 * stderr, software strings) is printed to an admin's terminal and stored in
 * job records. A client file named `\x1b]0;x\x07` must reach the terminal as
 * those characters, never as an escape sequence: both sides escape peer text
 * with this one function before they print or store it.
 */

/**
 * Code units that are escaped: the backslash (so that the output is
 * unambiguous: `\x1b` in the output always means ESC was in the input), C0,
 * DEL, C1 (U+0080-U+009F: xterm and others read U+009B as CSI), the Unicode
 * line/paragraph separators and bidi controls (they reorder or break what an
 * admin reads), and lone surrogates (not text; JSON and UTF-8 encoders replace
 * or choke on them). Without the `u` flag the regexp sees UTF-16 code units,
 * which is what makes the lone-surrogate alternatives work.
 */
const ESCAPED =
  /[\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const NEEDS_ESCAPE = new RegExp(ESCAPED.source);
/** Like ESCAPED without the backslash: what a terminal could act on. */
const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function escapeOne(c: string): string {
  if (c === '\\') return '\\\\';
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/**
 * Escapes `s` for a terminal or a record: `\` -> `\\`, control characters
 * (C0, DEL, C1) -> `\xNN`, bidi controls, line separators and lone surrogates
 * -> `\uNNNN`. Everything else (printable ASCII, any other Unicode) is kept.
 */
export function escapeControl(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(ESCAPED, escapeOne) : s;
}

/**
 * For printing text that should already have been escaped where it entered
 * (defence in depth at a CLI): unchanged when it holds nothing a terminal
 * could act on, so clean or already-escaped text is not escaped twice;
 * otherwise escapeControl(s).
 */
export function terminalSafe(s: string): string {
  return UNSAFE.test(s) ? escapeControl(s) : s;
}
