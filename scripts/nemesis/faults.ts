/**
 * The faults of the nemesis, each injected into a running NemesisCluster and held for `holdMs`, then healed.
 * Every choice (target, variant, amounts) comes from the run's Rng, so a seed names the same fault again.
 *
 * - kill: SIGKILL the leader (or a random member), restart it after the hold (WAL recovery).
 * - pause: SIGSTOP the leader (or a random member) longer than the election timeout and the session TTL,
 *   then SIGCONT: it wakes up believing it leads, with stale timers (the classic GC-pause scenario).
 * - partition: through the per-link TcpProxies — isolate the leader (both ways), split into a minority and a
 *   majority, one-way (the leader's outgoing streams held, incoming pass), delay every link, or drop (reset
 *   connections on random links again and again, losing what was in flight).
 * - clock: skew one member's clock (the leader's by preference): a wall-clock step of ± tens of seconds, or a
 *   monotonic clock running fast or slow (0.5×–2×), or both.
 * - restart-all: SIGKILL every member at once mid-load, restart them all: nothing acknowledged may be lost.
 * - membership: replace a member under load — RemoveMember (the leader, half the time: it steps down first),
 *   stop it, AddMember a fresh one as a learner, start it, promote it once caught up; in a third of the runs the
 *   leader is SIGKILLed between AddMember and the promotion (restarted after 1 s).
 */
import { SynodClient } from '@app/client';
import type { Rng } from '@app/testing';
import { sleep, waitFor } from '../../apps/consensus/test/harness.js';
import type { NemesisCluster } from './cluster.js';
import type { FaultKind } from './types.js';

export interface InjectedFault {
  /** e.g. "partition(split: [2,5] | [1,3,4])". */
  description: string;
  /** Heals the fault (restarts killed members, resumes, reconnects, resets clocks). */
  heal(): Promise<void>;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)];

async function target(c: NemesisCluster, rng: Rng): Promise<{ id: number; isLeader: boolean }> {
  const leader = await c.leader();
  if (rng.next() < 0.7) return { id: leader, isLeader: true };
  const id = pick(rng, c.ids);
  return { id, isLeader: id === leader };
}

const who = (t: { id: number; isLeader: boolean }): string => `member ${t.id}${t.isLeader ? ' (leader)' : ''}`;

/** Injects one fault of `kind` and holds it for `holdMs`; the caller heals it with the returned `heal`. */
export const PARTITION_VARIANTS = ['isolate-leader', 'split', 'one-way', 'delay', 'drop'] as const;
export const CLOCK_VARIANTS = ['step', 'rate', 'both'] as const;

