/**
 * The Xen ioreq loop: serving the requests Xen writes into an IOREQ server's pages.
 *
 * The shared page holds one 32-byte `ioreq_t` per vCPU. A vCPU that touches a claimed range
 * stops; Xen fills its slot, sets the state to `STATE_IOREQ_READY` and notifies the vCPU's
 * event channel. We move the slot to `STATE_IOREQ_INPROCESS`, perform the access against the
 * core's dispatcher, write the read data back, set `STATE_IORESP_READY` and notify the same
 * channel; Xen then resets the slot to `STATE_IOREQ_NONE` and resumes the vCPU. Every request
 * is answered and notified — writes too, and `INVALIDATE`/`TIMEOFFSET` broadcasts — or the
 * vCPU waits forever. Xen crashes the domain if it sees the state move backwards, so the state
 * is only ever written READY → INPROCESS → IORESP_READY.
 *
 * Barriers: the state byte is read and written with `Atomics` on the view of the mapped page.
 * A sequentially consistent load orders the field reads after it (x86-64 loads are not
 * reordered with older loads anyway), and a sequentially consistent store (`xchg`) makes the
 * data we wrote visible before the new state — the `smp_rmb`/`smp_wmb` pair of the protocol.
 *
 * The buffered ring (`buffered_iopage_t`) carries writes Xen does not wait for (VGA, and
 * `TIMEOFFSET`): we consume slots between `read_pointer` and `write_pointer`, an 8-byte write
 * taking two slots (high half in the second), and advance `read_pointer` atomically because
 * Xen canonicalises both pointers with a 64-bit cmpxchg (`HVM_IOREQSRV_BUFIOREQ_ATOMIC`).
 *
 * Everything in a request is hostile input, even though Xen wrote it: the guest chose the
 * address, size, count and data pointer. Sizes, counts, rep buffers and PCI registers are
 * checked; a bad request is answered (reads with all-ones, writes dropped), counted, and
 * reported through `onFault`, and the loop goes on.
 *
 * This module knows nothing about koffi or Xen's libraries: it works on `Uint8Array` views of
 * the pages and on callbacks, which is what lets `test/ioreq-loop.test.ts` test the parser
 * against pages filled in memory.
 */
import {
  InvalidError,
  hex,
  isVmedError,
  pciConfigAddress,
  type AccessSize,
  type IoRequestSink,
  type IoSpace,
  type TrackedWriteHandler,
  type VmedError,
} from '@vmed/core';
import {
  BUF_IOREQ_ADDR_SHIFT,
  BUF_IOREQ_DIR_SHIFT,
  BUF_IOREQ_OFF_DATA,
  BUF_IOREQ_SIZE,
  BUF_IOREQ_SIZE_SHIFT,
  BUF_IOREQ_TYPE_MASK,
  BUFIOREQ_OFF_READ_POINTER,
  BUFIOREQ_OFF_SLOTS,
  IOREQ_BUFFER_SLOT_NUM,
  IOREQ_FLAG_DATA_IS_PTR,
  IOREQ_FLAG_DF,
  IOREQ_FLAG_DIR_READ,
  IOREQ_FLAG_STATE_MASK,
  IOREQ_OFF_ADDR,
  IOREQ_OFF_COUNT,
  IOREQ_OFF_DATA,
  IOREQ_OFF_FLAGS,
  IOREQ_OFF_SIZE,
  IOREQ_OFF_TYPE,
  IOREQ_OFF_VP_EPORT,
  IOREQ_SIZE,
  IOREQ_TYPE_COPY,
  IOREQ_TYPE_INVALIDATE,
  IOREQ_TYPE_PCI_CONFIG,
  IOREQ_TYPE_PIO,
  IOREQ_TYPE_TIMEOFFSET,
  STATE_IOREQ_INPROCESS,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  XEN_PAGE_SIZE,
} from '../abi/xen.js';

