/**
 * A PCI function as the guest sees it: configuration space, BARs, capabilities and the
 * interrupt rules, built from a {@link PciFunctionDefinition}. The device model behind it
 * sees only {@link DeviceInterrupts}; the core sees BAR moves through `onBarChange` and
 * routes MSI-X table/PBA offsets of the table's BAR here.
 *
 * Interrupt mode: MSI-X if its enable bit is set, else MSI if enabled, else INTx when the
 * function has a pin, else none. Each MSI/MSI-X vector has its own route (see
 * {@link VectorRoutes}), masked from the effective mask — function mask OR vector mask OR not
 * enabled — so a masked vector keeps its interrupt pending in the route, visible to the guest
 * in the MSI pending register or the PBA, and delivered once on unmask. INTx is a level line
 * asserted while the device holds it raised, Interrupt Disable is clear and no MSI/MSI-X is
 * enabled; Interrupt Status follows the device's request whatever the disable bit says.
 *
 * Nothing the guest writes throws out of `configRead`, `configWrite`, `msixRead` and
 * `msixWrite`: bad accesses get all-ones or are dropped, and backend failures (a route that
 * cannot be created, a BAR hook that refuses) go to `onError`.
 */
import type { LineIrq, LineTarget, MsiRoute } from '../backend/interrupts.js';
import type { PciAddress } from '../backend/io.js';
import type { DeviceInterrupts, PciFunctionDefinition } from '../device/model.js';
import { BadHandleError, InvalidError, hex } from '../errors.js';
import type { StateReader, StateWriter } from '../migration/state-codec.js';
import { decodeBar, installBars, sameBarLocation, validateBars, type BarLocation, type BarSlot } from './bars.js';
import { CapabilityListBuilder } from './capabilities.js';
import { ConfigSpace, configAllOnes, initTypeZeroHeader, overlaps, type ConfigAccessSize } from './config-space.js';
import { MsiCapability } from './msi.js';
import { MsixCapability } from './msix.js';
import { installPcieCapability } from './pcie.js';
import { PowerManagementCapability } from './power.js';
import {
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_CONFIG_SPACE_SIZE,
  PCI_D0,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
  PCI_STATUS,
  PCI_STATUS_ERROR_BITS,
  PCI_STATUS_INTERRUPT,
  PCIE_CONFIG_SPACE_SIZE,
} from './registers.js';
import { VectorRoutes, type VectorProgram } from './vector-routes.js';

/** What a {@link PciFunction} needs from the core. */
export interface PciFunctionHooks {
  /** Where the function sits (names its INTx line on Xen). */
  readonly address: PciAddress;
  /** The GSI the platform routed this function's INTx pin to (KVM); preloaded in Interrupt Line. */
  readonly intxLine: number;
  /**
   * A new route, masked and without a message (the backend's `createMsiRoute`). KVM: a GSI
   * route (`NoSpace` past the table's 4096); Xen: a local route injected with `inject_msi`.
   */
  createMsiRoute(): MsiRoute;
  /**
   * The function's INTx line (the backend's `createLineIrq`), created on first assertion with
   * an `intx` target. KVM drives GSI `intxLine` (with a resample eventfd); Xen calls
   * `set_pci_intx_level` with the function's address, and has no lines on PVH guests — the
   * failure goes to `onError` once and INTx stays undeliverable until reset.
   */
  createLineIrq(target: LineTarget, trigger: 'level'): LineIrq;
  /**
   * BAR `index` (the lower index of a 64-bit BAR) moved: decoding started, stopped or moved.
   * Called after the function's own state changed, removals before additions.
   */
  onBarChange(index: number, before: BarLocation | undefined, after: BarLocation | undefined): void;
  /** A failure the guest's actions caused in the backend (route exhaustion, a refused move). */
  onError?(error: unknown): void;
}

/** The interrupt mode a guest has selected. */
export type InterruptMode = DeviceInterrupts['mode'];

