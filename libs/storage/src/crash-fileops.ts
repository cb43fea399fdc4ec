/**
 * A fault-injecting FileOps for crash testing: it forwards to a real FileOps and "crashes" at the k-th
 * mutating operation (1-based). The crash throws SimulatedCrash, makes every later call throw too, closes the
 * real handles it opened, and rewrites the files on disk to what a power loss could leave behind:
 *
 *  - a file created (or renamed into place) whose directory was not fsync'ed since is removed;
 *  - bytes written but not datasync'ed are dropped, or partly kept, per `mode`:
 *      'drop'       truncate to the durable length;
 *      'keep-half'  keep the first half of the unsynced bytes (a torn write);
 *      'keep-all'   keep everything written (as after a process kill);
 *      'zero-fill'  keep the size but zero the unsynced bytes (size updated, data blocks not written);
 *      'hole'       zero the first half of the unsynced bytes and keep the rest (pages written out of order).
 *
 * The crashing operation itself does not happen. Model limits: unlink is durable at once (the WAL fsyncs
 * the directory right after each anyway), directories themselves are assumed durable, and writes must not
 * overwrite durable bytes (the WAL only appends; it throws otherwise). Syncs are not forwarded unless
 * `forwardSyncs` is set: durability is what this class simulates.
 */
import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { FileOps, WritableFile, nodeFileOps } from './fileops.js';

export class SimulatedCrash extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulatedCrash';
  }
}

export type CrashMode = 'drop' | 'keep-half' | 'keep-all' | 'zero-fill' | 'hole';
export const CRASH_MODES: readonly CrashMode[] = ['drop', 'keep-half', 'keep-all', 'zero-fill', 'hole'];

export interface CrashingFileOpsOptions {
  /** Crash at this mutating operation (1-based); 0 or Infinity never crashes (the operations are only counted). */
  crashAtOp: number;
  mode?: CrashMode;
  forwardSyncs?: boolean;
}

interface FileState {
  size: number;
  durable: number;
  /** The directory entry is durable (the parent was fsync'ed after the file was created or renamed here). */
  linked: boolean;
}

export class CrashingFileOps implements FileOps {
  /** Mutating operations seen so far. */
  ops = 0;
  crashed = false;
  /** One line per mutating operation, for diagnosing a failing crash point. */
  readonly trace: string[] = [];
  private readonly files = new Map<string, FileState>();
  private readonly open = new Set<WritableFile>();
  private readonly mode: CrashMode;

  constructor(
    private readonly opts: CrashingFileOpsOptions,
    private readonly inner: FileOps = nodeFileOps,
  ) {
    this.mode = opts.mode ?? 'drop';
  }

  private checkAlive(what: string): void {
    if (this.crashed) throw new SimulatedCrash(`after crash: ${what}`);
  }

  /** Counts a mutating operation; crashes when it is the chosen one. */
  private async step(what: string): Promise<void> {
    this.checkAlive(what);
    this.ops++;
    this.trace.push(`${this.ops}: ${what}`);
    if (this.ops === this.opts.crashAtOp) {
      await this.crash();
      throw new SimulatedCrash(`simulated crash at op ${this.ops} (${what}), mode ${this.mode}`);
    }
  }

  private async crash(): Promise<void> {
    this.crashed = true;
    for (const f of this.open) await f.close().catch(() => {});
    this.open.clear();
    for (const [path, st] of this.files) {
      if (!st.linked) {
        await fs.rm(path, { force: true });
        continue;
      }
      const unsynced = st.size - st.durable;
      if (unsynced <= 0) continue;
      switch (this.mode) {
        case 'drop':
          await fs.truncate(path, st.durable);
          break;
        case 'keep-half':
          await fs.truncate(path, st.durable + Math.floor(unsynced / 2));
          break;
        case 'keep-all':
          break;
        case 'zero-fill':
          await zero(path, st.durable, unsynced);
          break;
        case 'hole':
          await zero(path, st.durable, Math.ceil(unsynced / 2));
          break;
      }
    }
    this.files.clear();
  }

  private track(path: string, st: FileState, file: WritableFile): WritableFile {
    this.files.set(path, st);
    this.open.add(file);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const ops = this;
    const state = (): FileState => {
      const s = ops.files.get(path);
      if (!s) throw new Error(`CrashingFileOps: ${path} is no longer tracked (renamed or removed while open)`);
      return s;
    };
    return {
      path,
      async write(data, position) {
        await ops.step(`write ${path} @${position} +${data.length}`);
        const s = state();
        if (position < s.durable) throw new Error(`CrashingFileOps: write to ${path} at ${position} overwrites durable bytes`);
        await file.write(data, position);
        s.size = Math.max(s.size, position + data.length);
      },
      async datasync() {
        await ops.step(`datasync ${path}`);
        if (ops.opts.forwardSyncs) await file.datasync();
        const s = state();
        s.durable = s.size;
      },
      async sync() {
        await ops.step(`sync ${path}`);
        if (ops.opts.forwardSyncs) await file.sync();
        const s = state();
        s.durable = s.size;
      },
      async truncate(length) {
        await ops.step(`truncate ${path} to ${length}`);
        await file.truncate(length);
        const s = state();
        s.size = length;
        s.durable = Math.min(s.durable, length);
      },
      async close() {
        if (ops.crashed) return; // the real handle was closed by the crash
        ops.open.delete(file);
        await file.close();
      },
    };
  }

  async mkdirp(path: string): Promise<boolean> {
    await this.step(`mkdirp ${path}`);
    return this.inner.mkdirp(path);
  }

  async readdir(path: string): Promise<string[]> {
    this.checkAlive(`readdir ${path}`);
    return this.inner.readdir(path);
  }

  async readFile(path: string): Promise<Buffer> {
    this.checkAlive(`readFile ${path}`);
    return this.inner.readFile(path);
  }

  async openWrite(path: string): Promise<WritableFile> {
    this.checkAlive(`openWrite ${path}`);
    const file = await this.inner.openWrite(path);
    const { size } = await fs.stat(path);
    // An existing file is taken as durable: the crash happens in this process's lifetime.
    return this.track(path, this.files.get(path) ?? { size, durable: size, linked: true }, file);
  }

  async create(path: string, exclusive: boolean): Promise<WritableFile> {
    await this.step(`create ${path}${exclusive ? ' (exclusive)' : ''}`);
    const file = await this.inner.create(path, exclusive);
    return this.track(path, { size: 0, durable: 0, linked: false }, file);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.step(`rename ${from} -> ${to}`);
    await this.inner.rename(from, to);
    const st = this.files.get(from);
    this.files.delete(from);
    if (st) this.files.set(to, { ...st, linked: false });
    else {
      const { size } = await fs.stat(to);
      this.files.set(to, { size, durable: size, linked: false });
    }
  }

  async unlink(path: string): Promise<void> {
    await this.step(`unlink ${path}`);
    await this.inner.unlink(path);
    this.files.delete(path);
  }

  async syncDir(path: string): Promise<void> {
    await this.step(`syncDir ${path}`);
    if (this.opts.forwardSyncs) await this.inner.syncDir(path);
    for (const [p, st] of this.files) if (dirname(p) === path) st.linked = true;
  }
}

async function zero(path: string, position: number, length: number): Promise<void> {
  const h = await fs.open(path, 'r+');
  try {
    await h.write(Buffer.alloc(length), 0, length, position);
  } finally {
    await h.close();
  }
}
