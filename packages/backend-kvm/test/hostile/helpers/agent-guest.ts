/**
 * A mediator on a real standalone KVM VM running the testkit guest agent on one or more
 * vCPUs, each vCPU driven through its own mailbox. Every `mmio*`/`cfg*` call below is one
 * guest instruction on that vCPU (an MMIO `mov`, a config cycle through 0xCF8/0xCFC), so two
 * calls posted to two vCPUs at once race in the guest exactly as two CPUs of a real driver
 * would; the I/O context serialises them in whatever order the exits arrive.
 */
import type { DeviceDefinition, Doorbell, Mediator, MemoryView, MsiRoute, PciAddress } from '@vmed/core';
import { createMediator } from '@vmed/core';
import * as guests from '@vmed/testkit';
import { createBackend, type KvmBackend, type RamLayoutEntry } from '../../../src/index.js';
import type { GuestRunResult } from '../../../src/guest/controller.js';

export const MiB = 1 << 20;

/** The layout most hostile tests use: agent RAM, a hole, then one more region. */
export const HOLE_LAYOUT: readonly RamLayoutEntry[] = [
  { base: 0, size: 4 * MiB, name: 'low' },
  { base: 8 * MiB, size: MiB, name: 'high' },
];
/** The last byte + 1 of {@link HOLE_LAYOUT}'s RAM. */
export const HOLE_LAYOUT_END = 9n * BigInt(MiB);

export interface KvmMediatorOptions {
  readonly memoryMiB?: number;
  readonly vcpus?: number;
  readonly ramLayout?: readonly RamLayoutEntry[];
  readonly deviceTypes: ReadonlyArray<DeviceDefinition<never>>;
  /** Failures the backend reports from exits and doorbells (default: collected in `errors`). */
  readonly onError?: (error: unknown) => void;
}

export interface KvmMediator {
  readonly mediator: Mediator;
  readonly backend: KvmBackend;
  /** What the backend reported through `onError` (should stay empty: models' throws are the mediator's). */
  readonly errors: unknown[];
  /** Every doorbell the backend registered, in order (a test may empty the array). */
  readonly doorbells: Doorbell[];
  /** Every MSI route the backend made, in order (a test may empty the array). */
  readonly routes: MsiRoute[];
}

/** A mediator over a fresh standalone KVM backend. */
export async function kvmMediator(options: KvmMediatorOptions): Promise<KvmMediator> {
  const errors: unknown[] = [];
  const layout = options.ramLayout ?? HOLE_LAYOUT;
  const memoryMiB = options.memoryMiB ?? Number(layout.reduce((n, r) => n + BigInt(r.size), 0n) / BigInt(MiB));
  const backend = await createBackend({
    mode: 'standalone',
    memoryMiB,
    vcpus: options.vcpus ?? 1,
    ramLayout: layout,
    onError: options.onError ?? ((e: unknown) => errors.push(e)),
  });
  // Watches registrations so a test can tell when the backend has served a ring (KvmDoorbell
  // counts them before calling the handler), whatever the device did with it.
  const doorbells: Doorbell[] = [];
  const register = backend.registerIoEvent.bind(backend);
  backend.registerIoEvent = (spec, handler) => {
    const doorbell = register(spec, handler);
    doorbells.push(doorbell);
    return doorbell;
  };
  const routes: MsiRoute[] = [];
  const createRoute = backend.createMsiRoute.bind(backend);
  backend.createMsiRoute = () => {
    const route = createRoute();
    routes.push(route);
    return route;
  };
  const mediator = await createMediator({ hypervisor: 'kvm' }, { backend, deviceTypes: options.deviceTypes });
  return { mediator, backend, errors, doorbells, routes };
}

/** Yields to the event loop so the I/O context serves the vCPUs' exits meanwhile. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}

/** Waits until `predicate` holds, one event-loop turn at a time (the test's timeout bounds it). */
export async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await tick();
}

const WINDOW_BASE = guests.RT_INFO_ADDR;
const WINDOW_BYTES = 0x4000;

/** The testkit agent running on every vCPU of a standalone KVM guest. */
export class AgentGuest {
  readonly vcpus: number;
  readonly #backend: KvmBackend;
  readonly #view: MemoryView;
  readonly #words: Int32Array;
  readonly #data: DataView;
  readonly #run: Promise<GuestRunResult>;
  #ended: GuestRunResult | undefined;
  readonly #queues: Array<Promise<unknown>>;

