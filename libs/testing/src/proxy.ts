/**
 * A userspace TCP proxy for fault tests on loopback: clients connect to `proxy.address`, which forwards to the
 * target. Faults, switchable at any time:
 * - `pass`: forward (optionally after `delayMs` per chunk);
 * - `blackhole`: keep every connection open but forward nothing in either direction, and accept new
 *   connections without connecting them onward — a peer that is "there" but never answers. Like a real
 *   partition under TCP (which retransmits), what was sent meanwhile is held back, not lost: when the mode
 *   returns to `pass` it is delivered in order (and held connections are connected onward);
 * - `reset`: destroy every connection and refuse new ones at once (a crashed peer).
 * Only 127.0.0.0/8 targets are accepted.
 */
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';

export type ProxyMode = 'pass' | 'blackhole' | 'reset';

interface Pair {
  client: Socket;
  upstream?: Socket;
  /** Chunks held back while blackholed, per direction. */
  toUpstream: Buffer[];
  toClient: Buffer[];
}

export class TcpProxy {
  private mode: ProxyMode = 'pass';
  private readonly pairs = new Set<Pair>();
  port = 0;
  delayMs = 0;

  private constructor(
    private readonly server: Server,
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  static async start(target: string): Promise<TcpProxy> {
    const m = /^(127\.\d+\.\d+\.\d+|localhost):(\d+)$/.exec(target);
    if (!m) throw new Error(`TcpProxy: target must be a loopback host:port, got ${target}`);
    const server = createServer();
    const proxy = new TcpProxy(server, m[1], Number(m[2]));
    server.on('connection', (client: Socket) => proxy.accept(client));
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(0, '127.0.0.1', () => res());
    });
    proxy.port = (server.address() as { port: number }).port;
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get currentMode(): ProxyMode {
    return this.mode;
  }

  setMode(mode: ProxyMode): void {
    this.mode = mode;
    if (mode === 'reset') for (const p of [...this.pairs]) this.drop(p);
    if (mode === 'pass') for (const p of [...this.pairs]) this.flush(p);
  }

  /** Delivers what was held back, connecting a held connection onward first. */
  private flush(p: Pair): void {
    if (!p.upstream) this.connectUpstream(p);
    for (const c of p.toUpstream.splice(0)) p.upstream!.write(c);
    for (const c of p.toClient.splice(0)) if (!p.client.destroyed) p.client.write(c);
  }

  private drop(p: Pair): void {
    p.client.destroy();
    p.upstream?.destroy();
    this.pairs.delete(p);
  }

  private accept(client: Socket): void {
    if (this.mode === 'reset') {
      client.destroy();
      return;
    }
    const pair: Pair = { client, toUpstream: [], toClient: [] };
    this.pairs.add(pair);
    client.on('error', () => this.drop(pair));
    client.on('close', () => this.drop(pair));
    client.on('data', (chunk: Buffer) => this.relay(pair, chunk, 'up'));
    if (this.mode === 'pass') this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    const upstream = connect(this.targetPort, this.targetHost);
    pair.upstream = upstream;
    upstream.on('error', () => this.drop(pair));
    upstream.on('close', () => this.drop(pair));
    upstream.on('data', (chunk: Buffer) => this.relay(pair, chunk, 'down'));
  }

  private relay(pair: Pair, chunk: Buffer, dir: 'up' | 'down'): void {
    if (this.mode !== 'pass' || !pair.upstream) {
      (dir === 'up' ? pair.toUpstream : pair.toClient).push(chunk); // held back while blackholed
      return;
    }
    const send = (): void => {
      const t = dir === 'up' ? pair.upstream : pair.client;
      if (t && !t.destroyed) t.write(chunk);
    };
    if (this.delayMs > 0) setTimeout(send, this.delayMs);
    else send();
  }

  async close(): Promise<void> {
    for (const p of [...this.pairs]) this.drop(p);
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
