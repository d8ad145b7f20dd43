/**
 * The program interpreter shared by the device-level targets (serial, edu, framebuffer,
 * config-space, msi-msix): a fresh mediator with the target's devices on it, then one decoded
 * operation after another — guest accesses in and around the BARs, configuration cycles through
 * 0xCF8/0xCFC, ECAM and `pci` requests, guest RAM stores, accesses anywhere, host-side events,
 * lifecycle and migration transitions, injected model faults — with the invariants checked after
 * each operation. Everything the guest does goes through the real core path: sink → dispatcher →
 * host bridge or BAR → PCI function → model.
 */
import {
  isVmedError,
  type AccessSize,
  type DeviceDefinition,
  type IoSpace,
  type MediatedDevice,
  type MigrationState,
} from '@vmed/core';
import type { SimBackendOptions } from '../sim/options.js';
import { buildConfigOracle, checkExpected, judgeConfigWrite, type ConfigOracle } from './config-oracle.js';
import { faultable, type FaultableModel } from './faultable.js';
import { describe as describeError } from './guest.js';
import { FuzzSession, type DmaWindow } from './session.js';
import type { FuzzTarget, ProgramOutcome } from './types.js';
import { ACCESS_SIZES, WordReader, onesOf } from './words.js';

/** Tracks what the guest programmed into a device's DMA registers, from the guest's writes alone. */
export interface DmaShadow {
  /**
   * A naturally aligned piece of a guest write that reaches the model. Returns the guest memory
   * the device may touch because of it (empty when it starts no transfer).
   */
  write(bar: number, offset: number, size: 1 | 2 | 4, value: number, harness: DeviceHarness): DmaWindow[];
  reset(): void;
  snapshot(): unknown;
  restore(snapshot: unknown): void;
}

/** One device on the fuzzed bus. */
export interface DeviceSlotSpec {
  readonly definition: DeviceDefinition<never>;
  readonly slot: number;
  /** Options for `create`; `inst` lets host callbacks see the instance (e.g. a host-side fault). */
  readonly options?: (inst: Instance) => Record<string, unknown>;
  /** Register offsets worth hitting, per BAR. */
  readonly barHints?: Readonly<Record<number, readonly number[]>>;
  /** Values worth writing. */
  readonly valueHints?: readonly number[];
  /** Register reads compared between a device and its restored twin. */
  readonly sweep?: ReadonlyArray<{ readonly bar: number; readonly offset: number; readonly size: 1 | 2 | 4 }>;
  readonly shadow?: () => DmaShadow;
  /** A host-side event (received bytes, a status error…). Returns a trace line. */
  readonly hostOp?: (r: WordReader, inst: Instance, h: DeviceHarness) => string;
}

/** The operations a program can contain; a target lists them with repetition as weights. */
export type OpName = 'bar' | 'config' | 'ram' | 'raw' | 'host' | 'lifecycle' | 'migration' | 'fault';

export interface DeviceTargetSpec {
  readonly name: string;
  readonly description: string;
  readonly words: { readonly min: number; readonly max: number };
  readonly devices: readonly DeviceSlotSpec[];
  /** How many of `devices` (from the front) operations are aimed at. */
  readonly primary: number;
  /** Weighted op table: the first entry is what a word of 0 picks. */
  readonly ops: readonly OpName[];
  /** Backend variations chosen by the program's first word. */
  readonly simOptions?: (r: WordReader) => Omit<SimBackendOptions, 'ram' | 'scratch'>;
  /** Compare each config read with the same read through the other two mechanisms. */
  readonly checkPaths?: boolean;
  /** Per-operation hooks (the MSI model of the msi-msix target). */
  readonly observe?: (h: DeviceHarness) => OpObserver;
}

/** Called around each operation. */
export interface OpObserver {
  before(): void;
  /** `quiet`: the op was a lifecycle or migration step, whose interrupts are not modelled. */
  after(quiet: boolean): void;
}

/** The harness's record of one device. */
export interface Instance {
  readonly spec: DeviceSlotSpec;
  readonly index: number;
  device: MediatedDevice;
  model: FaultableModel;
  oracle: ConfigOracle;
  shadow: DmaShadow | undefined;
  /** Config image right after the last open (or creation), for the reset check. */
  resetImage: Uint8Array;
  /** Where each BAR last decoded, to aim at it after decode is switched off. */
  lastBase: Map<number, bigint>;
  /** Whether an injected fault fired since the last reset. */
  faulted: boolean;
  /** A host-side fault armed (e.g. the serial's transmit callback throwing once). */
  hostFault: boolean;
  /** Set by the host callback when the armed fault fired. */
  hostFired: boolean;
  saved: { stream: Uint8Array; shadow: unknown } | undefined;
}

