import type { CauseCounts, CutShortCause, DispatchSummary, FateCounts, JobFate, JobRecord } from "./types.ts";

const FATES: readonly JobFate[] = ["completed", "cut_short", "failed", "dropped", "unplaced", "abandoned", "terminated"];

export function emptyFateCounts(): FateCounts {
  return { completed: 0, cut_short: 0, failed: 0, dropped: 0, unplaced: 0, abandoned: 0, terminated: 0 };
}

export function emptyCauseCounts(): CauseCounts {
  return { worker_gone: 0, job_process_killed: 0, job_failed: 0, job_succeeded_early: 0, room_deleted: 0, agent_never_joined: 0 };
}

export function copyRecord(r: JobRecord): JobRecord {
  return {
    ...r,
    offers: r.offers.map((o) => ({ ...o })),
    lateSignals: [...r.lateSignals],
    ...(r.participantAttributes === undefined ? {} : { participantAttributes: { ...r.participantAttributes } }),
  };
}

/**
 * The dispatcher's book of jobs. A fate is final: the first signal that ends a job wins and
 * later ones are kept as `lateSignals`, so a record never flips from `dropped` to `completed`.
 */
export class JobLedger {
  readonly #jobs = new Map<string, JobRecord>();

  add(record: JobRecord): void {
    if (this.#jobs.has(record.id)) {
      throw new Error(`job id "${record.id}" is already used; pass a unique id or omit it`);
    }
    this.#jobs.set(record.id, record);
  }

  has(id: string): boolean {
    return this.#jobs.has(id);
  }

  /** The live record (mutable, internal use). */
  get(id: string): JobRecord | undefined {
    return this.#jobs.get(id);
  }

  all(): JobRecord[] {
    return [...this.#jobs.values()];
  }

  running(): JobRecord[] {
    return this.all().filter((j) => j.state === "running");
  }

  /** Ends a job. Returns false (and notes the signal) when the job already had a fate. */
  finish(id: string, fate: JobFate, reason: string, at: number, error?: string, cause?: CutShortCause): boolean {
    const job = this.#jobs.get(id);
    if (!job) return false;
    if (job.state === "ended") {
      job.lateSignals.push(`${fate}:${reason}`);
      return false;
    }
    job.state = "ended";
    job.fate = fate;
    job.endReason = reason;
    job.endedAt = at;
    if (error) job.error = error;
    if (cause) job.cause = cause;
    return true;
  }

  summary(): DispatchSummary {
    const byFate = emptyFateCounts();
    const cutShortByCause = emptyCauseCounts();
    const notRunByReason: Record<string, number> = {};
    const byDeployment: Record<string, FateCounts> = {};
    const byWorker: Record<string, FateCounts> = {};
    let inFlight = 0;
    for (const job of this.#jobs.values()) {
      if (!job.fate) {
        inFlight++;
        continue;
      }
      byFate[job.fate]++;
      if (job.fate === "cut_short" && job.cause) cutShortByCause[job.cause]++;
      if (job.fate === "unplaced" || job.fate === "abandoned") {
        const reason = job.endReason ?? "";
        notRunByReason[reason] = (notRunByReason[reason] ?? 0) + 1;
      }
      if (job.workerId !== undefined) {
        (byWorker[job.workerId] ??= emptyFateCounts())[job.fate]++;
        (byDeployment[job.workerDeployment ?? ""] ??= emptyFateCounts())[job.fate]++;
      }
    }
    return { total: this.#jobs.size, inFlight, byFate, cutShortByCause, notRunByReason, byDeployment, byWorker };
  }
}

export function isJobFate(value: string): value is JobFate {
  return (FATES as readonly string[]).includes(value);
}
