/**
 * @app/proto — the one way Synod loads its `.proto` files: the shared proto-loader options, the proto root,
 * and typed loaders for the consensus (client-facing) and peer (member-to-member) services.
 */
export { PROTO_LOADER_OPTIONS } from './options.js';
export { PROTO_FILES, protoRoot } from './paths.js';
export { SERVICE_NAMES, loadConsensusProto, loadLockProto, loadPackageDefinition, loadPeerProto, loadTxnProto } from './load.js';
export type { ConsensusProto, LockProto, PeerProto, TxnProto } from './load.js';
