/**
 * Error text and deadlines shared by the log, the verifier and the sinks, so every part of the
 * audit code words a failure the same way and bounds a wait the same way.
 */

/** `Name: message` for an Error (plus its errno code when the message lacks it), else `String(x)`; never throws. */
export function describeError(error: unknown): string {
  try {
    if (error instanceof Error) {
      const code = (error as NodeJS.ErrnoException).code;
      const message = typeof code === "string" && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
      return `${error.name}: ${message}`;
    }
    return String(error);
  } catch {
    return "unprintable error";
  }
}

/** A file error in words a reader of the message needs (`no such file or directory`), else its message. */
export function describeIoError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  switch (e?.code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    default:
      return e instanceof Error ? e.message : String(error);
  }
}

/** A sink's write did not settle within `writeTimeoutMs`. */
export class AuditSinkTimeoutError extends Error {
  override name = "AuditSinkTimeoutError";
}

/** Resolves true if `work` settles before `deadline` (epoch ms; undefined: no deadline), false otherwise. */
export async function withDeadline(work: Promise<unknown>, deadline: number | undefined): Promise<boolean> {
  if (deadline === undefined) {
    await work;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
