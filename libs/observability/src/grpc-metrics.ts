/**
 * gRPC server metrics with the go-grpc-prometheus names and labels, so standard gRPC dashboards work:
 *   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
 *   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
 *   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}   (histogram)
 * grpc_type is unary | client_stream | server_stream | bidi_stream; grpc_code is the Go name of the status
 * code (OK, Canceled, InvalidArgument, ...).
 *
 * Wrap each service implementation before adding it to a @grpc/grpc-js server:
 *
 *   const metrics = new GrpcServerMetrics(registry);
 *   server.addService(def, instrumentService(def, impl, metrics));
 *
 * "Started" is counted when the handler is invoked; "handled" once per call with its final status: the
 * callback's error code (OK without one) for unary and client-streaming calls; for server and bidi
 * streaming, the code of an error emitted on the stream, OK when the stream finishes after end(); a call
 * the client cancels is Canceled, one whose deadline passed is DeadlineExceeded; a handler that throws is
 * Unknown (as grpc-js answers it). A method the implementation lacks answers Unimplemented, counted too.
 */
import {
  MethodDefinition,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  UntypedHandleCall,
  UntypedServiceImplementation,
  sendUnaryData,
  status as Status,
} from '@grpc/grpc-js';
import { Counter, Histogram, Registry } from 'prom-client';
import { METRICS } from './metric-names.js';
import { makeCounter, makeHistogram } from './registry.js';

export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';
type GrpcLabel = 'grpc_type' | 'grpc_service' | 'grpc_method';

