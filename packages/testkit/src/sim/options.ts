/**
 * Options of the `sim` backend: its RAM map, its limits, and which capabilities to switch off
 * (so callers' `Unsupported` paths can be tested against the reference too).
 */
import { InvalidError, PAGE_SIZE, RangeSet, hex, type BackendCapabilities, type RamRegion } from '@vmed/core';

/** One RAM region as given in options (numbers or bigints; hex strings from JSON config). */
export interface SimRamRegionOption {
  readonly base: bigint | number;
  readonly length: bigint | number;
  readonly name?: string;
}

/** Capabilities the sim can be told to lack (or, for dirty tracking, to offer as `push`). */
export interface SimCapabilityOverrides {
  readonly signalMsi?: boolean;
  readonly lineIrq?: BackendCapabilities['lineIrq'];
  readonly dirtyTracking?: BackendCapabilities['dirtyTracking'];
  readonly pageTracking?: boolean;
  readonly pinning?: boolean;
  readonly directRegions?: boolean;
  readonly doorbellDatamatch?: boolean;
}

export interface SimBackendOptions {
  /** The guest's RAM map; page-aligned regions. Default: {@link DEFAULT_SIM_RAM}. */
  readonly ram?: readonly SimRamRegionOption[];
  /**
   * Leave a page of host padding between regions, so two guest-adjacent regions are not
   * contiguous in the host and a view across them is refused (as with two KVM slots mapped
   * apart). Default false: regions are packed in one buffer in guest order.
   */
  readonly hostGaps?: boolean;
  /** Most MSI routes at once; default 4096 (KVM's GSI limit). */
  readonly maxMsiRoutes?: number;
  /** Pins of the sim guest's IOAPIC (GSIs 0..n-1); default 24. */
  readonly ioApicPins?: number;
  /**
   * Whether the sim guest's interrupt handler EOIs by itself, as the guest agents on KVM and
   * Xen do (default true). With false, a script calls {@link SimGuest.eoi} itself.
   */
  readonly autoEoi?: boolean;
  /** The guest RAM range scenarios may scribble on; default {@link DEFAULT_SIM_SCRATCH}. */
  readonly scratch?: { readonly address: bigint; readonly length: number };
  /** Capabilities to take away from this session. */
  readonly capabilities?: SimCapabilityOverrides;
}

/**
 * Default RAM map: two guest-adjacent regions (a span across them works), a hole, and a
 * third region, so bounds and spanning can both be tested.
 */
export const DEFAULT_SIM_RAM: readonly RamRegion[] = Object.freeze([
  { base: 0x0n, length: 0x8_0000n, name: 'low' },
  { base: 0x8_0000n, length: 0x8_0000n, name: 'mid' },
  // hole [0x10_0000, 0x20_0000)
  { base: 0x20_0000n, length: 0x20_0000n, name: 'high' },
] as RamRegion[]);

/** Default scratch: covers the low/mid boundary and mid's end at the hole. */
export const DEFAULT_SIM_SCRATCH = Object.freeze({ address: 0x4_0000n, length: 0xc_0000 });

/** Largest RAM the sim holds (it is for tests, not for guests). */
export const SIM_MAX_RAM = 1 << 30;

export interface ResolvedSimOptions {
  readonly ram: RangeSet<RamRegion>;
  readonly hostGaps: boolean;
  readonly maxMsiRoutes: number;
  readonly ioApicPins: number;
  readonly autoEoi: boolean;
  readonly scratch: { readonly address: bigint; readonly length: number };
  readonly capabilities: BackendCapabilities;
}

const OP = 'sim.options';

/** Validates options once, when the backend is made. */
export function resolveSimOptions(options: SimBackendOptions = {}): ResolvedSimOptions {
  const regions = (options.ram ?? DEFAULT_SIM_RAM).map((r, i) => ramRegion(r, i));
  if (regions.length === 0) throw new InvalidError(OP, 'the RAM map is empty');
  const ram = new RangeSet<RamRegion>(regions, OP);
  const total = regions.reduce((sum, r) => sum + r.length, 0n);
  if (total > BigInt(SIM_MAX_RAM)) throw new InvalidError(OP, `RAM of ${hex(total)} bytes exceeds the sim's ${hex(SIM_MAX_RAM)}`);

  const maxMsiRoutes = positiveInteger(options.maxMsiRoutes ?? 4096, 'maxMsiRoutes', 1 << 16);
  const ioApicPins = positiveInteger(options.ioApicPins ?? 24, 'ioApicPins', 224);
  const scratch = options.scratch ?? DEFAULT_SIM_SCRATCH;
  if (scratch.length <= 0 || !Number.isSafeInteger(scratch.length)) throw new InvalidError(OP, 'scratch length must be a positive integer');
  try {
    ram.split(scratch.address, BigInt(scratch.length), OP);
  } catch (e) {
    throw new InvalidError(OP, `scratch ${hex(scratch.address)}+${hex(scratch.length)} is not inside guest RAM`, { cause: e });
  }
  return {
    ram,
    hostGaps: options.hostGaps ?? false,
    maxMsiRoutes,
    ioApicPins,
    autoEoi: options.autoEoi ?? true,
    scratch,
    capabilities: simCapabilities(options.capabilities ?? {}, maxMsiRoutes),
  };
}

