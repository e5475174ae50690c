/**
 * Scenario 3, allow-list bypass: the daemon runs with --allow 127.0.0.1:<allowedPort>, so its
 * sockets may reach that one address and port and nothing else. Decoy TCP listeners and UDP
 * sockets wait on another port of 127.0.0.1, and on the allowed port and another port of 127.0.0.2
 * and ::1. The attacker then tries every spelling of an address that might slip past the check
 * while still reaching a decoy: numeric variants (127.1, 0x7f.0.0.1, 2130706433, 0177.0.0.1,
 * spaces), v4-mapped IPv6, scope suffixes (%x, %lo, %1), scopeId fields, and the any-address forms,
 * with WSPConnect (TCP and UDP), WSPSendTo and WSPBind, on AF_INET and AF_INET6 sockets.
 *
 * A bypass is a decoy that received a connection or a datagram; the target is 0. A bind the
 * allow-list should have refused (a port other than the allowed one) is reported too. Control
 * calls to the allowed destination must work, or the scenario proves nothing.
 *
 * v4-compatible IPv6 (::127.0.0.1 = ::7f00:1) is not a loopback address: a daemon fooled by it
 * would send packets off this machine. Those forms are therefore only tried with calls that send
 * nothing (WSPBind, and WSPConnect on a UDP socket, which only records a default peer); a daemon
 * that accepts them is reported without anything being sent.
 */
import * as P from '@spiwire/proto';
import { Arena, type Options, type Row } from '../lib/arena.js';
import { canListen, freePort, TcpPeer, UdpPeer } from '../lib/peers.js';
import * as S from '../lib/spi.js';
import { sleep, waitUntil } from '../lib/util.js';

interface Decoy {
  where: string;
  tcp: TcpPeer;
  udp: UdpPeer;
}

/** A TCP listener and a UDP socket on host:port (both), or null when either cannot be had. */
async function pair(host: string, port: number): Promise<{ tcp: TcpPeer; udp: UdpPeer } | null> {
  try {
    const tcp = await TcpPeer.start({ host, port });
    try {
      return { tcp, udp: await UdpPeer.start(host, port) };
    } catch {
      await tcp.close();
      return null;
    }
  } catch {
    return null;
  }
}

/** Two ports free for TCP and UDP on every host given. */
async function ports(hosts: readonly string[]): Promise<{ allowed: number; decoy: number; bind: number }> {
  const pick = async (): Promise<number> => {
    for (let i = 0; i < 20; i++) {
      const p = await freePort();
      const ok = await Promise.all(hosts.map(async (h) => {
        const x = await pair(h, p);
        await x?.tcp.close();
        await x?.udp.close();
        return x !== null;
      }));
      if (ok.every(Boolean)) return p;
    }
    throw new Error('no port free on every loopback address');
  };
  return { allowed: await pick(), decoy: await pick(), bind: await pick() };
}

const V4_FORMS = ['127.0.0.1', '127.1', '0x7f.0.0.1', '0x7f000001', '2130706433', '0177.0.0.1', '017700000001', '127.000.000.001', ' 127.0.0.1', '127.0.0.1 ', '\t127.0.0.1', '127.0.0.1%x', '127.0.0.1%lo', '127.0.0.1%1', '127.0.0.1%', '127.0.0.2', '127.0.0.2%x', '127.2', '0.0.0.0', '0', '0.0.0.0%x', '0x0', '127.0.0.1/32', '127.0.0.1:1'];
const V6_FORMS = ['::1', '::1%1', '::1%lo', '::1%x', '0:0:0:0:0:0:0:1', '0000::1', '::0:1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:127.0.0.1', '0:0:0:0:0:ffff:7f00:1', '::ffff:127.0.0.2', '::ffff:7f00:2', '::ffff:127.0.0.1%0', '::ffff:127.0.0.1%lo', '::ffff:127.0.0.1%x', '::', '0::', '::0:0', '0:0::0', '0:0:0:0:0:0:0:0', '::%1', '::ffff:0.0.0.0', '::ffff:0:0', '[::1]', '::1 '];
/** Not loopback: tried only with calls that send nothing. */
const V4_COMPATIBLE = ['::127.0.0.1', '::7f00:1', '::127.0.0.2'];