const RAM_POINTS = [0x1000n, 0x0n, 0xfff8n, 0x10000n, 0x1fff0n, 0x20000n, 0x100000n, 0x10fff8n, 0x110000n, 0x8000n, 0xfff0n];
const MIGRATION_TARGETS: readonly MigrationState[] = ['STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];
const ECAM_BASE = 0xb000_0000n;
const CHUNK_SIZES = [4096, 1, 7, 64, 65536, 3];

export class DeviceHarness {
  readonly instances: Instance[] = [];
  private observer: OpObserver | undefined;
  /** Bytes of the type-0 BAR registers, excluded from the reset comparison (firmware moves BARs). */
  private static readonly BAR_BYTES = [0x10, 0x28] as const;

  constructor(
    readonly session: FuzzSession,
    readonly spec: DeviceTargetSpec,
    private readonly reader: WordReader,
    private readonly sim: Omit<SimBackendOptions, 'ram' | 'scratch'>,
  ) {}

  get guest() {
    return this.session.guest;
  }

  // ---- Setup --------------------------------------------------------------------------------

  async start(): Promise<void> {
    for (let i = 0; i < this.spec.devices.length; i++) this.createInstance(i);
    this.observer = this.spec.observe?.(this);
    // A driver's first steps: decode on and bus mastering, as firmware and probe leave them.
    for (const inst of this.instances) {
      const bdf = inst.device.address;
      this.guest.poke('pio', 0xcf8n, 4, BigInt((0x8000_0000 | configAddress(bdf.bus, bdf.device, bdf.function, 0x04)) >>> 0));
      this.guest.poke('pio', 0xcfcn, 2, 0x7n);
      this.rememberBars(inst);
    }
  }

  private createInstance(index: number, replacing?: Instance): Instance {
    const spec = this.spec.devices[index] as DeviceSlotSpec;
    const partial = {
      spec,
      index,
      shadow: spec.shadow?.(),
      lastBase: new Map<number, bigint>(),
      faulted: false,
      hostFault: false,
      hostFired: false,
      saved: undefined,
    } as unknown as Instance;
    const device = this.session.mediator.create(spec.definition.type, { slot: spec.slot, ...(spec.options === undefined ? {} : { options: spec.options(partial) }) });
    partial.device = device;
    partial.model = device.model as FaultableModel;
    device.open();
    const image = device.function.dumpConfig();
    partial.oracle = buildConfigOracle(device.model.definition, image);
    partial.resetImage = image;
    const problem = checkExpected(partial.oracle, image);
    if (problem !== undefined) this.session.fail('config-identity', `${spec.definition.type} after open: ${problem}`);
    if (replacing !== undefined) this.instances[index] = partial;
    else this.instances.push(partial);
    return partial;
  }

  // ---- The program --------------------------------------------------------------------------

  /** Runs operations until the program ends (or `maxOps` ran, or an invariant broke). */
  async run(maxOps = Number.POSITIVE_INFINITY): Promise<void> {
    const r = this.reader;
    for (let n = 0; !r.done && n < maxOps; n++) {
      this.session.step++;
      const op = r.pick(this.spec.ops);
      const quiet = op === 'lifecycle' || op === 'migration';
      this.observer?.before();
      try {
        switch (op) {
          case 'bar':
            this.barOp();
            break;
          case 'config':
            this.configOp();
            break;
          case 'ram':
            this.ramOp();
            break;
          case 'raw':
            this.rawOp();
            break;
          case 'host':
            this.hostOp();
            break;
          case 'lifecycle':
            this.lifecycleOp();
            break;
          case 'migration':
            await this.migrationOp();
            break;
          case 'fault':
            this.faultOp();
            break;
        }
      } catch (e) {
        this.session.fail('unexpected-throw', `operation ${op} threw ${describeError(e)}`);
      }
      this.afterOp(quiet);
      if (this.session.violations.length > 0) return;
    }
  }

  // ---- Guest BAR accesses -------------------------------------------------------------------

  private pickInstance(): Instance {
    return this.instances[this.reader.below(this.spec.primary)] as Instance;
  }

  private barOp(): void {
    const r = this.reader;
    const inst = this.pickInstance();
    const fn = inst.device.function;
    const bars = fn.bars.filter((b) => b !== undefined);
    const slot = r.pick(bars);
    if (slot === undefined) return;
    const h = r.word();
    const size = ACCESS_SIZES[h & 3] as AccessSize;
    const write = ((h >>> 2) & 1) === 1;
    const offset = this.barOffset((h >>> 3) & 7, slot.index, slot.size, inst);
    const space: IoSpace = slot.kind === 'io' ? 'pio' : 'mmio';
    const base = fn.barLocation(slot.index)?.base ?? inst.lastBase.get(slot.index) ?? 0n;
    const address = base + BigInt(offset);
    const mapped = inst.device.decodedRanges().find((d) => d.bar === slot.index);
    const inside = mapped !== undefined && mapped.range.base === base && offset >= 0 && offset + size <= slot.size;
    const trapped = slot.definition.backing !== 'direct';
    const fenced = inst.device.broken || !inst.device.migration.running || inst.device.state !== 'open';
    if (!write) {
      const value = this.guest.read(space, address, size);
      if (this.session.tracing) this.session.note(`read ${inst.spec.definition.type}#${inst.index} bar${slot.index}${signedHex(offset)} (${space} 0x${address.toString(16)}) size ${size} → 0x${value.toString(16)}`);
      if (inside && trapped && fenced && value !== onesOf(size)) {
        const why = inst.device.broken ? 'broken-all-ones' : 'stopped-all-ones';
        this.session.fail(why, `${inst.spec.definition.type} ${inst.device.broken ? 'is broken' : `is in ${inst.device.migration.state}`} but BAR ${slot.index} + 0x${offset.toString(16)} read 0x${value.toString(16)}`);
      }
      return;
    }
    const value = this.value(r, size, inst.spec.valueHints);
    if (this.session.tracing) this.session.note(`write ${inst.spec.definition.type}#${inst.index} bar${slot.index}${signedHex(offset)} (${space} 0x${address.toString(16)}) size ${size} = 0x${value.toString(16)}`);
    this.guestWrite(space, address, size, value);
  }

  /**
   * A guest write, with the DMA it may start: every piece of it that reaches a model through a
   * trapped BAR (any instance's: BARs may overlap, and a write may straddle an edge) goes through
   * that instance's shadow first, which says what guest memory the device may then touch.
   */
  private guestWrite(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    const windows: DmaWindow[] = [];
    if (space !== 'pci') {
      // A write that rings a doorbell reaches the model's doorbell handler, not its write switch.
      const v = BigInt.asUintN(size * 8, value);
      let rings = false;
      for (const bell of this.session.backend.doorbells.values()) {
        const b = bell.spec;
        if (b.space === space && b.address === address && (b.length === 0 || b.length === size) && (b.datamatch === undefined || b.datamatch === v)) rings = true;
      }
      for (const inst of this.instances) {
        const d = inst.device;
        // A fenced model sees nothing; an armed fault throws on the first piece its switch sees.
        if (inst.shadow === undefined || d.state !== 'open' || d.broken || !d.migration.running || (inst.model.armed && !rings)) continue;
        for (const mapping of d.decodedRanges()) {
          if (mapping.space !== space || mapping.direct) continue;
          const base = mapping.range.base;
          if (address + BigInt(size) <= base || address >= base + mapping.range.length) continue;
          const gate = () => this.dmaGate(inst);
          for (const piece of splitAccess(Number(address - base), size, Number(mapping.range.length))) {
            if (d.function.isMsixTableAccess(mapping.bar, piece.offset)) continue;
            const part = Number(BigInt.asUintN(piece.size * 8, value >> BigInt(8 * piece.shift)));
            for (const w of inst.shadow.write(mapping.bar, piece.offset, piece.size, part, this)) windows.push({ ...w, gate });
          }
        }
      }
    }
    this.session.withDma(windows, () => this.guest.write(space, address, size, value));
  }

  /** Why `inst` may not DMA now, or `undefined`. */
  private dmaGate(inst: Instance): string | undefined {
    const d = inst.device;
    if ((d.function.configRead(0x04, 2) & 0x4) === 0) return 'bus mastering is off in the command register';
    if (!d.migration.running) return `the device is in migration state ${d.migration.state}`;
    return undefined;
  }

  private barOffset(mode: number, bar: number, barSize: number, inst: Instance): number {
    const w = this.reader.word();
    const hints = inst.spec.barHints?.[bar] ?? [0];
    switch (mode) {
      case 0:
      case 1:
      case 2:
        return ((hints[w % hints.length] ?? 0) + (mode === 1 ? (w >>> 16) & 3 : 0)) % barSize;
      case 3:
        return w % Math.min(barSize, 0x1000);
      case 4:
        return w % barSize;
      case 5:
        return barSize - 1 - (w & 15);
      case 6:
        return -1 - (w & 15);
      default:
        return barSize + (w & 15);
    }
  }

  /** A value to write: raw, small, an address in or around RAM or MMIO, all-ones, a bit, a hint… */
  value(r: WordReader, size: number, hints: readonly number[] = []): bigint {
    const mode = r.below(10);
    let v: bigint;
    switch (mode) {
      case 0:
        v = size === 8 ? r.u64() : BigInt(r.word());
        break;
      case 1:
        v = BigInt(r.word() & 0x1fff);
        break;
      case 2: {
        const base = r.pick(RAM_POINTS);
        v = base + BigInt(r.word() & 0x3f) - 0x20n;
        if (v < 0n) v = 0n;
        break;
      }
      case 3:
        v = onesOf(8);
        break;
      case 4:
        v = 1n << BigInt(r.word() & 63);
        break;
      case 5:
        v = BigInt(hints.length === 0 ? r.word() : (hints[r.below(hints.length)] as number) >>> 0);
        break;
      case 6:
        // Near the top of the address space: a DMA range that wraps past 2^64.
        v = (1n << 64n) - BigInt(1 + (r.word() & 0xfff));
        break;
      case 7:
        v = this.mmioPoint(r);
        break;
      case 8:
        v = 0n;
        break;
      default:
        v = BigInt(r.word());
    }
    return BigInt.asUintN(size * 8, v);
  }

  /** An MMIO address where something lives: a BAR, the ECAM window, the MSI window. */
  private mmioPoint(r: WordReader): bigint {
    const points: bigint[] = [ECAM_BASE, 0xfee0_0000n];
    for (const inst of this.instances) for (const d of inst.device.decodedRanges()) points.push(d.range.base);
    return (r.pick(points) as bigint) + BigInt(r.word() & 0xff);
  }

  private rememberBars(inst: Instance): void {
    for (const b of inst.device.function.bars) {
      if (b === undefined) continue;
      const loc = inst.device.function.barLocation(b.index);
      if (loc !== undefined) inst.lastBase.set(b.index, loc.base);
    }
  }

  // ---- Configuration cycles -----------------------------------------------------------------

  private configOp(): void {
    const r = this.reader;
    const mechanism = r.pick(['port', 'ecam', 'pci'] as const);
    const targetKind = r.below(9);
    const inst = this.pickInstance();
    let bus = 0;
    let device = inst.device.address.device;
    let fnNo = 0;
    const isInstance = targetKind < 5;
    if (targetKind === 5) device = 0; // the host bridge
    else if (targetKind === 6) device = 31; // nobody
    else if (targetKind === 7) fnNo = 1 + r.below(7); // another function of the slot
    else if (targetKind === 8) bus = 1 + r.below(255); // another bus
    const register = this.configRegister(r, inst, mechanism);
    const h = r.word();
    const write = (h & 1) === 1;
    let size: AccessSize = ([4, 1, 2, 8] as const)[(h >>> 1) & 3] as AccessSize;
    if (mechanism === 'port' && size === 8) size = 4;
    const value = write ? this.configValue(r, size) : 0n;
    const fn = inst.device.function;
    const before = write && isInstance ? fn.dumpConfig() : undefined;
    let lane = 0;
    let result = 0n;
    // Which bytes of the function's config space the access reaches, byte by byte: the
    // dispatcher splits every access into aligned pieces of at most 4 bytes before the host
    // bridge sees it, so each piece is a well-formed cycle; bytes past the data window (0xCFF)
    // or past the function's space reach nothing and read all-ones.
    let first = 0;
    let landed = 0;
    if (mechanism === 'port') {
      const garbage = r.oneIn(16);
      const enable = garbage ? (r.word() & 1) === 1 : true;
      const cf8 = ((enable ? 0x8000_0000 : 0) | configAddress(bus, device, fnNo, register & 0xff) | (garbage ? r.word() & 0x7f000003 : 0)) >>> 0;
      lane = r.oneIn(8) ? r.below(4) : register & 3;
      this.guest.write('pio', 0xcf8n, 4, BigInt(cf8));
      const port = 0xcfcn + BigInt(lane);
      first = (register & 0xfc) | lane;
      landed = enable ? Math.min(size, 4 - lane) : 0;
      if (write) this.guest.write('pio', port, size, value);
      else result = this.guest.read('pio', port, size);
    } else {
      const offset = (BigInt(bus) << 20n) | (BigInt(device) << 15n) | (BigInt(fnNo) << 12n) | BigInt(register);
      first = register;
      landed = Math.max(0, Math.min(size, 0x1000 - register));
      if (mechanism === 'ecam') {
        if (write) this.guest.write('mmio', ECAM_BASE + offset, size, value);
        else result = this.guest.read('mmio', ECAM_BASE + offset, size);
      } else {
        // Xen's path: the hypervisor decoded the cycle and sends a `pci` request.
        if (write) this.guest.write('pci', offset, size, value);
        else result = this.guest.read('pci', offset, size);
      }
    }
    // A conventional function answers only its first 256 bytes.
    landed = Math.max(0, Math.min(landed, inst.oracle.size - first));
    if (this.session.tracing) this.session.note(
      `config ${mechanism} ${bus}:${device}.${fnNo} reg 0x${register.toString(16)}${lane !== (register & 3) ? ` lane ${lane}` : ''} size ${size} ${write ? `= 0x${value.toString(16)}` : `→ 0x${result.toString(16)}`}`,
    );
    if (!isInstance || inst.device.state !== 'open') {
      // Only bytes within the absent function's own space (an ECAM read may run into the next function's).
      const own = mechanism === 'port' ? size : Math.min(size, 0x1000 - register);
      if (!write && targetKind >= 6 && BigInt.asUintN(own * 8, result) !== onesOf(own)) {
        this.session.fail('config-refused-access', `a config read of an absent function returned 0x${result.toString(16)}`);
      }
      return;
    }
    if (!write) {
      const image = fn.dumpConfig();
      let expect = 0n;
      for (let i = size - 1; i >= 0; i--) expect = (expect << 8n) | BigInt(i < landed ? (image[first + i] ?? 0) : 0xff);
      if (expect !== result) {
        const invariant = landed < size ? 'config-refused-access' : 'config-paths-agree';
        this.session.fail(invariant, `config read (reg 0x${register.toString(16)}, lane ${lane}, size ${size}) returned 0x${result.toString(16)}, the function's space gives 0x${expect.toString(16)}`);
      }
      if (this.spec.checkPaths === true && landed > 0) {
        const piece = landed >= 4 && first % 4 === 0 ? 4 : landed >= 2 && first % 2 === 0 ? 2 : 1;
        this.compareMechanisms(inst, first, piece);
      }
      return;
    }
    const after = fn.dumpConfig();
    const verdict = judgeConfigWrite(inst.oracle, before as Uint8Array, after, landed === 0 ? undefined : { register: first, bytes: valueBytes(value, size).slice(0, landed) });
    if (verdict !== undefined) this.session.fail(verdict.invariant, `${inst.spec.definition.type}#${inst.index}: ${verdict.message}`);
    this.rememberBars(inst);
  }

  private configRegister(r: WordReader, inst: Instance, mechanism: string): number {
    const mode = r.below(5);
    if (mode <= 2) {
      const caps = inst.oracle.capabilities;
      const hints = [0x04, 0x06, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x3c, 0x0c, 0x30, 0x00];
      for (const offset of caps.values()) hints.push(offset, offset + 2, offset + 4, offset + 8, offset + 0x0c, offset + 0x10, offset + 0x14);
      const base = r.pick(hints);
      return (base + (mode === 2 ? r.below(4) : 0)) & (mechanism === 'port' ? 0xff : 0xfff);
    }
    if (mode === 3) return r.word() & 0xff;
    return r.word() & 0xfff;
  }

  private configValue(r: WordReader, size: number): bigint {
    const mode = r.below(8);
    switch (mode) {
      case 0:
        return BigInt.asUintN(size * 8, size === 8 ? r.u64() : BigInt(r.word()));
      case 1:
        return onesOf(size);
      case 2:
        return 0n;
      case 3:
        return BigInt(r.pick([0x7, 0x407, 0x3, 0x1, 0x4, 0x400, 0x2, 0xffff0007]) >>> 0) & onesOf(size);
      case 4: {
        // Another BAR's address: overlapping BARs are the guest's to make.
        const others: bigint[] = [];
        for (const i of this.instances) for (const d of i.device.decodedRanges()) others.push(d.range.base);
        const pick = others.length === 0 ? 0xe000_0000n : (others[r.below(others.length)] as bigint);
        return BigInt.asUintN(size * 8, pick);
      }
      case 5:
        // MSI / MSI-X control: enable, function mask, multiple message enable.
        return BigInt(r.pick([0x0001, 0x8000, 0xc000, 0x4000, 0x0031, 0x0071, 0x00010000, 0x80000000, 0xc0000000]) >>> 0) & onesOf(size);
      case 6:
        return BigInt(1 << (r.word() & 31)) & onesOf(size);
      default:
        return BigInt(r.word() & 0xff);
    }
  }

  /** A config read through 0xCF8/0xCFC, ECAM and a `pci` request must agree. */
  private compareMechanisms(inst: Instance, register: number, size: 1 | 2 | 4): void {
    const bdf = inst.device.address;
    const offset = (BigInt(bdf.device) << 15n) | BigInt(register);
    const ecam = this.guest.peek('mmio', ECAM_BASE + offset, size);
    const pci = this.guest.peek('pci', offset, size);
    let port = onesOf(size);
    if (register < 0x100) {
      this.guest.poke('pio', 0xcf8n, 4, BigInt((0x8000_0000 | configAddress(0, bdf.device, 0, register)) >>> 0));
      port = this.guest.peek('pio', 0xcfcn + BigInt(register & 3), size);
    }
    if (ecam !== pci || (register < 0x100 && port !== ecam)) {
      this.session.fail('config-paths-agree', `reg 0x${register.toString(16)} size ${size}: ECAM 0x${ecam.toString(16)}, pci 0x${pci.toString(16)}, 0xCFC 0x${port.toString(16)}`);
    }
  }

  // ---- Guest RAM and accesses anywhere ------------------------------------------------------

  private ramOp(): void {
    const r = this.reader;
    const base = r.pick(RAM_POINTS) + BigInt(r.word() & 0x3f) - 0x20n;
    const size = r.pick(ACCESS_SIZES) as AccessSize;
    const value = this.value(r, size);
    const address = base < 0n ? 0n : base;
    if (this.session.tracing) this.session.note(`ram store 0x${address.toString(16)} size ${size} = 0x${value.toString(16)}`);
    this.guest.write('mmio', address, size, value);
  }

  private rawOp(): void {
    const r = this.reader;
    const space = r.pick(['mmio', 'pio', 'pci'] as const);
    const size = r.pick(ACCESS_SIZES) as AccessSize;
    const mode = r.below(4);
    let address: bigint;
    if (mode === 0) address = r.u64();
    else if (mode === 1) address = this.mmioPoint(r) - 0x80n;
    else if (mode === 2) address = space === 'pio' ? 0xcf8n + BigInt(r.below(8)) : (1n << 64n) - BigInt(1 + r.below(16));
    else address = BigInt(r.word());
    const write = (r.word() & 1) === 1;
    if (write) {
      const value = this.value(r, size);
      if (this.session.tracing) this.session.note(`raw ${space} write 0x${address.toString(16)} size ${size} = 0x${value.toString(16)}`);
      this.guestWrite(space, address, size, value);
    } else {
      const v = this.guest.read(space, address, size);
      if (this.session.tracing) this.session.note(`raw ${space} read 0x${address.toString(16)} size ${size} → 0x${v.toString(16)}`);
    }
  }

  private hostOp(): void {
    const inst = this.pickInstance();
    const op = inst.spec.hostOp;
    // Host events reach an open device (a closed one is off the bus, its function at power-on).
    if (op === undefined || inst.device.state !== 'open') return;
    const what = op(this.reader, inst, this);
    if (this.session.tracing) this.session.note(`host ${inst.spec.definition.type}#${inst.index}: ${what}`);
  }

  private faultOp(): void {
    const inst = this.pickInstance();
    if ((this.reader.word() & 3) === 3) {
      inst.hostFault = true;
      if (this.session.tracing) this.session.note(`arm host-callback fault in ${inst.spec.definition.type}#${inst.index}`);
    } else {
      inst.model.armed = true;
      if (this.session.tracing) this.session.note(`arm model fault in ${inst.spec.definition.type}#${inst.index}`);
    }
  }

  // ---- Lifecycle ----------------------------------------------------------------------------

  private lifecycleOp(): void {
    const r = this.reader;
    const inst = this.pickInstance();
    const kind = r.pick(['reset', 'reset', 'toggle', 'toggle', 'recreate', 'cycle'] as const);
    const device = inst.device;
    if (this.session.tracing) this.session.note(`lifecycle ${kind} ${inst.spec.definition.type}#${inst.index} (${device.state}, ${device.migration.state}${device.broken ? ', broken' : ''})`);
    this.session.dropping(() => {
      switch (kind) {
        case 'reset':
          device.reset();
          this.afterReset(inst);
          break;
        case 'toggle':
          if (device.state === 'open') {
            device.close();
            this.afterClose(inst);
          } else {
            device.open();
            this.afterOpen(inst);
          }
          break;
        case 'cycle':
          if (device.state === 'open') {
            device.close();
            this.afterClose(inst);
          }
          device.open();
          this.afterOpen(inst);
          break;
        case 'recreate': {
          device.remove();
          const fresh = this.createInstance(inst.index, inst);
          this.rememberBars(fresh);
          break;
        }
      }
    });
    this.checkBaseline();
  }

  private afterReset(inst: Instance): void {
    const d = inst.device;
    inst.shadow?.reset();
    inst.faulted = false;
    inst.model.armed = false;
    inst.hostFault = false;
    inst.hostFired = false;
    if (d.broken) this.session.fail('lifecycle', 'the device is still broken after reset');
    if (d.migration.state !== 'RUNNING') this.session.fail('lifecycle', `migration state is ${d.migration.state} after reset`);
    if (d.state === 'open') this.comparePowerOn(inst, 'reset');
  }

  private afterClose(inst: Instance): void {
    inst.shadow?.reset();
    if (inst.device.decodedRanges().length !== 0) this.session.fail('lifecycle', 'a closed device still decodes BARs');
  }

  private afterOpen(inst: Instance): void {
    const d = inst.device;
    // A reopened device starts clean: power-on registers, running, not fenced.
    if (d.migration.state !== 'RUNNING') this.session.fail('lifecycle', `a reopened device is in migration state ${d.migration.state}, not RUNNING`);
    if (d.broken) this.session.fail('lifecycle', 'a reopened device is still broken');
    this.comparePowerOn(inst, 'reopen');
    inst.resetImage = d.function.dumpConfig();
    this.rememberBars(inst);
    // What a driver does again after open.
    const bdf = d.address;
    this.guest.poke('pio', 0xcf8n, 4, BigInt((0x8000_0000 | configAddress(bdf.bus, bdf.device, bdf.function, 0x04)) >>> 0));
    this.guest.poke('pio', 0xcfcn, 2, 0x7n);
    this.rememberBars(inst);
  }

  /** The config space equals the one after the last open, BAR addresses aside. */
  private comparePowerOn(inst: Instance, when: string): void {
    const now = inst.device.function.dumpConfig();
    const [from, to] = DeviceHarness.BAR_BYTES;
    for (let i = 0; i < now.length; i++) {
      if (i >= from && i < to) continue;
      const mask = ~(inst.oracle.dynamic[i] ?? 0) & 0xff;
      if (((now[i] ?? 0) & mask) !== ((inst.resetImage[i] ?? 0) & mask)) {
        this.session.fail('lifecycle', `after ${when}, config byte 0x${i.toString(16)} is 0x${(now[i] ?? 0).toString(16)}, power-on 0x${(inst.resetImage[i] ?? 0).toString(16)}`);
        return;
      }
    }
  }

  /** With every device closed, the backend holds only what the mediator itself holds. */
  private checkBaseline(): void {
    const r = this.session.backend.resources();
    if (r.views !== 0 || r.pins !== 0) this.session.fail('resources-baseline', `${r.views} views and ${r.pins} pins are held between operations`);
    if (this.instances.some((i) => i.device.state === 'open')) return;
    const left = { claims: r.claims - 2, msiRoutes: r.msiRoutes, lineIrqs: r.lineIrqs, doorbells: r.doorbells, directMappings: r.directMappings };
    const leaked = Object.entries(left).filter(([, n]) => n !== 0);
    if (leaked.length > 0) this.session.fail('resources-baseline', `with every device closed the backend holds ${leaked.map(([k, n]) => `${k} ${n}`).join(', ')}`);
    const direct = this.instances.reduce((n, i) => n + i.device.function.bars.filter((b) => b?.definition.backing === 'direct').length, 0);
    if (r.sharedMemory !== direct) this.session.fail('resources-baseline', `${r.sharedMemory} shared memories for ${direct} direct BARs`);
  }

  // ---- Migration ----------------------------------------------------------------------------

  private async migrationOp(): Promise<void> {
    const r = this.reader;
    const inst = this.pickInstance();
    const d = inst.device;
    const kind = r.pick(['save', 'resume', 'corrupt', 'goto', 'read', 'garbage'] as const);
    // Migration is a VMM driving an open device (VFIO's device fd), as the lifecycle checks assume.
    if (d.state !== 'open') return;
    const m = d.migration;
    if (this.session.tracing) this.session.note(`migration ${kind} ${inst.spec.definition.type}#${inst.index} (at ${m.state})`);
    switch (kind) {
      case 'save':
        await this.saveCycle(inst, r);
        break;
      case 'resume':
        await this.resume(inst, r, false);
        break;
      case 'corrupt':
        await this.resume(inst, r, true);
        break;
      case 'goto': {
        const target = r.pick(MIGRATION_TARGETS);
        await this.session.droppingAsync(() => this.expectVmed(`setState(${target})`, () => m.setState(target)));
        break;
      }
      case 'read':
        await this.expectVmed('read', async () => {
          m.read(r.pick(CHUNK_SIZES));
        });
        break;
      case 'garbage':
        await this.expectVmed('write', async () => {
          const n = r.below(64);
          const chunk = new Uint8Array(n);
          for (let i = 0; i < n; i++) chunk[i] = r.word() & 0xff;
          m.write(chunk);
        });
        break;
    }
    try {
      m.save();
    } catch (e) {
      this.session.fail('savable', `save() threw ${describeError(e)} in ${m.state}`);
    }
  }

  /** RUNNING → STOP_COPY, read the stream out, back to RUNNING; the stream must restore identically. */
  private async saveCycle(inst: Instance, r: WordReader): Promise<void> {
    const m = inst.device.migration;
    await this.backToRunning(inst);
    try {
      await m.setState('STOP_COPY');
    } catch (e) {
      if (!isVmedError(e)) this.session.fail('unexpected-throw', `setState(STOP_COPY) threw ${describeError(e)}`);
      return;
    }
    const chunks: Uint8Array[] = [];
    const size = r.pick(CHUNK_SIZES);
    for (let chunk = m.read(size); chunk !== null; chunk = m.read(size)) chunks.push(chunk.slice());
    const stream = concat(chunks);
    const now = m.save();
    if (!equalBytes(stream, now)) this.session.fail('savable', `the STOP_COPY stream (${stream.length} bytes) differs from save() of the stopped device (${now.length} bytes)`);
    inst.saved = { stream, shadow: inst.shadow?.snapshot() };
    await m.setState('RUNNING');
    await this.twinCheck(inst, stream);
  }

  /** RESUMING with the saved stream (or a corrupted one), then RUNNING or STOP. */
  private async resume(inst: Instance, r: WordReader, corrupt: boolean): Promise<void> {
    const saved = inst.saved;
    if (saved === undefined) return;
    const m = inst.device.migration;
    await this.backToRunning(inst);
    let stream = saved.stream;
    if (corrupt) {
      stream = stream.slice();
      const how = r.below(3);
      if (how === 0 || stream.length === 0) stream = stream.subarray(0, r.below(stream.length));
      else if (how === 1) {
        const bit = r.below(stream.length * 8);
        stream[bit >>> 3] = (stream[bit >>> 3] ?? 0) ^ (1 << (bit & 7));
      } else {
        const extra = new Uint8Array(stream.length + 1 + r.below(8));
        extra.set(stream);
        stream = extra;
      }
    }
    const before = m.save();
    try {
      await m.setState('RESUMING');
    } catch (e) {
      if (!isVmedError(e)) this.session.fail('unexpected-throw', `setState(RESUMING) threw ${describeError(e)}`);
      return;
    }
    const size = r.pick(CHUNK_SIZES);
    for (let at = 0; at < stream.length; at += size) m.write(stream.subarray(at, at + size));
    const target = r.pick(['RUNNING', 'STOP'] as const);
    let error: unknown;
    try {
      await this.session.droppingAsync(() => m.setState(target));
    } catch (e) {
      error = e;
    }
    if (corrupt) {
      if (error === undefined) {
        this.session.fail('stream-refused', `a corrupted stream (${stream.length} of ${saved.stream.length} bytes) was accepted`);
        return;
      }
      if (!isVmedError(error)) this.session.fail('stream-refused', `a corrupted stream was refused with ${describeError(error)}, not a VmedError`);
      if (m.state !== 'RESUMING') this.session.fail('stream-unchanged', `after a refused stream the device is in ${m.state}, not RESUMING`);
      if (!equalBytes(m.save(), before)) this.session.fail('stream-unchanged', 'a refused stream changed the device');
      // Leave RESUMING the way a VMM would: the good stream, or a reset.
      if (r.oneIn(2)) {
        this.session.dropping(() => {
          inst.device.reset();
          this.afterReset(inst);
        });
      } else {
        m.write(saved.stream);
        await this.session.droppingAsync(() => m.setState('RUNNING'));
        inst.shadow?.restore(saved.shadow);
      }
      return;
    }
    if (error !== undefined) {
      this.session.fail('resume-roundtrip', `the device refused its own saved stream: ${describeError(error)}`);
      return;
    }
    inst.shadow?.restore(saved.shadow);
    const again = m.save();
    if (!equalBytes(again, saved.stream)) this.session.fail('resume-roundtrip', `save() after resuming differs from the stream resumed (${firstDifference(again, saved.stream)})`);
    if (m.state !== 'RUNNING') await m.setState('RUNNING');
    this.rememberBars(inst);
  }

  /** Restores `stream` into a fresh device in a fresh session; it must look and behave the same. */
  private async twinCheck(inst: Instance, stream: Uint8Array): Promise<void> {
    const twin = await FuzzSession.open({ types: uniqueTypes(this.spec.devices), trace: false, sim: this.sim });
    try {
      const spec = inst.spec;
      const shadowTwin = { ...inst, hostFault: false, hostFired: false } as Instance;
      const device = twin.mediator.create(spec.definition.type, { slot: spec.slot, ...(spec.options === undefined ? {} : { options: spec.options(shadowTwin) }) });
      device.open();
      try {
        await device.migration.setState('RESUMING');
        device.migration.write(stream);
        await device.migration.setState('RUNNING');
      } catch (e) {
        this.session.fail('restore-identical', `a fresh ${spec.definition.type} refused the saved stream: ${describeError(e)}`);
        return;
      }
      const a = inst.device.function.dumpConfig();
      const b = device.function.dumpConfig();
      if (!equalBytes(a, b)) this.session.fail('restore-identical', `config space of the restored twin differs (${firstDifference(a, b)})`);
      const resaved = device.migration.save();
      if (!equalBytes(resaved, stream)) this.session.fail('restore-identical', `the twin re-saves different bytes (${firstDifference(resaved, stream)})`);
      // The same register reads on both, side effects included, must give the same values.
      // An armed fault must not fire on these check reads.
      const armed = inst.model.armed;
      inst.model.armed = false;
      const mine = new Map(inst.device.decodedRanges().map((x) => [x.bar, x.range.base]));
      // A broken device is fenced (all-ones) while its restored twin is not: compare only a live one.
      for (const s of inst.device.broken ? [] : (spec.sweep ?? [])) {
        const base = mine.get(s.bar);
        const theirs = device.decodedRanges().find((x) => x.bar === s.bar);
        if (base === undefined || theirs === undefined || theirs.range.base !== base) continue;
        const slot = device.function.bars[s.bar];
        const space: IoSpace = slot?.kind === 'io' ? 'pio' : 'mmio';
        const x = this.guest.peek(space, base + BigInt(s.offset), s.size);
        const y = twin.guest.peek(space, base + BigInt(s.offset), s.size);
        if (x !== y) {
          this.session.fail('restore-identical', `BAR ${s.bar} + 0x${s.offset.toString(16)} reads 0x${x.toString(16)} on the device, 0x${y.toString(16)} on its restored twin`);
          break;
        }
      }
      inst.model.armed = armed;
      const afterA = inst.device.migration.save();
      const afterB = device.migration.save();
      if (!inst.device.broken && !equalBytes(afterA, afterB)) this.session.fail('restore-identical', `after the same reads the device and its twin save different state (${firstDifference(afterA, afterB)})`);
      for (const v of twin.violations) this.session.fail(v.invariant, `in the restored twin: ${v.message}`);
    } finally {
      await twin.close(false);
    }
  }

  /**
   * Starts a migration step from RUNNING, as a VMM would: a save or resume stream already in
   * progress (left by an earlier `goto`) is abandoned by going back to RUNNING, or by a reset
   * where that is the only way out (RESUMING without a stream, ERROR).
   */
  private async backToRunning(inst: Instance): Promise<void> {
    const m = inst.device.migration;
    if (m.state === 'RUNNING') return;
    if (m.state !== 'RESUMING' && m.state !== 'ERROR') {
      await m.setState('RUNNING');
      return;
    }
    this.session.dropping(() => {
      inst.device.reset();
      this.afterReset(inst);
    });
  }

  private async expectVmed(what: string, f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
    } catch (e) {
      if (!isVmedError(e)) this.session.fail('unexpected-throw', `migration ${what} threw ${describeError(e)}, not a VmedError`);
    }
  }

  // ---- After every operation ----------------------------------------------------------------

  private afterOp(quiet: boolean): void {
    for (const inst of this.instances) {
      const d = inst.device;
      if (inst.model.fired || inst.hostFired) {
        const what = inst.model.fired ? 'model' : 'host-callback';
        inst.model.fired = false;
        inst.hostFired = false;
        inst.faulted = true;
        if (!d.broken) this.session.fail('crash-isolation', `an injected ${what} fault in ${inst.spec.definition.type}#${inst.index} did not mark the device broken`);
      }
      if (d.broken && !inst.faulted) {
        this.session.fail('unexpected-throw', `${inst.spec.definition.type}#${inst.index} became broken without an injected fault: ${describeError(d.brokenBy)}`);
        inst.faulted = true;
      }
      if (d.state === 'open') this.checkIntx(inst);
    }
    this.observer?.after(quiet);
    if (!quiet) {
      const r = this.session.backend.resources();
      if (r.views !== 0 || r.pins !== 0) this.session.fail('resources-baseline', `${r.views} views and ${r.pins} pins are held between operations`);
    }
  }

  /** INTx is asserted exactly when the guest view says it should be. */
  private checkIntx(inst: Instance): void {
    const fn = inst.device.function;
    const pin = inst.device.model.definition.interruptPin ?? 0;
    if (pin === 0) return;
    const status = fn.configRead(0x06, 2);
    const command = fn.configRead(0x04, 2);
    const msi = inst.oracle.capabilities.get(0x05);
    const msix = inst.oracle.capabilities.get(0x11);
    const msiOn = msi !== undefined && (fn.configRead(msi + 2, 2) & 0x1) !== 0;
    const msixOn = msix !== undefined && (fn.configRead(msix + 2, 2) & 0x8000) !== 0;
    const want = (status & 0x8) !== 0 && (command & 0x400) === 0 && !msiOn && !msixOn;
    let asserted = false;
    for (const line of this.session.backend.lines) {
      const t = line.target;
      if (t.kind === 'intx' && t.device.device === inst.device.address.device && t.device.function === inst.device.address.function && line.asserted) asserted = true;
    }
    if (asserted !== want) {
      this.session.fail('intx-level', `${inst.spec.definition.type}#${inst.index}: INTx line ${asserted ? 'asserted' : 'low'} with status 0x${status.toString(16)}, command 0x${command.toString(16)}, MSI ${msiOn ? 'on' : 'off'}, MSI-X ${msixOn ? 'on' : 'off'}`);
    }
  }
}

