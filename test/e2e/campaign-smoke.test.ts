/**
 * The short version of the attack and fault campaign (test/campaign, `npm run campaign -- --quick`),
 * so that CI runs it with every `npm test`: every scenario against its own daemon process, with a
 * bystander session beside it, and every target of the campaign must be met: no crash, no
 * disturbed session, no byte lost, no allow-list bypass, no internal error, the daemon's memory
 * bounded, and no other defect. The timed targets (the bystander's p99, how long one large frame
 * holds the bystander's calls up) are shown, not asserted: a time depends on what else the machine runs (the full
 * `npm run campaign` judges them). The campaign's own report
 * (the table and each defect found) is printed as comments.
 *
 * The file runs alone (package.json, tap "serial"): the bystander's latency is only meaningful
 * when no other test file shares the two cores.
 */
import t from 'tap';
import { runCampaign, SCENARIOS } from '../campaign/campaign.js';
import { table } from '../campaign/lib/report.js';

t.setTimeout(300_000);

t.test('npm run campaign -- --quick: every target met', async (t) => {
  const started = Date.now();
  const report = await runCampaign({ quick: true, log: (line) => t.comment(line) });
  for (const line of table(report).split('\n')) t.comment(line);
  t.same(
    report.rows.map((r) => r.scenario),
    SCENARIOS.map((s) => s.name),
    'every scenario ran',
  );
  for (const r of report.rows) t.ok(r.messages > 0, `${r.scenario}: sent ${r.messages} messages`);
  for (const target of report.targets) {
    // Times (the bystander's p99, how long one large frame holds its calls up) are judged by
    // `npm run campaign` on a quiet machine and shown here; a daemon that stops answering is
    // still a defect (a stall, in the last target).
    if (target.timed) t.comment(`${target.name}: ${target.ok ? 'met' : 'missed'} (${target.detail})`);
    else t.ok(target.ok, `${target.name}: ${target.detail}`);
  }
  t.equal(report.ok, report.targets.every((x) => x.ok), 'the verdict follows the targets');
  t.comment(`the quick campaign took ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