/** "PCIF" as the stream's first four bytes (little-endian u32). */
const STATE_MAGIC = 0x46494350;
const STATE_VERSION = 1;

/** A PCI function: config space, BARs, MSI/MSI-X/INTx, reset and state. */
export class PciFunction implements Disposable {
  readonly definition: PciFunctionDefinition;
  readonly address: PciAddress;
  /** The interrupts a device model raises. */
  readonly interrupts: DeviceInterrupts;
  /** Validated BARs by index (`undefined` where unused and at a 64-bit BAR's upper index). */
  readonly bars: ReadonlyArray<BarSlot | undefined>;

  private readonly hooks: PciFunctionHooks;
  private readonly config: ConfigSpace;
  private readonly powerOn: Uint8Array;
  /** Bits the function itself sets in read-only registers: not compared on state load. */
  private readonly dynamicBits: Uint8Array;
  private readonly pin: number;
  private readonly msi: MsiCapability | undefined;
  private readonly msix: MsixCapability | undefined;
  private readonly pm: PowerManagementCapability | undefined;
  private readonly msiRoutes: VectorRoutes | undefined;
  private readonly msixRoutes: VectorRoutes | undefined;
  private readonly locations: Array<BarLocation | undefined>;
  private intxRequested = false;
  private line: LineIrq | undefined;
  private lineFailed = false;
  private msiWasEnabled = false;
  private msixWasEnabled = false;
  private closed = false;

