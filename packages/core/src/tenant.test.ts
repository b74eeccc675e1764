import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { InvalidMetadataError, isValidTenant, parseMetadata } from "./tenant.ts";

describe("parseMetadata", () => {
  test.each([
    [undefined, "default"],
    [null, "default"],
    ["", "default"],
    ["{}", "default"],
    ['{"tenant":"acme"}', "acme"],
    [{ tenant: "acme-1.eu_west" }, "acme-1.eu_west"],
    ['{"tenant":null}', "default"],
  ])("%j → tenant %s", (input, tenant) => {
    const parsed = parseMetadata(input);
    expect(parsed.tenant).toBe(tenant);
    expect(parsed.metadata.tenant).toBe(tenant);
  });

  test("a string that is not a JSON object is kept as raw, default tenant", () => {
    expect(parseMetadata("call from +1555").metadata).toEqual({ raw: "call from +1555", tenant: "default" });
    expect(parseMetadata("[1,2]").metadata).toEqual({ raw: "[1,2]", tenant: "default" });
  });

  test.each(['{"tenant":""}', '{"tenant":"acme corp"}', '{"tenant":"-lead"}', '{"tenant":42}', `{"tenant":"${"a".repeat(65)}"}`, '{"tenant":"ü"}'])(
    "malformed tenant in %s is an error that says what a tenant must be",
    (input) => {
      expect(() => parseMetadata(input)).toThrow(InvalidMetadataError);
      expect(() => parseMetadata(input)).toThrow(/letters, digits/);
    },
  );

  test('tenantPolicy "label": a malformed tenant becomes "invalid", the raw value kept (as text, bounded)', () => {
    expect(parseMetadata('{"tenant":"acme corp"}', { tenantPolicy: "label" })).toMatchObject({ tenant: "invalid", invalidTenant: "acme corp" });
    expect(parseMetadata({ tenant: 42 }, { tenantPolicy: "label" }).invalidTenant).toBe("42");
    expect(parseMetadata({ tenant: "x".repeat(1000) }, { tenantPolicy: "label" }).invalidTenant).toHaveLength(257);
    expect(parseMetadata('{"tenant":"acme"}', { tenantPolicy: "label" }).invalidTenant).toBeUndefined();
    expect(() => parseMetadata('{"tenant":"acme corp"}', { tenantPolicy: "reject" })).toThrow(InvalidMetadataError);
  });

  test("metadata of another type is an error", () => {
    expect(() => parseMetadata(42)).toThrow(/JSON string or an object/);
  });

  test("does not mutate the caller's object", () => {
    const input = { lang: "en" };
    parseMetadata(input);
    expect(input).toEqual({ lang: "en" });
  });

  test("property: valid tenants round-trip through JSON metadata", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), (tenant) => {
        expect(isValidTenant(tenant)).toBe(true);
        expect(parseMetadata(JSON.stringify({ tenant })).tenant).toBe(tenant);
      }),
    );
  });
});
