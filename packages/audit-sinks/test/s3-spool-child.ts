/**
 * Child process of s3-restart.test.ts: an s3Sink writing `total` records in batches of `batch`,
 * printing `ack <lastSeq>` after each write resolves (i.e. once the batch is in the spool) and
 * `uploaded <objects>` as objects reach S3. The
 * parent kills it with SIGKILL at some point and checks that a new sink on the same spoolDir
 * delivers every acknowledged record, once, in order. Argument: JSON
 * `{ spoolDir, port, total, batch, maxRecords }`.
 */
import { s3Sink } from "../src/s3/index.ts";
import { BUCKET, clientConfig, fakeRecords } from "./s3-helpers.ts";

interface ChildArgs {
  spoolDir: string;
  port: number;
  total: number;
  batch: number;
  maxRecords: number;
}

const args = JSON.parse(process.argv[2] ?? "{}") as ChildArgs;
let uploaded = 0;
const sink = await s3Sink({
  bucket: BUCKET,
  prefix: "audit/prod",
  spoolDir: args.spoolDir,
  clientConfig: clientConfig(args.port),
  requestTimeoutMs: 500,
  retry: { initialDelayMs: 10, maxDelayMs: 100 },
  batch: { maxRecords: args.maxRecords, maxDelayMs: 1 },
  onBacklog: (stats) => {
    if (stats.uploadedObjects > uploaded) {
      uploaded = stats.uploadedObjects;
      process.stdout.write(`uploaded ${uploaded}\n`);
    }
  },
});
const records = fakeRecords(1, args.total);
for (let start = 0; start < records.length; start += args.batch) {
  const batch = records.slice(start, start + args.batch);
  await sink.write(batch);
  process.stdout.write(`ack ${batch.at(-1)!.seq}\n`);
}
process.stdout.write("done\n");
// Stay alive (uploading in the background) until the parent kills us.
setInterval(() => {}, 60_000);
