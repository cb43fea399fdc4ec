/**
 * `npm start` — the local stack as it stands: a 3-node Raft cluster in one process (in-memory transport, real
 * WAL and snapshots under .data/local/n<id>, 10 ms ticks with the seeds' 150–300 ms election timeout). It
 * writes a counter once a second through a rotating node, transfers leadership every 10 s, and prints each
 * node's status. Ctrl-C stops it cleanly; running it again recovers every node from its WAL. The consensus
 * cluster service (gRPC, one process per node) replaces this with issue 3.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Entry } from '@app/raft';
import { InMemoryHub, RaftNode, StateMachine } from '@app/raft-node';

const enc = new TextEncoder();
const dec = new TextDecoder();

class CounterMachine implements StateMachine {
  value = 0;
  apply(e: Entry): unknown {
    this.value += Number(dec.decode(e.data));
    return this.value;
  }
  snapshot(): Uint8Array {
    return enc.encode(String(this.value));
  }
  restore(data: Uint8Array): void {
    this.value = Number(dec.decode(data));
  }
}

const ids = [1, 2, 3];
const root = resolve(process.env.SYNOD_DATA_DIR ?? '.data/local');
const hub = new InMemoryHub();
const machines = new Map(ids.map((id) => [id, new CounterMachine()]));
const nodes = ids.map(
  (id) =>
    new RaftNode({
      id,
      peers: ids,
      dataDir: join(root, `n${id}`),
      transport: hub.transport(id),
      stateMachine: machines.get(id)!,
      tickMs: 10,
      electionTicks: 15,
      maxElectionTicks: 30,
      heartbeatTicks: 5,
      snapshotEvery: 100,
      logger: { info: () => undefined, warn: (m: string) => console.warn(`warn: ${m}`) },
    }),
);

function line(): string {
  return nodes
    .map((n) => {
      const s = n.status();
      return `n${n.id} ${s.role.padEnd(9)} term=${s.term} leader=${s.leader} commit=${s.commit} applied=${s.applied} counter=${machines.get(n.id)!.value}`;
    })
    .join(' | ');
}

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(timer);
  await Promise.all(nodes.map((n) => n.stop()));
  console.log('stopped; data kept in', root);
  process.exit(0);
}

await mkdir(root, { recursive: true });
await Promise.all(nodes.map((n) => n.start()));
console.log(`synod local stack: 3 Raft nodes in one process, data in ${root} (Ctrl-C to stop)`);
let tick = 0;
const timer = setInterval(() => {
  tick++;
  const via = nodes[tick % nodes.length];
  via.propose(enc.encode('1')).then(
    (r) => console.log(`write via n${via.id}: index=${r.index} counter=${String(r.result)} :: ${line()}`),
    (e: unknown) => console.log(`write via n${via.id} failed: ${(e as Error).message} :: ${line()}`),
  );
  if (tick % 10 === 0) {
    const leader = nodes.find((n) => n.status().role === 'Leader');
    const target = ids.find((id) => id !== leader?.id) ?? 1;
    leader?.transferLeadership(target).then(
      () => console.log(`leadership transferred to n${target}`),
      (e: unknown) => console.log(`transfer failed: ${(e as Error).message}`),
    );
  }
}, 1000);
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
