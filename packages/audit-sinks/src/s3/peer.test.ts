import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";

/** Source files of a subpath, without tests. */
async function sources(dir: URL): Promise<{ name: string; text: string }[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith(".ts") && !name.endsWith(".test.ts"));
  return Promise.all(names.map(async (name) => ({ name, text: await readFile(new URL(name, dir), "utf8") })));
}

/** `import ... from "pkg..."` statements that are not `import type`. */
function runtimeImportsOf(text: string, pkg: string): string[] {
  const statements = text.match(/^import\s[^;]*?from\s+"[^"]+";/gms) ?? [];
  return statements.filter((s) => !/^import\s+type\s/.test(s) && s.includes(`"${pkg}`));
}

describe("optional peers", () => {
  it("/s3 loads @aws-sdk/client-s3 only on demand, so importing it without the SDK works", async () => {
    for (const { name, text } of await sources(new URL("./", import.meta.url))) {
      expect({ name, imports: runtimeImportsOf(text, "@aws-sdk/") }).toEqual({ name, imports: [] });
    }
  });

  it("/otel loads @opentelemetry/api-logs only on demand", async () => {
    for (const { name, text } of await sources(new URL("../otel/", import.meta.url))) {
      expect({ name, imports: runtimeImportsOf(text, "@opentelemetry/") }).toEqual({ name, imports: [] });
    }
  });
});
