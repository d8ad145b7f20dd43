/**
 * The mediator's configuration: a plain object or a JSON file. The hypervisor is one field;
 * swapping KVM for Xen is an edit of that field and of the backend's own section.
 *
 * ```json
 * {
 *   "hypervisor": "kvm",
 *   "kvm": { "mode": "standalone", "memoryMiB": 64, "vcpus": 1 },
 *   "pci": { "assignBars": true },
 *   "devices": [{ "type": "serial" }, { "type": "edu", "uuid": "3f1c…" }]
 * }
 * ```
 */
import { readFileSync } from 'node:fs';
import { InvalidError } from './errors.js';

/** Names the core knows how to load; any other name needs `backendModule`. */
export type KnownHypervisor = 'sim' | 'kvm' | 'xen';

/** A window of guest addresses handed out to BARs, as firmware would. */
export interface AddressWindow {
  readonly base: bigint;
  readonly length: bigint;
}

export interface PciConfig {
  /**
   * Program BAR addresses from the windows below when a device is opened, as firmware would,
   * for guests without firmware (the project's own guests on KVM and `sim`). Decode bits stay
   * off: the guest enables them. Default: true where the core's host bridge is the guest's
   * (KVM standalone, `sim`, Xen PVH: no firmware would assign them), false elsewhere (Xen HVM).
   */
  readonly assignBars?: boolean;
  /** Memory window for BARs. Default 0xE000_0000 + 256 MiB (below the IOAPIC and LAPIC). */
  readonly mmioWindow?: AddressWindow;
  /** I/O port window for BARs. Default 0xC000–0xFFFF. */
  readonly ioWindow?: AddressWindow;
  /** ECAM base for bus 0 (1 MiB), where the core decodes config cycles. Default 0xB000_0000. */
  readonly ecamBase?: bigint;
}

/** One device to create (and by default open) when the mediator starts. */
export interface DeviceConfig {
  readonly type: string;
  /** mdev UUID; generated when absent. */
  readonly uuid?: string;
  /** PCI device number on bus 0; the first free slot when absent. */
  readonly slot?: number;
  readonly options?: Record<string, unknown>;
  /** Open the device at start (default true). */
  readonly open?: boolean;
}

export interface MediatorConfig {
  readonly hypervisor: KnownHypervisor | (string & {});
  /** Module to `import()` for the backend, overriding the default for `hypervisor`. */
  readonly backendModule?: string;
  /** Backend options, one section per hypervisor: `sim`, `kvm`, `xen`, or any name. */
  readonly [section: string]: unknown;
  readonly pci?: PciConfig;
  readonly devices?: readonly DeviceConfig[];
  /** Modules exporting `deviceTypes: DeviceDefinition[]`, imported at start (e.g. `"@vmed/devices"`). */
  readonly deviceModules?: readonly string[];
}

/** Default backend module per hypervisor. */
export const BACKEND_MODULES: Readonly<Record<KnownHypervisor, string>> = {
  sim: '@vmed/testkit/sim',
  kvm: '@vmed/backend-kvm',
  xen: '@vmed/backend-xen',
};

/**
 * Reads and validates a config. A string is a path to a JSON file; numbers in JSON may be
 * written as `"0x…"` strings where a field is an address.
 */
