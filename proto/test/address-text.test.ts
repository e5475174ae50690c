/** Numeric address text (proto/src/address-text.ts): what is an address, and its one spelling. */
import t from 'tap';
import { isLinkLocalV6, parseAddressText } from '../src/address-text.js';

t.test('each address has one spelling, whatever text named it', async (t) => {
  const same: Array<[string, string]> = [
    ['127.0.0.1', '127.0.0.1'],
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0000:0000::0001', '::1'],
    ['::', '::'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::ffff:1.2.3.4', '::ffff:102:304'],
    ['::FFFF:0102:0304', '::ffff:102:304'],
    ['FE80::A', 'fe80::a'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
  ];
  for (const [text, canonical] of same) t.equal(parseAddressText(text)?.canonical, canonical, text);
  t.same(parseAddressText('10.0.0.1'), { version: 4, canonical: '10.0.0.1', scope: undefined }, 'IPv4 is version 4');
  t.same(parseAddressText('fe80::1%eth0'), { version: 6, canonical: 'fe80::1', scope: 'eth0' }, 'the scope is split off, as written');
  t.same(parseAddressText('FEBF::1%4'), { version: 6, canonical: 'febf::1', scope: '4' }, 'febf:: is still link-local');
});

t.test('text no sockaddr could hold is not an address', async (t) => {
  const refused = [
    '', 'localhost', '127.1', '010.0.0.1', '1.2.3.04', '256.0.0.1', '1.2.3.4.5', '1.2.3.4:80', '1.2.3.4%1',
    ':', ':::', '1:2:3:4:5:6:7:8:9', '1::2::3', '::256.1.1.1', '::1.2.3.4.5', 'g::1', '[::1]',
    '::1%1', '::1%lo', 'fec0::1%1', 'fe80::1%', 'fe80::1%-/', 'fe80::1%4%4', 'fe80::1%abcdefghijklmnop', 'fe80::1%4294967296',
  ];
  for (const text of refused) t.equal(parseAddressText(text), null, JSON.stringify(text));
});

t.test('link-local is fe80::/10', async (t) => {
  for (const a of ['fe80::1', 'fe80::', 'febf:ffff::1', 'FE90::2']) t.equal(isLinkLocalV6(a), true, a);
  for (const a of ['fec0::1', 'fe7f::1', '::1', 'ff02::1', '']) t.equal(isLinkLocalV6(a), false, a);
});
