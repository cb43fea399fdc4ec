/**
 * A small 64-bit (two 32-bit lanes) FNV-style running hash. Used for the event-trace hash of a run and the
 * application state's chained digest. Not cryptographic; only needs to make accidental equality unlikely.
 */
// Host globals captured once: inside jest's vm contexts every access to a global like `Math` is slow.
const imul = Math.imul;
const floor = Math.floor;
const fromCharCode = String.fromCharCode;

export class Hash64 {
  constructor(
    public h1 = 0x811c9dc5,
    public h2 = 0x9747b28c,
  ) {}

  num(x: number): this {
    // Mix integers (and the high part of numbers beyond 32 bits) into both lanes.
    const lo = x | 0;
    const hi = floor(x / 0x100000000) | 0;
    this.h1 = imul(this.h1 ^ lo, 0x01000193);
    this.h2 = imul(this.h2 ^ lo, 0x5bd1e995);
    this.h2 ^= this.h2 >>> 15;
    if (hi !== 0) {
      this.h1 = imul(this.h1 ^ hi, 0x01000193);
      this.h2 = imul(this.h2 ^ hi, 0x5bd1e995);
    }
    return this;
  }

  str(s: string): this {
    let h1 = this.h1;
    let h2 = this.h2;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = imul(h1 ^ c, 0x01000193);
      h2 = imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    this.h1 = h1;
    this.h2 = h2;
    return this.num(s.length);
  }

  bytes(b: Uint8Array): this {
    let h1 = this.h1;
    let h2 = this.h2;
    for (let i = 0; i < b.length; i++) {
      h1 = imul(h1 ^ b[i], 0x01000193);
      h2 = imul(h2 ^ b[i], 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    this.h1 = h1;
    this.h2 = h2;
    return this.num(b.length);
  }

  hex(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0');
  }

  clone(): Hash64 {
    return new Hash64(this.h1, this.h2);
  }
}

/** Bytes → latin1 string (payloads in the simulator are ASCII). */
export function bytesToString(b: Uint8Array): string {
  if (b.length <= 4096) return fromCharCode(...b);
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

export function stringToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}
