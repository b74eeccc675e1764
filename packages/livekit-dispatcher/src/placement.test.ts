import { describe, expect, it } from "vitest";
import { placementOrder } from "./placement.ts";

const c = (id: string, seq: number, load: number) => ({ id, seq, load });

describe("placementOrder", () => {
  it("least-jobs puts the emptiest worker first and breaks ties by registration order", () => {
    expect(placementOrder([c("b", 2, 1), c("a", 1, 1), c("z", 3, 0)], "least-jobs", 0)).toEqual(["z", "a", "b"]);
  });

  it("round-robin starts after the cursor and wraps", () => {
    const ws = [c("a", 1, 0), c("b", 2, 5), c("c", 3, 0)];
    expect(placementOrder(ws, "round-robin", 0)).toEqual(["a", "b", "c"]);
    expect(placementOrder(ws, "round-robin", 1)).toEqual(["b", "c", "a"]);
    expect(placementOrder(ws, "round-robin", 3)).toEqual(["a", "b", "c"]);
  });

  it("returns nothing for no candidates", () => {
    expect(placementOrder([], "least-jobs", 0)).toEqual([]);
    expect(placementOrder([], "round-robin", 7)).toEqual([]);
  });
});
