/**
 * Typed loaders for Synod's gRPC services. Each loads its `.proto` once (synchronously, memoized) with the
 * shared {@link PROTO_LOADER_OPTIONS} and returns the service constructors and definitions grpc-js needs:
 * `new svc.Coordination(address, credentials)` for a client, `server.addService(svc.Coordination.service,
 * handlers)` for a server.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS } from './options.js';
import { PROTO_FILES, protoRoot } from './paths.js';

export interface ConsensusProto {
  /** synod.consensus.v1.Coordination — the tree, sessions and watches. */
  Coordination: grpc.ServiceClientConstructor;
  /** synod.consensus.v1.Cluster — status, membership, leadership, snapshots. */
  Cluster: grpc.ServiceClientConstructor;
  /** The raw package definition (e.g. for @grpc/reflection). */
  packageDefinition: protoLoader.PackageDefinition;
}

export interface PeerProto {
  /** synod.peer.v1.Raft — Raft messages, snapshots and forwarded client requests between members. */
  Raft: grpc.ServiceClientConstructor;
  packageDefinition: protoLoader.PackageDefinition;
}

export interface LockProto {
  /** synod.lock.v1.Lock — Acquire, KeepAlive, Release, Describe, List. */
  Lock: grpc.ServiceClientConstructor;
  packageDefinition: protoLoader.PackageDefinition;
}

export interface TxnProto {
  /** synod.txn.v1.Coordinator — 2PC with a replicated decision log, and the outbox message relay. */
  Coordinator: grpc.ServiceClientConstructor;
  /** synod.txn.v1.Participant — implemented by business services (libs/participant). */
  Participant: grpc.ServiceClientConstructor;
  /** synod.txn.v1.Consumer — implemented by message consumers (libs/outbox). */
  Consumer: grpc.ServiceClientConstructor;
  packageDefinition: protoLoader.PackageDefinition;
}

export const SERVICE_NAMES = {
  coordination: 'synod.consensus.v1.Coordination',
  cluster: 'synod.consensus.v1.Cluster',
  raft: 'synod.peer.v1.Raft',
  lock: 'synod.lock.v1.Lock',
  coordinator: 'synod.txn.v1.Coordinator',
  participant: 'synod.txn.v1.Participant',
  consumer: 'synod.txn.v1.Consumer',
} as const;

/** Loads `.proto` files (relative to the proto root) with the shared options. */
export function loadPackageDefinition(files: string[]): protoLoader.PackageDefinition {
  return protoLoader.loadSync(files, { ...PROTO_LOADER_OPTIONS, includeDirs: [protoRoot()] });
}

function service(pkg: grpc.GrpcObject, fullName: string): grpc.ServiceClientConstructor {
  let o: unknown = pkg;
  for (const part of fullName.split('.')) o = (o as Record<string, unknown> | undefined)?.[part];
  if (typeof o !== 'function' || !('service' in o)) throw new Error(`proto: service ${fullName} not found`);
  return o as grpc.ServiceClientConstructor;
}

let consensus: ConsensusProto | undefined;
let peer: PeerProto | undefined;

export function loadConsensusProto(): ConsensusProto {
  if (consensus) return consensus;
  const packageDefinition = loadPackageDefinition([PROTO_FILES.coordination, PROTO_FILES.cluster]);
  const pkg = grpc.loadPackageDefinition(packageDefinition);
  consensus = {
    Coordination: service(pkg, SERVICE_NAMES.coordination),
    Cluster: service(pkg, SERVICE_NAMES.cluster),
    packageDefinition,
  };
  return consensus;
}

export function loadPeerProto(): PeerProto {
  if (peer) return peer;
  const packageDefinition = loadPackageDefinition([PROTO_FILES.peer]);
  const pkg = grpc.loadPackageDefinition(packageDefinition);
  peer = { Raft: service(pkg, SERVICE_NAMES.raft), packageDefinition };
  return peer;
}

let lock: LockProto | undefined;

export function loadLockProto(): LockProto {
  if (lock) return lock;
  const packageDefinition = loadPackageDefinition([PROTO_FILES.lock]);
  const pkg = grpc.loadPackageDefinition(packageDefinition);
  lock = { Lock: service(pkg, SERVICE_NAMES.lock), packageDefinition };
  return lock;
}

let txn: TxnProto | undefined;

export function loadTxnProto(): TxnProto {
  if (txn) return txn;
  const packageDefinition = loadPackageDefinition([PROTO_FILES.txn]);
  const pkg = grpc.loadPackageDefinition(packageDefinition);
  txn = {
    Coordinator: service(pkg, SERVICE_NAMES.coordinator),
    Participant: service(pkg, SERVICE_NAMES.participant),
    Consumer: service(pkg, SERVICE_NAMES.consumer),
    packageDefinition,
  };
  return txn;
}
