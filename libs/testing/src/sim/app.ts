/**
 * The replicated state machine the simulator runs: it folds every applied command into a chained digest, so
 * two nodes have the same state at an index exactly when they applied the same commands in the same order.
 * It serializes into snapshots like a real application would.
 */
import { Hash64, bytesToString, stringToBytes } from './hash.js';

export class AppState {
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