  /** Builds the function in its power-on state. Throws `Invalid` for a bad definition. */
  constructor(definition: PciFunctionDefinition, hooks: PciFunctionHooks) {
    validateIdentity(definition);
    validateAddress(hooks.address);
    if (!Number.isSafeInteger(hooks.intxLine) || hooks.intxLine < 0) {
      throw new InvalidError('pci.function', `INTx line ${hooks.intxLine} is not a GSI`);
    }
    this.definition = definition;
    this.address = hooks.address;
    this.hooks = hooks;
    this.pin = definition.interruptPin ?? 0;

    this.config = new ConfigSpace(definition.pcie === true ? PCIE_CONFIG_SPACE_SIZE : PCI_CONFIG_SPACE_SIZE);
    initTypeZeroHeader(this.config, definition, this.pin === 0 ? 0 : Math.min(hooks.intxLine, 0xff));
    const bars = validateBars(definition.bars);
    installBars(this.config, bars);
    this.bars = bars;
    const caps = new CapabilityListBuilder(this.config);
    this.pm = definition.powerManagement === true ? PowerManagementCapability.install(this.config, caps) : undefined;
    this.msi = definition.msi === undefined ? undefined : MsiCapability.install(this.config, caps, definition.msi);
    this.msix = definition.msix === undefined ? undefined : MsixCapability.install(this.config, caps, definition.msix, bars);
    if (definition.pcie === true) installPcieCapability(this.config, caps);
    this.powerOn = this.config.snapshot();

    this.dynamicBits = new Uint8Array(this.config.size);
    this.dynamicBits[PCI_STATUS] = PCI_STATUS_INTERRUPT;
    this.dynamicBits[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_MULTI_FUNCTION;
    if (this.msi?.pendingRegister !== undefined) this.dynamicBits.fill(0xff, this.msi.pendingRegister, this.msi.pendingRegister + 4);

    const report = (e: unknown) => this.report(e);
    const createRoute = () => hooks.createMsiRoute();
    this.msiRoutes = this.msi === undefined ? undefined : new VectorRoutes(this.msi.capable, createRoute, report);
    this.msixRoutes = this.msix === undefined ? undefined : new VectorRoutes(this.msix.vectors, createRoute, report);
    this.locations = new Array<BarLocation | undefined>(bars.length).fill(undefined);

    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const fn = this;
    this.interrupts = {
      raise: (vector?: number) => fn.raise(vector ?? 0),
      lower: () => fn.lower(),
      get mode() {
        return fn.mode;
      },
    };
  }

  // ---- Configuration space ------------------------------------------------------------------

  /**
   * A guest configuration read of 1, 2 or 4 bytes inside one dword. An access crossing a
   * dword, of another size, or past the end of the space (≥ 0x100 on a conventional
   * function) reads all-ones.
   */
  configRead(register: number, size: ConfigAccessSize): number {
    this.guard('pci.configRead');
    if (!this.config.accepts(register, size)) return configAllOnes(size);
    if (this.msi?.pendingRegister !== undefined && overlaps(register, size, this.msi.pendingRegister, 4)) {
      this.msi.setPendingBits(this.msiPendingBits());
    }
    return this.config.read(register, size);
  }

  /** A guest configuration write. Accesses {@link configRead} refuses are dropped. */
  configWrite(register: number, size: ConfigAccessSize, value: number): void {
    this.guard('pci.configWrite');
    if (typeof value !== 'number' || !this.config.accepts(register, size)) return;
    const powerBefore = this.pm?.powerState ?? PCI_D0;
    this.config.guestWrite(register, size, Number.isFinite(value) ? value >>> 0 : 0);
    if (this.pm !== undefined && overlaps(register, size, this.pm.offset, this.pm.length)) this.pm.refuseUnsupportedState(powerBefore);
    if (this.msi !== undefined && overlaps(register, size, this.msi.offset, this.msi.length)) this.msi.clampEnabledVectors();
    this.update();
  }

  /** The configuration space as the guest would read it now (for dumps). */
  dumpConfig(): Uint8Array {
    this.guard('pci.dumpConfig');
    this.msi?.setPendingBits(this.msiPendingBits());
    return this.config.snapshot();
  }

  /**
   * Sets error bits of the status register on the function's behalf (e.g. Received Master
   * Abort after a refused DMA). Only the RW1C error bits may be set; the guest clears them.
   */
  signalStatus(bits: number): void {
    this.guard('pci.signalStatus');
    if (!Number.isInteger(bits) || (bits & ~PCI_STATUS_ERROR_BITS) !== 0 || bits < 0) {
      throw new InvalidError('pci.signalStatus', `${hex(bits)} is not a set of status error bits`);
    }
    this.config.set16(PCI_STATUS, this.config.get16(PCI_STATUS) | bits);
  }

  /**
   * Sets or clears the multi-function bit of the header type. The bus calls this on function 0
   * when other functions share its slot, so that enumeration scans functions 1–7.
   */
  setMultifunction(on: boolean): void {
    this.guard('pci.setMultifunction');
    for (const image of [this.config.bytes, this.powerOn]) {
      const header = image[PCI_HEADER_TYPE] ?? 0;
      image[PCI_HEADER_TYPE] = on ? header | PCI_HEADER_TYPE_MULTI_FUNCTION : header & ~PCI_HEADER_TYPE_MULTI_FUNCTION;
    }
  }

  // ---- Command register and BARs ------------------------------------------------------------

  private get command(): number {
    return this.config.get16(PCI_COMMAND);
  }

  /** Bus Master Enable: the function may DMA. */
  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }

  /** Memory Space Enable. */
  get memoryDecode(): boolean {
    return (this.command & PCI_COMMAND_MEMORY) !== 0;
  }

  /** I/O Space Enable. */
  get ioDecode(): boolean {
    return (this.command & PCI_COMMAND_IO) !== 0;
  }

  /** Interrupt Disable (INTx only). */
  get intxDisabled(): boolean {
    return (this.command & PCI_COMMAND_INTX_DISABLE) !== 0;
  }

  /** Power state: 0 (D0) or 3 (D3hot); always 0 without a power management capability. */
  get powerState(): number {
    return this.pm?.powerState ?? PCI_D0;
  }

