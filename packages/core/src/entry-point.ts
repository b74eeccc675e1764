import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";

/**
 * True when the module whose `import.meta.url` is given is the script Node was started with, so
 * a file can be both a library and a command (`if (isMainModule(import.meta.url)) await main()`).
 * Real paths are compared: an npm bin is a symlink to the module, and `/tmp` may be one too.
 */
export function isMainModule(moduleUrl: string, argv1: string | undefined = process.argv[1]): boolean {
  if (!argv1) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(argv1)).href;
  } catch {
    // The script path no longer exists (deleted after start): it cannot be this module's file.
    return false;
  }
}
