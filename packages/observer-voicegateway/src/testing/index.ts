export { FakeSTT, FakeTTS, silence } from "./providers.ts";
export type { FakeTTSOptions } from "./providers.ts";
