/**
 * The nemesis' consensus cluster: real member processes on loopback (apps/consensus/test/harness.ts
 * ProcessCluster), each started with SYNOD_TEST_HOOKS (libs/testing/src/hooks/member-hooks.ts) so that
 * - every directed peer link i → j goes through its own TcpProxy (member i dials member j at the proxy), which
 *   can blackhole (one way: only i's stream to j), delay or reset that link;
 * - each member's clock can be skewed (wall offset, monotonic rate) while it runs.
 * Processes are stopped by pid (SIGKILL; a paused member is killed just the same).
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAST, ProcessCluster, sleep, waitFor } from '../../apps/consensus/test/harness.js';
import { TcpProxy } from '../../libs/testing/src/proxy.js';
import type { HookControl } from '../../libs/testing/src/hooks/member-hooks.js';

/** Session timeouts may go down to 300 ms; checkpoints every 500 ms (see FAST). */
export const NEMESIS_ARGS = [...FAST];

export class NemesisCluster {
  readonly pc: ProcessCluster;
  /** `${from}>${to}` → the proxy member `from` dials member `to` through. */
  readonly links = new Map<string, TcpProxy>();
  private readonly control = new Map<number, HookControl>();
  readonly paused = new Set<number>();

  constructor(
    readonly ids: number[],
    /** Planted bugs for canary runs (MemberTestHooks.plantedBugs), e.g. ['stale-reads']. */
    private readonly plantedBugs: string[] = [],
  ) {
    this.pc = new ProcessCluster(ids, NEMESIS_ARGS);
    this.pc.memberEnv = (id) => ({ SYNOD_TEST_HOOKS: this.controlFile(id) });
  }

  get dir(): string {
    return this.pc.baseDir;
  }

  controlFile(id: number): string {
    return join(this.pc.baseDir, `n${id}.hooks.json`);
  }

  get endpoints(): string[] {
    return this.ids.map((id) => `127.0.0.1:${this.pc.members.get(id)!.clientPort}`);
  }

  link(from: number, to: number): TcpProxy {
    return this.links.get(`${from}>${to}`)!;
  }

  async start(): Promise<void> {
    for (const id of this.ids) await this.pc.prepare(id);
    for (const from of this.ids) await this.routeFrom(from, this.ids);
    for (const id of this.ids) this.pc.spawn(id);
    await Promise.all(this.ids.map((id) => this.pc.waitServing(id)));
    await this.pc.waitLeader();
  }

  /** Proxies for member `from`'s links to each of `to`, and its control file routing through them. */
  private async routeFrom(from: number, to: number[]): Promise<void> {
    const routes: Record<string, string> = {};
    for (const t of to) {
      if (t === from) continue;
      const p = await this.proxyTo(this.pc.members.get(t)!.peerPort);
      this.links.set(`${from}>${t}`, p);
      routes[String(t)] = p.address;
    }
    this.writeControl(from, { clockOffsetMs: 0, clockRate: 1, peerRoutes: routes, plantedBugs: this.plantedBugs });
  }

  /**
   * Membership: after the cluster removed member `id` (RemoveMember), stop its process and forget it here (its
   * links' proxies stay until stop()).
   */
  async forget(id: number): Promise<void> {
    await this.kill(id);
    this.ids.splice(this.ids.indexOf(id), 1);
    for (const [k, p] of [...this.links]) {
      if (k.startsWith(`${id}>`) || k.endsWith(`>${id}`)) {
        this.links.delete(k);
        await p.close();
      }
    }
  }

  /** Membership: ports and a data dir for a new member `id` (before AddMember). */
  async prepareNew(id: number): Promise<{ peerUrl: string; clientUrl: string }> {
    const m = await this.pc.prepare(id);
    return { peerUrl: `127.0.0.1:${m.peerPort}`, clientUrl: `127.0.0.1:${m.clientPort}` };
  }

  /**
   * Membership: starts member `id` (already added with AddMember) to join the running cluster. Its own links go
   * through proxies; the others dial it at its address from the replicated member table.
   */
  async join(id: number): Promise<void> {
    await this.routeFrom(id, this.ids);
    this.ids.push(id);
    this.pc.spawn(id, 'existing', this.ids);
    await this.pc.waitServing(id, 30_000);
  }

