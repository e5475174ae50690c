/** Building the wire results of SPI calls: the C return value, the WSA code and the out values. */
import { SOCKET_ERROR } from '@spiwire/proto';

/** Success: ret (0 unless given), errno 0, and the out values. */
export function ok(): { ret: number; errno: number };
export function ok<T extends object>(out: T, ret?: number): { ret: number; errno: number } & T;
export function ok(out: object = {}, ret = 0): { ret: number; errno: number } {
  return { ret, errno: 0, ...out };
}

/** Failure: errno written to lpErrno, ret SOCKET_ERROR (or INVALID_SOCKET, FALSE, ...). */
export function fail(errno: number, ret = SOCKET_ERROR): { ret: number; errno: number } {
  return { ret, errno };
}
