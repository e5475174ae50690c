/**
 * Run by e2e/address-order.test.ts inside a mount namespace whose /etc/hosts gives one name
 * several addresses: prints the name's addresses in the resolver's order, then, for each order
 * given, opens a session through the name and prints which daemon welcomed it (its resume URL).
 *
 * argv: url, name, JSON array of address orders.
 */
import { lookup } from 'node:dns/promises';
import { connect, type AddressOrder } from '@spiwire/client';

const [url, name, orders] = process.argv.slice(2) as [string, string, string];
const resolved = await lookup(name, { all: true });
console.log(JSON.stringify({ resolved: resolved.map((a) => a.address) }));
for (const addressOrder of JSON.parse(orders) as AddressOrder[]) {
  const spi = await connect(url, { addressOrder });
  console.log(JSON.stringify({ addressOrder, reached: spi.welcome.resume?.url ?? null }));
  await spi.close();
}
