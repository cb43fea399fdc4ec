/**
 * The replicated state machines the simulator can run. `AppState` (the default, "digest" app) folds every
 * applied command into a chained digest, so two nodes have the same state at an index exactly when they applied
 * the same commands in the same order. It serializes into snapshots like a real application would. The tree
 * app (tree-app.ts) runs the real `TreeStateMachine` behind the same {@link SimApp} interface.
 */
import { NodeId } from '@app/raft';
import { Hash64, bytesToString, stringToBytes } from './hash.js';

/** What the driver (SimCluster) needs of a node's state machine. */
export interface SimApp {
  /** Apply a committed normal entry that carries a command. */
  applyCommand(index: number, data: Uint8Array): void;
  /** An entry that does not change the application (leader no-op, conf change). */
  skip(index: number): void;
  /**
   * The state digest compared across nodes at `index` (State Machine Safety), right after applying it; undefined
   * when this index is not sampled (a state machine whose digest is costly samples).
   */
  stateDigest(index: number): string | undefined;
  /** Digest of the whole state, always computed (restores, the liveness check). */
  digestHex(): string;
  /** The snapshot payload. */
  encode(): Uint8Array;
  /** Digest of a payload `encode()` returned, when snapshots taken should be compared too. */
  snapshotDigest?(data: Uint8Array): string;
}

/** Makes the state machine of a node: empty, or restored from a snapshot payload taken at `index`. */
export interface AppModel {
  readonly name: string;
  create(node: NodeId): SimApp;
  decode(data: Uint8Array, node: NodeId, index: number): SimApp;
}

export class AppState implements SimApp {
  /** Index of the last entry folded in (commands, no-ops and conf changes alike). */
  index = 0;
  /** Number of commands applied. */
  count = 0;
  private digest = new Hash64();

  applyCommand(index: number, data: Uint8Array): void {
    this.digest.bytes(data);
    this.count++;
    this.index = index;
  }

  /** An entry that does not change the application (leader no-op, conf change). */
  skip(index: number): void {
    this.index = index;
  }

  /** Digest of the applied commands (independent of the index bookkeeping). */
  digestHex(): string {
    return `${this.digest.hex()}/${this.count}`;
  }

  stateDigest(): string {
    return this.digestHex();
  }

  encode(): Uint8Array {
    return stringToBytes(JSON.stringify({ i: this.index, c: this.count, a: this.digest.h1, b: this.digest.h2 }));
  }

  static decode(data: Uint8Array): AppState {
    const s = new AppState();
    if (data.length === 0) return s;
    const o = JSON.parse(bytesToString(data)) as { i: number; c: number; a: number; b: number };
    s.index = o.i;
    s.count = o.c;
    s.digest = new Hash64(o.a, o.b);
    return s;
  }
}

/** The default application: the chained digest. */
export const DIGEST_APP: AppModel = {
  name: 'digest',
  create: () => new AppState(),
  decode: (data) => AppState.decode(data),
};
