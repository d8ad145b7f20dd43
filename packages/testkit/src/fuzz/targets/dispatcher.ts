/**
 * The `dispatcher` target: the core's {@link IoDispatcher} alone, against a reference model of
 * its documented rules. Programs claim and release ranges in the three spaces (some targets
 * throw, some return values wider than the access) and issue accesses of every width around
 * the range edges, up to the top of each space. After each access the pieces every target saw,
 * the value read, the faults reported and the stats are compared with the model:
 *
 * - each claimed byte of the access reaches its owner exactly once, in naturally aligned pieces
 *   of 1, 2 or 4 bytes that never cross a range edge, the largest such piece each time;
 * - a read is the little-endian join of the pieces, unclaimed and failing pieces reading as
 *   all-ones, and the result fits the access width;
 * - a throwing target never reaches the caller: its piece reads all-ones and `onFault` is told;
 * - claims: zero-length and out-of-space ranges are `Invalid`, overlaps `Exists`, and a
 *   released range is unclaimed at once.
 */
import { IoDispatcher, addressRange, isVmedError, type AccessSize, type DispatchRegistration, type IoSpace } from '@vmed/core';
import { describe } from '../guest.js';
import type { FuzzTarget, ProgramOutcome, Violation } from '../types.js';
import { ACCESS_SIZES, WordReader, onesOf } from '../words.js';

const SPACE_END: Record<IoSpace, bigint> = { mmio: 1n << 64n, pio: 0x1_0000n, pci: 1n << 44n };
const SPACES: readonly IoSpace[] = ['mmio', 'pio', 'pci'];

type Behaviour = 'plain' | 'throws-read' | 'throws-write' | 'throws' | 'wide';

interface Region {
  readonly id: number;
  readonly space: IoSpace;
  readonly base: bigint;
  readonly end: bigint;
  readonly behaviour: Behaviour;
  readonly registration: DispatchRegistration;
}

interface Call {
  readonly id: number;
  readonly write: boolean;
  readonly offset: number;
  readonly size: number;
  readonly value: number;
}

/** What a target answers: a function of where and how wide, so the model can predict it. */
function answer(id: number, offset: number, size: number): number {
  return (Math.imul(id + 1, 0x9e3779b1) ^ Math.imul(offset + 7, 0x85ebca6b) ^ size) >>> 0;
}

class DispatcherRun {
  readonly dispatcher = new IoDispatcher();
  readonly regions: Region[] = [];
  readonly violations: Violation[] = [];
  readonly trace: string[] | undefined;
  calls: Call[] = [];
  faults: Array<{ id: number; address: bigint; size: number; write: boolean }> = [];
  accesses = 0;
  step = 0;
  private nextId = 0;

  constructor(
    private readonly r: WordReader,
    trace: boolean,
  ) {
    this.trace = trace ? [] : undefined;
  }

  fail(invariant: Violation['invariant'], message: string): void {
    if (this.violations.length < 32) this.violations.push({ invariant, message, step: this.step });
  }

  run(): void {
    const r = this.r;
    while (!r.done && this.violations.length === 0) {
      this.step++;
      const op = r.pick(['access', 'access', 'access', 'access', 'access', 'add', 'add', 'dispose'] as const);
      if (op === 'add') this.add();
      else if (op === 'dispose') this.dispose();
      else this.access();
    }
  }

  private interesting(space: IoSpace): bigint {
    const r = this.r;
    const points: bigint[] = [0n, 0xcf8n, 0x1000n, SPACE_END[space] - 8n, SPACE_END[space] - 1n];
    for (const g of this.regions) if (g.space === space) points.push(g.base, g.end);
    const mode = r.below(4);
    if (mode === 3) return space === 'mmio' ? r.u64() : BigInt(r.word()) % SPACE_END[space];
    const p = r.pick(points);
    return p + BigInt(r.word() % 24) - 12n;
  }

