/**
 * The low-level file operations the WAL uses, behind an interface so tests can inject faults
 * (see CrashingFileOps). `nodeFileOps` is the real implementation on `fs.promises`.
 *
 * Durability contract the WAL relies on (POSIX): data written to a file is durable after `datasync()`
 * (or `sync()`, which also flushes metadata); a created, renamed or removed directory entry is durable
 * after `syncDir()` of its directory.
 */
import { promises as fs } from 'node:fs';

export interface WritableFile {
  readonly path: string;
  /** Writes all of `data` at byte `position` (loops over short writes). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** fdatasync(2): file data (and the size) are durable when it resolves. */
  datasync(): Promise<void>;
  /** fsync(2). */
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface FileOps {
  /** mkdir -p; resolves true when it created a directory. */
  mkdirp(path: string): Promise<boolean>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Buffer>;
  /** Opens an existing file for writing at explicit positions, without truncating it. */
  openWrite(path: string): Promise<WritableFile>;
  /** Creates a file for writing; `exclusive` fails if it exists, otherwise an existing file is truncated. */
  create(path: string, exclusive: boolean): Promise<WritableFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync(2) of a directory, making entries created, renamed or removed in it durable. */
  syncDir(path: string): Promise<void>;
}

class NodeWritableFile implements WritableFile {
  constructor(
    readonly path: string,
    private readonly handle: fs.FileHandle,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
      if (bytesWritten <= 0) throw new Error(`short write to ${this.path} at ${position + done}`);
      done += bytesWritten;
    }
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

export const nodeFileOps: FileOps = {
  async mkdirp(path) {
    return (await fs.mkdir(path, { recursive: true })) !== undefined;
  },
  readdir: (path) => fs.readdir(path),
  readFile: (path) => fs.readFile(path),
  async openWrite(path) {
    return new NodeWritableFile(path, await fs.open(path, 'r+'));
  },
  async create(path, exclusive) {
    return new NodeWritableFile(path, await fs.open(path, exclusive ? 'wx' : 'w'));
  },
  rename: (from, to) => fs.rename(from, to),
  unlink: (path) => fs.unlink(path),
  async syncDir(path) {
    const handle = await fs.open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

/**
 * Wraps a FileOps layer so that `onDatasync(seconds)` is called after every fdatasync of a file opened
 * through it (metrics time it; tests and benchmarks count it).
 */
export function observeDatasync(base: FileOps, onDatasync: (seconds: number) => void): FileOps {
  const wrap = (f: WritableFile): WritableFile => ({
    path: f.path,
    write: (d, p) => f.write(d, p),
    datasync: async () => {
      const t0 = performance.now();
      await f.datasync();
      onDatasync((performance.now() - t0) / 1000);
    },
    sync: () => f.sync(),
    truncate: (n) => f.truncate(n),
    close: () => f.close(),
  });
  return {
    mkdirp: (p) => base.mkdirp(p),
    readdir: (p) => base.readdir(p),
    readFile: (p) => base.readFile(p),
    openWrite: async (p) => wrap(await base.openWrite(p)),
    create: async (p, exclusive) => wrap(await base.create(p, exclusive)),
    rename: (a, b) => base.rename(a, b),
    unlink: (p) => base.unlink(p),
    syncDir: (p) => base.syncDir(p),
  };
}

/** A FileOps layer that counts fdatasyncs (tests and benchmarks); the real file layer by default. */
export type CountingFileOps = FileOps & { readonly datasyncs: number };

export function countingFileOps(base: FileOps = nodeFileOps): CountingFileOps {
  let n = 0;
  const ops = observeDatasync(base, () => {
    n++;
  });
  return Object.defineProperty(ops, 'datasyncs', { get: () => n, enumerable: true }) as CountingFileOps;
}
