/**
 * The observability HTTP endpoint of a member (node:http, no framework):
 *   GET /metrics  Prometheus text exposition of the member's Registry;
 *   GET /livez    200 while the process is alive and its event loop responsive (and the caller's liveness
 *                 check passes, e.g. raftLiveness: the node has not failed); 503 with the reason otherwise;
 *   GET /readyz   200 when the caller's readiness check passes (e.g. raftReadiness: a known leader and
 *                 caught up to the commit index seen at start); 503 with the reason otherwise.
 * HEAD is accepted wherever GET is. Anything else: 404 (405 for other methods).
 */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { HealthCheck, HealthResult, StatusSource, raftLiveness, raftReadiness } from './health.js';

export interface ObservabilityServerOptions {
  registry: Registry;
  /** Default '0.0.0.0' (a pod's probes and Prometheus come from outside); tests use '127.0.0.1'. */
  host?: string;
  /** Default 0: any free port (see `port` after listen). */
  port?: number;
  /** Shorthand: readiness defaults to raftReadiness(raftNode), liveness to raftLiveness(raftNode). */
  raftNode?: StatusSource;
  /** /readyz (default: always ready, or raftReadiness when raftNode is given). */
  readiness?: HealthCheck;
  /** Extra /livez condition besides the event loop (default: none, or raftLiveness when raftNode is given). */
  liveness?: HealthCheck;
  /** /livez fails when the event loop was last seen blocked for longer than this (default 5000 ms). */
  maxEventLoopLagMs?: number;
  /** How often the event loop watchdog samples (default 500 ms). */
  eventLoopSampleMs?: number;
}

export class ObservabilityServer {
  private readonly server: Server;
  private readonly readiness: HealthCheck | undefined;
  private readonly liveness: HealthCheck | undefined;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  /** Lateness of the watchdog's last tick: how long the event loop was blocked. */
  private lastLagMs = 0;
  private readonly maxLagMs: number;
  private readonly sampleMs: number;
  private boundPort = 0;

  private constructor(private readonly opts: ObservabilityServerOptions) {
    this.maxLagMs = opts.maxEventLoopLagMs ?? 5000;
    this.sampleMs = opts.eventLoopSampleMs ?? 500;
    this.readiness = opts.readiness ?? (opts.raftNode ? raftReadiness(opts.raftNode) : undefined);
    this.liveness = opts.liveness ?? (opts.raftNode ? raftLiveness(opts.raftNode) : undefined);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) reply(res, req, 500, `internal error: ${err instanceof Error ? err.message : String(err)}\n`);
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  /** Starts listening; resolves once bound. */
  static async listen(opts: ObservabilityServerOptions): Promise<ObservabilityServer> {
    const s = new ObservabilityServer(opts);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(opts.port ?? 0, opts.host ?? '0.0.0.0', () => {
        s.server.off('error', reject);
        resolve();
      });
    });
    s.boundPort = (s.server.address() as AddressInfo).port;
    let expected = performance.now() + s.sampleMs;
    s.watchdog = setInterval(() => {
      const now = performance.now();
      s.lastLagMs = Math.max(0, now - expected);
      expected = now + s.sampleMs;
    }, s.sampleMs);
    s.watchdog.unref();
    return s;
  }

  get port(): number {
    return this.boundPort;
  }

  /** http://host:port, with 127.0.0.1 for a wildcard host. */
  get url(): string {
    const h = this.opts.host ?? '0.0.0.0';
    return `http://${h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h}:${this.boundPort}`;
  }

  async close(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' && path !== '/livez' && path !== '/readyz') {
      reply(res, req, 404, 'not found: try /metrics, /livez or /readyz\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      reply(res, req, 405, 'method not allowed\n');
      return;
    }
    if (path === '/metrics') {
      const body = await this.opts.registry.metrics();
      reply(res, req, 200, body, this.opts.registry.contentType);
      return;
    }
    const r = path === '/livez' ? await this.live() : await run(this.readiness);
    reply(res, req, r.ok ? 200 : 503, r.ok ? `ok${r.reason ? `: ${r.reason}` : ''}\n` : `${r.reason ?? 'not ok'}\n`);
  }

  private async live(): Promise<HealthResult> {
    if (this.lastLagMs > this.maxLagMs) {
      return { ok: false, reason: `event loop blocked for ${Math.round(this.lastLagMs)} ms (limit ${this.maxLagMs} ms)` };
    }
    return run(this.liveness);
  }
}

async function run(check: HealthCheck | undefined): Promise<HealthResult> {
  if (!check) return { ok: true };
  try {
    return await check();
  } catch (err) {
    return { ok: false, reason: `check failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

function reply(res: ServerResponse, req: IncomingMessage, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(req.method === 'HEAD' ? undefined : body);
}
