import { constants, fstatSync, statSync } from "node:fs";
import { open, readdir, rename, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";

/**
 * The few file operations the sink performs. The default is Node's `fs`; tests wrap it to
 * inject faults (a full disk, a failing fsync, writes split into pieces) while the real
 * file system still runs underneath.
 */
export interface AuditFileIo {
  /** Opens an existing file for read+write (`create: false`) or creates a new one exclusively. */
  open(path: string, options: { create: boolean; mode: number }): Promise<AuditFileHandle>;
  rename(from: string, to: string): Promise<void>;
  readdir(dir: string): Promise<string[]>;
  /** Makes a directory's entries (new and renamed files) durable. */
  syncDir(dir: string): Promise<void>;
  /** Mode bits of a path, or undefined if it does not exist. */
  modeOf(path: string): Promise<number | undefined>;
  /** Inode number of a path, or undefined if it does not exist (to notice the file was replaced). */
  inodeOf?(path: string): number | undefined;
}

/** What the sink checks of its open file before and after each write. */
export interface AuditFileIdentity {
  size: number;
  ino: number;
  /** 0 once the file was removed (`rm`): writes would go to an inode no path reaches. */
  nlink: number;
}

export interface AuditFileHandle {
  /** Writes at `position`; may write fewer bytes than asked (returns how many). */
  write(data: Uint8Array, position: number): Promise<number>;
  read(into: Uint8Array, position: number): Promise<number>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  /** Size, inode and link count of the open file (optional for injected handles). */
  identity?(): AuditFileIdentity;
  /** The OS file descriptor, for the synchronous last flush at process exit (optional). */
  readonly fd?: number;
  chmod(mode: number): Promise<void>;
  close(): Promise<void>;
}

class NodeHandle implements AuditFileHandle {
  constructor(private readonly fh: FileHandle) {}
  get fd(): number {
    return this.fh.fd;
  }
  identity(): AuditFileIdentity {
    const st = fstatSync(this.fh.fd);
    return { size: st.size, ino: st.ino, nlink: st.nlink };
  }
  async write(data: Uint8Array, position: number): Promise<number> {
    return (await this.fh.write(data, 0, data.byteLength, position)).bytesWritten;
  }
  async read(into: Uint8Array, position: number): Promise<number> {
    return (await this.fh.read(into, 0, into.byteLength, position)).bytesRead;
  }
  datasync(): Promise<void> {
    return this.fh.datasync();
  }
  truncate(length: number): Promise<void> {
    return this.fh.truncate(length);
  }
  async size(): Promise<number> {
    // fstat answers from the inode in memory: a synchronous call costs ~1 µs, while the async
    // one is a thread-pool round trip on every group-commit round.
    return fstatSync(this.fh.fd).size;
  }
  chmod(mode: number): Promise<void> {
    return this.fh.chmod(mode);
  }
  close(): Promise<void> {
    return this.fh.close();
  }
}

export const nodeFileIo: AuditFileIo = {
  async open(path, { create, mode }) {
    const flags = create
      ? constants.O_RDWR | constants.O_CREAT | constants.O_EXCL
      : constants.O_RDWR;
    return new NodeHandle(await open(path, flags, mode));
  },
  rename,
  readdir: (dir) => readdir(dir),
  async syncDir(dir) {
    const fh = await open(dir, constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  inodeOf(path) {
    try {
      return statSync(path).ino;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  },
  async modeOf(path) {
    try {
      return (await stat(path)).mode & 0o7777;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  },
};
