/** EtcdWatchMux against a real etcd: many watches on one stream, cancel, a broken stream, close. */
import { Etcd3 } from 'etcd3';
import type { IWatchResponse } from 'etcd3';
import { EtcdWatchMux, prefixEnd } from '@app/etcd';
import { EtcdServer } from '../../testing/src/servers/etcd.js';

let server: EtcdServer;
let client: Etcd3;

beforeAll(async () => {
  server = await EtcdServer.start();
  client = new Etcd3({ hosts: [server.endpoint] });
}, 60_000);

afterAll(async () => {
  client?.close();
  await server?.stop();
});

const until = async (what: string, f: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

it('prefixEnd is the first key after the prefix', () => {
  expect(prefixEnd(Buffer.from('a/')).toString()).toBe('a0');
  expect([...prefixEnd(Buffer.from([0x61, 0xff]))]).toEqual([0x62]);
  expect([...prefixEnd(Buffer.from([0xff, 0xff]))]).toEqual([0]);
});

it('runs many watches on one stream; a cancelled watch hears nothing more', async () => {
  let opened = 0;
  const mux = new EtcdWatchMux(() => {
    opened++;
    return client.watchClient.watch();
  });
  const a: IWatchResponse[] = [];
  const b: IWatchResponse[] = [];
  const cancelA = await mux.add({ key: Buffer.from('mux/a') }, (r) => r && a.push(r));
  await mux.add({ key: Buffer.from('mux/b') }, (r) => r && b.push(r));
  expect(opened).toBe(1);
  expect(mux.size).toBe(2);
  await until('both watches created', () => a.some((r) => r.created) && b.some((r) => r.created));
  await client.put('mux/a').value('1');
  await client.put('mux/b').value('1');
  await until('both events', () => a.some((r) => r.events.length > 0) && b.some((r) => r.events.length > 0));
  cancelA();
  cancelA(); // idempotent
  expect(mux.size).toBe(1);
  const before = a.filter((r) => r.events.length > 0).length;
  await client.put('mux/a').value('2');
  await client.put('mux/b').value('2');
  await until('b sees the second put', () => b.filter((r) => r.events.length > 0).length === 2);
  expect(a.filter((r) => r.events.length > 0).length).toBe(before);
  mux.close();
});

it('a broken stream calls every handler with undefined once; the next add opens a new stream', async () => {
  const streams: Array<{ cancel(): void }> = [];
  const mux = new EtcdWatchMux(async () => {
    const s = await client.watchClient.watch();
    streams.push(s);
    return s;
  });
  const seen: Array<IWatchResponse | undefined> = [];
  await mux.add({ key: Buffer.from('mux/c') }, (r) => seen.push(r));
  await until('created', () => seen.some((r) => r?.created));
  streams[0].cancel(); // the stream breaks (as when etcd goes away)
  await until('handler told', () => seen.includes(undefined));
  expect(seen.filter((r) => r === undefined)).toHaveLength(1);
  const again: Array<IWatchResponse | undefined> = [];
  await mux.add({ key: Buffer.from('mux/c') }, (r) => again.push(r));
  expect(streams).toHaveLength(2);
  await until('created on the new stream', () => again.some((r) => r?.created));
  mux.close();
  await until('closed: handler told', () => again.includes(undefined));
  const late: Array<IWatchResponse | undefined> = [];
  const cancel = await mux.add({ key: Buffer.from('mux/c') }, (r) => late.push(r));
  await until('add after close answers undefined', () => late.length === 1 && late[0] === undefined);
  cancel();
  expect(streams).toHaveLength(2);
});
