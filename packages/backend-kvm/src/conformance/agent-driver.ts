/**
 * The testkit guest agent (`guests/agent`, flat image) on a standalone KVM backend, as the
 * conformance suite's {@link GuestDriver}. Each driver call is one command written into vCPU
 * 0's mailbox in guest RAM; the agent executes it as a real guest instruction (an MMIO `mov`,
 * an `in`/`out`, a config cycle through 0xCF8/0xCFC), which exits to the backend's sink.
 *
 * The guest boots on first use, not when the session opens: sessions that never drive the
 * guest (leak checks open dozens) then cost no vCPU thread. Booting loads nothing new (the
 * image is in RAM from the start), starts the vCPU, waits for the agent's ready magic and
 * routes the session's free line on the IOAPIC.
 */
import { IoError, StateError, type AccessSize, type GuestMemory, type MemoryView, type PciAddress } from '@vmed/core';
import type { GuestDriver } from '@vmed/testkit';
import type { KvmBackend } from '../backend.js';
import type { ExecutionMode, GuestRunResult } from '../guest/controller.js';
import type { FlatImage, GuestsModule } from './testkit-guests.js';

/** The guest-physical window the driver keeps a view of: runtime page, counters, mailboxes. */
const WINDOW_BASE = 0x2_0000n;
const WINDOW_BYTES = 0x4000;

export interface AgentDriverOptions {
  readonly execution: ExecutionMode;
  /** The GSI routed to {@link lineVector} at boot, if any. */
  readonly freeLine: number | undefined;
  readonly lineVector: number;
}