  private add(): void {
    const r = this.r;
    const space = r.pick(SPACES);
    let base = this.interesting(space);
    if (base < 0n) base = 0n;
    const length = BigInt(r.pick([4, 1, 2, 8, 16, 3, 0x1000, 0, 5, 0x100]));
    const behaviour = r.pick(['plain', 'plain', 'plain', 'throws-read', 'throws-write', 'throws', 'wide'] as const);
    const id = this.nextId++;
    const end = base + length;
    const expectError = length === 0n ? 'Invalid' : end > SPACE_END[space] ? 'Invalid' : this.regions.some((g) => g.space === space && g.base < end && base < g.end) ? 'Exists' : undefined;
    this.trace?.push(`${this.step}: add ${space} [0x${base.toString(16)}, +0x${length.toString(16)}) ${behaviour} #${id}`);
    let registration: DispatchRegistration;
    try {
      // Ranges the address helpers refuse go in raw: the dispatcher must check them itself.
      const range = base >= 0n && length > 0n && end <= 1n << 64n ? addressRange(base, length) : ({ base, length } as ReturnType<typeof addressRange>);
      registration = this.dispatcher.add(space, range, this.target(id, behaviour), `#${id}`, (_e, access) => {
        this.faults.push({ id, address: access.address, size: access.size, write: access.write });
      });
    } catch (e) {
      if (expectError === undefined) this.fail('dispatch-claims', `claiming ${space} [0x${base.toString(16)}, +0x${length.toString(16)}) threw ${describe(e)}`);
      else if (!isVmedError(e) || e.code !== expectError) this.fail('dispatch-claims', `claiming ${space} [0x${base.toString(16)}, +0x${length.toString(16)}) threw ${describe(e)}, expected ${expectError}`);
      return;
    }
    if (expectError !== undefined) {
      this.fail('dispatch-claims', `claiming ${space} [0x${base.toString(16)}, +0x${length.toString(16)}) succeeded, expected ${expectError}`);
      registration.dispose();
      return;
    }
    this.regions.push({ id, space, base, end, behaviour, registration });
  }

  private target(id: number, behaviour: Behaviour) {
    return {
      read: (offset: number, size: 1 | 2 | 4): number => {
        this.calls.push({ id, write: false, offset, size, value: 0 });
        if (behaviour === 'throws-read' || behaviour === 'throws') throw new Error(`target #${id} read fault`);
        // A sloppy model answers wider than asked; the dispatcher must not pass that on.
        if (behaviour === 'wide') return answer(id, offset, size) | 0x100;
        return (answer(id, offset, size) & (size === 4 ? 0xffffffff : (1 << (8 * size)) - 1)) >>> 0;
      },
      write: (offset: number, size: 1 | 2 | 4, value: number): void => {
        this.calls.push({ id, write: true, offset, size, value });
        if (behaviour === 'throws-write' || behaviour === 'throws') throw new Error(`target #${id} write fault`);
      },
    };
  }

  private dispose(): void {
    if (this.regions.length === 0) return;
    const i = this.r.below(this.regions.length);
    const g = this.regions[i] as Region;
    this.trace?.push(`${this.step}: dispose #${g.id}`);
    g.registration.dispose();
    g.registration.dispose(); // idempotent
    this.regions.splice(i, 1);
  }