  private constructor(backend: KvmBackend, vcpus: number, run: Promise<GuestRunResult>, view: MemoryView) {
    this.#backend = backend;
    this.vcpus = vcpus;
    this.#run = run;
    this.#view = view;
    const bytes = view.bytes;
    this.#words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    this.#data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#queues = Array.from({ length: vcpus }, () => Promise.resolve());
    void run.then((r) => {
      this.#ended = r;
    });
  }

  /** Loads the agent, starts every vCPU (`worker` execution) and waits until all poll their mailboxes. */
  static async start(backend: KvmBackend): Promise<AgentGuest> {
    const image = await guests.loadGuest('agent', 'flat');
    const vcpus = backend.guest.vcpuCount;
    backend.guest.load(BigInt(image.loadAddress), image.bytes);
    backend.guest.setEntry('all', { mode: 'protected32', ip: image.entry });
    const view = backend.memory.view(BigInt(WINDOW_BASE), WINDOW_BYTES, 'readwrite');
    const run = backend.guest.run({ execution: 'worker', donePort: guests.DONE_PORT });
    const agent = new AgentGuest(backend, vcpus, run, view);
    const all = (1 << vcpus) - 1;
    await until(() => {
      agent.#assertRunning('agent.boot');
      return agent.#u32(guests.RT_INFO_ADDR + guests.RT_MAGIC) === guests.RT_READY && (agent.#u32(guests.RT_INFO_ADDR + guests.RT_ONLINE_MASK) & all) === all;
    });
    return agent;
  }

  /** Whether the run has ended (every vCPU finished). */
  get ended(): GuestRunResult | undefined {
    return this.#ended;
  }

  mmioRead(address: bigint, size: 1 | 2 | 4 | 8 = 4, vcpu = 0): Promise<bigint> {
    return this.command(vcpu, guests.AGENT_OP_MMIO_READ, size, address, 0n);
  }

  async mmioWrite(address: bigint, value: bigint | number, size: 1 | 2 | 4 | 8 = 4, vcpu = 0): Promise<void> {
    await this.command(vcpu, guests.AGENT_OP_MMIO_WRITE, size, address, BigInt(value));
  }

  async cfgRead(device: PciAddress, register: number, size: 1 | 2 | 4 = 4, vcpu = 0): Promise<number> {
    return Number(await this.command(vcpu, guests.AGENT_OP_CFG_READ, size, guests.agentConfigAddress(device, register), 0n));
  }

  async cfgWrite(device: PciAddress, register: number, size: 1 | 2 | 4, value: number, vcpu = 0): Promise<void> {
    await this.command(vcpu, guests.AGENT_OP_CFG_WRITE, size, guests.agentConfigAddress(device, register), BigInt(value >>> 0));
  }

  async pioWrite(port: number, size: 1 | 2 | 4, value: number, vcpu = 0): Promise<void> {
    await this.command(vcpu, guests.AGENT_OP_PIO_WRITE, size, BigInt(port), BigInt(value >>> 0));
  }

  async pioRead(port: number, size: 1 | 2 | 4, vcpu = 0): Promise<number> {
    return Number(await this.command(vcpu, guests.AGENT_OP_PIO_READ, size, BigInt(port), 0n));
  }

  /** FNV-1a of guest RAM as the guest itself reads it. */
  async checksum(address: bigint, length: number, vcpu = 0): Promise<number> {
    return Number(await this.command(vcpu, guests.AGENT_OP_RAM_CHECKSUM, length, address, 0n));
  }

  /** Interrupts the guest has taken on `vector` (its own counters in RAM). */
  interruptCount(vector: number): number {
    return this.#u32(guests.IRQ_COUNTS_ADDR + vector * 4);
  }

  /** The MSI message that reaches vCPU 0 on `vector`. */
  msiMessage(vector: number): { address: bigint; data: number } {
    return guests.msiMessage(0, vector);
  }

  /** BAR `index` of `device` as the guest reads it (memory BAR: the address). */
  async barAddress(device: PciAddress, index: number): Promise<bigint> {
    const low = await this.cfgRead(device, 0x10 + 4 * index);
    return (low & 1) === 1 ? BigInt(low & ~0x3) : BigInt((low & ~0xf) >>> 0);
  }

  /** Offset of capability `id` in `device`'s list, found as a driver would. */
  async capability(device: PciAddress, id: number): Promise<number> {
    let at = (await this.cfgRead(device, 0x34, 1)) & 0xfc;
    for (let hops = 0; at !== 0 && hops < 48; hops++) {
      const header = await this.cfgRead(device, at, 2);
      if ((header & 0xff) === id) return at;
      at = (header >>> 8) & 0xfc;
    }
    throw new Error(`capability ${id} not found`);
  }

