/**
 * A received WebSocket message as one Buffer. ws hands a message over as a
 * Buffer, an ArrayBuffer or a list of Buffer fragments (its RawData; typed
 * here without importing ws, which this package does not depend on).
 */
export function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