/** Go's codes.Code.String() names, as go-grpc-prometheus exports them. */
const CODE_NAMES: Record<number, string> = {
  [Status.OK]: 'OK',
  [Status.CANCELLED]: 'Canceled',
  [Status.UNKNOWN]: 'Unknown',
  [Status.INVALID_ARGUMENT]: 'InvalidArgument',
  [Status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [Status.NOT_FOUND]: 'NotFound',
  [Status.ALREADY_EXISTS]: 'AlreadyExists',
  [Status.PERMISSION_DENIED]: 'PermissionDenied',
  [Status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [Status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [Status.ABORTED]: 'Aborted',
  [Status.OUT_OF_RANGE]: 'OutOfRange',
  [Status.UNIMPLEMENTED]: 'Unimplemented',
  [Status.INTERNAL]: 'Internal',
  [Status.UNAVAILABLE]: 'Unavailable',
  [Status.DATA_LOSS]: 'DataLoss',
  [Status.UNAUTHENTICATED]: 'Unauthenticated',
};

/** The grpc_code label value of a status code (unknown numbers map to Unknown, as grpc-js treats them). */
export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? 'Unknown';
}

export class GrpcServerMetrics {
  readonly started: Counter<GrpcLabel>;
  readonly handled: Counter<GrpcLabel | 'grpc_code'>;
  readonly handling: Histogram<GrpcLabel>;

  constructor(readonly registry: Registry) {
    this.started = makeCounter(registry, METRICS.grpcServerStarted);
    this.handled = makeCounter(registry, METRICS.grpcServerHandled);
    this.handling = makeHistogram(registry, METRICS.grpcServerHandlingDuration);
  }

  /** Creates the started/handling series of a method at 0 (go-grpc-prometheus' InitializeMetrics). */
  initialize(labels: Record<GrpcLabel, string>): void {
    this.started.inc(labels, 0);
    this.handling.zero(labels);
  }
}

/** `/pkg.Service/Method` → { service: 'pkg.Service', method: 'Method' }. */
export function splitMethodPath(path: string): { service: string; method: string } {
  const i = path.lastIndexOf('/');
  return { service: path.slice(1, i), method: path.slice(i + 1) };
}

function grpcType(def: MethodDefinition<unknown, unknown>): GrpcType {
  if (def.requestStream) return def.responseStream ? 'bidi_stream' : 'client_stream';
  return def.responseStream ? 'server_stream' : 'unary';
}

/** The status code an error handed to grpc-js stands for (grpc-js' serverErrorToStatus). */
function errorCode(err: unknown): number {
  if (err !== null && typeof err === 'object' && 'code' in err) {
    const c = (err as { code: unknown }).code;
    if (typeof c === 'number' && Number.isInteger(c)) return c;
  }
  return Status.UNKNOWN;
}

/** What every kind of server call has: the events and the deadline (ServerSurfaceCall, not exported). */
type AnyCall = Pick<ServerUnaryCall<unknown, unknown>, 'on' | 'getDeadline'>;

/** Cancelled by whom: a passed deadline (the server answered DEADLINE_EXCEEDED) or the client. */
function cancelCode(call: AnyCall): number {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) && ms <= Date.now() ? Status.DEADLINE_EXCEEDED : Status.CANCELLED;
}

/**
 * Returns a copy of `impl` whose handlers count started and handled calls and time them. Keys are those of
 * the service definition (grpc-js also accepts the method's originalName, as here).
 */
export function instrumentService<I extends object>(def: ServiceDefinition<I>, impl: I, metrics: GrpcServerMetrics): I {
  const source = impl as unknown as UntypedServiceImplementation;
  const out: UntypedServiceImplementation = {};
  for (const name of Object.keys(def) as (keyof I & string)[]) {
    const md = def[name] as MethodDefinition<unknown, unknown>;
    const type = grpcType(md);
    const { service, method } = splitMethodPath(md.path);
    const labels: Record<GrpcLabel, string> = { grpc_type: type, grpc_service: service, grpc_method: method };
    metrics.initialize(labels);
    let fn: UntypedHandleCall | undefined = source[name];
    if (fn === undefined && typeof md.originalName === 'string') fn = source[md.originalName];
    const handler = fn !== undefined ? (fn.bind(impl) as UntypedHandleCall) : unimplemented(type, md.path);
    out[name] = wrap(type, handler, labels, metrics);
  }
  return out as unknown as I;
}

function unimplemented(type: GrpcType, path: string): UntypedHandleCall {
  const err = { code: Status.UNIMPLEMENTED, details: `The server does not implement the method ${path}` };
  if (type === 'unary' || type === 'client_stream') {
    return (_call: unknown, callback: sendUnaryData<unknown>) => callback(err, null);
  }
  return (call: ServerWritableStream<unknown, unknown>) => {
    call.emit('error', err);
  };
}

function wrap(type: GrpcType, handler: UntypedHandleCall, labels: Record<GrpcLabel, string>, metrics: GrpcServerMetrics): UntypedHandleCall {
  const begin = (): ((code: number) => void) => {
    metrics.started.inc(labels);
    const t0 = performance.now();
    let done = false;
    return (code) => {
      if (done) return;
      done = true;
      metrics.handled.inc({ ...labels, grpc_code: grpcCodeName(code) });
      metrics.handling.observe(labels, (performance.now() - t0) / 1000);
    };
  };

  if (type === 'unary' || type === 'client_stream') {
    const h = handler as (call: AnyCall, cb: sendUnaryData<unknown>) => void;
    return ((call: AnyCall, callback: sendUnaryData<unknown>) => {
      const finish = begin();
      // grpc-js notifies 'cancelled' after every status it sends; the callback, if any, has recorded first.
      call.on('cancelled', () => finish(cancelCode(call)));
      try {
        h(call, (err, value, trailer, flags) => {
          finish(err ? errorCode(err) : Status.OK);
          callback(err, value, trailer, flags);
        });
      } catch (err) {
        finish(Status.UNKNOWN);
        throw err;
      }
    }) as UntypedHandleCall;
  }

  const h = handler as (call: ServerWritableStream<unknown, unknown>) => void;
  // A bidi call (ServerDuplexStream) has the same writable side and events.
  return ((call: ServerWritableStream<unknown, unknown>) => {
    const finish = begin();
    // grpc-js sends the status from _final after end() (OK, or the code of an error emitted before).
    call.on('error', (err: unknown) => finish(errorCode(err)));
    call.on('finish', () => finish(Status.OK));
    call.on('cancelled', () => {
      if (!call.writableEnded) finish(cancelCode(call));
    });
    call.on('close', () => finish(call.writableFinished ? Status.OK : cancelCode(call)));
    try {
      h(call);
    } catch (err) {
      finish(Status.UNKNOWN);
      throw err;
    }
  }) as UntypedHandleCall;
}