export function loadMediatorConfig(input: string | MediatorConfig): MediatorConfig {
  const operation = 'config.load';
  let raw: unknown = input;
  if (typeof input === 'string') {
    let text: string;
    try {
      text = readFileSync(input, 'utf8');
    } catch (e) {
      throw new InvalidError(operation, `cannot read config file ${input}`, { cause: e });
    }
    try {
      raw = JSON.parse(text) as unknown;
    } catch (e) {
      throw new InvalidError(operation, `${input} is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidError(operation, 'config must be an object');
  const obj = raw as Record<string, unknown>;
  const hypervisor = obj['hypervisor'];
  if (typeof hypervisor !== 'string' || hypervisor === '') {
    throw new InvalidError(operation, 'config.hypervisor must name a hypervisor: "sim", "kvm" or "xen"');
  }
  if (obj['backendModule'] !== undefined && typeof obj['backendModule'] !== 'string') {
    throw new InvalidError(operation, 'config.backendModule must be a module specifier string');
  }
  if (!(hypervisor in BACKEND_MODULES) && obj['backendModule'] === undefined) {
    throw new InvalidError(operation, `unknown hypervisor "${hypervisor}": use "sim", "kvm" or "xen", or name a backendModule`);
  }
  return {
    ...obj,
    hypervisor,
    pci: parsePci(obj['pci'], operation),
    devices: parseDevices(obj['devices'], operation),
    deviceModules: parseStrings(obj['deviceModules'], 'deviceModules', operation),
  } as MediatorConfig;
}

function parsePci(value: unknown, operation: string): PciConfig | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) throw new InvalidError(operation, 'config.pci must be an object');
  const v = value as Record<string, unknown>;
  const window = (name: string): AddressWindow | undefined => {
    const w = v[name];
    if (w === undefined) return undefined;
    if (typeof w !== 'object' || w === null) throw new InvalidError(operation, `config.pci.${name} must be { base, length }`);
    const o = w as Record<string, unknown>;
    return { base: parseAddress(o['base'], `pci.${name}.base`, operation), length: parseAddress(o['length'], `pci.${name}.length`, operation) };
  };
  const assignBars = v['assignBars'];
  if (assignBars !== undefined && typeof assignBars !== 'boolean') throw new InvalidError(operation, 'config.pci.assignBars must be a boolean');
  return {
    ...(assignBars === undefined ? {} : { assignBars }),
    ...(v['mmioWindow'] === undefined ? {} : { mmioWindow: window('mmioWindow') }),
    ...(v['ioWindow'] === undefined ? {} : { ioWindow: window('ioWindow') }),
    ...(v['ecamBase'] === undefined ? {} : { ecamBase: parseAddress(v['ecamBase'], 'pci.ecamBase', operation) }),
  };
}

function parseDevices(value: unknown, operation: string): DeviceConfig[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw new InvalidError(operation, 'config.devices must be an array');
  return value.map((d: unknown, i) => {
    if (typeof d !== 'object' || d === null) throw new InvalidError(operation, `config.devices[${i}] must be an object`);
    const o = d as Record<string, unknown>;
    if (typeof o['type'] !== 'string') throw new InvalidError(operation, `config.devices[${i}].type must be a string`);
    if (o['uuid'] !== undefined && typeof o['uuid'] !== 'string') throw new InvalidError(operation, `config.devices[${i}].uuid must be a string`);
    if (o['slot'] !== undefined && (typeof o['slot'] !== 'number' || !Number.isInteger(o['slot']) || o['slot'] < 1 || o['slot'] > 31)) {
      throw new InvalidError(operation, `config.devices[${i}].slot must be an integer in 1..31`);
    }
    if (o['open'] !== undefined && typeof o['open'] !== 'boolean') throw new InvalidError(operation, `config.devices[${i}].open must be a boolean`);
    if (o['options'] !== undefined && (typeof o['options'] !== 'object' || o['options'] === null)) {
      throw new InvalidError(operation, `config.devices[${i}].options must be an object`);
    }
    return o as unknown as DeviceConfig;
  });
}

function parseStrings(value: unknown, name: string, operation: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((s) => typeof s !== 'string')) throw new InvalidError(operation, `config.${name} must be an array of strings`);
  return value as string[];
}

/** Accepts a bigint, a safe integer, or a decimal/`0x` string. */
export function parseAddress(value: unknown, field: string, operation = 'config.load'): bigint {
  if (typeof value === 'bigint' && value >= 0n) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'string' && /^(0x[0-9a-f]+|[0-9]+)$/i.test(value.trim())) return BigInt(value.trim());
  throw new InvalidError(operation, `${field} must be a non-negative integer or "0x…" string`);
}
