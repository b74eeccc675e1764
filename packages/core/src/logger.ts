/**
 * The logging interface the core writes to: pino-compatible (`logger.warn(fields, message)`), so a
 * pino or @livekit/agents logger can be passed as it is.
 */
export interface Logger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const noop = (): void => {};

function line(level: string) {
  return (fields: object, message: string): void => {
    try {
      process.stderr.write(`${JSON.stringify({ level, time: Date.now(), name: "openrtc", msg: message, ...fields })}\n`);
    } catch {
      process.stderr.write(`{"level":"${level}","name":"openrtc","msg":${JSON.stringify(message)}}\n`);
    }
  };
}

/** Default: warnings and errors as JSON lines on stderr; nothing on the happy path. */
export const stderrLogger: Logger = { debug: noop, info: noop, warn: line("warn"), error: line("error") };

export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };
