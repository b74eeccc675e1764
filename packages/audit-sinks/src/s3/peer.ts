type ClientS3Module = typeof import("@aws-sdk/client-s3");

let sdk: Promise<ClientS3Module> | undefined;

/** The AWS SDK is an optional peer: load it only when an S3 sink or reader is created. */
export function loadClientS3(): Promise<ClientS3Module> {
  sdk ??= importClientS3("@aws-sdk/client-s3");
  // A failed load is not cached, so installing the SDK and retrying works without a restart.
  sdk.catch(() => {
    sdk = undefined;
  });
  return sdk;
}

/** Imports `specifier`, turning "module not found" into what to install. */
export async function importClientS3(specifier: string): Promise<ClientS3Module> {
  try {
    return (await import(specifier)) as ClientS3Module;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") {
      throw new Error(
        `@openrtc/audit-sinks/s3 needs the AWS SDK: install @aws-sdk/client-s3 (e.g. \`npm install @aws-sdk/client-s3\`). ` +
          `Loading "${specifier}" failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    throw error;
  }
}
