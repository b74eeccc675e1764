/** Base class of the S3 sink's own errors, so callers can tell them from SDK errors. */
export class S3SinkError extends Error {
  override readonly name: string = "S3SinkError";
}

/** What is still waiting in the spool, attached to errors that report a backlog. */
export interface S3SpoolBacklog {
  spooledRecords: number;
  spooledBytes: number;
  lastError: string | null;
}

/**
 * `write()` could not take the batch because the spool is at `spoolMaxBytes`. Nothing of the
 * batch was stored: the AuditLog keeps it and retries (and counts the sink error).
 */
export class S3SpoolFullError extends S3SinkError {
  override readonly name = "S3SpoolFullError";
  constructor(
    readonly spoolDir: string,
    readonly batchBytes: number,
    readonly backlog: S3SpoolBacklog,
    readonly spoolMaxBytes: number,
  ) {
    super(
      `S3 audit sink spool is full: ${backlog.spooledRecords} records (${backlog.spooledBytes} bytes) wait in ${spoolDir} ` +
        `and this batch of ${batchBytes} bytes would pass spoolMaxBytes=${spoolMaxBytes}. Uploads are failing` +
        (backlog.lastError ? ` (last error: ${backlog.lastError})` : "") +
        `; fix S3 access or raise spoolMaxBytes. The batch was not stored; the audit log keeps it and retries.`,
    );
  }
}

/** `flush()` gave up waiting; the records are still safe in the spool and keep being retried. */
export class S3FlushTimeoutError extends S3SinkError {
  override readonly name = "S3FlushTimeoutError";
  constructor(
    readonly timeoutMs: number,
    readonly spoolDir: string,
    readonly backlog: S3SpoolBacklog,
  ) {
    super(
      `S3 audit sink flush timed out after ${timeoutMs} ms: ${backlog.spooledRecords} records (${backlog.spooledBytes} bytes) ` +
        `are still spooled in ${spoolDir} and will be uploaded when S3 answers` +
        (backlog.lastError ? ` (last error: ${backlog.lastError})` : "") +
        ".",
    );
  }
}
