/** Unix time in seconds, like Python's `time.time()`. Snapshots, tokens and audit records share it. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now() / 1000;