  /** Where BAR `index` decodes now, or `undefined` (decode off, unassigned, being sized, D3hot). */
  barLocation(index: number): BarLocation | undefined {
    this.guard('pci.barLocation');
    return Number.isInteger(index) ? this.locations[index] : undefined;
  }

  // ---- MSI-X table and PBA ------------------------------------------------------------------

  /** Whether `offset` of BAR `bar` is in the MSI-X table or PBA (served by this function). */
  isMsixTableAccess(bar: number, offset: number): boolean {
    this.guard('pci.isMsixTableAccess');
    return this.msix?.regionAt(bar, offset) !== undefined;
  }

  /** A guest read of the MSI-X table or PBA; all-ones outside them or for a bad access. */
  msixRead(bar: number, offset: number, size: ConfigAccessSize): number {
    this.guard('pci.msixRead');
    const msix = this.msix;
    const region = msix?.regionAt(bar, offset, size);
    if (msix === undefined || region === undefined) return configAllOnes(size);
    const relative = msix.accessOffset(region, offset, size);
    if (relative === undefined) return configAllOnes(size);
    if (region === 'table') return msix.readTable(relative, size as ConfigAccessSize);
    return msix.readPba(relative, size as ConfigAccessSize, (v) => this.msixRoutes?.pending(v) ?? false);
  }

  /** A guest write of the MSI-X table; PBA writes and bad accesses are dropped. */
  msixWrite(bar: number, offset: number, size: ConfigAccessSize, value: number): void {
    this.guard('pci.msixWrite');
    const msix = this.msix;
    if (msix === undefined || typeof value !== 'number' || msix.regionAt(bar, offset, size) !== 'table') return;
    const relative = msix.accessOffset('table', offset, size);
    if (relative === undefined) return;
    const vector = msix.writeTable(relative, size as ConfigAccessSize, Number.isFinite(value) ? value >>> 0 : 0);
    const program = this.msixProgram(vector);
    this.msixRoutes?.sync(vector, program, !program.masked);
  }

  // ---- Interrupts ---------------------------------------------------------------------------

  /** The mode {@link DeviceInterrupts.raise} uses now. */
  get mode(): InterruptMode {
    if (this.msix?.enabled === true) return 'msix';
    if (this.msi?.enabled === true) return 'msi';
    return this.pin !== 0 ? 'intx' : 'none';
  }

  private raise(vector: number): void {
    this.guard('pci.raise');
    if (!Number.isInteger(vector) || vector < 0) throw new InvalidError('pci.raise', `vector ${vector} is not an index`);
    switch (this.mode) {
      case 'msix': {
        const msix = this.msix as MsixCapability;
        if (vector >= msix.vectors) throw new InvalidError('pci.raise', `vector ${vector} is outside the ${msix.vectors}-entry MSI-X table`);
        this.msixRoutes?.trigger(vector, this.msixProgram(vector));
        return;
      }
      case 'msi': {
        const msi = this.msi as MsiCapability;
        if (vector >= msi.capable) throw new InvalidError('pci.raise', `vector ${vector} is outside the ${msi.capable} MSI vectors`);
        // The guest allocated fewer messages than asked for: everything shares vector 0.
        const allocated = vector < msi.enabledVectors ? vector : 0;
        this.msiRoutes?.trigger(allocated, this.msiProgram(allocated));
        return;
      }
      case 'intx':
        if (this.intxRequested) return;
        this.intxRequested = true;
        this.config.set16(PCI_STATUS, this.config.get16(PCI_STATUS) | PCI_STATUS_INTERRUPT);
        this.syncIntx();
        return;
      case 'none':
        return;
    }
  }

  private lower(): void {
    this.guard('pci.lower');
    if (!this.intxRequested) return;
    this.intxRequested = false;
    this.config.set16(PCI_STATUS, this.config.get16(PCI_STATUS) & ~PCI_STATUS_INTERRUPT);
    this.syncIntx();
  }