  /**
   * A proxy to `port` on 127.0.0.1 whose own port is none of the members' (freePort released those ports
   * again; the kernel may hand one of them to the proxy's listen(0)).
   */
  private async proxyTo(port: number): Promise<TcpProxy> {
    const reserved = new Set([...this.pc.members.values()].flatMap((m) => [m.clientPort, m.peerPort, m.metricsPort]));
    for (let attempt = 0; attempt < 20; attempt++) {
      const p = await TcpProxy.start(`127.0.0.1:${port}`);
      if (!reserved.has(p.port)) return p;
      await p.close();
    }
    throw new Error('no proxy port outside the members\' ports after 20 attempts');
  }

  private writeControl(id: number, c: HookControl): void {
    this.control.set(id, c);
    const file = this.controlFile(id);
    writeFileSync(`${file}.tmp`, JSON.stringify(c));
    renameSync(`${file}.tmp`, file); // atomic: the member never reads half a file
  }

  /** Skews member `id`'s clocks: wall = real + offsetMs; monotonic runs at `rate`. Takes effect within 50 ms. */
  setClock(id: number, offsetMs: number, rate: number): void {
    this.writeControl(id, { ...this.control.get(id)!, clockOffsetMs: offsetMs, clockRate: rate });
  }

  /** The current leader agreed by every running, unpaused member. */
  async leader(timeoutMs = 20_000): Promise<number> {
    return this.pc.waitLeader(this.running(), timeoutMs);
  }

  running(): number[] {
    return this.pc.running().filter((id) => !this.paused.has(id));
  }

  async kill(id: number): Promise<void> {
    this.paused.delete(id);
    await this.pc.kill(id, 'SIGKILL');
  }

  restart(id: number): void {
    if (this.pc.members.get(id)!.proc) throw new Error(`member ${id} is still running`);
    this.pc.spawn(id);
  }

  pause(id: number): void {
    const p = this.pc.members.get(id)!.proc;
    if (!p) throw new Error(`member ${id} is not running`);
    process.kill(p.pid!, 'SIGSTOP');
    this.paused.add(id);
  }

  resume(id: number): void {
    const p = this.pc.members.get(id)!.proc;
    if (p && this.paused.has(id)) process.kill(p.pid!, 'SIGCONT');
    this.paused.delete(id);
  }

  /** Every link back to pass, no delay; every clock back to real time; paused members resumed. */
  healAll(): void {
    for (const p of this.links.values()) {
      p.delayMs = 0;
      p.setMode('pass');
    }
    for (const id of this.ids) {
      const c = this.control.get(id);
      if (c && (c.clockOffsetMs !== 0 || c.clockRate !== 1)) this.setClock(id, 0, 1);
    }
    for (const id of [...this.paused]) this.resume(id);
  }

  /** After healing: every member runs, answers Status and agrees on one leader. */
  async waitRecovered(timeoutMs = 30_000): Promise<number> {
    for (const id of this.ids) if (!this.pc.members.get(id)!.proc) this.restart(id);
    await Promise.all(this.ids.map((id) => this.pc.waitServing(id, timeoutMs)));
    return this.pc.waitLeader(this.ids, timeoutMs);
  }

  /** Waits until every member has applied the same index and it stops moving; returns it. */
  async waitConverged(timeoutMs = 20_000): Promise<number> {
    let last = -1;
    return waitFor(
      'every member to apply the same index',
      async () => {
        const st = await Promise.all(this.ids.map((id) => this.pc.status(id, 2000)));
        const applied = st.map((s) => Number(s.appliedIndex));
        const same = applied.every((a) => a === applied[0]);
        if (same && applied[0] === last) return applied[0];
        last = same ? applied[0] : -1;
        await sleep(150);
        return undefined;
      },
      timeoutMs,
      100,
    );
  }

  logOf(id: number): string {
    return this.pc.logOf(id);
  }

  async stop(): Promise<void> {
    for (const id of [...this.paused]) this.resume(id);
    await this.pc.stopAll();
    await Promise.all([...this.links.values()].map((p) => p.close()));
  }
}