/** `+0x10` or `-0x3`: a BAR-relative offset for traces. */
function signedHex(n: number): string {
  return n < 0 ? `-0x${(-n).toString(16)}` : `+0x${n.toString(16)}`;
}

/** Dword address bits of configuration mechanism #1 (without the enable bit). */
export function configAddress(bus: number, device: number, fn: number, register: number): number {
  return ((bus & 0xff) << 16) | ((device & 0x1f) << 11) | ((fn & 7) << 8) | (register & 0xfc);
}

/**
 * The pieces a region handler sees for an access at `offset` of `size` bytes in a region of
 * `regionSize` bytes: naturally aligned, at most 4 bytes, none crossing the region's edges; only
 * the pieces inside the region. `shift` is the piece's byte position in the access value.
 */
export function splitAccess(offset: number, size: number, regionSize: number): Array<{ offset: number; size: 1 | 2 | 4; shift: number }> {
  const out: Array<{ offset: number; size: 1 | 2 | 4; shift: number }> = [];
  const end = offset + size;
  let cursor = offset;
  while (cursor < end) {
    const limit = cursor < 0 ? Math.min(0, end) : cursor < regionSize ? Math.min(regionSize, end) : end;
    let p = 4;
    while (p > 1 && (((cursor % p) + p) % p !== 0 || cursor + p > limit)) p >>= 1;
    if (cursor >= 0 && cursor < regionSize) out.push({ offset: cursor, size: p as 1 | 2 | 4, shift: cursor - offset });
    cursor += p;
  }
  return out;
}

