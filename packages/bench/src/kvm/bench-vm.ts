/**
 * The vmed side of the KVM benchmarks, set up the way a VMM would: a standalone KVM backend,
 * a mediator on it with the benchmark device, BARs placed by the mediator's firmware step,
 * and the guest driver's part (decode and bus mastering on, MSI programmed) done through
 * config space. The guest programs run through `backend.guest`.
 */
import {
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  createMediator,
  type Mediator,
  type MediatedDevice,
} from '@vmed/core';
import type { ExecutionMode, KvmBackend, VcpuFinish } from '@vmed/backend-kvm';
import { BENCH_DEVICE_TYPE, BenchDevice, benchDevice } from './bench-device.js';
import { closeKeepingAlive } from '../harness/wait.js';
import { enableMsi, setCommand } from './pci-driver.js';
import { DONE_OK, DONE_PORT, loadGuest, type GuestImage, type GuestParams, type GuestProgram } from './guests.js';

export interface BenchVmOptions {
  readonly memoryMiB: number;
  /** The KVM backend's inline quantum (see its `quantumMs` option); its default when absent. */
  readonly quantumMs?: number;
}

export class BenchVm implements AsyncDisposable {
  readonly mediator: Mediator;
  readonly backend: KvmBackend;
  readonly device: MediatedDevice;
  readonly model: BenchDevice;
  /** Errors the backend reported from handlers and sinks (a benchmark fails if any). */
  readonly errors: unknown[];

  private constructor(mediator: Mediator, backend: KvmBackend, device: MediatedDevice, errors: unknown[]) {
    this.mediator = mediator;
    this.backend = backend;
    this.device = device;
    this.errors = errors;
    if (!(device.model instanceof BenchDevice)) throw new Error('the mediator made a device that is not the benchmark device');
    this.model = device.model;
  }

  /** Creates the VM and opens the benchmark device with decode and bus mastering on. */
  static async create(options: BenchVmOptions): Promise<BenchVm> {
    const errors: unknown[] = [];
    // Loaded here, not at module scope: listing benchmarks must not load KVM's bindings.
    const { createBackend } = await import('@vmed/backend-kvm');
    const backend = await createBackend({
      mode: 'standalone',
      memoryMiB: options.memoryMiB,
      vcpus: 1,
      onError: (e: unknown) => errors.push(e),
      ...(options.quantumMs === undefined ? {} : { quantumMs: options.quantumMs }),
    });
    let mediator: Mediator | undefined;
    try {
      mediator = await createMediator({ hypervisor: 'kvm', pci: { assignBars: true } }, { backend, deviceTypes: [benchDevice] });
      const device = mediator.create(BENCH_DEVICE_TYPE);
      device.open();
      // What the guest's driver would do: turn decoding and bus mastering on.
      setCommand(device.function, PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER);
      return new BenchVm(mediator, backend, device, errors);
    } catch (e) {
      const opened = mediator;
      await closeKeepingAlive(() => (opened !== undefined ? opened.close() : backend.close()));
      throw e;
    }
  }

  /** Guest-physical address of BAR0 (memory). */
  get mmioBase(): bigint {
    return this.#bar(0);
  }

  /** First port of BAR1 (I/O). */
  get ioBase(): number {
    return Number(this.#bar(1));
  }

  /** Programs and enables MSI vector 0 for `vector`, as a guest driver writes the capability. */
  enableMsi(vector: number): void {
    enableMsi(this.device.function, vector);
  }

  /**
   * Runs `image` once from a clean footprint with `params` and waits for the done port.
   * @throws when the guest ends any other way, or with a code other than DONE_OK.
   */
  async runGuest(image: GuestImage, params: GuestParams, execution: ExecutionMode): Promise<VcpuFinish> {
    const guest = this.backend.guest;
    guest.load(BigInt(image.loadAddress), new Uint8Array(image.footprintEnd - image.loadAddress));
    guest.load(BigInt(image.loadAddress), image.bytes);
    guest.setEntry(0, {
      mode: 'protected32',
      ip: image.entry,
      regs: { rbx: BigInt(params.ebx ?? 0), rcx: BigInt(params.ecx ?? 0), rdx: BigInt(params.edx ?? 0), rdi: BigInt(params.edi ?? 0) },
    });
    const result = await guest.run({ execution, donePort: DONE_PORT });
    const finish = result.vcpus[0];
    if (finish?.reason !== 'done') throw new Error(`${image.program}: the guest stopped (${finish?.reason ?? 'no vCPU'}: ${finish?.detail ?? ''})`);
    if (finish.value !== BigInt(DONE_OK)) throw new Error(`${image.program}: the guest ended with code 0x${finish.value?.toString(16)}`);
    if (this.errors.length > 0) throw new Error(`${image.program}: the backend reported ${String(this.errors[0])}`);
    return finish;
  }

  /** A 32-bit little-endian word of guest RAM. */
  readGuestU32(address: number): number {
    const bytes = new Uint8Array(4);
    this.backend.memory.read(BigInt(address), bytes);
    return new DataView(bytes.buffer).getUint32(0, true);
  }

  close(): Promise<void> {
    return closeKeepingAlive(() => this.mediator.close());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #bar(index: number): bigint {
    const location = this.device.function.barLocation(index);
    if (location === undefined) throw new Error(`BAR${index} of the benchmark device has no address`);
    return location.base;
  }
}

/** Loads a flat image of one of the bench programs. */
export function benchGuest(program: GuestProgram): Promise<GuestImage> {
  return loadGuest(program, 'flat');
}