  private msiProgram(vector: number): VectorProgram {
    const msi = this.msi as MsiCapability;
    const active = msi.enabled && this.msix?.enabled !== true && vector < msi.enabledVectors;
    return { message: msi.message(vector), masked: !active || msi.vectorMasked(vector) };
  }

  private msixProgram(vector: number): VectorProgram {
    const msix = this.msix as MsixCapability;
    return { message: msix.entryMessage(vector), masked: !msix.enabled || msix.functionMasked || msix.entryMasked(vector) };
  }

  private msiPendingBits(): number {
    let bits = 0;
    const routes = this.msiRoutes;
    if (routes === undefined) return 0;
    for (let v = 0; v < routes.count; v++) if (routes.pending(v)) bits |= 1 << v;
    return bits >>> 0;
  }

  // ---- Keeping routes, line and BARs in line with the config space -------------------------

  private update(): void {
    this.syncMsi();
    this.syncMsix();
    this.syncIntx();
    this.syncBars();
  }

  private syncMsi(): void {
    const msi = this.msi;
    const routes = this.msiRoutes;
    if (msi === undefined || routes === undefined) return;
    const enabled = msi.enabled;
    if (this.msiWasEnabled && !enabled) routes.clearFailures();
    this.msiWasEnabled = enabled;
    for (let v = 0; v < routes.count; v++) {
      const program = this.msiProgram(v);
      routes.sync(v, program, !program.masked);
    }
  }

  private syncMsix(): void {
    const msix = this.msix;
    const routes = this.msixRoutes;
    if (msix === undefined || routes === undefined) return;
    const enabled = msix.enabled;
    if (this.msixWasEnabled && !enabled) routes.clearFailures();
    this.msixWasEnabled = enabled;
    for (let v = 0; v < routes.count; v++) {
      const program = this.msixProgram(v);
      routes.sync(v, program, !program.masked);
    }
  }

  private syncIntx(): void {
    const level = this.intxRequested && this.mode === 'intx' && !this.intxDisabled;
    try {
      if (level) {
        const line = this.obtainLine();
        if (line !== undefined && !line.asserted) line.assert();
      } else if (this.line?.asserted === true) {
        this.line.deassert();
      }
    } catch (e) {
      this.report(e);
    }
  }

  private obtainLine(): LineIrq | undefined {
    if (this.line !== undefined || this.lineFailed) return this.line;
    const target: LineTarget = { kind: 'intx', device: this.address, pin: this.pin as 1 | 2 | 3 | 4, line: this.hooks.intxLine };
    try {
      this.line = this.hooks.createLineIrq(target, 'level');
    } catch (e) {
      this.lineFailed = true;
      this.report(e);
    }
    return this.line;
  }

  private syncBars(): void {
    const decoding = this.powerState === PCI_D0;
    const decode = { io: decoding && this.ioDecode, memory: decoding && this.memoryDecode };
    const changes: Array<{ index: number; before: BarLocation | undefined; after: BarLocation | undefined }> = [];
    for (const slot of this.bars) {
      if (slot === undefined) continue;
      const before = this.locations[slot.index];
      const after = decodeBar(this.config, slot, decode);
      if (sameBarLocation(before, after)) continue;
      this.locations[slot.index] = after;
      changes.push({ index: slot.index, before, after });
    }
    // Removals first, so that a BAR moving onto another's old place finds it free.
    changes.sort((a, b) => Number(a.after !== undefined) - Number(b.after !== undefined));
    for (const change of changes) {
      try {
        this.hooks.onBarChange(change.index, change.before, change.after);
      } catch (e) {
        this.report(e);
      }
    }
  }

  private report(error: unknown): void {
    try {
      this.hooks.onError?.(error);
    } catch {
      // The reporter failing must not turn a guest access into a throw.
    }
  }

  // ---- Reset, state, dispose ----------------------------------------------------------------

