/**
 * The replicated state of a consensus member: the tree (libs/tree) plus the member table (names, peer and
 * client addresses of every member). Both live in the Raft log and the snapshots, so every member — and a
 * member restarted from its WAL, or a new one installing a snapshot — learns every other member's addresses.
 *
 * Log entries: a tree command (libs/tree codec, first byte 0x43 'C') or a member command (first byte 0x4d 'M',
 * then UTF-8 JSON `{op: 'setMember', member}` or `{op: 'removeMember', id}`). Snapshot: 0x57 'W', format 1,
 * u32 length of the member table JSON, the JSON, then the tree's snapshot.
 */
import type { Entry } from '@app/raft';
import type { StateMachine } from '@app/raft-node';
import { CommandResult, TreeStateMachine } from '@app/tree';

export interface MemberInfo {
  id: number;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
}

export type MemberCommand = { op: 'setMember'; member: MemberInfo } | { op: 'removeMember'; id: number };
export type MemberResult = { ok: true; zxid: number };

const MEMBER_KIND = 0x4d;
const SNAPSHOT_KIND = 0x57;
const FORMAT = 1;
const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeMemberCommand(c: MemberCommand): Uint8Array {
  const json = enc.encode(JSON.stringify(c));
  const out = new Uint8Array(json.length + 1);
  out[0] = MEMBER_KIND;
  out.set(json, 1);
  return out;
}

export class ConsensusStateMachine implements StateMachine {
  private table = new Map<number, MemberInfo>();

  constructor(
    readonly tree: TreeStateMachine,
    initial: Iterable<MemberInfo>,
    /** Called whenever the member table changes (applied command or restored snapshot). */
    private readonly onMembers: (members: MemberInfo[]) => void,
  ) {
    for (const m of initial) this.table.set(m.id, m);
  }

  members(): MemberInfo[] {
    return [...this.table.values()].sort((a, b) => a.id - b.id);
  }

  member(id: number): MemberInfo | undefined {
    return this.table.get(id);
  }

  apply(entry: Entry): CommandResult | MemberResult {
    if (entry.data.length > 0 && entry.data[0] === MEMBER_KIND) {
      let c: MemberCommand | undefined;
      try {
        c = JSON.parse(dec.decode(entry.data.subarray(1))) as MemberCommand;
      } catch {
        c = undefined;
      }
      if (c?.op === 'setMember' && c.member && Number.isSafeInteger(c.member.id)) this.table.set(c.member.id, c.member);
      else if (c?.op === 'removeMember') this.table.delete(c.id);
      this.onMembers(this.members());
      return { ok: true, zxid: entry.index };
    }
    return this.tree.apply(entry);
  }

  snapshot(): Uint8Array {
    const json = enc.encode(JSON.stringify(this.members()));
    const tree = this.tree.snapshot();
    const out = new Uint8Array(6 + json.length + tree.length);
    out[0] = SNAPSHOT_KIND;
    out[1] = FORMAT;
    new DataView(out.buffer).setUint32(2, json.length);
    out.set(json, 6);
    out.set(tree, 6 + json.length);
    return out;
  }

  restore(data: Uint8Array): void {
    if (data.length < 6 || data[0] !== SNAPSHOT_KIND || data[1] !== FORMAT) {
      throw new Error(`snapshot is not a consensus snapshot (kind 0x${(data[0] ?? 0).toString(16)}, format ${data[1]}); upgrade this member or check the data dir`);
    }
    const len = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(2);
    const members = JSON.parse(dec.decode(data.subarray(6, 6 + len))) as MemberInfo[];
    this.tree.restore(data.subarray(6 + len));
    this.table = new Map(members.map((m) => [m.id, m]));
    this.onMembers(this.members());
  }
}