/** One `ioreq_t` as decoded from a slot. */
export interface Ioreq {
  readonly vcpu: number;
  readonly addr: bigint;
  readonly data: bigint;
  readonly count: number;
  readonly size: number;
  readonly vpEport: number;
  readonly type: number;
  readonly dataIsPtr: boolean;
  /** `dir` = IOREQ_READ. */
  readonly read: boolean;
  /** The guest's direction flag: rep iterations walk down. */
  readonly df: boolean;
}

/** Decodes slot `vcpu` of a shared ioreq page (no state change). */
export function decodeIoreq(page: DataView, vcpu: number): Ioreq {
  const off = vcpu * IOREQ_SIZE;
  const flags = page.getUint8(off + IOREQ_OFF_FLAGS);
  return {
    vcpu,
    addr: page.getBigUint64(off + IOREQ_OFF_ADDR, true),
    data: page.getBigUint64(off + IOREQ_OFF_DATA, true),
    count: page.getUint32(off + IOREQ_OFF_COUNT, true),
    size: page.getUint32(off + IOREQ_OFF_SIZE, true),
    vpEport: page.getUint32(off + IOREQ_OFF_VP_EPORT, true),
    type: page.getUint8(off + IOREQ_OFF_TYPE),
    dataIsPtr: (flags & IOREQ_FLAG_DATA_IS_PTR) !== 0,
    read: (flags & IOREQ_FLAG_DIR_READ) !== 0,
    df: (flags & IOREQ_FLAG_DF) !== 0,
  };
}

/** One `buf_ioreq_t` (or a pair, for 8-byte writes) as decoded from the buffered ring. */
export interface BufferedIoreq {
  readonly type: number;
  readonly read: boolean;
  readonly size: 1 | 2 | 4 | 8;
  readonly addr: number;
  readonly data: bigint;
  /** Ring slots this request used: 2 for an 8-byte write. */
  readonly slots: 1 | 2;
}

/** Decodes the buffered request at ring position `pointer`; `undefined` if its second half is not written yet. */
export function decodeBufferedIoreq(ring: DataView, pointer: number, available: number): BufferedIoreq | undefined {
  const slotOffset = (p: number) => BUFIOREQ_OFF_SLOTS + (p % IOREQ_BUFFER_SLOT_NUM) * BUF_IOREQ_SIZE;
  const first = slotOffset(pointer);
  const word = ring.getUint32(first, true);
  const sizeCode = (word >>> BUF_IOREQ_SIZE_SHIFT) & 3;
  const size = (1 << sizeCode) as 1 | 2 | 4 | 8;
  let data = BigInt(ring.getUint32(first + BUF_IOREQ_OFF_DATA, true));
  let slots: 1 | 2 = 1;
  if (size === 8) {
    if (available < 2) return undefined;
    data |= BigInt(ring.getUint32(slotOffset(pointer + 1) + BUF_IOREQ_OFF_DATA, true)) << 32n;
    slots = 2;
  }
  return {
    type: word & BUF_IOREQ_TYPE_MASK,
    read: ((word >>> BUF_IOREQ_DIR_SHIFT) & 1) === 1,
    size,
    addr: word >>> BUF_IOREQ_ADDR_SHIFT,
    data,
    slots,
  };
}

/** Guest RAM as the loop needs it for rep buffers and tracked pages: bounds-checked copies. */
export interface RamAccess {
  /** Throws `Invalid` unless `[address, address+length)` lies in guest RAM. */
  check(address: bigint, length: number): void;
  /** Throws `Invalid` when any byte lies outside guest RAM, before a byte moves. */
  read(address: bigint, dst: Uint8Array): void;
  write(address: bigint, src: Uint8Array): void;
}

/** A doorbell as the loop matches it. */
export interface DoorbellEntry {
  readonly space: 'mmio' | 'pio';
  readonly address: bigint;
  readonly length: 1 | 2 | 4 | 8;
  readonly datamatch: bigint | undefined;
  ring(): void;
}

