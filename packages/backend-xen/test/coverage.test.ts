/** The reference-counted coverage that decides which ranges the IOREQ server maps and unmaps. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Coverage } from '../src/ioreq/coverage.js';

describe('Coverage', () => {
  it('maps only what was not covered, and unmaps only what nothing covers', () => {
    const c = new Coverage();
    expect(c.add(0x100n, 0x200n)).toEqual([{ start: 0x100n, end: 0x200n }]);
    // A doorbell inside the claim needs no new mapping.
    expect(c.add(0x140n, 0x144n)).toEqual([]);
    // A range straddling the end maps only its new part.
    expect(c.add(0x1f0n, 0x280n)).toEqual([{ start: 0x200n, end: 0x280n }]);
    // Dropping the claim leaves the doorbell and the straddling range covered.
    expect(c.remove(0x100n, 0x200n)).toEqual([
      { start: 0x100n, end: 0x140n },
      { start: 0x144n, end: 0x1f0n },
    ]);
    expect(c.pieces).toEqual([
      { start: 0x140n, end: 0x144n },
      { start: 0x1f0n, end: 0x280n },
    ]);
    expect(c.remove(0x140n, 0x144n)).toEqual([{ start: 0x140n, end: 0x144n }]);
    expect(c.remove(0x1f0n, 0x280n)).toEqual([{ start: 0x1f0n, end: 0x280n }]);
    expect(c.pieces).toEqual([]);
  });

  it('adjacent additions come back merged, empty ranges are nothing', () => {
    const c = new Coverage();
    c.add(0n, 4n);
    c.add(8n, 12n);
    expect(c.add(0n, 12n)).toEqual([{ start: 4n, end: 8n }]);
    expect(c.pieces).toEqual([{ start: 0n, end: 12n }]);
    expect(c.add(5n, 5n)).toEqual([]);
  });

  it('model check: what is mapped always equals the union of live ranges; Xen never sees an overlap', () => {
    const range = fc.tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 16 })).map(([s, l]) => [BigInt(s), BigInt(s + l)] as const);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), range), { maxLength: 40 }), (ops) => {
        const c = new Coverage();
        const live: Array<readonly [bigint, bigint]> = [];
        const mapped = new Set<number>();
        for (const [add, r] of ops) {
          if (add || live.length === 0) {
            for (const p of c.add(r[0], r[1])) {
              for (let a = Number(p.start); a < Number(p.end); a++) {
                expect(mapped.has(a)).toBe(false); // EEXIST in Xen
                mapped.add(a);
              }
            }
            live.push(r);
          } else {
            const victim = live.shift() as readonly [bigint, bigint];
            for (const p of c.remove(victim[0], victim[1])) {
              for (let a = Number(p.start); a < Number(p.end); a++) {
                expect(mapped.has(a)).toBe(true); // ENOENT in Xen
                mapped.delete(a);
              }
            }
          }
          const union = new Set<number>();
          for (const [s, e] of live) for (let a = Number(s); a < Number(e); a++) union.add(a);
          expect([...mapped].sort((x, y) => x - y)).toEqual([...union].sort((x, y) => x - y));
        }
      }),
      { numRuns: 300 },
    );
  });
});