export class KvmAgentDriver implements GuestDriver {
  readonly name = 'kvm-agent';
  readonly scratch: { readonly address: bigint; readonly length: number };
  readonly #backend: KvmBackend;
  readonly #abi: GuestsModule;
  readonly #options: AgentDriverOptions;
  #booting: Promise<void> | undefined;
  #run: Promise<GuestRunResult> | undefined;
  #ended: GuestRunResult | undefined;
  #view: MemoryView | undefined;
  #viewWords: Int32Array | undefined;
  #disposed = false;
  /** Commands are one at a time: the mailbox holds one. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(backend: KvmBackend, abi: GuestsModule, image: FlatImage, options: AgentDriverOptions) {
    this.#backend = backend;
    this.#abi = abi;
    this.#options = options;
    this.scratch = { address: BigInt(abi.AGENT_SCRATCH_ADDR), length: abi.AGENT_SCRATCH_SIZE };
    backend.guest.load(BigInt(image.loadAddress), image.bytes);
    backend.guest.setEntry('all', { mode: 'protected32', ip: image.entry });
  }

  async mmioRead(address: bigint, size: AccessSize): Promise<bigint> {
    return this.#command(this.#abi.AGENT_OP_MMIO_READ, size, address, 0n);
  }

  async mmioWrite(address: bigint, size: AccessSize, value: bigint): Promise<void> {
    await this.#command(this.#abi.AGENT_OP_MMIO_WRITE, size, address, value);
  }

  async pioRead(port: number, size: 1 | 2 | 4): Promise<number> {
    return Number(await this.#command(this.#abi.AGENT_OP_PIO_READ, size, BigInt(port), 0n));
  }

  async pioWrite(port: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.#command(this.#abi.AGENT_OP_PIO_WRITE, size, BigInt(port), BigInt(value >>> 0));
  }

  async configRead(device: PciAddress, register: number, size: 1 | 2 | 4): Promise<number> {
    return Number(await this.#command(this.#abi.AGENT_OP_CFG_READ, size, this.#abi.agentConfigAddress(device, register), 0n));
  }

  async configWrite(device: PciAddress, register: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.#command(this.#abi.AGENT_OP_CFG_WRITE, size, this.#abi.agentConfigAddress(device, register), BigInt(value >>> 0));
  }

  async interruptCount(vector: number): Promise<number> {
    await this.#boot();
    return this.#counter(vector);
  }

  async waitForInterrupts(vector: number, count: number, timeoutMs: number): Promise<boolean> {
    await this.#boot();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#counter(vector) >= count) return true;
      if (Date.now() > deadline) return false;
      this.#assertRunning('agent.waitForInterrupts');
      await pause();
    }
  }

  msiMessageFor(vector: number): { address: bigint; data: number } {
    // vCPU 0 runs the handlers; KVM gives a vCPU the LAPIC ID of its index.
    return this.#abi.msiMessage(0, vector);
  }

  vectorForLine(line: number): number | undefined {
    return line === this.#options.freeLine ? this.#options.lineVector : undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (!this.#backend.closed) await this.#backend.guest.stop();
    this.#view?.dispose();
  }

  /** Starts the agent (once) and waits until vCPU 0 polls its mailbox. */
  #boot(): Promise<void> {
    this.#booting ??= this.#start();
    return this.#booting;
  }

  async #start(): Promise<void> {
    if (this.#disposed) throw new StateError('agent.boot', 'the driver is disposed');
    const memory: GuestMemory = this.#backend.memory;
    this.#view = memory.view(WINDOW_BASE, WINDOW_BYTES, 'readwrite');
    this.#run = this.#backend.guest.run({ execution: this.#options.execution, donePort: this.#abi.DONE_PORT });
    void this.#run.then((result) => {
      this.#ended = result;
    });
    const magic = this.#abi.RT_INFO_ADDR + this.#abi.RT_MAGIC;
    const online = this.#abi.RT_INFO_ADDR + this.#abi.RT_ONLINE_MASK;
    while (this.#u32(magic) !== this.#abi.RT_READY || (this.#u32(online) & 1) === 0) {
      this.#assertRunning('agent.boot');
      await pause();
    }
    if (this.#options.freeLine !== undefined) {
      const route = this.#abi.ioapicRouteValue(this.#options.lineVector, { trigger: 'level' });
      await this.#exchange(this.#abi.AGENT_OP_IOAPIC_ROUTE, 0, BigInt(this.#options.freeLine), route);
    }
  }

  #command(op: number, size: number, address: bigint, value: bigint): Promise<bigint> {
    const next = this.#queue.then(async () => {
      await this.#boot();
      return this.#exchange(op, size, address, value);
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Posts one command to vCPU 0's mailbox and waits for its acknowledgement. */
  async #exchange(op: number, size: number, address: bigint, value: bigint): Promise<bigint> {
    const a = this.#abi;
    const box = a.AGENT_MAILBOX_ADDR;
    const data = this.#data();
    const at = (field: number): number => box + field - Number(WINDOW_BASE);
    data.setUint32(at(a.AGENT_MB_OP), op, true);
    data.setUint32(at(a.AGENT_MB_SIZE), size, true);
    data.setBigUint64(at(a.AGENT_MB_ADDRESS), BigInt.asUintN(64, address), true);
    data.setBigUint64(at(a.AGENT_MB_VALUE), BigInt.asUintN(64, value), true);
    const words = this.#words();
    const seq = (Atomics.load(words, at(a.AGENT_MB_SEQ) / 4) + 1) | 0;
    // Release: the fields above are visible to the guest before the new sequence number.
    Atomics.store(words, at(a.AGENT_MB_SEQ) / 4, seq);
    while (Atomics.load(words, at(a.AGENT_MB_ACK) / 4) !== seq) {
      this.#assertRunning('agent.command');
      await pause();
    }
    const status = data.getUint32(at(a.AGENT_MB_STATUS), true);
    if (status !== a.AGENT_STATUS_OK) {
      throw new IoError('agent.command', `agent op ${op} at 0x${address.toString(16)}: ${a.agentStatusName(status)}`);
    }
    return data.getBigUint64(at(a.AGENT_MB_RESULT), true);
  }

  #assertRunning(operation: string): void {
    if (this.#ended !== undefined) {
      const v = this.#ended.vcpus[0];
      throw new StateError(operation, `the agent stopped: ${v?.reason ?? 'unknown'}${v?.detail === undefined ? '' : ` (${v.detail})`}${v?.value === undefined ? '' : ` code 0x${v.value.toString(16)}`}`);
    }
  }

  #counter(vector: number): number {
    return this.#u32(this.#abi.IRQ_COUNTS_ADDR + vector * 4);
  }

  #u32(address: number): number {
    return Atomics.load(this.#words(), (address - Number(WINDOW_BASE)) / 4) >>> 0;
  }

  #words(): Int32Array {
    const bytes = (this.#view as MemoryView).bytes; // BadHandle once the backend closed
    if (this.#viewWords === undefined) this.#viewWords = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    return this.#viewWords;
  }

  #data(): DataView {
    return (this.#view as MemoryView).data;
  }
}

/** Yields to the event loop (the I/O context serves the vCPU's exits meanwhile). */
function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}
