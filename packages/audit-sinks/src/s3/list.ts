import type { ListObjectsV2CommandInput, ListObjectsV2CommandOutput, S3Client } from "@aws-sdk/client-s3";
import { S3SinkError } from "./errors.ts";

type ClientS3Module = typeof import("@aws-sdk/client-s3");

/**
 * Every page of one ListObjectsV2 listing, following its continuation tokens. A page marked
 * truncated without a token throws: stopping there would silently miss the rest of the listing
 * (a chain head that is not the newest, a log verified whole when it is not).
 */
export async function* listObjectPages(
  sdk: Pick<ClientS3Module, "ListObjectsV2Command">,
  client: Pick<S3Client, "send">,
  input: Omit<ListObjectsV2CommandInput, "ContinuationToken">,
  request: () => { abortSignal: AbortSignal },
): AsyncGenerator<ListObjectsV2CommandOutput> {
  let continuationToken: string | undefined;
  do {
    const page = await client.send(new sdk.ListObjectsV2Command({ ...input, ...(continuationToken !== undefined && { ContinuationToken: continuationToken }) }), request());
    yield page;
    continuationToken = undefined;
    if (page.IsTruncated) {
      if (page.NextContinuationToken === undefined || page.NextContinuationToken === "") {
        throw new S3SinkError(`ListObjectsV2 of ${input.Prefix ?? ""} was truncated without a continuation token`);
      }
      continuationToken = page.NextContinuationToken;
    }
  } while (continuationToken !== undefined);
}
