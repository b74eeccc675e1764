import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { RecordQueue } from "./queue.ts";

describe("RecordQueue", () => {
  it("property: behaves like an array used as a FIFO, across chunk boundaries", () => {
    const op = fc.oneof(
      fc.record({ push: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ drop: fc.integer({ min: 0, max: 3000 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const q = new RecordQueue<number>();
        const model: number[] = [];
        let next = 0;
        for (const o of ops) {
          if ("push" in o) {
            for (let i = 0; i < o.push; i++) {
              q.push(next);
              model.push(next++);
            }
          } else {
            q.drop(o.drop);
            model.splice(0, o.drop);
          }
          expect(q.size).toBe(model.length);
          expect(q.at(0)).toBe(model[0]);
          expect(q.at(model.length - 1)).toBe(model[model.length - 1]);
          expect(q.at(model.length)).toBeUndefined();
          expect(q.peek(1500)).toEqual(model.slice(0, 1500));
        }
        expect(q.peek(Infinity)).toEqual(model);
      }),
      { numRuns: 150 },
    );
  });
});