/** A write-tracked RAM range as the loop matches it. */
export interface TrackedRange {
  readonly base: bigint;
  readonly end: bigint;
  readonly handler: TrackedWriteHandler;
}

/** What the loop dispatches to. All lookups are by the owning backend, on the I/O context. */
export interface IoreqTargets {
  /** The core's dispatcher (or the unattached all-ones sink). */
  readonly sink: IoRequestSink;
  readonly ram: RamAccess;
  /** The doorbell a write of `value` rings, if any. */
  doorbell(space: 'mmio' | 'pio', address: bigint, size: number, value: bigint): DoorbellEntry | undefined;
  /** The tracked range holding `address`, if any. */
  tracked(address: bigint): TrackedRange | undefined;
  /** Xen asked us to drop cached foreign mappings (`IOREQ_TYPE_INVALIDATE`). */
  invalidate(): void;
  /** A request was bad or a handler threw; the request was still answered. */
  onFault(error: VmedError): void;
}

/** Counters of what the loop served, for tests and benchmarks. */
export interface IoreqLoopStats {
  pio: number;
  mmio: number;
  pci: number;
  invalidate: number;
  timeoffset: number;
  buffered: number;
  doorbells: number;
  trackedWrites: number;
  faults: number;
  unknown: number;
}

/** Longest rep request served: a page of byte-sized elements (Xen clips reps at page boundaries). */
export const MAX_REPS = XEN_PAGE_SIZE;

const ALL_ONES_64 = (1n << 64n) - 1n;
const ADDRESS_LIMIT = 1n << 64n;
const PORT_LIMIT = 0x10000n;

function sizeMask(size: number): bigint {
  return size >= 8 ? ALL_ONES_64 : (1n << BigInt(size * 8)) - 1n;
}

function isAccessSize(size: number): size is AccessSize {
  return size === 1 || size === 2 || size === 4 || size === 8;
}

