export * from './errors.js';
export * from './fileops.js';
export * from './crash-fileops.js';
export { Wal, toMemoryStorage, segmentFileName, DEFAULT_SEGMENT_BYTES, SNAPSHOTS_KEPT } from './wal.js';
export type { RecoveredState, StorageLogger, WalOptions } from './wal.js';
export { snapshotFileName, encodeSnapshotFile, decodeSnapshotFile } from './snapshot-file.js';
export { RecordType, RECORD_HEADER_BYTES } from './codec.js';
