// The run's single audit file: the coordinator's own records and every worker's records
// (forwarded over IPC, already hash-chained by the worker) appended to one JSONL file that
// `openrtc audit verify` accepts (several origins interleave; each chain stays in order).
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { verifyAuditLog, type AuditRecord, type AuditSink, type AuditVerifyResult } from "@openrtc/core";
import { fileSink, type FileSink } from "@openrtc/audit-sinks/file";

export class RunAudit {
  readonly path: string;
  readonly #file: FileSink;
  readonly #pending = new Set<Promise<void>>();
  readonly records: AuditRecord[] = [];
  #errors: string[] = [];

  constructor(path: string) {
    this.path = path;
    this.#file = fileSink({ path, onWarning: () => {} });
  }

  open(): Promise<unknown> {
    return this.#file.open();
  }

  /** Appends records as they are (no re-chaining); failures are kept for the summary. */
  append(records: readonly AuditRecord[]): void {
    if (records.length === 0) return;
    this.records.push(...records);
    const p = this.#file.write(records).catch((error: unknown) => {
      this.#errors.push(error instanceof Error ? error.message : String(error));
    });
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** A sink for the coordinator's AuditLog that shares this file (closing the log leaves it open). */
  sink(): AuditSink {
    return {
      name: "run-file",
      write: async (records) => {
        this.append(records);
        await Promise.all(this.#pending);
      },
    };
  }

  get errors(): readonly string[] {
    return this.#errors;
  }

  async close(): Promise<void> {
    await Promise.all(this.#pending);
    await this.#file.close();
  }

  /** Verifies the file as `openrtc audit verify` does. */
  async verify(): Promise<AuditVerifyResult> {
    const lines = createInterface({ input: createReadStream(this.path, "utf8"), crlfDelay: Infinity });
    return verifyAuditLog(lines);
  }
}
