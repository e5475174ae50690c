/**
 * The defaults derived from the open-file limit add up to no more than the limit: every session
 * (its connection and trace file), every socket, the HTTP headroom and the daemon's own
 * descriptors, all at once. resource-bounds.test.ts takes them all for real at 256.
 */
import t from 'tap';
import { descriptorBudget, descriptorsNeeded, OWN_DESCRIPTORS } from '../src/descriptor-limit.js';
import { startCli, type Cli } from './helpers/raw-client.js';
import { HTTP_HEADROOM } from '../src/connection-slots.js';

t.test('every allowance at once fits the limit, from 256 descriptors up', async (t) => {
  const over: string[] = [];
  for (const limit of [256, 300, 400, 512, 1024, 1700, 1900, 4096, 20_000, 65_536, 1 << 20]) {
    const b = descriptorBudget(limit);
    // Counted here by hand, not with descriptorsNeeded: an independent sum.
    const all = OWN_DESCRIPTORS + HTTP_HEADROOM + 2 * b.maxSessions + b.maxSocketsTotal;
    if (all > limit) over.push(`${limit}: ${all}`);
  }
  t.same(over, [], 'no limit is exceeded');
});

t.test('the defaults at the usual soft limit', async (t) => {
  const b = descriptorBudget(1024);
  t.same([b.maxSessions, b.maxSocketsTotal, b.maxSocketsPerSession], [84, 676, 338], 'as proto/README.md gives them');
});

t.test('the daemon warns at start when the limits in force need more descriptors than it may open', async (t) => {
  let firstFit = 0;
  for (let limit = 100; limit <= 1024 && firstFit === 0; limit++) if (descriptorsNeeded(descriptorBudget(limit), true) <= limit) firstFit = limit;
  t.ok(firstFit > 150 && firstFit <= 200, `with the defaults everything fits from ${firstFit} descriptors up (the docs say about 200)`);
  const warnings = (d: Cli): Array<Record<string, unknown>> => d.lines().filter((l) => l['level'] === 40 && String(l['msg']).includes('open-file limit'));
  const low = await startCli(t, [], 150);
  t.same(warnings(low).map((l) => l['limit']), [150], 'under ulimit -n 150 the defaults need more: a warning naming the limit');
  const lowered = await startCli(t, ['--max-sessions', '2', '--max-sockets-total', '8'], 150);
  t.same(warnings(lowered), [], 'with limits lowered to fit, none');
  const fits = await startCli(t, [], 256);
  t.same(warnings(fits), [], 'at 256 with the defaults, none');
  const raised = await startCli(t, ['--max-sockets-total', '400'], 256);
  t.equal(warnings(raised).length, 1, 'a --max-sockets-total beyond the limit: a warning');
});
