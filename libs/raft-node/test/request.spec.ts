import { REQUEST_HEADER_BYTES, decodeRequest, encodeRequest } from '@app/raft-node';

describe('request header', () => {
  it('round-trips node id, incarnation and a counter beyond 2^32', () => {
    const cmd = new Uint8Array([1, 2, 3]);
    const id = { nodeId: 0xfffffffe, incarnation: 0x12345678, counter: 2 ** 40 + 7 };
    const framed = encodeRequest(id, cmd);
    expect(framed.length).toBe(REQUEST_HEADER_BYTES + 3);
    const d = decodeRequest(framed)!;
    expect(d.id).toEqual(id);
    expect([...d.command]).toEqual([1, 2, 3]);
  });

  it('decodes a header inside a larger buffer (a subarray view)', () => {
    const framed = encodeRequest({ nodeId: 3, incarnation: 9, counter: 1 }, new Uint8Array([42]));
    const big = new Uint8Array(framed.length + 10);
    big.set(framed, 5);
    const d = decodeRequest(big.subarray(5, 5 + framed.length))!;
    expect(d.id).toEqual({ nodeId: 3, incarnation: 9, counter: 1 });
    expect([...d.command]).toEqual([42]);
  });

  it('refuses data that is not a framed request', () => {
    expect(decodeRequest(new Uint8Array(5))).toBeUndefined();
    expect(decodeRequest(new Uint8Array(REQUEST_HEADER_BYTES))).toBeUndefined(); // wrong magic
  });
});