  /**
   * Function-level reset: configuration back to power-on (the multi-function bit stays), MSI-X
   * table cleared and masked, routes disposed (pending interrupts dropped), INTx deasserted and
   * its line released, BARs unmapped through `onBarChange`. The device model is reset separately.
   */
  reset(): void {
    this.guard('pci.reset');
    this.msiRoutes?.disposeAll();
    this.msixRoutes?.disposeAll();
    // The line too (it is made again on the next assertion): a closed device holds no interrupt.
    this.releaseLine();
    this.config.restore(this.powerOn);
    this.msix?.resetTable();
    this.intxRequested = false;
    this.lineFailed = false;
    this.msiWasEnabled = false;
    this.msixWasEnabled = false;
    this.update();
  }

  /**
   * Writes the function's state: config space, MSI-X table, pending bits of every vector and
   * the device's INTx request. The bytes are this function's layout; load them into a
   * function built from the same definition.
   */
  saveState(out: StateWriter): void {
    this.guard('pci.saveState');
    const image = this.config.snapshot();
    if (this.msi?.pendingRegister !== undefined) image.fill(0, this.msi.pendingRegister, this.msi.pendingRegister + 4);
    out.u32(STATE_MAGIC).u8(STATE_VERSION);
    out.bytes(image);
    out.bytes(this.msix?.table ?? new Uint8Array(0));
    out.u32(this.msiPendingBits());
    const pba = new Uint8Array(this.msix === undefined ? 0 : Math.ceil(this.msix.vectors / 8));
    for (let v = 0; v < (this.msix?.vectors ?? 0); v++) {
      if (this.msixRoutes?.pending(v) === true) pba[v >>> 3] = (pba[v >>> 3] ?? 0) | (1 << (v & 7));
    }
    out.bytes(pba);
    out.bool(this.intxRequested);
  }

  /**
   * Reads state written by {@link saveState}. Refuses (`Invalid`) a stream of another format
   * or version, or one this function could not have been in — a read-only bit that differs
   * from this definition's, an unsupported power state, pending bits for absent vectors —
   * and then leaves the function unchanged. On success the routes are rebuilt (pending
   * interrupts raised on masked routes), the INTx line set and the BARs reported.
   */
  loadState(input: StateReader): void {
    this.guard('pci.loadState');
    const fail = (message: string): never => {
      throw new InvalidError('pci.loadState', message);
    };
    const magic = input.u32('pci.magic');
    if (magic !== STATE_MAGIC) fail(`not PCI function state (magic ${hex(magic)})`);
    const version = input.u8('pci.version');
    if (version !== STATE_VERSION) fail(`state version ${version} is not ${STATE_VERSION}`);
    const image = input.bytes('pci.config', this.config.size);
    if (image.length !== this.config.size) fail(`config space is ${image.length} bytes, expected ${this.config.size}`);
    const table = input.bytes('pci.msixTable', this.msix?.tableLength ?? 0);
    const msiPending = input.u32('pci.msiPending');
    const pba = input.bytes('pci.msixPending', this.msix === undefined ? 0 : Math.ceil(this.msix.vectors / 8));
    const intx = input.bool('pci.intxPending');

    const mismatch = this.config.firstReadOnlyMismatch(image, this.powerOn, this.dynamicBits);
    if (mismatch >= 0) fail(`read-only config byte ${hex(mismatch)} is ${hex(image[mismatch] ?? 0)}, expected ${hex(this.powerOn[mismatch] ?? 0)}`);
    const statusInterrupt = ((image[PCI_STATUS] ?? 0) & PCI_STATUS_INTERRUPT) !== 0;
    if (statusInterrupt !== intx) fail('Interrupt Status disagrees with the INTx request');
    if (intx && this.pin === 0) fail('INTx requested on a function without an interrupt pin');
    const capabilityProblem = this.msi?.checkImage(image) ?? this.pm?.checkImage(image);
    if (capabilityProblem !== undefined) fail(capabilityProblem);
    if (this.msix === undefined) {
      if (table.length !== 0) fail('MSI-X table for a function without MSI-X');
    } else {
      const tableProblem = this.msix.checkTable(table);
      if (tableProblem !== undefined) fail(tableProblem);
    }
    if ((msiPending & ~(this.msi?.vectorBits ?? 0)) !== 0) fail(`MSI pending bits ${hex(msiPending)} name absent vectors`);
    const msixVectors = this.msix?.vectors ?? 0;
    if (pba.length !== Math.ceil(msixVectors / 8)) fail(`MSI-X pending bits are ${pba.length} bytes`);
    for (let bit = msixVectors; bit < pba.length * 8; bit++) {
      if ((((pba[bit >>> 3] ?? 0) >>> (bit & 7)) & 1) !== 0) fail(`MSI-X pending bit ${bit} names an absent vector`);
    }

    // Valid: from here on nothing refuses.
    this.msiRoutes?.disposeAll();
    this.msixRoutes?.disposeAll();
    const multifunction = (this.config.get8(PCI_HEADER_TYPE) & PCI_HEADER_TYPE_MULTI_FUNCTION) !== 0;
    this.config.restore(image);
    this.setMultifunction(multifunction);
    this.msix?.table.set(table);
    this.intxRequested = intx;
    this.lineFailed = false;
    this.msiWasEnabled = this.msi?.enabled ?? false;
    this.msixWasEnabled = this.msix?.enabled ?? false;
    for (let v = 0; v < (this.msiRoutes?.count ?? 0); v++) {
      if (((msiPending >>> v) & 1) !== 0) this.msiRoutes?.restorePending(v, this.msiProgram(v));
    }
    for (let v = 0; v < msixVectors; v++) {
      if ((((pba[v >>> 3] ?? 0) >>> (v & 7)) & 1) !== 0) this.msixRoutes?.restorePending(v, this.msixProgram(v));
    }
    this.update();
  }

