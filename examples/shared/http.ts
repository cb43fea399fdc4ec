/** A minimal JSON HTTP server on node:http for the examples (no framework): routes, bounded bodies, clean close. */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Reply {
  status: number;
  body: unknown;
}

export type Handler = (req: IncomingMessage, params: string[]) => Promise<Reply>;

interface Route {
  method: string;
  path: RegExp;
  handler: Handler;
}

const MAX_BODY = 16 * 1024;

/** Reads the request body as JSON (at most 16 KiB); HttpError 400/413/415 otherwise. */
export async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/json\b/i.test(type)) throw new HttpError(415, `content-type must be application/json, got "${type}"`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new HttpError(413, `request body is larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'request body is empty: expected a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
}

export class JsonServer {
  private readonly routes: Route[] = [];
  private server: Server | undefined;
  port = 0;

  constructor(private readonly onError: (m: string) => void) {}

  route(method: string, path: RegExp, handler: Handler): this {
    this.routes.push({ method, path, handler });
    return this;
  }

  private async dispatch(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const matching = this.routes.map((r) => ({ r, m: r.path.exec(url.pathname) })).filter((x) => x.m !== null);
    if (matching.length === 0) throw new HttpError(404, `no such resource: ${url.pathname}`);
    const hit = matching.find((x) => x.r.method === req.method);
    if (!hit) throw new HttpError(405, `method ${req.method} not allowed on ${url.pathname} (allowed: ${matching.map((x) => x.r.method).join(', ')})`);
    return hit.r.handler(req, hit.m!.slice(1).map(decodeURIComponent));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.dispatch(req)
      .catch((err: unknown): Reply => {
        if (err instanceof HttpError) return { status: err.status, body: { error: err.message } };
        this.onError(`${req.method} ${req.url}: ${(err as Error).stack ?? String(err)}`);
        return { status: 500, body: { error: `internal error: ${(err as Error).message}` } };
      })
      .then((r) => {
        // drain whatever the handler did not read, so keep-alive connections stay usable
        req.resume();
        const text = JSON.stringify(r.body) + '\n';
        res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
  }

  async listen(host: string, port: number): Promise<number> {
    const server = createServer((req, res) => this.handle(req, res));
    server.requestTimeout = 120_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`cannot listen on http://${host}:${port}: ${e.message}`)));
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  /** Stops accepting, closes idle connections, and drops the rest after `timeoutMs`. */
  async close(timeoutMs = 5000): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.closeAllConnections();
        resolve();
      }, timeoutMs);
      s.close(() => {
        clearTimeout(t);
        resolve();
      });
      s.closeIdleConnections();
    });
  }
}
