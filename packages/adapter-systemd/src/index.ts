export { attachSystemd } from "./systemd.ts";
export type { SystemdAttachment, SystemdOptions } from "./systemd.ts";
export { NotifySocket, NotifySocketError, parseNotifyAddress } from "./notify-socket.ts";
export type { NotifyAddress } from "./notify-socket.ts";
export { formatAge, formatStatus } from "./status.ts";
