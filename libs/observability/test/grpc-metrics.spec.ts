/**
 * grpc_server_* metrics through a real @grpc/grpc-js server and client on loopback, with a test-only service
 * (fixtures/echo.proto) whose implementation is wrapped by instrumentService.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GrpcServerMetrics, ObservabilityServer, createRegistry, instrumentService } from '@app/observability';
import { Sample, scrape, sum, value } from './scrape.js';

interface EchoRequest {
  text?: string;
  fail_code?: number;
  count?: number;
  hang?: boolean;
  throw?: boolean;
}
interface EchoReply {
  text: string;
}

const PROTO = fileURLToPath(new URL('./fixtures/echo.proto', import.meta.url));
const SERVICE = 'synod.test.v1.Echo';

type Ctor = grpc.ServiceClientConstructor;
function loadEcho(): Ctor {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { synod: { test: { v1: { Echo: Ctor } } } };
  return pkg.synod.test.v1.Echo;
}

function fail(code: number): grpc.ServiceError {
  return Object.assign(new Error(`failing with ${code} as asked`), { code, details: `failing with ${code} as asked`, metadata: new grpc.Metadata() });
}

/** The test service. `Missing` is deliberately absent. */
const impl = {
  Say(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>): void {
    const r = call.request;
    if (r.throw) throw new Error('handler bug');
    if (r.hang) return;
    if (r.fail_code) cb(fail(r.fail_code), null);
    else cb(null, { text: r.text ?? '' });
  },
  Repeat(call: grpc.ServerWritableStream<EchoRequest, EchoReply>): void {
    const r = call.request;
    if (r.hang) {
      const t = setInterval(() => call.write({ text: 'again' }), 5);
      call.on('cancelled', () => clearInterval(t));
      return;
    }
    for (let i = 0; i < (r.count ?? 0); i++) call.write({ text: `${r.text} ${i}` });
    if (r.fail_code) call.emit('error', fail(r.fail_code));
    else call.end();
  },
  Collect(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>): void {
    const parts: string[] = [];
    call.on('data', (m: EchoRequest) => parts.push(m.text ?? ''));
    call.on('end', () => cb(null, { text: parts.join('+') }));
  },
  Chat(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>): void {
    call.on('data', (m: EchoRequest) => call.write({ text: m.text ?? '' }));
    call.on('end', () => call.end());
  },
};

