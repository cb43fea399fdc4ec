/** Errors of the durable storage layer (WAL and snapshot files). */

/**
 * Durable data is damaged: a record or snapshot file fails its checksum or structure check at a place a
 * crash cannot explain. Recovery refuses to guess; an operator must restore the node (e.g. wipe it and let
 * it rejoin from its peers). `path` and `offset` locate the damage.
 */
export class StorageCorruptionError extends Error {
  constructor(
    readonly path: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`storage corruption in ${path} at byte offset ${offset}: ${reason}`);
    this.name = 'StorageCorruptionError';
  }
}
