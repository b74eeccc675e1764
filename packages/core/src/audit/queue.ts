/**
 * FIFO of a sink's pending records, in fixed-size chunks. `push` runs inside `emit`: with one
 * growing array, a push now and then copies the whole backlog to a bigger array (microseconds
 * with a slow sink's backlog), and compacting it copies again. Chunks never move: a push is a
 * store, plus one small allocation every CHUNK records.
 */
const CHUNK = 1024;

export class RecordQueue<T> {
  #chunks: T[][] = [];
  /** Index of the first live element in `#chunks[0]`. */
  #head = 0;
  /** Index after the last element in the last chunk. */
  #tail = CHUNK;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    if (this.#tail === CHUNK) {
      this.#chunks.push(new Array<T>(CHUNK));
      this.#tail = 0;
    }
    (this.#chunks[this.#chunks.length - 1] as T[])[this.#tail++] = item;
    this.#size++;
  }

  /** The i-th element from the front (0 = oldest), or undefined. */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.#size) return undefined;
    const k = this.#head + i;
    return (this.#chunks[Math.floor(k / CHUNK)] as T[])[k % CHUNK];
  }

  /** A copy of the first `n` elements (fewer if there are fewer), oldest first. */
  peek(n: number): T[] {
    const count = Math.min(n, this.#size);
    const out = new Array<T>(count);
    for (let i = 0, k = this.#head; i < count; i++, k++) out[i] = (this.#chunks[Math.floor(k / CHUNK)] as T[])[k % CHUNK] as T;
    return out;
  }

  /** Removes the first `n` elements. */
  drop(n: number): void {
    const count = Math.min(n, this.#size);
    this.#size -= count;
    this.#head += count;
    while (this.#head >= CHUNK || (this.#size === 0 && this.#chunks.length > 0)) {
      if (this.#size === 0) {
        // Empty: forget every chunk so the next push starts fresh.
        this.#chunks = [];
        this.#head = 0;
        this.#tail = CHUNK;
        return;
      }
      this.#chunks.shift();
      this.#head -= CHUNK;
    }
    // Let the dropped records be collected while the rest of their chunk waits.
    if (count > 0 && this.#chunks.length > 0) (this.#chunks[0] as T[]).fill(undefined as T, Math.max(0, this.#head - count), this.#head);
  }
}
