import { describe, expect, it } from 'vitest';
import { addressKey } from './agent-server.js';

describe('addressKey: the unit pending handshakes are counted by', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['::FFFF:192.0.2.7', '192.0.2.7'],
    // One host usually holds a whole /64: every address in it counts as one.
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1', 'fe80:0:0:0::/64'],
    [undefined, '?'],
  ])('%s -> %s', (input, key) => {
    expect(addressKey(input)).toBe(key);
  });
});
