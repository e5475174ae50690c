/**
 * The defaults derived from the open-file limit add up to no more than the limit: every session
 * (its connection and trace file), every socket, the HTTP headroom and the daemon's own
 * descriptors, all at once. resource-bounds.test.ts takes them all for real at 256.
 */
import t from 'tap';
import { descriptorBudget, OWN_DESCRIPTORS } from '../src/descriptor-limit.js';
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