/** Injects one fault of `kind` (the variant given or one picked by `rng`), holds it `holdMs`; heal with `heal`. */
export async function inject(kind: FaultKind, c: NemesisCluster, rng: Rng, holdMs: number, variant?: string): Promise<InjectedFault> {
  const choose = <T extends string>(options: readonly T[]): T => {
    const v = rng.int(options.length); // drawn even when a variant is given: the rest of the plan stays the same
    if (variant === undefined) return options[v];
    if (!options.includes(variant as T)) throw new Error(`fault ${kind} has no variant ${variant} (${options.join(', ')})`);
    return variant as T;
  };
  switch (kind) {
    case 'kill': {
      const t = await target(c, rng);
      await c.kill(t.id);
      await sleep(holdMs);
      return { description: `kill(${who(t)}, restarted after ${holdMs} ms)`, heal: async () => c.restart(t.id) };
    }
    case 'pause': {
      const t = await target(c, rng);
      c.pause(t.id);
      await sleep(holdMs);
      return { description: `pause(${who(t)} SIGSTOP for ${holdMs} ms)`, heal: async () => c.resume(t.id) };
    }
    case 'partition': {
      const leader = await c.leader();
      const v = choose(PARTITION_VARIANTS);
      const links = [...c.links.entries()].map(([k, p]) => ({ from: Number(k.split('>')[0]), to: Number(k.split('>')[1]), p }));
      let description: string;
      let stopDrop = false;
      let dropper: Promise<void> | undefined;
      switch (v) {
        case 'isolate-leader':
          for (const l of links) if (l.from === leader || l.to === leader) l.p.setMode('blackhole');
          description = `partition(isolate leader ${leader})`;
          break;
        case 'split': {
          const minority = new Set(rng.next() < 0.5 ? [leader] : []);
          const size = Math.floor((c.ids.length - 1) / 2);
          while (minority.size < size) minority.add(pick(rng, c.ids));
          for (const l of links) if (minority.has(l.from) !== minority.has(l.to)) l.p.setMode('blackhole');
          const majority = c.ids.filter((id) => !minority.has(id));
          description = `partition(split [${[...minority].join(',')}] | [${majority.join(',')}], leader was ${leader})`;
          break;
        }
        case 'one-way':
          for (const l of links) if (l.from === leader) l.p.setMode('blackhole');
          description = `partition(one-way: leader ${leader}'s outgoing links held, incoming pass)`;
          break;
        case 'delay': {
          const ms = 20 + rng.int(80);
          for (const l of links) l.p.delayMs = ms;
          description = `partition(delay ${ms} ms on every link)`;
          break;
        }
        case 'drop':
          description = 'partition(drop: random links reset every 150–400 ms)';
          dropper = (async () => {
            while (!stopDrop) {
              const l = pick(rng, links);
              l.p.setMode('reset');
              await sleep(50 + rng.int(100));
              l.p.setMode('pass');
              await sleep(100 + rng.int(300));
            }
          })();
          break;
      }
      await sleep(holdMs);
      stopDrop = true;
      await dropper;
      return { description, heal: async () => c.healAll() };
    }
    case 'clock': {
      const t = await target(c, rng);
      const v = choose(CLOCK_VARIANTS);
      const offset = v === 'rate' ? 0 : (rng.next() < 0.5 ? -1 : 1) * (10_000 + rng.int(50_000));
      const rate = v === 'step' ? 1 : pick(rng, [0.5, 0.75, 1.5, 2]);
      c.setClock(t.id, offset, rate);
      await sleep(holdMs);
      return { description: `clock(${who(t)}: wall ${offset >= 0 ? '+' : ''}${offset} ms, monotonic rate ${rate}×)`, heal: async () => c.setClock(t.id, 0, 1) };
    }
    case 'membership': {
      const start = Date.now();
      const admin = new SynodClient({ endpoints: c.endpoints, deadlineMs: 10_000 });
      try {
        const leader = await c.leader();
        const followers = c.ids.filter((id) => id !== leader);
        const victim = rng.next() < 0.5 ? leader : pick(rng, followers);
        const killLeaderMidway = rng.next() < 1 / 3;
        await admin.removeMember(victim);
        await c.forget(victim);
        const newId = Math.max(...c.pc.members.keys()) + 1;
        const urls = await c.prepareNew(newId);
        await admin.addMember({ id: newId, peerUrls: [urls.peerUrl], clientUrls: [urls.clientUrl], name: `n${newId}` });
        let killed: number | undefined;
        if (killLeaderMidway) {
          killed = await c.leader();
          await c.kill(killed);
        }
        await c.join(newId);
        if (killed !== undefined) {
          await sleep(1000);
          c.restart(killed);
        }
        await waitFor(`member ${newId} promoted`, async () => {
          try {
            await admin.promoteMember(newId);
            return true;
          } catch {
            return false;
          }
        }, 30_000, 200);
        await sleep(Math.max(0, holdMs - (Date.now() - start)));
        const how = killed !== undefined ? `, leader ${killed} SIGKILLed between AddMember and the promotion` : '';
        return { description: `membership(removed member ${victim}${victim === leader ? ' (leader)' : ''}, added and promoted member ${newId}${how})`, heal: async () => undefined };
      } finally {
        admin.close();
      }
    }
    case 'restart-all': {
      await Promise.all(c.ids.map((id) => c.kill(id)));
      const down = 300 + rng.int(700);
      await sleep(down);
      for (const id of c.ids) c.restart(id);
      await sleep(Math.max(0, holdMs - down));
      return { description: `restart-all(SIGKILL all ${c.ids.length}, restarted after ${down} ms)`, heal: async () => undefined };
    }
  }
}
