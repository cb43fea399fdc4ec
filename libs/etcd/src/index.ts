/**
 * @app/etcd — what Synod's etcd-backed stores (libs/lock's EtcdQueueStore, libs/txn's EtcdTxnStore) share on top
 * of the `etcd3` client:
 * - `prefixEnd`: etcd's range_end for a key prefix;
 * - `endStream`: close a bidi stream by half-closing before cancelling (a bare cancel makes etcd3 count a host
 *   failure and reset every connection to that host);
 * - `EtcdWatchMux`: ONE watch stream per store, opened on first use, on which every watch is created with a
 *   client-chosen watch id (etcd >= 3.4) and cancelled when its caller is done. Not etcd3's own Watcher: its
 *   manager cancels the shared stream whenever its last watcher goes, which etcd3 answers by closing every
 *   connection to the host. When the stream breaks, every live watch's handler is called with `undefined` (the
 *   caller re-reads and watches again) and the next `add` opens a new stream.
 */
import type { IDuplexStream, IWatchCreateRequest, IWatchRequest, IWatchResponse } from 'etcd3';

/** The first key after every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}

/** Half-close, then cancel; swallows the CANCELLED error that follows (it must not crash the process). */
export function endStream(stream: IDuplexStream<unknown, unknown>): void {
  stream.on('error', () => undefined);
  try {
    stream.end();
    stream.cancel();
  } catch {
    // already closed
  }
}

/** Called with each response of its watch; `undefined` once when the stream broke (or the mux closed). */
export type WatchHandler = (res: IWatchResponse | undefined) => void;

interface MuxStream {
  stream: IDuplexStream<IWatchRequest, IWatchResponse>;
  watches: Map<string, WatchHandler>;
  broken: boolean;
}

export class EtcdWatchMux {
  private current: MuxStream | undefined;
  private opening: Promise<MuxStream> | undefined;
  private nextId = 1;
  private closed = false;

  /** `open` opens a new watch stream, e.g. `() => client.watchClient.watch()`. */
  constructor(private readonly open: () => Promise<IDuplexStream<IWatchRequest, IWatchResponse>>) {}

  /**
   * Creates a watch (`watch_id` is chosen here) and returns the function that cancels it (idempotent). If the
   * stream is already broken or the mux closed, `handler(undefined)` runs on the next microtask. Rejects only
   * when a new stream cannot be opened.
   */
  async add(request: Omit<IWatchCreateRequest, 'watch_id'>, handler: WatchHandler): Promise<() => void> {
    const ms = this.closed ? undefined : await this.stream();
    const id = String(this.nextId++);
    if (ms === undefined || ms.broken) {
      queueMicrotask(() => handler(undefined));
      return () => undefined;
    }
    ms.watches.set(id, handler);
    ms.stream.write({ create_request: { ...request, watch_id: id } });
    return () => {
      if (ms.watches.delete(id) && !ms.broken) {
        try {
          ms.stream.write({ cancel_request: { watch_id: id } });
        } catch {
          // the stream is gone
        }
      }
    };
  }

  /** Ends the stream; every live watch's handler gets `undefined`. Later `add`s find a broken stream. */
  close(): void {
    this.closed = true;
    const ms = this.current;
    this.current = undefined;
    if (ms) this.breakStream(ms);
  }

  /** Live watches on the current stream (for tests and metrics). */
  get size(): number {
    return this.current?.watches.size ?? 0;
  }

  private breakStream(ms: MuxStream): void {
    if (ms.broken) return;
    ms.broken = true;
    endStream(ms.stream);
    const handlers = [...ms.watches.values()];
    ms.watches.clear();
    for (const h of handlers) h(undefined);
  }

  private async stream(): Promise<MuxStream> {
    if (this.current !== undefined && !this.current.broken) return this.current;
    if (this.opening !== undefined) return this.opening;
    const opening = (async (): Promise<MuxStream> => {
      const stream = await this.open();
      const ms: MuxStream = { stream, watches: new Map(), broken: false };
      stream.on('data', (res: IWatchResponse) => ms.watches.get(String(res.watch_id))?.(res));
      stream.on('error', () => this.breakStream(ms));
      stream.on('end', () => this.breakStream(ms));
      if (this.closed) this.breakStream(ms);
      this.current = ms;
      return ms;
    })();
    this.opening = opening;
    try {
      return await opening;
    } finally {
      this.opening = undefined;
    }
  }
}