function valueBytes(value: bigint, size: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < size; i++) out.push(Number((value >> BigInt(8 * i)) & 0xffn));
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function firstDifference(a: Uint8Array, b: Uint8Array): string {
  if (a.length !== b.length) return `${a.length} vs ${b.length} bytes`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `first difference at byte ${i}: 0x${(a[i] ?? 0).toString(16)} vs 0x${(b[i] ?? 0).toString(16)}`;
  return 'equal';
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** One definition per device type (several slots may hold the same type). */
function uniqueTypes(devices: readonly DeviceSlotSpec[]): Array<DeviceDefinition<never>> {
  const byType = new Map<string, DeviceDefinition<never>>();
  for (const d of devices) if (!byType.has(d.definition.type)) byType.set(d.definition.type, d.definition);
  return [...byType.values()];
}

/** Makes a {@link FuzzTarget} from a device target spec. */
export function deviceTarget(spec: DeviceTargetSpec): FuzzTarget {
  const withFaults: DeviceTargetSpec = { ...spec, devices: spec.devices.map((d) => ({ ...d, definition: faultable(d.definition) as DeviceDefinition<never> })) };
  return {
    name: spec.name,
    description: spec.description,
    words: spec.words,
    async run(program: Uint32Array, count: (n: number) => void, trace: boolean): Promise<ProgramOutcome> {
      const r = new WordReader(program);
      const sim = spec.simOptions?.(r) ?? {};
      const session = await FuzzSession.open({ types: uniqueTypes(withFaults.devices), sim, trace });
      const harness = new DeviceHarness(session, withFaults, r, sim);
      try {
        await harness.start();
        await harness.run();
      } catch (e) {
        session.fail('unexpected-throw', `the harness caught ${describeError(e)}`);
      } finally {
        count(session.guest.accesses);
        if (session.violations.length === 0) await session.close(true);
        else await session.close(false).catch(() => undefined);
      }
      return { violations: session.violations, trace: session.trace ?? [], consumed: r.position };
    },
  };
}