describe('instrumentService: grpc_server_* metrics on a real grpc-js server', () => {
  const Echo = loadEcho();
  let server: grpc.Server;
  let http: ObservabilityServer;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let client: any;

  beforeAll(async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const metrics = new GrpcServerMetrics(registry);
    server = new grpc.Server();
    server.addService(Echo.service, instrumentService(Echo.service, impl as unknown as grpc.UntypedServiceImplementation, metrics));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    http = await ObservabilityServer.listen({ registry, host: '127.0.0.1', port: 0 });
  });

  afterAll(async () => {
    client?.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await http.close();
  });

  const unary = (method: string, req: EchoRequest, opts: grpc.CallOptions = {}): Promise<{ err: grpc.ServiceError | null; reply?: EchoReply }> =>
    new Promise((resolve) => client[method](req, new grpc.Metadata(), opts, (err: grpc.ServiceError | null, reply?: EchoReply) => resolve({ err, reply })));

  const handled = (s: Sample[], method: string, code: string): number => sum(s, 'grpc_server_handled_total', { grpc_service: SERVICE, grpc_method: method, grpc_code: code });

  async function eventually(pred: (s: Sample[]) => boolean, what: string): Promise<Sample[]> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const s = await scrape(http.url);
      if (pred(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('initializes every method at zero, with the go-grpc-prometheus labels', async () => {
    const s = await scrape(http.url);
    const types: Record<string, string> = { Say: 'unary', Repeat: 'server_stream', Collect: 'client_stream', Chat: 'bidi_stream', Missing: 'unary' };
    for (const [m, t] of Object.entries(types)) {
      expect(value(s, 'grpc_server_started_total', { grpc_service: SERVICE, grpc_method: m, grpc_type: t })).toBeGreaterThanOrEqual(0);
      expect(sum(s, 'grpc_server_handling_seconds_count', { grpc_service: SERVICE, grpc_method: m, grpc_type: t })).toBeGreaterThanOrEqual(0);
    }
  });

  it('counts a unary call that succeeds and one that fails, with its code', async () => {
    const ok = await unary('Say', { text: 'hi' });
    expect(ok.err).toBeNull();
    expect(ok.reply?.text).toBe('hi');
    const bad = await unary('Say', { fail_code: grpc.status.INVALID_ARGUMENT });
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const boom = await unary('Say', { throw: true });
    expect(boom.err?.code).toBe(grpc.status.UNKNOWN);
    const missing = await unary('Missing', {});
    expect(missing.err?.code).toBe(grpc.status.UNIMPLEMENTED);

    const s = await scrape(http.url);
    const say = { grpc_service: SERVICE, grpc_method: 'Say', grpc_type: 'unary' };
    expect(value(s, 'grpc_server_started_total', say)).toBe(3);
    expect(value(s, 'grpc_server_handled_total', { ...say, grpc_code: 'OK' })).toBe(1);
    expect(value(s, 'grpc_server_handled_total', { ...say, grpc_code: 'InvalidArgument' })).toBe(1);
    expect(value(s, 'grpc_server_handled_total', { ...say, grpc_code: 'Unknown' })).toBe(1);
    expect(value(s, 'grpc_server_handling_seconds_count', say)).toBe(3);
    expect(value(s, 'grpc_server_handling_seconds_bucket', { ...say, le: '+Inf' })).toBe(3);
    expect(value(s, 'grpc_server_handling_seconds_sum', say)).toBeLessThan(5);
    expect(handled(s, 'Missing', 'Unimplemented')).toBe(1);
  });

  it('counts server-streaming, client-streaming and bidi calls with their final status', async () => {
    const texts: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.Repeat({ text: 'r', count: 3 });
      call.on('data', (m: EchoReply) => texts.push(m.text));
      call.on('error', reject);
      call.on('end', () => resolve());
    });
    expect(texts).toEqual(['r 0', 'r 1', 'r 2']);
    const code = await new Promise<number>((resolve) => {
      const call = client.Repeat({ text: 'r', count: 1, fail_code: grpc.status.NOT_FOUND });
      call.on('data', () => {});
      call.on('error', (e: grpc.ServiceError) => resolve(e.code));
    });
    expect(code).toBe(grpc.status.NOT_FOUND);

    const collected = await new Promise<string>((resolve, reject) => {
      const call = client.Collect((err: grpc.ServiceError | null, r: EchoReply) => (err ? reject(err) : resolve(r.text)));
      call.write({ text: 'a' });
      call.write({ text: 'b' });
      call.end();
    });
    expect(collected).toBe('a+b');

    const echoed: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.Chat();
      call.on('data', (m: EchoReply) => echoed.push(m.text));
      call.on('error', reject);
      call.on('end', () => resolve());
      call.write({ text: 'x' });
      call.write({ text: 'y' });
      call.end();
    });
    expect(echoed).toEqual(['x', 'y']);

    const s = await eventually((x) => handled(x, 'Chat', 'OK') === 1 && handled(x, 'Repeat', 'NotFound') === 1, 'streaming calls handled');
    expect(value(s, 'grpc_server_started_total', { grpc_method: 'Repeat', grpc_type: 'server_stream' })).toBe(2);
    expect(handled(s, 'Repeat', 'OK')).toBe(1);
    expect(handled(s, 'Collect', 'OK')).toBe(1);
    expect(value(s, 'grpc_server_started_total', { grpc_method: 'Chat', grpc_type: 'bidi_stream' })).toBe(1);
  });

  it('counts a call the client cancels as Canceled and one past its deadline as DeadlineExceeded', async () => {
    await new Promise<void>((resolve) => {
      const call = client.Repeat({ hang: true });
      call.once('data', () => call.cancel());
      call.on('error', (e: grpc.ServiceError) => {
        expect(e.code).toBe(grpc.status.CANCELLED);
        resolve();
      });
    });
    const late = await unary('Say', { hang: true }, { deadline: Date.now() + 100 });
    expect(late.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);

    const s = await eventually(
      (x) => handled(x, 'Repeat', 'Canceled') === 1 && handled(x, 'Say', 'DeadlineExceeded') === 1,
      'Canceled and DeadlineExceeded',
    );
    // Every call started was handled exactly once.
    expect(sum(s, 'grpc_server_handled_total')).toBe(sum(s, 'grpc_server_started_total'));
  });
});
