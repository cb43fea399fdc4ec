/**
 * THE proto-loader options: every Synod server and client (NestJS services, libs/client, libs/peer, tests,
 * synodctl) loads the `.proto` files with exactly these, so a message looks the same everywhere.
 *
 * - `keepCase: false` — field names are camelCase in TypeScript (`ephemeralOwner`, `logTerm`), as the rest of
 *   the code base and NestJS's gRPC transport (whose default is the same). The wire is unaffected.
 * - `longs: Number` — uint64/int64 fields are plain JS numbers. Every 64-bit field in Synod's protos is a
 *   Raft index or term, a zxid (= Raft index), a member id, a session id (allocated from a Raft index), a
 *   byte count or a millisecond time: all far below 2^53, so nothing is lost, and numbers cost nothing per
 *   field, where `String` would allocate and parse a string per zxid on every request and response and
 *   `Long` objects would leak a third numeric type into the code. A value ≥ 2^53 from a foreign client would
 *   be rounded, which the services reject as INVALID_ARGUMENT where ids matter.
 * - `enums: String` — enum values are their names (`'EPHEMERAL'`, `'LINEARIZABLE'`): readable in logs and
 *   stable if numbers were ever reordered. Numbers are accepted on input too.
 * - `defaults: true` — absent scalars arrive as their proto3 defaults (0, '', false, empty bytes/lists), so
 *   handlers never test for undefined; `optional` fields (presence) and message fields stay absent when unset.
 * - `oneofs: true` — every decoded oneof also gets a virtual field naming the member that is set
 *   (e.g. `op.op === 'create'`), which gives exhaustive switches.
 * - `bytes` left as default: `bytes` fields decode to Node Buffers (Uint8Array subclasses, no copy or base64).
 */
import type { Options } from '@grpc/proto-loader';

export const PROTO_LOADER_OPTIONS: Readonly<Options> = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  arrays: true,
});
