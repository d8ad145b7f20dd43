/**
 * The KVM backend's section of the mediator config, validated from untyped input.
 *
 * - `standalone`: vmed creates the VM, its RAM (one memfd, one slot per region), the in-kernel
 *   irqchip and the vCPUs, and runs them through `backend.guest`.
 * - `adopt`: an embedding VMM hands over its VM fd and memory map; vmed adds routes,
 *   doorbells, claims and direct regions, never closes the fd and never runs vCPUs (the VMM
 *   forwards its MMIO/port exits with `backend.forwardMmio`/`forwardPio`).
 */
import { InvalidError } from '@vmed/core';
import type { GsiRoute } from './ioctls/vm.js';

/** One RAM region of a standalone guest. */
export interface RamLayoutEntry {
  readonly base: bigint | number;
  readonly size: bigint | number;
  readonly name?: string;
}

export interface StandaloneOptions {
  readonly mode: 'standalone';
  /** Guest RAM in MiB (1 .. 1 TiB). */
  readonly memoryMiB: number;
  /** vCPU count (1 .. 64). */
  readonly vcpus: number;
  /**
   * Where RAM sits in guest-physical space; the sizes add up to `memoryMiB`. Default: one
   * region at 0, split at 3 GiB with the rest from 4 GiB (the PCI hole).
   */
  readonly ramLayout?: readonly RamLayoutEntry[];
  /**
   * `kernel` (default): `KVM_CREATE_IRQCHIP` (PIC, IOAPIC, LAPICs; HLT waits in the kernel).
   * `none`: no irqchip: no MSI routes or lines, and HLT exits (`reason: 'halt'`).
   */
  readonly irqchip?: 'kernel' | 'none';
  /** Inline mode: the longest the I/O thread stays in `KVM_RUN` before yielding (ms, default 4). */
  readonly quantumMs?: number;
  /** Receives failures of handlers and sinks called from exits and doorbells (default: rethrown asynchronously). */
  readonly onError?: (error: unknown) => void;
  /** KVM device (default `/dev/kvm`). */
  readonly device?: string;
}

/** One RAM region of an adopted VM, as the embedding VMM registered and mapped it. */
export interface AdoptedMemory {
  readonly guestAddress: bigint | number;
  readonly size: bigint | number;
  /** Where the region is mapped in this process. */
  readonly hostAddress: bigint;
  /** The slot the VMM registered it as; needed for dirty logging. */
  readonly slot?: number;
  /** That slot's flags (`KVM_MEM_READONLY` = 2), kept when vmed toggles dirty logging. */
  readonly flags?: number;
  readonly name?: string;
}

export interface AdoptOptions {
  readonly mode: 'adopt';
  readonly vmFd: number;
  readonly memory: readonly AdoptedMemory[];
  /** What the VMM created: `kernel` (default, KVM_CREATE_IRQCHIP), `split` or `none`. */
  readonly irqchip?: 'kernel' | 'split' | 'none';
  /**
   * The VMM's GSI routes to keep: vmed rewrites the whole table (KVM has no "get") when it
   * adds MSI routes. Default: the kernel irqchip's default routes (`kernel`), none otherwise.
   */
  readonly gsiRoutes?: readonly GsiRoute[];
  /** First GSI vmed may use for MSI routes (default 24). */
  readonly firstMsiGsi?: number;
  /** Memory slot ids vmed may use for direct regions (default 32252 .. 32763). */
  readonly slotRange?: { readonly first: number; readonly count: number };
  readonly onError?: (error: unknown) => void;
  readonly device?: string;
}

export type KvmBackendOptions = StandaloneOptions | AdoptOptions;

const MiB = 1n << 20n;
const OP = 'kvm.createBackend';

function fail(message: string): never {
  throw new InvalidError(OP, message);
}

function int(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** A non-negative integer: a bigint, a safe number, or (from JSON) a `"0x…"`/decimal string. */
function big(value: unknown, name: string): bigint {
  if (typeof value === 'bigint' && value >= 0n) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'string' && /^(0x[0-9a-f]+|[0-9]+)$/i.test(value.trim())) return BigInt(value.trim());
  fail(`${name} must be a non-negative integer, got ${String(value)}`);
}

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') fail(`${name} must be a string`);
  return value;
}

function onError(value: unknown): ((error: unknown) => void) | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') fail('onError must be a function');
  return value as (error: unknown) => void;
}

