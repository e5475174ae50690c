/**
 * The socket state machines (server/src/sockets/socket-state.ts), table-driven and without a
 * network: every move the tables allow happens and runs the entry action once; every other move
 * is refused, leaves the state alone and runs nothing.
 */
import t, { type Test } from 'tap';
import { SocketStateMachine, TCP_MOVES, UDP_MOVES, type MoveTable } from '../../src/sockets/socket-state.js';

const quiet = { debug: (): void => undefined };
/** A socket that does nothing on entering a state. */
const idle = { handle: 7, entered: (): void => undefined };

function checkTable<S extends string>(t: Test, name: string, table: MoveTable<S>): void {
  const states = Object.keys(table) as S[];
  for (const from of states) {
    for (const to of states) {
      // A machine put into `from` through the table itself (breadth-first from the first state).
      const path = pathTo(table, states[0]!, from);
      if (!path) {
        t.fail(`${name}: ${from} cannot be reached from ${states[0]}`);
        continue;
      }
      const entered: Array<[S, S]> = [];
      const m = new SocketStateMachine(table, states[0]!, quiet, { handle: 1, entered: (s: S, f: S) => entered.push([s, f]) });
      for (const step of path) if (!m.move(step)) t.fail(`${name}: the path to ${from} was refused at ${step}`);
      entered.length = 0;
      const legal = from === to || table[from].includes(to);
      const moved = m.move(to);
      t.equal(moved, legal, `${name}: ${from} -> ${to} is ${legal ? 'allowed' : 'refused'}`);
      t.equal(m.current, legal ? to : from, `${name}: ${from} -> ${to} leaves the machine in ${legal ? to : from}`);
      t.same(entered, legal && from !== to ? [[to, from]] : [], `${name}: ${from} -> ${to} runs the entry action ${legal && from !== to ? 'once' : 'never'}`);
    }
  }
}

function pathTo<S extends string>(table: MoveTable<S>, start: S, goal: S): S[] | null {
  const prev = new Map<S, S | null>([[start, null]]);
  const queue: S[] = [start];
  while (queue.length > 0) {
    const s = queue.shift()!;
    if (s === goal) {
      const path: S[] = [];
      for (let at: S | null = s; at !== null && at !== start; at = prev.get(at) ?? null) path.unshift(at);
      return path;
    }
    for (const n of table[s]) {
      if (!prev.has(n)) {
        prev.set(n, s);
        queue.push(n);
      }
    }
  }
  return null;
}

t.test('TCP: every pair of states, moved or refused as the table says', async (t) => {
  checkTable(t, 'tcp', TCP_MOVES);
});

t.test('UDP: every pair of states, moved or refused as the table says', async (t) => {
  checkTable(t, 'udp', UDP_MOVES);
});

t.test('the lives a socket can have, step by step', async (t) => {
  const lives: Array<[string, MoveTable<string>, string[]]> = [
    ['tcp client, graceful both ways', TCP_MOVES, ['connecting', 'connected', 'send-shut', 'finished', 'closed']],
    ['tcp client, the peer finishes first', TCP_MOVES, ['connecting', 'connected', 'peer-finished', 'finished', 'closed']],
    ['tcp client, reset by the peer', TCP_MOVES, ['connecting', 'connected', 'broken', 'closed']],
    ['tcp client, connect refused, then bound and connected', TCP_MOVES, ['connecting', 'created', 'bound', 'connecting', 'bound', 'connecting', 'connected']],
    ['tcp listener', TCP_MOVES, ['bound', 'listening', 'closed']],
    ['udp, association made, dissolved, made again', UDP_MOVES, ['bound', 'connected', 'bound', 'connected', 'closed']],
  ];
  for (const [name, table, steps] of lives) {
    const m = new SocketStateMachine(table, 'created', quiet, idle);
    t.ok(steps.every((s) => m.move(s)), `${name}: every step taken`);
  }
  const m = new SocketStateMachine(TCP_MOVES, 'created', quiet, idle);
  t.ok(m.move('closed'));
  t.notOk(m.move('connecting'), 'closed is for good');
  t.notOk(m.allows('bound'), 'allows() agrees');
  t.equal(m.current, 'closed');
});

t.test('a refused move is traced at debug level, never louder', async (t) => {
  const lines: Array<[object, string]> = [];
  const m = new SocketStateMachine(TCP_MOVES, 'created', { debug: (o, msg) => lines.push([o, msg]) }, idle);
  m.move('listening');
  t.same(lines, [[{ s: 7, from: 'created', to: 'listening' }, 'socket state move refused']], 'with the socket handle, on the session logger');
  m.move('bound');
  t.same(lines[1], [{ s: 7, from: 'created', to: 'bound' }, 'socket state'], 'and a move is traced too');
});
