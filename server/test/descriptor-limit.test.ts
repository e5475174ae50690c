/**
 * The defaults derived from the open-file limit add up to no more than the limit: every session
 * (its connection and trace file), every socket, the HTTP headroom and the daemon's own
 * descriptors, all at once. resource-bounds.test.ts takes them all for real at 256.
 */
import t from 'tap';
import { descriptorBudget, MIN_DESCRIPTOR_LIMIT, OWN_DESCRIPTORS } from '../src/descriptor-limit.js';
import { startCli } from './helpers/raw-client.js';
import { HTTP_HEADROOM } from '../src/connection-slots.js';

t.test('every allowance at once fits the limit, from 256 descriptors up', async (t) => {
  const over: string[] = [];
  for (const limit of [256, 300, 400, 512, 1024, 1700, 1900, 4096, 20_000, 65_536, 1 << 20]) {
    const b = descriptorBudget(limit);
    const all = OWN_DESCRIPTORS + HTTP_HEADROOM + 2 * b.maxSessions + b.maxSocketsTotal;
    if (all > limit) over.push(`${limit}: ${all}`);
  }
  t.same(over, [], 'no limit is exceeded');
});

t.test('the defaults at the usual soft limit', async (t) => {
  const b = descriptorBudget(1024);
  t.same([b.maxSessions, b.maxSocketsTotal, b.maxSocketsPerSession], [84, 676, 338], 'as proto/README.md gives them');
});

t.test('the defaults fit from MIN_DESCRIPTOR_LIMIT up, and the daemon warns below it', async (t) => {
  const b = descriptorBudget(MIN_DESCRIPTOR_LIMIT);
  t.ok(OWN_DESCRIPTORS + HTTP_HEADROOM + 2 * b.maxSessions + b.maxSocketsTotal <= MIN_DESCRIPTOR_LIMIT, 'at the minimum everything fits');
  const small = descriptorBudget(MIN_DESCRIPTOR_LIMIT - 100);
  t.ok(OWN_DESCRIPTORS + HTTP_HEADROOM + 2 * small.maxSessions + small.maxSocketsTotal > MIN_DESCRIPTOR_LIMIT - 100, 'below it, not (so the warning is needed)');
  const d = await startCli(t, [], 150);
  const warning = d.lines().find((l) => l['level'] === 40 && String(l['msg']).includes('open-file limit'));
  t.ok(warning, 'under ulimit -n 150 the daemon warns at start');
  t.equal(warning?.['limit'], 150, 'naming the limit');
  const healthy = await startCli(t, [], MIN_DESCRIPTOR_LIMIT);
  t.notOk(healthy.lines().some((l) => String(l['msg']).includes('open-file limit')), `at ${MIN_DESCRIPTOR_LIMIT}, no warning`);
});