function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) fail(`${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** Validates the backend's config section. */
export function parseOptions(input: Record<string, unknown>): KvmBackendOptions {
  if (typeof input !== 'object' || input === null) fail('options must be an object');
  const mode = input['mode'] ?? 'standalone';
  if (mode === 'standalone') return parseStandalone(input);
  if (mode === 'adopt') return parseAdopt(input);
  fail(`mode must be standalone or adopt, got ${String(mode)}`);
}

function parseStandalone(input: Record<string, unknown>): StandaloneOptions {
  const memoryMiB = int(input['memoryMiB'], 'memoryMiB', 1, 1 << 20);
  const vcpus = int(input['vcpus'] ?? 1, 'vcpus', 1, 64);
  let ramLayout: RamLayoutEntry[] | undefined;
  if (input['ramLayout'] !== undefined) {
    const layout = input['ramLayout'];
    if (!Array.isArray(layout) || layout.length === 0) fail('ramLayout must be a non-empty array');
    let total = 0n;
    ramLayout = layout.map((raw: unknown, i) => {
      if (typeof raw !== 'object' || raw === null) fail(`ramLayout[${i}] must be an object`);
      const e = raw as Record<string, unknown>;
      const base = big(e['base'], `ramLayout[${i}].base`);
      const size = big(e['size'], `ramLayout[${i}].size`);
      if (size === 0n) fail(`ramLayout[${i}].size is 0`);
      total += size;
      const name = optionalString(e['name'], `ramLayout[${i}].name`);
      return { base, size, ...(name === undefined ? {} : { name }) };
    });
    if (total !== BigInt(memoryMiB) * MiB) fail(`ramLayout sizes add up to ${total} bytes, not memoryMiB (${memoryMiB} MiB)`);
  }
  const quantumMs = input['quantumMs'] === undefined ? undefined : int(input['quantumMs'], 'quantumMs', 1, 1000);
  const device = optionalString(input['device'], 'device');
  const errorHandler = onError(input['onError']);
  return {
    mode: 'standalone',
    memoryMiB,
    vcpus,
    irqchip: oneOf(input['irqchip'], 'irqchip', ['kernel', 'none'] as const, 'kernel'),
    ...(ramLayout === undefined ? {} : { ramLayout }),
    ...(quantumMs === undefined ? {} : { quantumMs }),
    ...(device === undefined ? {} : { device }),
    ...(errorHandler === undefined ? {} : { onError: errorHandler }),
  };
}

function parseAdopt(input: Record<string, unknown>): AdoptOptions {
  const vmFd = int(input['vmFd'], 'vmFd', 0, 0x7fff_ffff);
  const raw = input['memory'];
  if (!Array.isArray(raw) || raw.length === 0) fail('memory must be a non-empty array');
  const memory = raw.map((entry: unknown, i): AdoptedMemory => {
    if (typeof entry !== 'object' || entry === null) fail(`memory[${i}] must be an object`);
    const e = entry as Record<string, unknown>;
    const hostAddress = big(e['hostAddress'], `memory[${i}].hostAddress`);
    if (hostAddress === 0n) fail(`memory[${i}].hostAddress must not be 0`);
    const slot = e['slot'] === undefined ? undefined : int(e['slot'], `memory[${i}].slot`, 0, 0x7fff);
    const flags = e['flags'] === undefined ? undefined : int(e['flags'], `memory[${i}].flags`, 0, 3);
    const name = optionalString(e['name'], `memory[${i}].name`);
    return {
      guestAddress: big(e['guestAddress'], `memory[${i}].guestAddress`),
      size: big(e['size'], `memory[${i}].size`),
      hostAddress,
      ...(slot === undefined ? {} : { slot }),
      ...(flags === undefined ? {} : { flags }),
      ...(name === undefined ? {} : { name }),
    };
  });
  let gsiRoutes: GsiRoute[] | undefined;
  if (input['gsiRoutes'] !== undefined) {
    if (!Array.isArray(input['gsiRoutes'])) fail('gsiRoutes must be an array');
    gsiRoutes = (input['gsiRoutes'] as unknown[]).map((r, i) => parseRoute(r, i));
  }
  let slotRange: { first: number; count: number } | undefined;
  if (input['slotRange'] !== undefined) {
    const r = input['slotRange'] as Record<string, unknown>;
    if (typeof r !== 'object' || r === null) fail('slotRange must be an object');
    const first = int(r['first'], 'slotRange.first', 0, 0x7fff);
    slotRange = { first, count: int(r['count'], 'slotRange.count', 1, 0x8000 - first) };
  }
  const firstMsiGsi = input['firstMsiGsi'] === undefined ? undefined : int(input['firstMsiGsi'], 'firstMsiGsi', 0, 4095);
  const device = optionalString(input['device'], 'device');
  const errorHandler = onError(input['onError']);
  return {
    mode: 'adopt',
    vmFd,
    memory,
    irqchip: oneOf(input['irqchip'], 'irqchip', ['kernel', 'split', 'none'] as const, 'kernel'),
    ...(gsiRoutes === undefined ? {} : { gsiRoutes }),
    ...(firstMsiGsi === undefined ? {} : { firstMsiGsi }),
    ...(slotRange === undefined ? {} : { slotRange }),
    ...(device === undefined ? {} : { device }),
    ...(errorHandler === undefined ? {} : { onError: errorHandler }),
  };
}

function parseRoute(raw: unknown, i: number): GsiRoute {
  if (typeof raw !== 'object' || raw === null) fail(`gsiRoutes[${i}] must be an object`);
  const r = raw as Record<string, unknown>;
  const gsi = int(r['gsi'], `gsiRoutes[${i}].gsi`, 0, 4095);
  if (r['kind'] === 'irqchip') {
    return { gsi, kind: 'irqchip', chip: int(r['chip'], `gsiRoutes[${i}].chip`, 0, 2), pin: int(r['pin'], `gsiRoutes[${i}].pin`, 0, 23) };
  }
  if (r['kind'] === 'msi') {
    return { gsi, kind: 'msi', address: big(r['address'], `gsiRoutes[${i}].address`), data: int(r['data'], `gsiRoutes[${i}].data`, 0, 0xffff_ffff) };
  }
  fail(`gsiRoutes[${i}].kind must be irqchip or msi`);
}

/** The default standalone RAM map: below 3 GiB, the rest from 4 GiB. */
export function defaultRamLayout(memoryMiB: number): RamLayoutEntry[] {
  const total = BigInt(memoryMiB) * MiB;
  const low = 3n << 30n;
  if (total <= low) return [{ base: 0n, size: total, name: 'low' }];
  return [
    { base: 0n, size: low, name: 'low' },
    { base: 4n << 30n, size: total - low, name: 'high' },
  ];
}