function simCapabilities(o: SimCapabilityOverrides, maxMsiRoutes: number): BackendCapabilities {
  const lineIrq = o.lineIrq ?? { edge: true, level: true, resample: true };
  if (lineIrq !== false && lineIrq.resample && !lineIrq.level) {
    throw new InvalidError(OP, 'lineIrq.resample needs lineIrq.level');
  }
  return Object.freeze({
    hypervisor: 'sim',
    pciConfig: 'device-model',
    directRegions: o.directRegions ?? true,
    maxMsiRoutes,
    signalMsi: o.signalMsi ?? true,
    lineIrq: lineIrq === false ? false : Object.freeze({ ...lineIrq }),
    doorbells: 'userspace',
    doorbellDatamatch: o.doorbellDatamatch ?? true,
    dirtyTracking: o.dirtyTracking ?? 'pull',
    pageTracking: o.pageTracking ?? true,
    pinning: o.pinning ?? true,
    eventChannels: false,
  } satisfies BackendCapabilities);
}

function ramRegion(r: SimRamRegionOption, index: number): RamRegion {
  const base = toBigInt(r.base, `ram[${index}].base`);
  const length = toBigInt(r.length, `ram[${index}].length`);
  const page = BigInt(PAGE_SIZE);
  if (base % page !== 0n || length % page !== 0n || length <= 0n) {
    throw new InvalidError(OP, `ram[${index}] ${hex(base)}+${hex(length)} is not a non-empty page-aligned range`);
  }
  return Object.freeze({ base, length, name: r.name ?? `ram${index}` }) as RamRegion;
}

function toBigInt(v: unknown, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-f]+|[0-9]+)$/i.test(v)) return BigInt(v);
  throw new InvalidError(OP, `${what} must be an integer, got ${String(v)}`);
}

function positiveInteger(v: number, what: string, max: number): number {
  if (!Number.isSafeInteger(v) || v <= 0 || v > max) throw new InvalidError(OP, `${what} must be an integer in 1..${max}, got ${v}`);
  return v;
}

/**
 * Reads sim options from a plain config section (`config.sim`), as `createBackend` receives
 * it: numbers or hex strings for addresses, unknown keys refused.
 */
export function parseSimOptions(record: Record<string, unknown>): SimBackendOptions {
  const known = new Set(['ram', 'hostGaps', 'maxMsiRoutes', 'ioApicPins', 'autoEoi', 'scratch', 'capabilities']);
  for (const key of Object.keys(record)) {
    if (!known.has(key)) throw new InvalidError(OP, `unknown option "${key}"`);
  }
  const out: { -readonly [K in keyof SimBackendOptions]: SimBackendOptions[K] } = {};
  if (record.ram !== undefined) {
    if (!Array.isArray(record.ram)) throw new InvalidError(OP, 'ram must be an array of { base, length, name? }');
    out.ram = record.ram.map((r: unknown, i) => {
      if (typeof r !== 'object' || r === null) throw new InvalidError(OP, `ram[${i}] must be an object`);
      const o = r as Record<string, unknown>;
      const name = o.name;
      if (name !== undefined && typeof name !== 'string') throw new InvalidError(OP, `ram[${i}].name must be a string`);
      return { base: toBigInt(o.base, `ram[${i}].base`), length: toBigInt(o.length, `ram[${i}].length`), ...(name === undefined ? {} : { name }) };
    });
  }
  for (const key of ['hostGaps', 'autoEoi'] as const) {
    const v = record[key];
    if (v !== undefined && typeof v !== 'boolean') throw new InvalidError(OP, `${key} must be a boolean`);
    if (v !== undefined) out[key] = v;
  }
  for (const key of ['maxMsiRoutes', 'ioApicPins'] as const) {
    const v = record[key];
    if (v !== undefined && typeof v !== 'number') throw new InvalidError(OP, `${key} must be a number`);
    if (v !== undefined) out[key] = v;
  }
  if (record.scratch !== undefined) {
    const s = record.scratch as Record<string, unknown> | null;
    if (typeof s !== 'object' || s === null) throw new InvalidError(OP, 'scratch must be { address, length }');
    out.scratch = { address: toBigInt(s.address, 'scratch.address'), length: Number(toBigInt(s.length, 'scratch.length')) };
  }
  if (record.capabilities !== undefined) {
    const c = record.capabilities;
    if (typeof c !== 'object' || c === null) throw new InvalidError(OP, 'capabilities must be an object');
    out.capabilities = parseCapabilityOverrides(c as Record<string, unknown>);
  }
  return out;
}

function parseCapabilityOverrides(c: Record<string, unknown>): SimCapabilityOverrides {
  const out: { -readonly [K in keyof SimCapabilityOverrides]: SimCapabilityOverrides[K] } = {};
  for (const key of ['signalMsi', 'pageTracking', 'pinning', 'directRegions', 'doorbellDatamatch'] as const) {
    const v = c[key];
    if (v !== undefined && typeof v !== 'boolean') throw new InvalidError(OP, `capabilities.${key} must be a boolean`);
    if (v !== undefined) out[key] = v;
  }
  const dirty = c.dirtyTracking;
  if (dirty !== undefined) {
    if (dirty !== false && dirty !== 'pull' && dirty !== 'push') throw new InvalidError(OP, 'capabilities.dirtyTracking must be "pull", "push" or false');
    out.dirtyTracking = dirty;
  }
  const line = c.lineIrq;
  if (line !== undefined) {
    if (line === false) out.lineIrq = false;
    else if (typeof line === 'object' && line !== null) {
      const l = line as Record<string, unknown>;
      if (typeof l.edge !== 'boolean' || typeof l.level !== 'boolean' || typeof l.resample !== 'boolean') {
        throw new InvalidError(OP, 'capabilities.lineIrq must be false or { edge, level, resample } booleans');
      }
      out.lineIrq = { edge: l.edge, level: l.level, resample: l.resample };
    } else throw new InvalidError(OP, 'capabilities.lineIrq must be false or an object');
  }
  return out;
}
