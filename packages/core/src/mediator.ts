/**
 * The mediator: one backend session, the PCI bus the guest enumerates, the dispatcher every
 * guest access goes through, and the mediated devices on it. A VMM makes one per guest with
 * {@link createMediator}, naming the hypervisor in its config.
 *
 * ```ts
 * const mediator = await createMediator('./vmed.json', { deviceTypes: [serialDevice, eduDevice] });
 * const edu = mediator.create('edu');
 * edu.open();
 * // … the guest runs …
 * await mediator.close();
 * ```
 *
 * KVM and `sim`: the guest's config cycles arrive as accesses to ports 0xCF8–0xCFF and to the
 * ECAM window, decoded here by the host bridge. Xen: the hypervisor decodes them and sends `pci`
 * requests for each function the mediator claims. Either way they end at the same bus. Where
 * the guest has no chipset of its own (Xen PVH: `pciHostBridge: 'device-model'`), the host
 * bridge still answers reads of the 0xCF8 address register and is function 00:00.0, and BARs
 * are assigned by default, as no firmware will.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import { addressRange } from './address.js';
import type { Backend } from './backend/contract.js';
import { decodePciConfigAddress, type PciAddress } from './backend/io.js';
import type { IoClaim } from './backend/regions.js';
import type { ModuleImporter } from './backend/loader.js';
import { loadBackend } from './backend/loader.js';
import type { DeviceConfig, MediatorConfig } from './config.js';
import { loadMediatorConfig } from './config.js';
import type { DeviceDefinition } from './device/model.js';
import type { DeviceNotification } from './device/mediated-device.js';
import { MediatedDevice } from './device/mediated-device.js';
import { DirtyTracker } from './dirty/dirty-tracker.js';
import type { DispatchRegistration } from './dispatch/dispatcher.js';
import { IoDispatcher } from './dispatch/dispatcher.js';
import { BadHandleError, ExistsError, InvalidError, NotFoundError } from './errors.js';
import { BarAssigner } from './firmware/bar-assigner.js';
import type { DeviceTypeInfo } from './lifecycle/device-types.js';
import { DeviceTypeRegistry } from './lifecycle/device-types.js';
import { closeOnExit, type CloseOnExitOptions } from './lifecycle/teardown.js';
import { PciBus } from './pci/bus.js';
import { ECAM_BUS_SIZE, PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORTS_LENGTH, PciHostBridge } from './pci/host-bridge.js';

/** Ports of the config address register, 0xCF8–0xCFB. */
const PCI_CONFIG_ADDRESS_LENGTH = 4;

/** Default ECAM window for bus 0, below the BAR window. */
export const DEFAULT_ECAM_BASE = 0xb000_0000n;

/** Events of a {@link Mediator}. Listeners run synchronously on the I/O context. */
export interface MediatorEvents {
  /** A device was created (not yet visible to the guest). */
  'device-created': [device: MediatedDevice];
  /** A device was opened: on the bus, visible to the guest. */
  'device-opened': [device: MediatedDevice];
  /** A device was reset (function-level reset). */
  'device-reset': [device: MediatedDevice];
  /** A device was closed: off the bus, its resources released. */
  'device-closed': [device: MediatedDevice];
  /** A device was removed for good; its instance slot is free again. */
  'device-removed': [device: MediatedDevice];
  /** A device model threw: the device is fenced off until reset or removal. */
  'device-broken': [device: MediatedDevice, cause: unknown];
  /** The guest did something the device cannot honour (a BAR over RAM, two BARs overlapping, route exhaustion). */
  warning: [message: string, device: MediatedDevice | undefined, cause: unknown];
  /** The mediator closed and released its backend. */
  closed: [];
}

/** Options of {@link createMediator} that cannot live in a JSON file. */
export interface MediatorOptions {
  /** Device types to register before the config's devices are created. */
  readonly deviceTypes?: ReadonlyArray<DeviceDefinition<never>>;
  /** How backend and device modules are imported (tests, bundlers). */
  readonly importer?: ModuleImporter;
  /** A backend already made; the config's `hypervisor` must still name it. */
  readonly backend?: Backend;
}

