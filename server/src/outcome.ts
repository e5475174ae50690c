/** What an SPI call returns on the wire: the C return value, the WSA code and the out values. */
import { SOCKET_ERROR, type SpiResult } from '@spiwire/proto';

export type Outcome = SpiResult;

export function ok(out: Record<string, unknown> = {}, ret = 0): Outcome {
  return { ret, errno: 0, ...out };
}

export function fail(errno: number, ret = SOCKET_ERROR): Outcome {
  return { ret, errno };
}
