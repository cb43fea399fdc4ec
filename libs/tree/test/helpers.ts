/** Test helpers: drive a TreeStateMachine through encoded log entries with increasing indexes and a fake clock. */
import { EntryType } from '@app/raft';
import {
  Command,
  CommandOp,
  CommandResult,
  CommandFailure,
  ResultOf,
  TreeErrorCode,
  TreeOptions,
  TreeStateMachine,
  WatchEvent,
  encodeCommand,
} from '@app/tree';

type DistOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A command whose nowMs defaults to the driver's clock. */
export type Cmd = DistOmit<Command, 'nowMs'> & { nowMs?: number };
type CmdOf<O extends CommandOp> = Extract<Cmd, { op: O }>;

const enc = new TextEncoder();
export const bytes = (s: string): Uint8Array => enc.encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export class Driver {
  index = 0;
  now = 1_700_000_000_000;
  readonly events: WatchEvent[] = [];
  readonly tree: TreeStateMachine;

  constructor(opts: TreeOptions = {}) {
    this.tree = new TreeStateMachine({
      ...opts,
      onEvents: (evs) => {
        this.events.push(...evs);
        opts.onEvents?.(evs);
      },
    });
  }

  /** Apply one command as the next log entry (encoded, as the driver would). */
  run(cmd: Cmd): CommandResult {
    this.index++;
    const data = encodeCommand({ nowMs: this.now, ...cmd } as Command);
    return this.tree.apply({ term: 1, index: this.index, type: EntryType.Normal, data });
  }

  ok<O extends CommandOp>(cmd: CmdOf<O>): Extract<ResultOf<O>, { ok: true }> {
    const r = this.run(cmd);
    if (!r.ok) throw new Error(`expected ${cmd.op} to succeed, got ${r.code}: ${r.message}`);
    return r as Extract<ResultOf<O>, { ok: true }>;
  }

  err(cmd: Cmd, code: TreeErrorCode): CommandFailure {
    const r = this.run(cmd);
    if (r.ok) throw new Error(`expected ${cmd.op} to fail with ${code}, it succeeded: ${JSON.stringify(r)}`);
    if (r.code !== code) throw new Error(`expected ${cmd.op} to fail with ${code}, got ${r.code}: ${r.message}`);
    return r;
  }

  /** Events recorded since the last call. */
  takeEvents(): WatchEvent[] {
    return this.events.splice(0);
  }
}

export function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}
