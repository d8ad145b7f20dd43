/**
 * Which addresses this IOREQ server has asked Xen for, with a reference count per piece.
 *
 * Claims and doorbells both need Xen to route a range to the server, and a doorbell may sit
 * inside a claim or alone (KVM catches doorbells anywhere; on Xen nothing reaches us unless it
 * is mapped). Xen's rangesets refuse a range that overlaps one already mapped (EEXIST) and
 * accept removing any sub-range of a mapped one. So the server maps only the pieces that go
 * from uncovered to covered and unmaps only those that go back: this class computes them.
 */

/** A half-open `[start, end)` piece. */
export interface Piece {
  readonly start: bigint;
  readonly end: bigint;
}

interface Segment {
  start: bigint;
  end: bigint;
  refs: number;
}

/** Reference-counted coverage of a 64-bit address space (or the 16-bit port space). */
export class Coverage {
  /** Sorted, non-overlapping, every `refs` > 0. */
  readonly #segments: Segment[] = [];

  /** Pieces currently covered, merged. */
  get pieces(): Piece[] {
    return merge(this.#segments.map((s) => ({ start: s.start, end: s.end })));
  }

  /** Adds one reference to `[start, end)`; returns the pieces that were not covered before. */
  add(start: bigint, end: bigint): Piece[] {
    if (end <= start) return [];
    const fresh: Piece[] = [];
    this.#splitAt(start);
    this.#splitAt(end);
    let cursor = start;
    const next: Segment[] = [];
    for (const s of this.#segments) {
      if (s.end <= start || s.start >= end) {
        next.push(s);
        continue;
      }
      if (s.start > cursor) {
        fresh.push({ start: cursor, end: s.start });
        next.push({ start: cursor, end: s.start, refs: 1 });
      }
      s.refs++;
      next.push(s);
      cursor = s.end;
    }
    if (cursor < end) {
      fresh.push({ start: cursor, end });
      next.push({ start: cursor, end, refs: 1 });
    }
    next.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    this.#segments.splice(0, this.#segments.length, ...next);
    this.#coalesce();
    return merge(fresh);
  }

  /**
   * Drops one reference from `[start, end)`, which must have been added; returns the pieces
   * no longer covered.
   */
  remove(start: bigint, end: bigint): Piece[] {
    if (end <= start) return [];
    this.#splitAt(start);
    this.#splitAt(end);
    const gone: Piece[] = [];
    const next: Segment[] = [];
    for (const s of this.#segments) {
      if (s.end > start && s.start < end) {
        s.refs--;
        if (s.refs === 0) {
          gone.push({ start: s.start, end: s.end });
          continue;
        }
      }
      next.push(s);
    }
    this.#segments.splice(0, this.#segments.length, ...next);
    this.#coalesce();
    return merge(gone);
  }

  #splitAt(at: bigint): void {
    const i = this.#segments.findIndex((s) => s.start < at && at < s.end);
    if (i < 0) return;
    const s = this.#segments[i] as Segment;
    this.#segments.splice(i, 1, { start: s.start, end: at, refs: s.refs }, { start: at, end: s.end, refs: s.refs });
  }

  #coalesce(): void {
    for (let i = this.#segments.length - 1; i > 0; i--) {
      const a = this.#segments[i - 1] as Segment;
      const b = this.#segments[i] as Segment;
      if (a.end === b.start && a.refs === b.refs) {
        a.end = b.end;
        this.#segments.splice(i, 1);
      }
    }
  }
}

function merge(pieces: Piece[]): Piece[] {
  const out: Array<{ start: bigint; end: bigint }> = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if (last !== undefined && last.end === p.start) last.end = p.end;
    else out.push({ start: p.start, end: p.end });
  }
  return out;
}
