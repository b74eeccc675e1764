/** Child of errors.test.ts: opens a file sink at argv[2] and prints the outcome as JSON. */
import { openFileSink } from "./file-sink.ts";

try {
  const { sink } = await openFileSink({ path: process.argv[2] as string });
  await sink.close();
  process.stdout.write(JSON.stringify({ ok: true }));
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, name: (error as Error).name, message: (error as Error).message }));
}
