/**
 * Majority quorum arithmetic (etcd-io/raft quorum/majority.go). Pure functions, property-tested against a
 * naive model in libs/raft/test/quorum.property.spec.ts.
 */
import { NodeId } from './types.js';

export enum VoteResult {
  Pending = 'Pending',
  Lost = 'Lost',
  Won = 'Won',
}

/** Size of a majority of n voters. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The largest index acknowledged by a majority of `voters`, given each voter's acknowledged (matched) index.
 * Voters with no acknowledgment count as 0. With no voters there is no constraint (Infinity), as in etcd.
 */
export function committedIndex(voters: Iterable<NodeId>, acked: (id: NodeId) => number | undefined): number {
  const idx: number[] = [];
  for (const id of voters) idx.push(acked(id) ?? 0);
  if (idx.length === 0) return Infinity;
  idx.sort((a, b) => b - a);
  return idx[majority(idx.length) - 1];
}

/** Won when a majority granted, Lost when a majority can no longer be reached, Pending otherwise. */
export function voteResult(voters: Iterable<NodeId>, votes: (id: NodeId) => boolean | undefined): VoteResult {
  let granted = 0;
  let missing = 0;
  let n = 0;
  for (const id of voters) {
    n++;
    const v = votes(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  if (n === 0) return VoteResult.Won; // by convention, as etcd: an empty config wins every vote
  const q = majority(n);
  if (granted >= q) return VoteResult.Won;
  if (granted + missing >= q) return VoteResult.Pending;
  return VoteResult.Lost;
}
