/**
 * Tenant parsing. The tenant becomes a metric label and an audit field, so it must be a short,
 * safe id. By default a malformed one is refused rather than silently re-labelled (as
 * openrtc-python does), because a re-label would hide a caller's bug and misattribute cost. But a
 * refusal is fleet-wide: one dispatcher change (`"acme corp"`) rejects every such call on every
 * worker. `tenantPolicy: "label"` takes those calls under `tenant="invalid"` instead, keeps the raw
 * value, and counts them, so the bug stays visible without turning callers away.
 */
export const DEFAULT_TENANT = "default";
/** The tenant a call with a malformed tenant is counted under with `tenantPolicy: "label"`. */
export const INVALID_TENANT = "invalid";

/** `"reject"`: refuse a malformed tenant (default). `"label"`: take the call under `tenant="invalid"`. */
export type TenantPolicy = "reject" | "label";

export interface ParseMetadataOptions {
  tenantPolicy?: TenantPolicy;
}

/** Longest raw tenant value kept (as text) for a call labelled `invalid`. */
const MAX_RAW_TENANT = 256;

const TENANT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class InvalidMetadataError extends Error {
  override readonly name = "InvalidMetadataError";
}

export interface ParsedMetadata {
  tenant: string;
  metadata: Readonly<Record<string, unknown>> & { readonly tenant: string };
  /** With `tenantPolicy: "label"`: the malformed tenant as it arrived (as text, bounded). */
  invalidTenant?: string;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  return typeof value;
}

export function isValidTenant(value: unknown): value is string {
  return typeof value === "string" && TENANT_RE.test(value);
}

/**
 * Reads a job's metadata (a JSON string or an object). A string that is not a JSON object is
 * kept as `raw`, because LiveKit job metadata is free-form and such a job still belongs to the
 * default tenant.
 */
export function parseMetadata(metadata: unknown, options: ParseMetadataOptions = {}): ParsedMetadata {
  let fields: Record<string, unknown>;
  if (metadata === undefined || metadata === null || metadata === "") {
    fields = {};
  } else if (typeof metadata === "string") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(metadata);
    } catch {
      parsed = undefined;
    }
    fields = isPlainObject(parsed) ? { ...parsed } : { raw: metadata };
  } else if (isPlainObject(metadata)) {
    fields = { ...metadata };
  } else {
    throw new InvalidMetadataError(
      `job metadata must be a JSON string or an object, got ${typeof metadata}; pass the LiveKit job's metadata string as it is`,
    );
  }
  const raw = fields.tenant;
  let tenant: string;
  let invalidTenant: string | undefined;
  if (raw === undefined || raw === null) {
    tenant = DEFAULT_TENANT;
  } else if (isValidTenant(raw)) {
    tenant = raw;
  } else if (options.tenantPolicy === "label") {
    tenant = INVALID_TENANT;
    invalidTenant = rawText(raw);
    fields.invalid_tenant = invalidTenant;
  } else {
    throw new InvalidMetadataError(
      `job metadata has a malformed tenant ${describe(raw)}: a tenant must be 1-64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit; fix the dispatcher that sets the job metadata`,
    );
  }
  fields.tenant = tenant;
  const parsed: ParsedMetadata = { tenant, metadata: Object.freeze(fields) as ParsedMetadata["metadata"] };
  if (invalidTenant !== undefined) parsed.invalidTenant = invalidTenant;
  return parsed;
}

function rawText(raw: unknown): string {
  let text: string;
  if (typeof raw === "string") text = raw;
  else {
    try {
      text = JSON.stringify(raw) ?? String(raw);
    } catch {
      text = String(raw);
    }
  }
  return text.length > MAX_RAW_TENANT ? `${text.slice(0, MAX_RAW_TENANT)}…` : text;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