  /** Whether {@link dispose} ran. */
  get disposed(): boolean {
    return this.closed;
  }

  /** Releases routes and the INTx line (deasserted first). BAR hooks are not called. */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.msiRoutes?.disposeAll();
    this.msixRoutes?.disposeAll();
    this.releaseLine();
  }

  /** Deasserts and disposes the INTx line, if one was made. */
  private releaseLine(): void {
    const line = this.line;
    this.line = undefined;
    if (line === undefined) return;
    try {
      if (line.asserted) line.deassert();
    } catch (e) {
      this.report(e);
    }
    try {
      line.dispose();
    } catch (e) {
      this.report(e);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private guard(operation: string): void {
    if (this.closed) throw new BadHandleError(operation, 'PCI function is disposed');
  }
}

function validateIdentity(definition: PciFunctionDefinition): void {
  const field = (name: string, value: number | undefined, max: number, min = 0) => {
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
      throw new InvalidError('pci.function', `${name} ${String(value)} is outside [${hex(min)}, ${hex(max)}]`);
    }
  };
  // 0xFFFF is what an absent function reads as; 0 is not a vendor either.
  field('vendorId', definition.vendorId, 0xfffe, 1);
  field('deviceId', definition.deviceId, 0xffff);
  field('subsystemVendorId', definition.subsystemVendorId, 0xffff);
  field('subsystemId', definition.subsystemId, 0xffff);
  field('revision', definition.revision, 0xff);
  field('classCode', definition.classCode, 0xffffff);
  field('interruptPin', definition.interruptPin, 4);
}

function validateAddress(address: PciAddress): void {
  const ok = (v: number | undefined, max: number) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;
  if (!ok(address.segment ?? 0, 0xffff) || !ok(address.bus, 0xff) || !ok(address.device, 0x1f) || !ok(address.function, 7)) {
    throw new InvalidError('pci.function', `${JSON.stringify(address)} is not a PCI address`);
  }
}