/** What {@link Mediator.create} accepts beyond the type. */
export interface CreateDeviceOptions {
  readonly uuid?: string;
  readonly slot?: number;
  readonly options?: Record<string, unknown>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class Mediator extends EventEmitter<MediatorEvents> {
  readonly config: MediatorConfig;
  readonly backend: Backend;
  readonly dispatcher = new IoDispatcher();
  readonly bus: PciBus;
  readonly dirty: DirtyTracker;
  readonly hostBridge: PciHostBridge;
  private readonly types = new DeviceTypeRegistry();
  private readonly devices = new Map<string, MediatedDevice>();
  private readonly firmware: BarAssigner | undefined;
  private readonly registrations: Array<DispatchRegistration | IoClaim> = [];
  private isClosed = false;

  /** Use {@link createMediator}; this wires an already-made backend. */
  constructor(config: MediatorConfig, backend: Backend) {
    super();
    this.config = config;
    this.backend = backend;
    this.bus = new PciBus();
    this.hostBridge = new PciHostBridge(this.bus, { ecamBuses: 1 });
    this.dirty = new DirtyTracker(backend.memory.ram, backend.capabilities.dirtyTracking === false ? undefined : backend.dirty);
    const pci = config.pci ?? {};
    const standalone = backend.capabilities.pciConfig === 'device-model';
    // A guest whose host bridge is ours has no chipset, so no firmware that would program BARs.
    const ownBridge = standalone || backend.capabilities.pciHostBridge === 'device-model';
    this.firmware = (pci.assignBars ?? ownBridge) ? new BarAssigner(pci.mmioWindow, pci.ioWindow) : undefined;
    backend.attach(this.dispatcher);
    try {
      this.wireConfigSpace(standalone, ownBridge, pci.ecamBase ?? DEFAULT_ECAM_BASE);
    } catch (e) {
      for (const r of this.registrations) r.dispose();
      throw e;
    }
  }

  /** The device types and their available instances (mdev `mdev_supported_types`). */
  deviceTypes(): DeviceTypeInfo[] {
    return this.types.list();
  }

  /** Registers a device type; a duplicate name is `Exists`. */
  registerType(definition: DeviceDefinition<never>): void {
    this.guard('mediator.registerType');
    this.types.register(definition);
  }

  /**
   * Creates a device of `type` (mdev `create`). A duplicate UUID is `Exists`, a type with no
   * instance left is `NoSpace`, an unknown type `NotFound`; nothing is left half-made.
   */
  create(type: string, options: CreateDeviceOptions = {}): MediatedDevice {
    const operation = 'mediator.create';
    this.guard(operation);
    const uuid = (options.uuid ?? randomUUID()).toLowerCase();
    if (!UUID.test(uuid)) throw new InvalidError(operation, `"${uuid}" is not a UUID`);
    if (this.devices.has(uuid)) throw new ExistsError(operation, `a device with UUID ${uuid} exists`);
    const address = this.slotAddress(options.slot, operation);
    const definition = this.types.reserve(type);
    let device: MediatedDevice;
    try {
      device = new MediatedDevice(definition, uuid, address, options.options ?? {}, {
        backend: this.backend,
        dispatcher: this.dispatcher,
        bus: this.bus,
        dirty: this.dirty,
        firmware: this.firmware,
        notify: (n) => this.onDeviceNotification(n),
      });
    } catch (e) {
      this.types.release(type);
      throw e;
    }
    this.devices.set(uuid, device);
    this.emit('device-created', device);
    return device;
  }

  /** The device with `uuid`; `NotFound` if there is none. */
  device(uuid: string): MediatedDevice {
    const d = this.devices.get(uuid.toLowerCase());
    if (d === undefined) throw new NotFoundError('mediator.device', `no device with UUID ${uuid}`);
    return d;
  }

  /** Every device not yet removed, in creation order. */
  list(): MediatedDevice[] {
    return [...this.devices.values()];
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Removes every device, releases the config-space wiring, and closes the backend (which
   * releases everything it handed out). Idempotent.
   */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    const errors: unknown[] = [];
    for (const d of [...this.devices.values()].reverse()) {
      try {
        d.remove();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const r of this.registrations.splice(0).reverse()) r.dispose();
    this.hostBridge.dispose();
    await this.backend.close();
    this.emit('closed');
    if (errors.length > 0) throw new AggregateError(errors, 'mediator.close: some devices failed to close');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Closes this mediator when the process gets SIGINT or SIGTERM or dies of an uncaught
   * exception or unhandled rejection, then exits with the conventional status (128 + signal,
   * or 1 with the error printed); see {@link closeOnExit}. The handlers go away when the
   * mediator closes, or when the returned function is called.
   */
  closeOnExit(options?: CloseOnExitOptions): () => void {
    this.guard('mediator.closeOnExit');
    const remove = closeOnExit(this, options);
    const onClosed = (): void => remove();
    this.once('closed', onClosed);
    return () => {
      this.off('closed', onClosed);
      remove();
    };
  }

  /** Creates (and by default opens) the devices a config lists. */
  createFromConfig(devices: readonly DeviceConfig[]): MediatedDevice[] {
    return devices.map((d) => {
      const device = this.create(d.type, {
        ...(d.uuid === undefined ? {} : { uuid: d.uuid }),
        ...(d.slot === undefined ? {} : { slot: d.slot }),
        ...(d.options === undefined ? {} : { options: d.options }),
      });
      if (d.open !== false) device.open();
      return device;
    });
  }

  // ---- Internals ----------------------------------------------------------------------------

  /**
   * `standalone`: the core decodes every config cycle (ports 0xCF8–0xCFF and ECAM). Otherwise
   * the hypervisor sends `pci` requests, and with `ownBridge` the core still answers for the
   * address register and for the bridge's function (Xen PVH). Only 0xCF8–0xCFB are claimed
   * then: the hypervisor turns data-port accesses into `pci` requests while the register is
   * enabled, and while it is not they read all-ones and drop writes without us, as the bridge
   * would, one round trip cheaper.
   */
  private wireConfigSpace(standalone: boolean, ownBridge: boolean, ecamBase: bigint): void {
    const bridge = this.hostBridge;
    // `pci` requests (Xen, and the host bridge's decoders below) for bus 0 land on the bus.
    this.registrations.push(
      this.dispatcher.add(
        'pci',
        addressRange(0, ECAM_BUS_SIZE),
        {
          read: (offset, size) => {
            const { bdf, register } = decodePciConfigAddress(BigInt(offset));
            return this.bus.configRead(bdf, register, size);
          },
          write: (offset, size, value) => {
            const { bdf, register } = decodePciConfigAddress(BigInt(offset));
            this.bus.configWrite(bdf, register, size, value);
          },
        },
        'pci-bus0',
      ),
    );
    if (!standalone) {
      if (ownBridge) this.wireHostBridgeOnHypervisor();
      return;
    }
    const ports = addressRange(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORTS_LENGTH);
    this.registrations.push(
      this.dispatcher.add(
        'pio',
        ports,
        {
          read: (offset, size) => Number(bridge.portRead(PCI_CONFIG_ADDRESS_PORT + offset, size)),
          write: (offset, size, value) => bridge.portWrite(PCI_CONFIG_ADDRESS_PORT + offset, size, BigInt(value)),
        },
        'pci-config-ports',
      ),
      this.backend.claimIo('pio', ports),
    );
    const ecam = addressRange(ecamBase, ECAM_BUS_SIZE);
    this.registrations.push(
      this.dispatcher.add(
        'mmio',
        ecam,
        {
          read: (offset, size) => Number(bridge.ecamRead(BigInt(offset), size)),
          write: (offset, size, value) => bridge.ecamWrite(BigInt(offset), size, BigInt(value)),
        },
        'pci-ecam',
      ),
      this.backend.claimIo('mmio', ecam),
    );
  }

  private wireHostBridgeOnHypervisor(): void {
    const bridge = this.hostBridge;
    const register = addressRange(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_ADDRESS_LENGTH);
    // One push per step: if a claim is refused, what was made before is released by the caller.
    this.registrations.push(
      this.dispatcher.add(
        'pio',
        register,
        {
          read: (offset, size) => Number(bridge.portRead(PCI_CONFIG_ADDRESS_PORT + offset, size)),
          write: (offset, size, value) => bridge.portWrite(PCI_CONFIG_ADDRESS_PORT + offset, size, BigInt(value)),
        },
        'pci-config-address',
      ),
    );
    this.registrations.push(this.backend.claimIo('pio', register));
    this.registrations.push(this.backend.claimPciFunction(bridge.function.address));
  }

  private slotAddress(slot: number | undefined, operation: string): PciAddress {
    if (slot === undefined) {
      // A slot is taken when a device is created, even before it is opened onto the bus.
      const used = new Set([...this.devices.values()].map((d) => d.address.device));
      for (let device = 1; device < 32; device++) if (!used.has(device)) return { segment: 0, bus: 0, device, function: 0 };
      return this.bus.allocateSlot(32);
    }
    if (!Number.isInteger(slot) || slot < 1 || slot > 31) throw new InvalidError(operation, `slot ${slot} is not in 1..31`);
    if ([...this.devices.values()].some((d) => d.address.device === slot)) throw new ExistsError(operation, `slot ${slot} is taken`);
    return { segment: 0, bus: 0, device: slot, function: 0 };
  }

  private onDeviceNotification(n: DeviceNotification): void {
    switch (n.kind) {
      case 'broken':
        this.emit('device-broken', n.device, n.cause);
        return;
      case 'warning':
        this.emit('warning', n.message, n.device, n.cause);
        return;
      case 'state':
        switch (n.state) {
          case 'open':
            this.emit('device-opened', n.device);
            return;
          case 'reset':
            this.emit('device-reset', n.device);
            return;
          case 'closed':
            this.emit('device-closed', n.device);
            return;
          case 'removed':
            this.devices.delete(n.device.uuid);
            this.types.release(n.device.type);
            this.emit('device-removed', n.device);
            return;
          case 'created':
            return;
        }
    }
  }

  private guard(operation: string): void {
    if (this.isClosed) throw new BadHandleError(operation, 'the mediator is closed');
  }
}

/**
 * Makes a mediator from a config object or a JSON file path: loads the backend the config
 * names by `import()`, registers `options.deviceTypes` and the types exported by
 * `config.deviceModules`, and creates (and opens) `config.devices`.
 */
export async function createMediator(config: string | MediatorConfig, options: MediatorOptions = {}): Promise<Mediator> {
  const parsed = loadMediatorConfig(config);
  const importer = options.importer ?? ((s: string) => import(s) as Promise<unknown>);
  const backend = options.backend ?? (await loadBackend(parsed, importer));
  let mediator: Mediator | undefined;
  try {
    mediator = new Mediator(parsed, backend);
    for (const t of options.deviceTypes ?? []) mediator.registerType(t);
    for (const spec of parsed.deviceModules ?? []) {
      const module = (await importer(spec)) as { deviceTypes?: unknown };
      if (!Array.isArray(module.deviceTypes)) throw new NotFoundError('mediator.deviceModules', `${spec} does not export deviceTypes`);
      for (const t of module.deviceTypes as Array<DeviceDefinition<never>>) mediator.registerType(t);
    }
    mediator.createFromConfig(parsed.devices ?? []);
    return mediator;
  } catch (e) {
    if (mediator !== undefined) await mediator.close().catch(() => undefined);
    else await backend.close();
    throw e;
  }
}
