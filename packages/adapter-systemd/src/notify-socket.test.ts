import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NotifySocket, NotifySocketError, parseNotifyAddress } from "./notify-socket.ts";

const dir = mkdtempSync(path.join(tmpdir(), "openrtc-notify-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sendError(address: string, message = "READY=1"): NotifySocketError {
  const socket = new NotifySocket(address);
  try {
    socket.send(message);
  } catch (error) {
    return error as NotifySocketError;
  } finally {
    socket.close();
  }
  throw new Error(`send to ${address} succeeded`);
}

describe("parseNotifyAddress", () => {
  it("takes absolute paths and @abstract names", () => {
    expect(parseNotifyAddress("/run/systemd/notify")).toEqual({ kind: "path", path: "/run/systemd/notify" });
    expect(parseNotifyAddress("@/org/freedesktop/systemd1/notify/123")).toEqual({ kind: "abstract", name: "/org/freedesktop/systemd1/notify/123" });
  });

  it.each([["run/notify"], ["vsock:2:1234"], ["@"], [`/${"x".repeat(120)}`], [`@${"x".repeat(120)}`], ["/a\0b"]])("refuses %j", (value) => {
    expect(() => parseNotifyAddress(value)).toThrow(NotifySocketError);
  });
});

describe("NotifySocket errors carry the errno", () => {
  it("ENOENT for a path nobody bound", () => {
    expect(sendError(path.join(dir, "missing.sock")).code).toBe("ENOENT");
  });

  it("ECONNREFUSED for an abstract name nobody bound", () => {
    expect(sendError(`@openrtc-unit-test/${process.pid}/nobody`).code).toBe("ECONNREFUSED");
  });

  it("EPROTOTYPE for a stream socket at the path (not a notify socket)", async () => {
    const file = path.join(dir, "stream.sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(file, resolve));
    try {
      expect(sendError(file).code).toBe("EPROTOTYPE");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("EBADF once closed; close is idempotent", () => {
    const socket = new NotifySocket("@openrtc-unit-test/closed");
    socket.close();
    socket.close();
    expect(() => socket.send("READY=1")).toThrow(expect.objectContaining({ code: "EBADF" }));
  });
});
