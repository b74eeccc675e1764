// The pagination edge no real S3-protocol server here produces: a page marked truncated with no
// continuation token. The listing must fail, not end early. (Ordinary paging runs against the
// real fauxqs server in test/s3-*.test.ts.)
import { describe, expect, it } from "vitest";
import { S3SinkError } from "./errors.ts";
import { listObjectPages } from "./list.ts";

class ListObjectsV2Command {
  constructor(readonly input: Record<string, unknown>) {}
}
const request = () => ({ abortSignal: new AbortController().signal });

function client(pages: Record<string, unknown>[]) {
  const seen: Record<string, unknown>[] = [];
  return {
    seen,
    send: async (command: ListObjectsV2Command) => {
      seen.push(command.input);
      return pages.shift() as never;
    },
  };
}

async function collect(c: ReturnType<typeof client>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const page of listObjectPages({ ListObjectsV2Command } as never, c as never, { Bucket: "b", Prefix: "p/" }, request)) out.push(page);
  return out;
}

describe("listObjectPages", () => {
  it("follows continuation tokens to the last page", async () => {
    const c = client([{ IsTruncated: true, NextContinuationToken: "t1" }, { IsTruncated: false }]);
    expect(await collect(c)).toHaveLength(2);
    expect(c.seen).toEqual([{ Bucket: "b", Prefix: "p/" }, { Bucket: "b", Prefix: "p/", ContinuationToken: "t1" }]);
  });

  it("throws when a truncated page has no continuation token, naming the listing", async () => {
    for (const token of [undefined, ""]) {
      const c = client([{ IsTruncated: true, NextContinuationToken: token }]);
      await expect(collect(c)).rejects.toThrow(S3SinkError);
      await expect(collect(client([{ IsTruncated: true, NextContinuationToken: token }]))).rejects.toThrow(/ListObjectsV2 of p\/ was truncated without a continuation token/);
    }
  });
});
