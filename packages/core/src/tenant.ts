/**
 * Tenant parsing. The tenant becomes a metric label and an audit field, so it must be a short,
 * safe id; a malformed one is refused rather than silently re-labelled, because a re-label would
 * hide a caller's bug and misattribute cost.
 */
export const DEFAULT_TENANT = "default";

const TENANT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class InvalidMetadataError extends Error {
  override readonly name = "InvalidMetadataError";
}

export interface ParsedMetadata {
  tenant: string;
  metadata: Readonly<Record<string, unknown>> & { readonly tenant: string };
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
export function parseMetadata(metadata: unknown): ParsedMetadata {
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
  if (raw === undefined || raw === null) {
    tenant = DEFAULT_TENANT;
  } else if (isValidTenant(raw)) {
    tenant = raw;
  } else {
    throw new InvalidMetadataError(
      `job metadata has a malformed tenant ${describe(raw)}: a tenant must be 1-64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit; fix the dispatcher that sets the job metadata`,
    );
  }
  fields.tenant = tenant;
  return { tenant, metadata: Object.freeze(fields) as ParsedMetadata["metadata"] };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
