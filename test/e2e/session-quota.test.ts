/** WSAENOBUFS: a session that exceeds its memory quota for pending sends, while others carry on. */
import t from 'tap';
import * as S from '@spiwire/client';
import { FAMILIES, connectedTcp, daemon, pattern, send, session, tcpPeer } from '../helpers/harness.js';

for (const f of FAMILIES) {
  t.test(`${f}: overlapped sends beyond the session quota fail with WSAENOBUFS; other sessions are untouched`, async (t) => {
    const quota = 1024 * 1024;
    const d = await daemon(t, { limits: { sessionQuotaBytes: quota, defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const other = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const e = S.out(0);
    const { s, conn } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    const chunk = pattern(256 * 1024, 3);
    let started = 0;
    let noBufs = false;
    // The kernel buffers take a few MiB first; the quota counts only what the daemon holds.
    for (let i = 0; i < 200 && !noBufs; i++) {
      const r = await spi.WSPSend(s, [S.wsabuf(chunk)], 1, null, 0, new S.WSAOVERLAPPED(), null, null, e);
      if (r === 0 || e.value === S.WSA_IO_PENDING) started++;
      else {
        t.equal(e.value, S.WSAENOBUFS, 'the send beyond the quota fails with WSAENOBUFS');
        noBufs = true;
      }
    }
    t.ok(noBufs, `WSAENOBUFS after ${started} sends of 256 KiB`);
    // Another session is not limited by this one's quota.
    const peer2 = await tcpPeer(t, f);
    const { s: s2, conn: conn2 } = await connectedTcp(other, f, peer2);
    t.same((await send(other, s2, [Buffer.from('still fine')])).slice(0, 2), [0, 0]);
    t.equal((await conn2.waitFor(10)).toString(), 'still fine');
    // Once the peer reads, the held bytes drain and sends are accepted again.
    conn.socket.resume();
    const want = started * chunk.length;
    await conn.waitFor(want, 30000);
    const again = await spi.WSPSend(s, [S.wsabuf('more')], 1, null, 0, new S.WSAOVERLAPPED(), null, null, e);
    t.ok(again === 0 || e.value === S.WSA_IO_PENDING, 'sends are accepted again after the drain');
    t.equal((await conn.waitFor(want + 4, 10000)).length, want + 4, 'every accepted byte reached the peer');
  });
}