export async function allowList(opts: Options): Promise<Row> {
  const has6 = await canListen('::1');
  const hosts = ['127.0.0.1', '127.0.0.2', ...(has6 ? ['::1'] : [])];
  const port = await ports(hosts);
  const legit = await pair('127.0.0.1', port.allowed);
  const decoys: Decoy[] = [];
  const addDecoy = async (host: string, p: number): Promise<void> => {
    const x = await pair(host, p);
    if (x) decoys.push({ where: `${host.includes(':') ? `[${host}]` : host}:${p}`, ...x });
  };
  await addDecoy('127.0.0.1', port.decoy);
  for (const h of hosts.slice(1)) {
    await addDecoy(h, port.allowed);
    await addDecoy(h, port.decoy);
  }
  const hits = (): number => decoys.reduce((n, d) => n + d.tcp.conns.length + d.udp.datagrams, 0);

  // The bystander's own peer is allowed too, on a port of its own where no decoy waits.
  const bystanderPort = await freePort();
  const flags = ['--allow', `127.0.0.1:${port.allowed},127.0.0.1:${bystanderPort}`];
  return Arena.run('allow-list', 'Allow-list bypass', opts, flags, async (a) => {
    if (!legit) throw new Error(`could not listen on 127.0.0.1:${port.allowed}`);
    a.extra['decoys'] = decoys.map((d) => d.where).join(' ');
    a.extra['allowed'] = `127.0.0.1:${port.allowed}`;
    const w = await a.wire();
    let attempts = 0;
    let refused = 0;
    let resolved = 0;
    let seen = hits();

    /** After a call that may have reached somewhere: a decoy hit is a bypass. */
    const judge = async (what: string, maybeSent: boolean): Promise<void> => {
      attempts++;
      if (maybeSent) await waitUntil(() => hits() > seen, 150);
      const now = hits();
      if (now > seen) {
        a.bypasses += now - seen;
        const where = decoys.filter((d) => d.tcp.conns.length + d.udp.datagrams > 0).map((d) => d.where);
        a.find('bypass', `${what} reached a decoy (${where.join(', ')}) past --allow 127.0.0.1:${port.allowed}`);
        seen = now;
      }
    };
    /** The SPI result of a bypass attempt; a protocol error (INVALID_PARAMS for a malformed address) counts as refused. */
    const tryCall = async (what: string, method: string, params: Record<string, unknown>): Promise<{ ret: number; errno: number }> => {
      const m = await w.request(method, params, { timeoutMs: 5000, label: what });
      if (!m) {
        if (!(await a.confirmAlive(what))) throw new Error('the daemon died');
        throw new Error(`no answer to ${what}`);
      }
      if (!m.result) {
        refused++;
        return { ret: -1, errno: -1 };
      }
      const r = m.result as { ret: number; errno: number };
      if (r.errno === P.WSAEACCES) refused++;
      // An IPv4 address has no scope: "127.0.0.1%x" is not a numeric address and should be refused
      // (INVALID_PARAMS or WSAEINVAL). Taking it (ret 0), or WSAENETDOWN, which is what a failed
      // name look-up becomes, means the text went on to the resolver: the allow-list judged
      // "127.0.0.1" while the socket was handed a host name, and a resolver that answers it
      // decides where the socket goes.
      const to = (params['name'] ?? params['to']) as { family?: number; address?: string } | undefined;
      if (to?.family === P.AF_INET && to.address?.includes('%') && (r.ret === 0 || r.errno === P.WSAENETDOWN)) {
        resolved++;
        a.find('allow-list', `${what} was not refused: an IPv4 address with a scope suffix is not numeric, yet it passed the checks and went to name resolution (${r.ret === 0 ? 'ret 0' : 'WSAENETDOWN'}); the allow-list judged the address without its suffix while the socket was handed the whole text`, `resolver ${method}`);
      }
      return r;
    };

    // Controls: the allowed destination works over TCP and UDP.
    const c = await S.socket(w, P.SOCK_STREAM);
    const u = await S.socket(w, P.SOCK_DGRAM);
    const okTcp = c !== null && (await S.connect(w, c, S.v4(port.allowed)));
    const okUdp = u !== null && (await S.spi(w, 'WSPSendTo', { s: u, buffers: [Buffer.from('control')], flags: 0, to: S.v4(port.allowed), tolen: 16 })).ret === 0;
    await waitUntil(() => legit.tcp.conns.length > 0 && legit.udp.datagrams > 0, 2000);
    if (!okTcp || !okUdp || legit.tcp.conns.length === 0 || legit.udp.datagrams === 0) a.find('other', `the allowed destination 127.0.0.1:${port.allowed} is not reachable (TCP ${okTcp}, UDP ${okUdp}): the bypass attempts prove nothing`);
    for (const h of [c, u]) if (h !== null) await S.spi(w, 'WSPCloseSocket', { s: h });

    const forms: Array<{ af: number; address: string; scopeId?: number }> = [];
    for (const address of V4_FORMS) forms.push({ af: P.AF_INET, address });
    for (const address of V6_FORMS) {
      forms.push({ af: P.AF_INET6, address });
      forms.push({ af: P.AF_INET6, address, scopeId: 1 });
      forms.push({ af: P.AF_INET6, address, scopeId: 0xffffffff });
    }
    // Addresses of the other family on each socket, too (a mapped address on an AF_INET socket, ...).
    for (const address of ['::ffff:127.0.0.1', '::1']) forms.push({ af: P.AF_INET, address });
    for (const address of ['127.0.0.1', '127.0.0.2']) forms.push({ af: P.AF_INET6, address });

    const rounds = opts.quick ? 1 : 3;
    for (let round = 0; round < rounds; round++) {
      for (const f of forms) {
        for (const p of [port.allowed, port.decoy]) {
          for (const family of [f.af, f.af === P.AF_INET ? P.AF_INET6 : P.AF_INET]) {
            // The sockaddr's family as given, and the other one (the socket's family stays f.af).
            if (round === 0 && family !== f.af) continue;
            const name: Record<string, unknown> = { family, address: f.address, port: p };
            if (f.scopeId !== undefined) name['scopeId'] = f.scopeId;
            const label = `${JSON.stringify(name)} on an ${f.af === P.AF_INET6 ? 'AF_INET6' : 'AF_INET'} socket`;
            const namelen = 28;
            // TCP connect.
            const t = await S.socket(w, P.SOCK_STREAM, { af: f.af });
            if (t !== null) {
              const r = await tryCall(`WSPConnect ${label}`, 'WSPConnect', { s: t, name, namelen });
              await judge(`WSPConnect(TCP) to ${label}`, r.ret === 0);
              await S.spi(w, 'WSPCloseSocket', { s: t });
            }
            // UDP: WSPSendTo from an unconnected socket, then WSPConnect and WSPSend.
            const d = await S.socket(w, P.SOCK_DGRAM, { af: f.af });
            if (d !== null) {
              const r1 = await tryCall(`WSPSendTo ${label}`, 'WSPSendTo', { s: d, buffers: [Buffer.from('bypass?')], flags: 0, to: name, tolen: namelen });
              await judge(`WSPSendTo(UDP) to ${label}`, r1.ret === 0);
              const r2 = await tryCall(`WSPConnect(UDP) ${label}`, 'WSPConnect', { s: d, name, namelen });
              if (r2.ret === 0) {
                const r3 = await tryCall(`WSPSend after WSPConnect(UDP) ${label}`, 'WSPSend', { s: d, buffers: [Buffer.from('bypass?')], flags: 0 });
                await judge(`WSPConnect(UDP) then WSPSend to ${label}`, r3.ret === 0);
              } else await judge(`WSPConnect(UDP) to ${label}`, false);
              await S.spi(w, 'WSPCloseSocket', { s: d });
            }
            // Bind to the address on a port the allow-list does not allow: must be refused.
            const b = await S.socket(w, round % 2 ? P.SOCK_STREAM : P.SOCK_DGRAM, { af: f.af });
            if (b !== null) {
              const bn = { ...name, port: port.bind };
              const r = await tryCall(`WSPBind ${label}`, 'WSPBind', { s: b, name: bn, namelen });
              if (r.ret === 0) a.find('allow-list', `WSPBind to ${JSON.stringify(bn)} on an ${f.af === P.AF_INET6 ? 'AF_INET6' : 'AF_INET'} socket was accepted although --allow only allows port ${port.allowed}`);
              await judge(`WSPBind ${label}`, false);
              await S.spi(w, 'WSPCloseSocket', { s: b });
            }
          }
        }
      }
      // v4-compatible IPv6: not loopback, so only calls that send nothing.
      for (const address of V4_COMPATIBLE) {
        for (const p of [port.allowed, port.decoy]) {
          const name = { family: P.AF_INET6, address, port: p };
          const d = await S.socket(w, P.SOCK_DGRAM, { af: P.AF_INET6 });
          if (d === null) continue;
          const r = await tryCall(`WSPConnect(UDP) ${address}`, 'WSPConnect', { s: d, name, namelen: 28 });
          if (r.ret === 0) a.find('allow-list', `WSPConnect(UDP) to ${JSON.stringify(name)} (v4-compatible, not loopback) was accepted past --allow 127.0.0.1:${port.allowed}; nothing was sent`);
          await judge(`WSPConnect(UDP) to ${address}`, false);
          await S.spi(w, 'WSPCloseSocket', { s: d });
        }
      }
    }
    // A connected UDP socket sends to its default peer only, whatever WSPSendTo names.
    const cu = await S.socket(w, P.SOCK_DGRAM);
    if (cu !== null && (await S.connect(w, cu, S.v4(port.allowed)))) {
      for (const d of decoys) {
        const [host, p] = splitWhere(d.where);
        const r = await tryCall('WSPSendTo on a connected UDP socket', 'WSPSendTo', { s: cu, buffers: [Buffer.from('peer only')], flags: 0, to: host.includes(':') ? S.v6(p, host) : S.v4(p, host), tolen: 28 });
        await judge(`WSPSendTo to ${d.where} on a UDP socket connected to the allowed address`, r.ret === 0);
      }
    }
    await sleep(300);
    await judge('the last attempts (late arrivals)', false);
    a.extra['attempts'] = attempts;
    a.extra['refused'] = refused;
    a.extra['sentToTheResolver'] = resolved;
    a.note(`${attempts} bypass attempts against ${decoys.length} decoys, ${refused} refused (WSAEACCES or INVALID_PARAMS)`);
    await w.close();
  }, bystanderPort);
}

function splitWhere(where: string): [string, number] {
  const i = where.lastIndexOf(':');
  return [where.slice(0, i).replace(/^\[|\]$/g, ''), Number(where.slice(i + 1))];
}
