/**
 * Which destinations the daemon may reach: an allow-list of address ranges and ports, checked on
 * WSPConnect, WSPSendTo and WSPBind (WSAEACCES when refused). Rules look like
 *   127.0.0.0/8          every port of a range
 *   10.1.2.3:7           one port of one address
 *   [::1]:1000-2000      IPv6 in brackets, a port range
 *   *                    everything (the default)
 */
import { BlockList, isIP } from 'node:net';

interface Rule {
  list: BlockList | null; // null: any address
  lowPort: number;
  highPort: number;
  text: string;
}

export class AllowList {
  private constructor(
    private readonly rules: readonly Rule[],
    readonly allowsAll: boolean,
  ) {}

  static readonly ANY = new AllowList([], true);

  /** Parses a comma-separated list of rules; throws Error naming the bad rule. */
  static parse(spec: string): AllowList {
    const parts = spec.split(',').map((x) => x.trim()).filter(Boolean);
    if (parts.length === 0 || parts.includes('*')) return AllowList.ANY;
    return new AllowList(parts.map(parseRule), false);
  }

  /** True when address:port may be used. For a bind to the unspecified address only the port counts. */
  allows(address: string, port: number, unspecified = false): boolean {
    if (this.allowsAll) return true;
    const plain = address.split('%')[0]!;
    const family = isIP(plain) === 6 ? 'ipv6' : 'ipv4';
    return this.rules.some((r) => port >= r.lowPort && port <= r.highPort && (unspecified || r.list === null || r.list.check(plain, family)));
  }

  toString(): string {
    return this.allowsAll ? '*' : this.rules.map((r) => r.text).join(',');
  }
}

function parseRule(text: string): Rule {
  let host = text;
  let ports = '';
  const bracket = /^\[([^\]]+)\](?::(.+))?$/.exec(text);
  if (bracket) {
    host = bracket[1]!;
    ports = bracket[2] ?? '';
  } else if ((text.match(/:/g) ?? []).length === 1) {
    [host, ports] = text.split(':') as [string, string];
  }
  const [lowPort, highPort] = parsePorts(ports, text);
  if (host === '*') return { list: null, lowPort, highPort, text };
  const [addr, prefixText] = host.split('/') as [string, string | undefined];
  const kind = isIP(addr);
  if (kind === 0) throw new Error(`allow-list rule ${JSON.stringify(text)}: ${JSON.stringify(addr)} is not a numeric IP address`);
  const max = kind === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`allow-list rule ${JSON.stringify(text)}: bad prefix length`);
  const list = new BlockList();
  list.addSubnet(addr, prefix, kind === 4 ? 'ipv4' : 'ipv6');
  return { list, lowPort, highPort, text };
}

function parsePorts(ports: string, rule: string): [number, number] {
  if (ports === '' || ports === '*') return [0, 65535];
  const m = /^(\d+)(?:-(\d+))?$/.exec(ports);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo > hi || hi > 65535) throw new Error(`allow-list rule ${JSON.stringify(rule)}: bad port or port range`);
  return [lo, hi];
}
