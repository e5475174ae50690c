#!/usr/bin/env node
/**
 * Prints this host's own address inside a network given as CIDR (argument, or SPIWIRE_ALLOW's
 * first entry), e.g. `node address-in.js 10.77.0.0/24` -> 10.77.0.5. A replica in an orchestrated
 * farm uses it to offer its own address as its resume URL (docker/stack.yml): a container has
 * other interfaces too (docker_gwbridge), so "the first address" is not enough.
 * Exits 1 with a message when no interface has an address in the network.
 */
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

const cidr = (process.argv[2] ?? process.env['SPIWIRE_ALLOW']?.split(',')[0] ?? '').trim();
const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(cidr);
const family = m ? isIP(m[1]!) : 0;
if (!m || family === 0) {
  process.stderr.write(`address-in: ${JSON.stringify(cidr)} is not a network in CIDR form (such as 10.77.0.0/24)\n`);
  process.exit(1);
}
const type = family === 6 ? 'ipv6' : 'ipv4';
const net = new BlockList();
net.addSubnet(m[1]!, Number(m[2]), type);
const found = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && a.family === (family === 6 ? 'IPv6' : 'IPv4') && net.check(a.address, type));
if (!found) {
  process.stderr.write(`address-in: no interface of this host has an address in ${cidr}\n`);
  process.exit(1);
}
process.stdout.write(`${found.address}\n`);