function littleEndian(value: bigint, size: number, into: Uint8Array, at: number): void {
  let v = value;
  for (let i = 0; i < size; i++) {
    into[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function fromLittleEndian(from: Uint8Array, at: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(from[at + i] as number);
  return v;
}

/**
 * Serves the slots of one shared ioreq page and its buffered ring. Made by the IOREQ server
 * once its pages are mapped; `notify(vcpu)` signals the vCPU's local event-channel port.
 */
export class IoreqLoop {
  readonly #page: Uint8Array;
  readonly #view: DataView;
  readonly #ringView: DataView | undefined;
  readonly #ringPointers: BigUint64Array | undefined;
  readonly #ringRead: Uint32Array | undefined;
  readonly #vcpus: number;
  readonly #notify: (vcpu: number) => void;
  #targets: IoreqTargets;
  /** Doorbells rung by the request being served: run after the vCPU is released. */
  readonly #rung: DoorbellEntry[] = [];
  readonly stats: IoreqLoopStats = {
    pio: 0,
    mmio: 0,
    pci: 0,
    invalidate: 0,
    timeoffset: 0,
    buffered: 0,
    doorbells: 0,
    trackedWrites: 0,
    faults: 0,
    unknown: 0,
  };

  /**
   * @param page the shared ioreq page (`XEN_PAGE_SIZE` bytes, 8-byte aligned).
   * @param vcpus how many slots to serve (the domain's vCPU count, at most 128).
   * @param ring the buffered ioreq page, when the server has one.
   */
  constructor(page: Uint8Array, vcpus: number, ring: Uint8Array | undefined, targets: IoreqTargets, notify: (vcpu: number) => void) {
    if (page.byteLength < XEN_PAGE_SIZE) throw new InvalidError('xen.ioreqLoop', `shared ioreq page is ${page.byteLength} bytes`);
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus * IOREQ_SIZE > XEN_PAGE_SIZE) {
      throw new InvalidError('xen.ioreqLoop', `${vcpus} vCPUs do not fit one shared ioreq page`);
    }
    this.#page = page;
    this.#view = new DataView(page.buffer, page.byteOffset, XEN_PAGE_SIZE);
    this.#vcpus = vcpus;
    this.#targets = targets;
    this.#notify = notify;
    if (ring !== undefined) {
      if (ring.byteLength < XEN_PAGE_SIZE || ring.byteOffset % 8 !== 0) throw new InvalidError('xen.ioreqLoop', 'buffered ioreq page is not a page');
      this.#ringView = new DataView(ring.buffer, ring.byteOffset, XEN_PAGE_SIZE);
      this.#ringPointers = new BigUint64Array(ring.buffer, ring.byteOffset + BUFIOREQ_OFF_READ_POINTER, 1);
      this.#ringRead = new Uint32Array(ring.buffer, ring.byteOffset + BUFIOREQ_OFF_READ_POINTER, 1);
    }
  }

  get vcpus(): number {
    return this.#vcpus;
  }

  /** Replaces where requests go (attach, and close's all-ones answering). */
  set targets(targets: IoreqTargets) {
    this.#targets = targets;
  }

  /** The `vp_eport` Xen wrote into slot `vcpu`: the remote port to bind for that vCPU. */
  remotePort(vcpu: number): number {
    return this.#view.getUint32(vcpu * IOREQ_SIZE + IOREQ_OFF_VP_EPORT, true);
  }

  /** Serves every slot in `STATE_IOREQ_READY` and drains the buffered ring; returns how many requests were served. */
  serveAll(): number {
    let served = this.drainBuffered();
    for (let v = 0; v < this.#vcpus; v++) if (this.serveSlot(v)) served++;
    return served;
  }

  /** Slots currently waiting for us (READY or INPROCESS), for teardown checks. */
  pendingSlots(): number[] {
    const out: number[] = [];
    for (let v = 0; v < this.#vcpus; v++) {
      const state = Atomics.load(this.#page, v * IOREQ_SIZE + IOREQ_OFF_FLAGS) & IOREQ_FLAG_STATE_MASK;
      if (state === STATE_IOREQ_READY || state === STATE_IOREQ_INPROCESS) out.push(v);
    }
    return out;
  }

  /**
   * Serves slot `vcpu` if it holds a request: READY → INPROCESS → (access) → IORESP_READY →
   * notify. Returns false when the slot held none.
   */
  serveSlot(vcpu: number): boolean {
    const flagsAt = vcpu * IOREQ_SIZE + IOREQ_OFF_FLAGS;
    const flags = Atomics.load(this.#page, flagsAt);
    if ((flags & IOREQ_FLAG_STATE_MASK) !== STATE_IOREQ_READY) return false;
    const keep = flags & ~IOREQ_FLAG_STATE_MASK;
    Atomics.store(this.#page, flagsAt, keep | STATE_IOREQ_INPROCESS);

    const req = decodeIoreq(this.#view, vcpu);
    let result: bigint | undefined;
    try {
      result = this.#execute(req);
    } catch (error) {
      this.#fault(error, req);
      result = req.read && !req.dataIsPtr ? ALL_ONES_64 : undefined;
    }
    if (result !== undefined) this.#view.setBigUint64(vcpu * IOREQ_SIZE + IOREQ_OFF_DATA, result, true);
    // The store is the release: data above is visible before Xen sees IORESP_READY.
    Atomics.store(this.#page, flagsAt, keep | STATE_IORESP_READY);
    this.#signal(vcpu);
    this.#runDoorbells();
    return true;
  }

  /** Answers every waiting slot without performing it (reads get all-ones): teardown's last act. */
  answerPending(): number {
    let answered = 0;
    for (const vcpu of this.pendingSlots()) {
      const flagsAt = vcpu * IOREQ_SIZE + IOREQ_OFF_FLAGS;
      const flags = Atomics.load(this.#page, flagsAt);
      const state = flags & IOREQ_FLAG_STATE_MASK;
      if (state !== STATE_IOREQ_READY && state !== STATE_IOREQ_INPROCESS) continue;
      const keep = flags & ~IOREQ_FLAG_STATE_MASK;
      if (state === STATE_IOREQ_READY) Atomics.store(this.#page, flagsAt, keep | STATE_IOREQ_INPROCESS);
      if ((flags & IOREQ_FLAG_DIR_READ) !== 0 && (flags & IOREQ_FLAG_DATA_IS_PTR) === 0) {
        this.#view.setBigUint64(vcpu * IOREQ_SIZE + IOREQ_OFF_DATA, ALL_ONES_64, true);
      }
      Atomics.store(this.#page, flagsAt, keep | STATE_IORESP_READY);
      this.#signal(vcpu);
      answered++;
    }
    return answered;
  }

  /** Consumes the buffered ring; returns how many requests it held. */
  drainBuffered(): number {
    const view = this.#ringView;
    const pointers = this.#ringPointers;
    const readPointer = this.#ringRead;
    if (view === undefined || pointers === undefined || readPointer === undefined) return 0;
    let served = 0;
    for (;;) {
      // One 64-bit load sees both pointers as Xen last canonicalised them together.
      const both = Atomics.load(pointers, 0);
      const rp = Number(both & 0xffff_ffffn);
      const wp = Number(both >> 32n);
      const available = (wp - rp) >>> 0;
      if (available === 0) break;
      if (available > IOREQ_BUFFER_SLOT_NUM) {
        this.#fault(new InvalidError('xen.bufferedIoreq', `ring pointers read ${rp} write ${wp} are inconsistent`));
        break;
      }
      const req = decodeBufferedIoreq(view, rp, available);
      if (req === undefined) break;
      try {
        this.#executeBuffered(req);
      } catch (error) {
        this.#fault(error);
      }
      Atomics.add(readPointer, 0, req.slots);
      this.stats.buffered++;
      served++;
      this.#runDoorbells();
    }
    return served;
  }

  #execute(req: Ioreq): bigint | undefined {
    switch (req.type) {
      case IOREQ_TYPE_PIO:
        this.stats.pio++;
        return this.#portOrMemory('pio', req);
      case IOREQ_TYPE_COPY:
        this.stats.mmio++;
        return this.#portOrMemory('mmio', req);
      case IOREQ_TYPE_PCI_CONFIG:
        this.stats.pci++;
        return this.#pciConfig(req);
      case IOREQ_TYPE_INVALIDATE:
        this.stats.invalidate++;
        this.#targets.invalidate();
        return undefined;
      case IOREQ_TYPE_TIMEOFFSET:
        this.stats.timeoffset++;
        return undefined;
      default:
        this.stats.unknown++;
        throw new InvalidError('xen.ioreq', `unknown ioreq type ${req.type} on vCPU ${req.vcpu}`);
    }
  }

  #executeBuffered(req: BufferedIoreq): void {
    if (req.read) throw new InvalidError('xen.bufferedIoreq', `buffered read of ${hex(req.addr)} cannot be answered`);
    switch (req.type) {
      case IOREQ_TYPE_PIO:
        this.stats.pio++;
        if (req.size === 8) throw new InvalidError('xen.bufferedIoreq', `8-byte port write at ${hex(req.addr)}`);
        this.#element('pio', BigInt(req.addr), req.size, false, req.data);
        return;
      case IOREQ_TYPE_COPY:
        this.stats.mmio++;
        this.#element('mmio', BigInt(req.addr), req.size, false, req.data);
        return;
      case IOREQ_TYPE_TIMEOFFSET:
        this.stats.timeoffset++;
        return;
      default:
        this.stats.unknown++;
        throw new InvalidError('xen.bufferedIoreq', `unknown buffered ioreq type ${req.type}`);
    }
  }

  /** PIO and MMIO (COPY), single or rep, value or through a guest buffer. */
  #portOrMemory(space: 'pio' | 'mmio', req: Ioreq): bigint | undefined {
    const size = req.size;
    const limit = space === 'pio' ? PORT_LIMIT : ADDRESS_LIMIT;
    if (!isAccessSize(size) || (space === 'pio' && size === 8)) {
      throw new InvalidError('xen.ioreq', `${space} access of ${size} bytes at ${hex(req.addr)}`);
    }
    if (!req.dataIsPtr) {
      // A port access without a buffer is one access whatever `count` says; a memory one with
      // count > 1 is `rep stos` (write) or `rep lods` (read, the last value is kept).
      const reps = space === 'pio' ? 1 : req.count;
      if (reps < 1 || reps > MAX_REPS) throw new InvalidError('xen.ioreq', `rep count ${reps} at ${hex(req.addr)}`);
      const stride = req.df ? -BigInt(size) : BigInt(size);
      checkSpan(space, req.addr, stride, reps, size, limit);
      let last: bigint | undefined;
      for (let i = 0; i < reps; i++) {
        const addr = req.addr + BigInt(i) * stride;
        last = this.#element(space, addr, size, req.read, req.data & sizeMask(size));
      }
      return req.read ? last : undefined;
    }

    // data_is_ptr: `data` is the guest-physical address of a buffer of `count` elements, walked
    // with the same direction flag as the device address (ports do not move).
    const reps = req.count;
    if (reps === 0) return undefined;
    if (reps > MAX_REPS) throw new InvalidError('xen.ioreq', `rep count ${reps} at ${hex(req.addr)}`);
    const stride = req.df ? -BigInt(size) : BigInt(size);
    const deviceStride = space === 'pio' ? 0n : stride;
    checkSpan(space, req.addr, deviceStride, reps, size, limit);
    const bufferLow = req.df ? req.data - BigInt((reps - 1) * size) : req.data;
    if (bufferLow < 0n || bufferLow + BigInt(reps * size) > ADDRESS_LIMIT) {
      throw new InvalidError('xen.ioreq', `rep buffer at ${hex(req.data)} x${reps} leaves the address space`);
    }
    const buffer = new Uint8Array(reps * size);
    const at = (i: number) => (req.df ? (reps - 1 - i) * size : i * size);
    if (req.read) {
      // Device → guest RAM (`rep ins`, `rep movs` from MMIO): the RAM check comes first so
      // nothing is read from the device (reads have side effects) for a buffer we cannot write.
      this.#targets.ram.check(bufferLow, buffer.length);
      for (let i = 0; i < reps; i++) {
        const value = this.#element(space, req.addr + BigInt(i) * deviceStride, size, true, 0n) ?? ALL_ONES_64;
        littleEndian(value, size, buffer, at(i));
      }
      this.#targets.ram.write(bufferLow, buffer);
    } else {
      this.#targets.ram.read(bufferLow, buffer);
      for (let i = 0; i < reps; i++) {
        this.#element(space, req.addr + BigInt(i) * deviceStride, size, false, fromLittleEndian(buffer, at(i), size));
      }
    }
    return undefined;
  }

  /** PCI config: `addr = SBDF << 32 | register`, into the sink's ECAM-style `pci` space. */
  #pciConfig(req: Ioreq): bigint | undefined {
    const size = req.size;
    const register = Number(req.addr & 0xffff_ffffn);
    const sbdf = Number(req.addr >> 32n);
    if (req.dataIsPtr || (size !== 1 && size !== 2 && size !== 4) || register + size > 4096) {
      throw new InvalidError('xen.ioreq', `PCI config access of ${size} bytes at register ${hex(register)} of SBDF ${hex(sbdf)}`);
    }
    const address = pciConfigAddress(
      { segment: sbdf >>> 16, bus: (sbdf >>> 8) & 0xff, device: (sbdf >>> 3) & 0x1f, function: sbdf & 7 },
      register,
    );
    if (req.read) return this.#sinkRead('pci', address, size);
    this.#sinkWrite('pci', address, size, req.data & sizeMask(size));
    return undefined;
  }

  /** One element access: tracked page, doorbell, or the sink. Returns the read value. */
  #element(space: 'pio' | 'mmio', address: bigint, size: AccessSize, read: boolean, value: bigint): bigint | undefined {
    if (space === 'mmio') {
      const tracked = this.#targets.tracked(address);
      if (tracked !== undefined) return this.#trackedAccess(tracked, address, size, read, value);
    }
    if (!read) {
      const bell = this.#targets.doorbell(space, address, size, value);
      if (bell !== undefined) {
        this.stats.doorbells++;
        this.#rung.push(bell);
        return undefined;
      }
      this.#sinkWrite(space, address, size, value);
      return undefined;
    }
    return this.#sinkRead(space, address, size);
  }

  /**
   * A write to a page the device write-protects: the handler decides whether the store lands
   * (applied through the foreign mapping) or is dropped. Reads of tracked pages normally go to
   * RAM without us; if Xen sends one, it is served from RAM.
   */
  #trackedAccess(range: TrackedRange, address: bigint, size: AccessSize, read: boolean, value: bigint): bigint | undefined {
    const bytes = new Uint8Array(size);
    if (address + BigInt(size) > range.end) throw new InvalidError('xen.ioreq', `tracked access at ${hex(address)} crosses the end of its range`);
    if (read) {
      this.#targets.ram.read(address, bytes);
      return fromLittleEndian(bytes, 0, size);
    }
    this.stats.trackedWrites++;
    const action = range.handler({ address, size, value });
    if (action === 'apply') {
      littleEndian(value, size, bytes, 0);
      this.#targets.ram.write(address, bytes);
    }
    return undefined;
  }

  #sinkRead(space: IoSpace, address: bigint, size: AccessSize): bigint {
    try {
      return this.#targets.sink.read(space, address, size) & sizeMask(size);
    } catch (error) {
      this.#fault(error);
      return sizeMask(size);
    }
  }

  #sinkWrite(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    try {
      this.#targets.sink.write(space, address, size, value);
    } catch (error) {
      this.#fault(error);
    }
  }

  /** Notifies the vCPU; a failure is reported and the loop goes on to the other slots. */
  #signal(vcpu: number): void {
    try {
      this.#notify(vcpu);
    } catch (error) {
      this.#fault(error);
    }
  }

  #runDoorbells(): void {
    while (this.#rung.length > 0) {
      const bell = this.#rung.shift() as DoorbellEntry;
      try {
        bell.ring();
      } catch (error) {
        this.#fault(error);
      }
    }
  }

  #fault(error: unknown, req?: Ioreq): void {
    this.stats.faults++;
    const vmed = isVmedError(error)
      ? error
      : new InvalidError('xen.ioreq', `request handler failed${req === undefined ? '' : ` (type ${req.type} at ${hex(req.addr)})`}`, { cause: error });
    try {
      this.#targets.onFault(vmed);
    } catch {
      // A fault reporter that throws must not stop the loop from answering the vCPU.
    }
  }
}

/** Checks `count` elements of `size` bytes from `start` walking by `stride` stay inside `[0, limit)`. */
function checkSpan(space: string, start: bigint, stride: bigint, count: number, size: number, limit: bigint): void {
  const last = start + BigInt(count - 1) * stride;
  const low = last < start ? last : start;
  const high = (last > start ? last : start) + BigInt(size);
  if (low < 0n || high > limit) {
    throw new InvalidError('xen.ioreq', `${space} access ${hex(start)} x${count} of ${size} bytes leaves the ${space === 'pio' ? 'port' : 'address'} space`);
  }
}
