/**
 * Sizes and durations as a person writes them in config.json or on the command
 * line ("500G", "24h"), parsed strictly: whole grammar or nothing, bounded,
 * never through Number() (which takes "1e999", " 12 ", "0x10" and "Infinity").
 */

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  B: 1,
  K: 2 ** 10,
  KiB: 2 ** 10,
  M: 2 ** 20,
  MiB: 2 ** 20,
  G: 2 ** 30,
  GiB: 2 ** 30,
  T: 2 ** 40,
  TiB: 2 ** 40,
  P: 2 ** 50,
  PiB: 2 ** 50,
};

/** 4 PiB: beyond any disk here, and inside a safe integer (8 PiB is 2^53). */
export const MAX_SIZE = 4 * 2 ** 50;

const SIZE_RE = /^(\d{1,16})(?:\.(\d{1,6}))?(B|K|KiB|M|MiB|G|GiB|T|TiB|P|PiB)?$/;

/**
 * Bytes from `500G`, `1.5T`, `10MiB` (binary units, like `df -h`) or a whole
 * number of bytes. Returns an error text instead of throwing, so callers name
 * their own field.
 */
export function parseSize(v: unknown): number | string {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_SIZE) return `must be a whole number of bytes in 0..${MAX_SIZE}`;
    return v;
  }
  if (typeof v !== 'string') return 'must be a size such as "500G", "2T" or a number of bytes';
  const m = SIZE_RE.exec(v);
  if (!m) return `'${v.slice(0, 40)}' is not a size (use e.g. 500G, 1.5T, 10M: binary units B K M G T P)`;
  const unit = SIZE_UNITS[m[3] ?? ''] ?? 1;
  const whole = Number(m[1]);
  const frac = m[2] === undefined ? 0 : Number(`0.${m[2]}`);
  const bytes = Math.round((whole + frac) * unit);
  if (!Number.isSafeInteger(bytes) || bytes > MAX_SIZE) return `'${v.slice(0, 40)}' is larger than ${formatSize(MAX_SIZE)}`;
  return bytes;
}

/** The shortest exact form parseSize reads back: 2147483648 -> "2G", 1000 -> "1000". */
export function formatSizeExact(bytes: number): string {
  for (const u of ['P', 'T', 'G', 'M', 'K'] as const) {
    const f = SIZE_UNITS[u]!;
    if (bytes >= f && bytes % f === 0) return `${bytes / f}${u}`;
  }
  return String(bytes);
}

/** For people: "1.5 GiB", "512 B". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

const DURATION_UNITS = { d: 86_400, h: 3_600, m: 60, s: 1 } as const;
const DURATION_RE = /^(?:(\d{1,5})d)?(?:(\d{1,6})h)?(?:(\d{1,7})m)?(?:(\d{1,9})s)?$/;

/**
 * Seconds from `24h`, `90m`, `1h30m`, `2d` or a whole number of seconds, in
 * min..max. Returns an error text instead of throwing.
 */
export function parseDuration(v: unknown, min: number, max: number): number | string {
  const range = `in ${formatDuration(min)}..${formatDuration(max)}`;
  let s: number;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) return `must be a whole number of seconds ${range}`;
    s = v;
  } else if (typeof v === 'string') {
    const m = DURATION_RE.exec(v);
    if (!m || v === '') return `'${v.slice(0, 40)}' is not a duration (use e.g. 24h, 90m, 1h30m, 2d, 45s)`;
    s =
      Number(m[1] ?? 0) * DURATION_UNITS.d +
      Number(m[2] ?? 0) * DURATION_UNITS.h +
      Number(m[3] ?? 0) * DURATION_UNITS.m +
      Number(m[4] ?? 0);
  } else {
    return 'must be a duration such as "24h" or a number of seconds';
  }
  if (s < min || s > max) return `must be ${range}`;
  return s;
}

/** The shortest exact form parseDuration reads back: 86400 -> "24h", 5400 -> "1h30m". */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  let rest = seconds;
  let out = '';
  // Whole days read worse than hours up to two days ("36h", not "1d12h").
  const units: Array<[string, number]> =
    seconds >= 2 * 86_400
      ? [
          ['d', 86_400],
          ['h', 3_600],
          ['m', 60],
          ['s', 1],
        ]
      : [
          ['h', 3_600],
          ['m', 60],
          ['s', 1],
        ];
  for (const [u, f] of units) {
    const n = Math.floor(rest / f);
    if (n > 0) out += `${n}${u}`;
    rest -= n * f;
  }
  return out;
}