  private access(): void {
    const r = this.r;
    const space = r.pick(SPACES);
    const size = r.pick(ACCESS_SIZES) as AccessSize;
    let address = this.interesting(space);
    if (address < 0n) address = 0n;
    if (address >= 1n << 64n) address = (1n << 64n) - 1n;
    const write = (r.word() & 1) === 1;
    const value = write ? BigInt.asUintN(size * 8, r.u64()) : 0n;
    this.calls = [];
    this.faults = [];
    const stats = { ...this.dispatcher.stats };
    this.accesses++;
    let got = 0n;
    try {
      if (write) this.dispatcher.write(space, address, size, value);
      else got = this.dispatcher.read(space, address, size);
    } catch (e) {
      this.fail('sink-throws', `${space} ${write ? 'write' : 'read'} of ${size} at 0x${address.toString(16)} threw ${describe(e)}`);
      return;
    }
    this.trace?.push(`${this.step}: ${space} ${write ? `write 0x${value.toString(16)}` : `read → 0x${got.toString(16)}`} at 0x${address.toString(16)} size ${size}`);
    const counted = write ? this.dispatcher.stats.writes - stats.writes : this.dispatcher.stats.reads - stats.reads;
    if (counted !== 1) this.fail('dispatch-pieces', `stats counted ${counted} ${write ? 'writes' : 'reads'} for one access`);
    // The model: pieces of the documented shape.
    const end = address + BigInt(size);
    const expected: Call[] = [];
    const expectedFaults: Array<{ id: number; address: bigint; size: number; write: boolean }> = [];
    let want = 0n;
    let cursor = address;
    while (cursor < end) {
      const owner = this.regions.find((g) => g.space === space && cursor >= g.base && cursor < g.end);
      let limit = end;
      if (owner !== undefined) limit = owner.end < end ? owner.end : end;
      else for (const g of this.regions) if (g.space === space && g.base > cursor && g.base < limit) limit = g.base;
      let p = 4;
      while (p > 1 && (cursor % BigInt(p) !== 0n || cursor + BigInt(p) > limit)) p >>= 1;
      const shift = cursor - address;
      let piece = onesOf(p);
      if (owner !== undefined) {
        const offset = Number(cursor - owner.base);
        const part = Number(BigInt.asUintN(p * 8, value >> (shift * 8n)));
        expected.push({ id: owner.id, write, offset, size: p, value: write ? part : 0 });
        const throws = owner.behaviour === 'throws' || (write ? owner.behaviour === 'throws-write' : owner.behaviour === 'throws-read');
        if (throws) expectedFaults.push({ id: owner.id, address: cursor, size: p, write });
        else if (!write) {
          const raw = owner.behaviour === 'wide' ? answer(owner.id, offset, p) | 0x100 : answer(owner.id, offset, p);
          piece = BigInt((raw & (p === 4 ? 0xffffffff : (1 << (8 * p)) - 1)) >>> 0);
        }
      }
      want |= piece << (shift * 8n);
      cursor += BigInt(p);
    }
    const show = (c: Call[]) => c.map((x) => `#${x.id}${x.write ? 'w' : 'r'}+0x${x.offset.toString(16)}/${x.size}${x.write ? `=0x${x.value.toString(16)}` : ''}`).join(' ');
    if (show(expected) !== show(this.calls)) {
      this.fail('dispatch-pieces', `${space} ${write ? 'write' : 'read'} of ${size} at 0x${address.toString(16)}: targets saw [${show(this.calls)}], expected [${show(expected)}]`);
      return;
    }
    const f = (x: typeof expectedFaults) => x.map((y) => `#${y.id}@0x${y.address.toString(16)}/${y.size}${y.write ? 'w' : 'r'}`).join(' ');
    if (f(expectedFaults) !== f(this.faults)) this.fail('dispatch-pieces', `faults reported [${f(this.faults)}], expected [${f(expectedFaults)}]`);
    if (!write && got !== want) {
      const wide = got > onesOf(size);
      this.fail(wide ? 'read-width' : 'dispatch-value', `${space} read of ${size} at 0x${address.toString(16)} returned 0x${got.toString(16)}, expected 0x${want.toString(16)}`);
    }
    const owner = this.regions.find((g) => g.space === space && address >= g.base && address < g.end);
    if (this.dispatcher.owner(space, address) !== (owner === undefined ? undefined : `#${owner.id}`)) {
      this.fail('dispatch-claims', `owner(${space}, 0x${address.toString(16)}) is ${String(this.dispatcher.owner(space, address))}, expected ${owner === undefined ? 'none' : `#${owner.id}`}`);
    }
  }
}

export const dispatcherTarget: FuzzTarget = {
  name: 'dispatcher',
  description: 'the I/O dispatcher against a model of its splitting, routing, fault and claim rules',
  words: { min: 64, max: 2048 },
  async run(program: Uint32Array, count: (n: number) => void, trace: boolean): Promise<ProgramOutcome> {
    const reader = new WordReader(program);
    const run = new DispatcherRun(reader, trace);
    try {
      run.run();
    } catch (e) {
      run.fail('unexpected-throw', `the dispatcher harness caught ${describe(e)}`);
    }
    count(run.accesses);
    return { violations: run.violations, trace: run.trace ?? [], consumed: reader.position };
  },
};
