import { watch, type FSWatcher } from "node:fs";

export interface DirectoryWatch {
  close(): void;
}

/**
 * Calls `onChange` when anything in `dir` may have changed: an `fs.watch` on the directory (the
 * kubelet replaces a projected file by flipping the `..data` symlink, which a watch on the file
 * itself never sees) plus a poll, because watch events can be missed or unsupported. The caller
 * compares contents, so spurious calls are harmless. Neither keeps the process alive.
 */
export function watchDirectory(dir: string, onChange: () => void, pollIntervalMs: number): DirectoryWatch {
  let watcher: FSWatcher | undefined;
  let closed = false;
  const start = () => {
    try {
      const w = watch(dir, { persistent: false }, () => onChange());
      w.on("error", () => {
        w.close();
        if (watcher === w) watcher = undefined;
      });
      watcher = w;
    } catch {
      // No watch support (or the directory is gone for now): the poll covers it.
    }
  };
  start();
  const timer = setInterval(() => {
    if (closed) return;
    if (watcher === undefined) start();
    onChange();
  }, pollIntervalMs);
  timer.unref();
  return {
    close() {
      closed = true;
      clearInterval(timer);
      watcher?.close();
      watcher = undefined;
    },
  };
}