  /** Programs and enables MSI vector 0 of `device` to reach vCPU 0 on `vector`. */
  async enableMsi(device: PciAddress, vector: number): Promise<void> {
    const cap = await this.capability(device, 0x05);
    const message = this.msiMessage(vector);
    await this.cfgWrite(device, cap + 4, 4, Number(message.address & 0xffff_ffffn));
    const flags = await this.cfgRead(device, cap + 2, 2);
    const is64 = (flags & 0x80) !== 0;
    if (is64) await this.cfgWrite(device, cap + 8, 4, Number(message.address >> 32n));
    await this.cfgWrite(device, cap + (is64 ? 12 : 8), 2, message.data);
    await this.cfgWrite(device, cap + 2, 2, flags | 1);
  }

  /** Ends the agent on every vCPU (AGENT_OP_DONE) and waits for the run to end. */
  async finish(): Promise<GuestRunResult> {
    for (let v = 0; v < this.vcpus; v++) await this.command(v, guests.AGENT_OP_DONE, 0, 0n, 0n);
    const result = await this.#run;
    this.#view.dispose();
    return result;
  }

  /** Stops the vCPUs without the guest's cooperation (after a failure). */
  async abandon(): Promise<void> {
    if (!this.#backend.closed) await this.#backend.guest.stop();
    this.#view.dispose();
  }

  /** Posts one command to `vcpu`'s mailbox and waits for its acknowledgement. */
  command(vcpu: number, op: number, size: number, address: bigint, value: bigint): Promise<bigint> {
    const queue = this.#queues[vcpu];
    if (queue === undefined) throw new Error(`no vCPU ${vcpu}`);
    const next = queue.then(() => this.#exchange(vcpu, op, size, address, value));
    this.#queues[vcpu] = next.catch(() => undefined);
    return next;
  }

  async #exchange(vcpu: number, op: number, size: number, address: bigint, value: bigint): Promise<bigint> {
    const box = guests.agentMailboxAddress(vcpu) - WINDOW_BASE;
    const d = this.#live().data;
    d.setUint32(box + guests.AGENT_MB_OP, op, true);
    d.setUint32(box + guests.AGENT_MB_SIZE, size, true);
    d.setBigUint64(box + guests.AGENT_MB_ADDRESS, BigInt.asUintN(64, address), true);
    d.setBigUint64(box + guests.AGENT_MB_VALUE, BigInt.asUintN(64, value), true);
    const seqIndex = (box + guests.AGENT_MB_SEQ) / 4;
    const ackIndex = (box + guests.AGENT_MB_ACK) / 4;
    const seq = (Atomics.load(this.#live().words, seqIndex) + 1) | 0;
    // Release: the fields above are visible to the guest before the new sequence number.
    Atomics.store(this.#live().words, seqIndex, seq);
    while (Atomics.load(this.#live().words, ackIndex) !== seq) {
      // DONE is acknowledged before the vCPU leaves, but the run may end first.
      if (op === guests.AGENT_OP_DONE && this.#ended !== undefined) return 0n;
      this.#assertRunning('agent.command');
      await tick();
    }
    const status = this.#live().data.getUint32(box + guests.AGENT_MB_STATUS, true);
    if (status !== guests.AGENT_STATUS_OK) throw new Error(`agent op ${op} at 0x${address.toString(16)} on vCPU ${vcpu}: ${guests.agentStatusName(status)}`);
    return this.#live().data.getBigUint64(box + guests.AGENT_MB_RESULT, true);
  }

  #assertRunning(operation: string): void {
    if (this.#ended !== undefined) {
      const why = this.#ended.vcpus.map((v, i) => `vCPU ${i}: ${v.reason}${v.detail === undefined ? '' : ` (${v.detail})`}`).join(', ');
      throw new Error(`${operation}: the agent stopped: ${why}`);
    }
  }

  #u32(address: number): number {
    return Atomics.load(this.#live().words, (address - WINDOW_BASE) / 4) >>> 0;
  }

  /**
   * The arrays over the mailbox window, while the view is alive. An array over guest RAM
   * outlives its view and would read unmapped memory once the backend closed (the guard
   * pages make that a SIGSEGV): every access checks the view first, which throws `BadHandle`.
   */
  #live(): { words: Int32Array; data: DataView } {
    if (this.#view.disposed) void this.#view.bytes;
    return { words: this.#words, data: this.#data };
  }
}
