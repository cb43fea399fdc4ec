/** Test helpers for @app/peer: recording handlers, transports on loopback ports, bounded waits. */
import * as net from 'node:net';
import { Message, NodeId } from '@app/raft';
import type { TransportHandler } from '@app/raft-node';
import { GrpcPeerTransport, GrpcPeerTransportOptions } from '@app/peer';

/**
 * A message with every byte field turned into a hex string (plus its class name): jest compares typed arrays
 * element by element, far too slowly for megabytes; strings compare at once and still byte-exact.
 */
export function comparable(m: Message): unknown {
  const hex = (b: Uint8Array): string => `${Object.getPrototypeOf(b).constructor.name}:${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')}`;
  return {
    ...m,
    entries: m.entries.map((e) => ({ ...e, data: hex(e.data) })),
    ...(m.context ? { context: hex(m.context) } : {}),
    ...(m.snapshot ? { snapshot: { ...m.snapshot, data: hex(m.snapshot.data) } } : {}),
  };
}

/** A TransportHandler that records everything the transport hands it. */
export class Recorder implements TransportHandler {
  readonly received: Message[] = [];
  readonly unreachable: NodeId[] = [];
  readonly snapshots: { id: NodeId; ok: boolean }[] = [];
  receive(m: Message): void {
    this.received.push(m);
  }
  reportUnreachable(id: NodeId): void {
    this.unreachable.push(id);
  }
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.snapshots.push({ id, ok });
  }
}

export async function waitFor(what: string, pred: () => boolean, timeoutMs = 5000, diag?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${diag ? `\n${diag()}` : ''}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP server that accepts connections and never answers (a peer that hangs). */
export async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    port: (s.address() as net.AddressInfo).port,
    close: async () => {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

/** Tracks transports so afterEach can close them all. */
export class Transports {
  readonly all: GrpcPeerTransport[] = [];

  /** A started transport listening on 127.0.0.1 (port 0 unless given), with a Recorder. */
  async make(
    selfId: NodeId,
    opts: Partial<GrpcPeerTransportOptions> = {},
    port = 0,
  ): Promise<{ t: GrpcPeerTransport; rec: Recorder; port: number; addr: string }> {
    const t = new GrpcPeerTransport({ selfId, peers: new Map(), backoff: { initialMs: 20, maxMs: 200 }, ...opts });
    this.all.push(t);
    const p = await t.listen(`127.0.0.1:${port}`);
    const rec = new Recorder();
    t.start(rec);
    return { t, rec, port: p, addr: `127.0.0.1:${p}` };
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.all.splice(0).map((t) => t.close()));
  }
}
