/**
 * Numeric address text, read one way everywhere: which texts are addresses (proto/README.md
 * section 7), and one spelling for each, so that "::1" and "0:0:0:0:0:0:0:1" name the same
 * address in a fault filter, in the daemon's own checks and in what node reports.
 */

/** A numeric address, split from its scope suffix. */
export interface AddressText {
  readonly version: 4 | 6;
  /** One spelling per address: dotted IPv4, or IPv6 compressed in lower case ("::ffff:102:304"). */
  readonly canonical: string;
  /** The text after '%' (an interface name or a numeric scope id), undefined when there is none. */
  readonly scope: string | undefined;
}

/** Dotted IPv4 as node's isIP reads it: four decimal octets up to 255, no leading zeros. */
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$/;
/** What a scope suffix may be: an interface name or a number (at most IFNAMSIZ - 1 characters). */
const SCOPE = /^[0-9A-Za-z_.-]{1,15}$/;

/**
 * Reads numeric address text, or returns null for anything else: host names, malformed groups, and
 * a scope suffix anywhere but on an IPv6 link-local address (fe80::/10), where no sockaddr has one.
 */
export function parseAddressText(text: string): AddressText | null {
  if (IPV4.test(text)) return { version: 4, canonical: text, scope: undefined };
  const pct = text.indexOf('%');
  const plain = pct < 0 ? text : text.slice(0, pct);
  const scope = pct < 0 ? undefined : text.slice(pct + 1);
  if (!plain.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(plain)) return null;
  let canonical: string;
  try {
    // The WHATWG URL parser reads IPv6 text strictly (group count, one '::', a dotted IPv4 tail)
    // and writes it back in one canonical form.
    canonical = new URL(`http://[${plain}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  if (scope !== undefined && (!SCOPE.test(scope) || !isLinkLocalV6(canonical))) return null;
  // A numeric scope is a scope id, a u32.
  if (scope !== undefined && /^\d+$/.test(scope) && Number(scope) > 0xffffffff) return null;
  return { version: 6, canonical, scope };
}

/** fe80::/10, the IPv6 link-local range: the only addresses whose scope means something. */
export function isLinkLocalV6(text: string): boolean {
  const first = text.split(':')[0] ?? '';
  return first.length > 0 && (parseInt(first, 16) & 0xffc0) === 0xfe80;
}
