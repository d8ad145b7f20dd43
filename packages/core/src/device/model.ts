/**
 * What a device model author writes: a PCI function's identity and layout, one read switch
 * and one write switch per trapped BAR, a reset, and state save/load. The core does the
 * rest — config space, BAR sizing and mapping, MSI/MSI-X/INTx selection and masking, DMA
 * bounds and bus-master gating, dirty marking, migration envelopes — the same on every
 * hypervisor. Models are plain single-threaded objects: every call arrives on the I/O context.
 */
import type { MemoryAccess, MemoryView } from '../backend/memory.js';
import type { StateReader, StateWriter } from '../migration/state-codec.js';

/** Access width a model's region handlers see: the core splits 8-byte and unaligned accesses. */
export type RegionAccessSize = 1 | 2 | 4;

/** A BAR whose every access reaches the model's {@link DeviceModel.read}/{@link DeviceModel.write}. */
export interface TrappedBar {
  readonly kind: 'io' | 'memory32' | 'memory64';
  /** Size in bytes: a power of two, ≥ 4 for I/O, ≥ 16 for memory (the core rounds 16 up to 4096 for memory BARs it maps directly). */
  readonly size: number;
  readonly prefetchable?: boolean;
  readonly backing?: 'trapped';
}

/**
 * A memory BAR backed by shared memory the guest reads and writes directly (a framebuffer).
 * The model sees the memory ({@link DeviceContext.directMemory}), not the accesses. Where the
 * backend cannot map memory into the guest (Xen), the core traps the BAR and serves it from
 * the same memory, so the model is unchanged.
 */
export interface DirectBar {
  readonly kind: 'memory32' | 'memory64';
  readonly size: number;
  readonly prefetchable?: boolean;
  readonly backing: 'direct';
}

export type BarDefinition = TrappedBar | DirectBar;

/** MSI capability layout. */
export interface MsiDefinition {
  /** Vectors requested (Multiple Message Capable): 1, 2, 4, 8, 16 or 32. */
  readonly vectors: 1 | 2 | 4 | 8 | 16 | 32;
  /** 64-bit message address. */
  readonly address64: boolean;
  /** Per-vector masking (mask and pending registers). */
  readonly perVectorMask: boolean;
}

/** MSI-X capability layout: table and PBA live in one of the function's memory BARs. */
export interface MsixDefinition {
  /** Table size, 1..2048. */
  readonly vectors: number;
  /** BAR index holding the table (a trapped memory BAR; the core serves these offsets). */
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

/** The identity and layout of a PCI function (type-0 header). */
export interface PciFunctionDefinition {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  readonly revision?: number;
  /** 24-bit class code: base class << 16 | subclass << 8 | programming interface. */
  readonly classCode: number;
  /** INTx pin: 0 none, 1 INTA .. 4 INTD. */
  readonly interruptPin?: 0 | 1 | 2 | 3 | 4;
  /**
   * BARs by index 0..5. A 64-bit memory BAR takes its index and the next; leave the next
   * `undefined`.
   */
  readonly bars?: ReadonlyArray<BarDefinition | undefined>;
  readonly msi?: MsiDefinition;
  readonly msix?: MsixDefinition;
  /** Adds a PCI Express capability (endpoint) and extended config space. */
  readonly pcie?: boolean;
  /** Adds a power management capability (D0/D3hot). */
  readonly powerManagement?: boolean;
}

/** Interrupts as a model sees them: vectors, whatever the guest enabled. */
export interface DeviceInterrupts {
  /**
   * Signals vector `vector` (default 0): MSI-X entry `vector` if MSI-X is enabled, else MSI
   * vector `vector` if MSI is enabled, else INTx asserted (level, held until {@link lower})
   * unless the guest set Interrupt Disable. A masked MSI/MSI-X vector is left pending and
   * delivered once on unmask.
   */
  raise(vector?: number): void;
  /** Deasserts INTx (level); nothing for MSI and MSI-X. */
  lower(vector?: number): void;
  /** The mode the guest has selected: what {@link raise} will use. */
  readonly mode: 'msix' | 'msi' | 'intx' | 'none';
}

/**
 * DMA to and from guest memory. Refused (`DmaError`) while the guest has not set Bus Master
 * Enable, or when any byte of the range is outside guest RAM — checked before a byte moves.
 * Writes are marked dirty for migration.
 */
export interface DeviceDma {
  /** Copies `length` bytes from guest memory. */
  read(address: bigint, length: number): Uint8Array;
  /** Copies from guest memory into `dst`. */
  readInto(address: bigint, dst: Uint8Array): void;
  /** Copies `src` into guest memory. */
  write(address: bigint, src: Uint8Array): void;
  /**
   * A zero-copy view of guest memory for bulk transfers; same checks. A `readwrite` view's
   * range is marked dirty when it is disposed. KVM: no copy and no syscall; Xen: a foreign
   * mapping held for the view's life.
   */
  view(address: bigint, length: number, access: MemoryAccess): MemoryView;
}

/** Where a model's doorbell sits: a BAR-relative address, re-registered when the BAR moves. */
export interface DeviceDoorbellSpec {
  readonly bar: number;
  readonly offset: number;
  readonly length: 1 | 2 | 4 | 8;
  readonly datamatch?: bigint;
}

/** What the core gives a model when it creates it. */
export interface DeviceContext {
  /** The mdev UUID of this instance. */
  readonly uuid: string;
  readonly interrupts: DeviceInterrupts;
  readonly dma: DeviceDma;
  /** The memory of a {@link DirectBar}; `Invalid` for any other BAR. */
  directMemory(bar: number): Uint8Array;
  /**
   * Registers a doorbell on one of the model's BARs; `handler` runs on the I/O context with
   * the number of coalesced rings. Active only while the BAR is mapped and decode enabled.
   * Returns a function that unregisters it.
   */
  doorbell(spec: DeviceDoorbellSpec, handler: (count: number) => void): () => void;
}

/**
 * A device model. `read` and `write` get BAR-relative, naturally aligned accesses of 1, 2 or
 * 4 bytes on trapped BARs; they must not throw for guest-controlled input (return all-ones
 * or ignore instead) — a throw marks the device broken.
 */
export interface DeviceModel {
  readonly definition: PciFunctionDefinition;
  read(bar: number, offset: number, size: RegionAccessSize): number;
  write(bar: number, offset: number, size: RegionAccessSize, value: number): void;
  /** Back to power-on state (function-level reset). Config space is reset by the core. */
  reset(): void;
  /** Version of the model's own state layout; a stream with a higher version is refused. */
  readonly stateVersion: number;
  /** Writes the model's state (config space is saved by the core). */
  saveState(out: StateWriter): void;
  /**
   * Reads state written by `saveState` of `version` ≤ `stateVersion`. May throw on bad input:
   * the core restores the previous state, so a refused stream leaves the device unchanged.
   */
  loadState(input: StateReader, version: number): void;
  /** Releases anything the model holds (timers). */
  dispose?(): void;
}

/** A device type, as registered with the mediator (an mdev "type"). */
export interface DeviceDefinition<Options = Record<string, never>> {
  /** Type name, e.g. `"edu"`. */
  readonly type: string;
  readonly description: string;
  /** Most instances that may exist at once on one mediator. */
  readonly maxInstances: number;
  create(context: DeviceContext, options: Options): DeviceModel;
}
