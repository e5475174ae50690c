/** The README's runnable examples stay runnable: each one runs against a real daemon and prints what it should. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { daemon } from '../helpers/harness.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function run(script: string, url: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [`examples/${script}`, url], { cwd: root, timeout: 30000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

t.test('examples/send-hello.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('send-hello.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /WSPSend returned 0, lpNumberOfBytesSent = 14/);
  t.match(r.out, /the peer received: "hello, winsock"/);
});

t.test('examples/overlapped.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('overlapped.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.equal((r.out.match(/routine: dwError=0 cbTransferred=100000 dwFlags=0/g) ?? []).length, 4);
  t.match(r.out, /SleepEx -> 0xc0/);
  t.match(r.out, /WSPGetOverlappedResult -> 1, 4 bytes/);
  t.match(r.out, /the peer received 400004 bytes/);
});

t.test('examples/select.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('select.mjs', d.url);
  t.equal(r.code, 0, r.out);
  const m = /sent 1048576 bytes; (\d+) sends found no room and WSPSelect waited for it (\d+) times/.exec(r.out);
  t.ok(m && Number(m[1]) > 0, `the sender found no room at times, and waited in WSPSelect: ${m?.[0] ?? r.out}`);
  t.match(r.out, /the peer received 1048576 bytes, in order/);
});

t.test('examples/promise-api.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('promise-api.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /bytes sent: \[ 4, 9 \]/);
  t.match(r.out, /echoed: one two three/);
});

t.test('examples/fault-wouldblock.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('fault-wouldblock.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /rule f1 added/);
  t.match(r.out, /WSPSend returned -1, error WSAEWOULDBLOCK \(10035\)/);
  t.match(r.out, /FD_WRITE after the hold/);
  t.match(r.out, /WSPSend returned 0, lpNumberOfBytesSent = 20/);
  t.match(r.out, /rule f1 fired 1 time\(s\)/);
  t.match(r.out, /the peer received: "hello after the hold"/);
});

t.test('examples/fault-short.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('fault-short.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.equal((r.out.match(/WSPSend took 4 of/g) ?? []).length, 5, 'five partial counts of 4');
  t.match(r.out, /WSPSend took 1 of 1 bytes/);
  t.match(r.out, /the peer received: "hello, partial counts"/);
});

t.test('examples/fault-pend.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('fault-pend.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /first WSPSend returned -1, error WSA_IO_PENDING \(997\)/);
  t.match(r.out, /second WSPSend returned -1, error WSA_IO_PENDING \(997\)/);
  t.match(r.out, /first: dwError=0 cbTransferred=5\nsecond: dwError=0 cbTransferred=4/);
  t.match(r.out, /the peer received: "held late"/);
});

t.test('examples/fault-error.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('fault-error.mjs', d.url);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /WSPSend\("one "\) returned 0, 4 bytes/);
  t.match(r.out, /WSPSend\("two "\) returned -1, error WSAECONNRESET \(10054\)/);
  t.match(r.out, /WSPSend\("three"\) returned -1, error WSAECONNRESET \(10054\)/);
  t.match(r.out, /the peer saw (ECONNRESET|the end of the stream) after "one "/);
});

t.test('examples/fault-reorder.mjs', async (t) => {
  const d = await daemon(t);
  const r = await run('fault-reorder.mjs', d.url);
  t.equal(r.code, 0, r.out);
  // Seed 7 and five completions in one batch: always this order.
  t.match(r.out, /completions in the order: e d a c b/);
  t.match(r.out, /the peer received: "abcde"/);
});
