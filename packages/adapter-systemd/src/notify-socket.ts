import { createRequire } from "node:module";
import { constants } from "node:os";

/**
 * The sd_notify(3) transport: one AF_UNIX SOCK_DGRAM socket, each message one datagram sent to
 * the address in `NOTIFY_SOCKET`. Node has no unix datagram sockets, so `sendto(2)` is called
 * through koffi (a prebuilt FFI); no systemd library is needed at install or run time.
 */

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
// Non-blocking: a receiver whose queue is full makes a blocking sendto wait, and the worker's
// event loop (admission, session tracking) must never wait on systemd. A full queue drops that
// one datagram instead (EAGAIN), which the caller reports.
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sockaddr_un.sun_path) on Linux. */
const SUN_PATH_MAX = 108;
const SA_FAMILY_BYTES = 2;

export type NotifyAddress = { kind: "path"; path: string } | { kind: "abstract"; name: string };

export class NotifySocketError extends Error {
  override readonly name = "NotifySocketError";
  constructor(
    /** An errno name (`ENOENT`, `ECONNREFUSED`, `EAGAIN`, ...) or `EINVAL_ADDRESS` / `EFFI`. */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Parses `NOTIFY_SOCKET`: an absolute path (`/run/systemd/notify`) or an abstract name
 * (`@/org/freedesktop/systemd1/notify`). Anything else (a relative path, systemd ≥ 254's `vsock:`)
 * throws, because sending to it would be a guess.
 */
export function parseNotifyAddress(value: string): NotifyAddress {
  if (value.startsWith("@")) {
    const name = value.slice(1);
    if (name.length === 0) throw new NotifySocketError("EINVAL_ADDRESS", "NOTIFY_SOCKET is '@' with no abstract name");
    if (Buffer.byteLength(name) > SUN_PATH_MAX - 1) {
      throw new NotifySocketError("EINVAL_ADDRESS", `NOTIFY_SOCKET abstract name is longer than ${SUN_PATH_MAX - 1} bytes`);
    }
    return { kind: "abstract", name };
  }
  if (value.startsWith("/")) {
    if (value.includes("\0")) throw new NotifySocketError("EINVAL_ADDRESS", "NOTIFY_SOCKET path contains a NUL byte");
    if (Buffer.byteLength(value) > SUN_PATH_MAX - 1) {
      throw new NotifySocketError("EINVAL_ADDRESS", `NOTIFY_SOCKET path is longer than ${SUN_PATH_MAX - 1} bytes`);
    }
    return { kind: "path", path: value };
  }
  throw new NotifySocketError(
    "EINVAL_ADDRESS",
    `NOTIFY_SOCKET=${JSON.stringify(value.slice(0, 120))} is neither an absolute path nor an @abstract name (only unix datagram sockets are supported)`,
  );
}

/** `struct sockaddr_un` and the length to pass: abstract names are not NUL-terminated. */
function sockaddr(address: NotifyAddress): { buffer: Buffer; length: number } {
  const buffer = Buffer.alloc(SA_FAMILY_BYTES + SUN_PATH_MAX);
  buffer.writeUInt16LE(AF_UNIX, 0);
  if (address.kind === "abstract") {
    const name = Buffer.from(address.name);
    name.copy(buffer, SA_FAMILY_BYTES + 1);
    return { buffer, length: SA_FAMILY_BYTES + 1 + name.length };
  }
  const path = Buffer.from(address.path);
  path.copy(buffer, SA_FAMILY_BYTES);
  return { buffer, length: SA_FAMILY_BYTES + path.length + 1 };
}

interface Libc {
  socket: (domain: number, type: number, protocol: number) => number;
  sendto: (fd: number, data: Buffer, length: number, flags: number, address: Buffer, addressLength: number) => number;
  close: (fd: number) => number;
  errno: () => number;
}

let libc: Libc | undefined;

// Loaded on first use only, so a worker that is not under systemd never loads native code, and
// a platform without a koffi build fails here (reported), not at import.
function loadLibc(): Libc {
  if (libc !== undefined) return libc;
  const require = createRequire(import.meta.url);
  const koffi = require("koffi") as typeof import("koffi");
  const lib = koffi.load("libc.so.6");
  libc = {
    socket: lib.func("int socket(int, int, int)") as Libc["socket"],
    sendto: lib.func("intptr_t sendto(int, const void *, uintptr_t, int, const void *, uint32_t)") as Libc["sendto"],
    close: lib.func("int close(int)") as Libc["close"],
    errno: () => koffi.errno(),
  };
  return libc;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

function errnoName(value: number): string {
  return errnoNames.get(value) ?? `errno ${value}`;
}

/** One socket, reused for every datagram; `sendto` names the address each time, so a socket that
 * vanishes and comes back (systemd re-executing) works again without reopening. */
export class NotifySocket {
  readonly address: NotifyAddress;
  private readonly target: { buffer: Buffer; length: number };
  private fd = -1;
  private closed = false;

  constructor(value: string) {
    this.address = parseNotifyAddress(value);
    this.target = sockaddr(this.address);
  }

  /** Sends one datagram. Throws `NotifySocketError`; never blocks. */
  send(message: string): void {
    if (this.closed) throw new NotifySocketError("EBADF", "notify socket is closed");
    let c: Libc;
    try {
      c = loadLibc();
    } catch (error) {
      throw new NotifySocketError("EFFI", `cannot load koffi to send to NOTIFY_SOCKET: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (this.fd < 0) {
      const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        const code = errnoName(c.errno());
        throw new NotifySocketError(code, `socket(AF_UNIX, SOCK_DGRAM) failed: ${code}`);
      }
      this.fd = fd;
    }
    const data = Buffer.from(message);
    const sent = c.sendto(this.fd, data, data.length, MSG_NOSIGNAL, this.target.buffer, this.target.length);
    if (sent < 0) {
      const code = errnoName(c.errno());
      throw new NotifySocketError(code, `sendto(${describeAddress(this.address)}) failed: ${code}`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd >= 0 && libc !== undefined) libc.close(this.fd);
    this.fd = -1;
  }
}

export function describeAddress(address: NotifyAddress): string {
  return address.kind === "abstract" ? `@${address.name}` : address.path;
}
