/**
 * The project's guest agent (`packages/testkit/guests/agent`, PVH build) driven from dom0: its
 * runtime page, interrupt counters and mailboxes are foreign-mapped once (one handle of our own,
 * not the session's, so sessions can come and go while the guest runs), and each command is
 * posted to vCPU 0's mailbox and awaited without blocking — the guest's access usually becomes
 * an ioreq that this same thread serves.
 */
import { IoError, InvalidError, StateError, type AccessSize, type PciAddress } from '@vmed/core';
import type { GuestDriver, GuestEventChannel } from '@vmed/testkit';
import { ForeignMemoryHandle, type ForeignMapping } from '../libs/foreignmemory.js';

/** The agent ABI values the driver needs (from testkit's `guests/agent-abi.ts` and `runtime-abi.ts`). */
export interface AgentAbi {
  readonly RT_INFO_ADDR: number;
  readonly RT_MAGIC: number;
  readonly RT_READY: number;
  readonly RT_ONLINE_MASK: number;
  readonly RT_PLATFORM: number;
  readonly PLATFORM_PVH: number;
  readonly IRQ_COUNTS_ADDR: number;
  readonly AGENT_MAILBOX_ADDR: number;
  readonly AGENT_MB_SEQ: number;
  readonly AGENT_MB_ACK: number;
  readonly AGENT_MB_OP: number;
  readonly AGENT_MB_SIZE: number;
  readonly AGENT_MB_ADDRESS: number;
  readonly AGENT_MB_VALUE: number;
  readonly AGENT_MB_RESULT: number;
  readonly AGENT_MB_STATUS: number;
  readonly AGENT_OP_MMIO_READ: number;
  readonly AGENT_OP_MMIO_WRITE: number;
  readonly AGENT_OP_PIO_READ: number;
  readonly AGENT_OP_PIO_WRITE: number;
  readonly AGENT_OP_CFG_READ: number;
  readonly AGENT_OP_CFG_WRITE: number;
  readonly AGENT_OP_APIC_ID: number;
  readonly AGENT_OP_EVTCHN_BIND: number;
  readonly AGENT_OP_EVTCHN_CLOSE: number;
  readonly AGENT_OP_EVTCHN_STATUS: number;
  readonly AGENT_OP_EVTCHN_SEND: number;
  readonly AGENT_STATUS_OK: number;
  readonly AGENT_SCRATCH_ADDR: number;
  readonly AGENT_SCRATCH_SIZE: number;
  agentConfigAddress(device: PciAddress, register: number): bigint;
  agentStatusName(status: number): string;
  msiMessage(apicId: number, vector: number): { address: bigint; data: number };
  irqCounterAddress(vector: number): number;
  agentEvtchnCounterAddress(port: number): number;
  decodeAgentEvtchnStatus(result: bigint): { readonly state: 'closed' | 'unbound' | 'interdomain' | 'other'; readonly remote: number };
}

const PAGE = 4096;
/** How long one command may take under the lab's emulation before the driver gives up. */
const COMMAND_TIMEOUT_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The agent's pages (runtime, IRQ counters, hypercall page, mailboxes), mapped for the guest's life. */
export class AgentMemory {
  readonly #fmem: ForeignMemoryHandle;
  readonly #mapping: ForeignMapping;
  readonly #base: number;
  readonly #u32: Uint32Array;
  readonly #i32: Int32Array;
  readonly #view: DataView;
  readonly abi: AgentAbi;
  #closed = false;

  constructor(domid: number, abi: AgentAbi) {
    this.abi = abi;
    this.#base = abi.RT_INFO_ADDR;
    const last = abi.AGENT_MAILBOX_ADDR + PAGE;
    const pages = (last - this.#base) / PAGE;
    if (!Number.isInteger(pages) || pages < 1 || pages > 16) throw new InvalidError('xen.agent', 'unexpected agent memory layout');
    const pfns = new BigUint64Array(pages);
    for (let i = 0; i < pages; i++) pfns[i] = BigInt(this.#base / PAGE + i);
    this.#fmem = ForeignMemoryHandle.open();
    try {
      this.#mapping = this.#fmem.map(domid, pfns, true);
    } catch (error) {
      this.#fmem.close();
      throw error;
    }
    this.#u32 = new Uint32Array(this.#mapping.buffer);
    this.#i32 = new Int32Array(this.#mapping.buffer);
    this.#view = new DataView(this.#mapping.buffer);
  }

  #index(address: number): number {
    if (this.#closed) throw new StateError('xen.agent', 'the agent mapping is closed');
    return (address - this.#base) / 4;
  }

  load32(address: number): number {
    return Atomics.load(this.#u32, this.#index(address));
  }

  store32(address: number, value: number): void {
    Atomics.store(this.#i32, this.#index(address), value | 0);
  }

  load64(address: number): bigint {
    this.#index(address);
    return this.#view.getBigUint64(address - this.#base, true);
  }

  store64(address: number, value: bigint): void {
    this.#index(address);
    this.#view.setBigUint64(address - this.#base, value, true);
  }

  /** Whether the agent finished booting on vCPU 0. */
  ready(): boolean {
    const rt = this.abi.RT_INFO_ADDR;
    return this.load32(rt + this.abi.RT_MAGIC) === this.abi.RT_READY && (this.load32(rt + this.abi.RT_ONLINE_MASK) & 1) === 1;
  }

  /** Waits for {@link ready}. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ready()) {
      if (Date.now() > deadline) throw new IoError('xen.agent', `the guest agent did not come up within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#mapping.release();
    this.#fmem.close();
  }
}

/** A {@link GuestDriver} over the agent's vCPU 0 mailbox. */
export class XenAgentDriver implements GuestDriver {
  readonly name = 'xen-agent';
  readonly scratch: { readonly address: bigint; readonly length: number };
  readonly #memory: AgentMemory;
  readonly #abi: AgentAbi;
  #apicId: number | undefined;
  #busy: Promise<unknown> = Promise.resolve();
  #disposed = false;

  constructor(memory: AgentMemory) {
    this.#memory = memory;
    this.#abi = memory.abi;
    this.scratch = { address: BigInt(this.#abi.AGENT_SCRATCH_ADDR), length: this.#abi.AGENT_SCRATCH_SIZE };
  }

  /** Runs one command; commands are serialised (one mailbox). */
  command(op: number, size: number, address: bigint, value: bigint): Promise<bigint> {
    const run = this.#busy.then(() => this.#run(op, size, address, value));
    this.#busy = run.catch(() => {});
    return run;
  }

  async #run(op: number, size: number, address: bigint, value: bigint): Promise<bigint> {
    if (this.#disposed) throw new StateError('xen.agent', 'the guest driver is disposed');
    const a = this.#abi;
    const mb = a.AGENT_MAILBOX_ADDR;
    const m = this.#memory;
    m.store32(mb + a.AGENT_MB_OP, op);
    m.store32(mb + a.AGENT_MB_SIZE, size);
    m.store64(mb + a.AGENT_MB_ADDRESS, address);
    m.store64(mb + a.AGENT_MB_VALUE, value);
    const seq = (m.load32(mb + a.AGENT_MB_SEQ) + 1) >>> 0;
    // The release: the fields above are visible before the guest sees the new seq.
    m.store32(mb + a.AGENT_MB_SEQ, seq);
    const deadline = Date.now() + COMMAND_TIMEOUT_MS;
    for (let spins = 0; m.load32(mb + a.AGENT_MB_ACK) !== seq; spins++) {
      if (Date.now() > deadline) throw new IoError('xen.agent', `agent command ${op} at 0x${address.toString(16)} got no answer in ${COMMAND_TIMEOUT_MS} ms`);
      // The guest's access may be an ioreq this thread serves: never block the event loop.
      if (spins < 200) await yieldToLoop();
      else await sleep(1);
    }
    const status = m.load32(mb + a.AGENT_MB_STATUS);
    if (status !== a.AGENT_STATUS_OK) throw new IoError('xen.agent', `agent command ${op} at 0x${address.toString(16)} failed: ${a.agentStatusName(status)}`);
    return m.load64(mb + a.AGENT_MB_RESULT);
  }

  async mmioRead(address: bigint, size: AccessSize): Promise<bigint> {
    return this.command(this.#abi.AGENT_OP_MMIO_READ, size, address, 0n);
  }

  async mmioWrite(address: bigint, size: AccessSize, value: bigint): Promise<void> {
    await this.command(this.#abi.AGENT_OP_MMIO_WRITE, size, address, value);
  }

  async pioRead(port: number, size: 1 | 2 | 4): Promise<number> {
    return Number(await this.command(this.#abi.AGENT_OP_PIO_READ, size, BigInt(port), 0n));
  }

  async pioWrite(port: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.command(this.#abi.AGENT_OP_PIO_WRITE, size, BigInt(port), BigInt(value >>> 0));
  }

  async configRead(device: PciAddress, register: number, size: 1 | 2 | 4): Promise<number> {
    return Number(await this.command(this.#abi.AGENT_OP_CFG_READ, size, this.#abi.agentConfigAddress(device, register), 0n));
  }

  async configWrite(device: PciAddress, register: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.command(this.#abi.AGENT_OP_CFG_WRITE, size, this.#abi.agentConfigAddress(device, register), BigInt(value >>> 0));
  }

  async interruptCount(vector: number): Promise<number> {
    return this.#memory.load32(this.#abi.irqCounterAddress(vector));
  }

  async waitForInterrupts(vector: number, count: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.interruptCount(vector)) >= count) return true;
      if (Date.now() > deadline) return false;
      await sleep(2);
    }
  }

  /** Reads the LAPIC id once (AGENT_OP_APIC_ID) so {@link msiMessageFor} can stay synchronous. */
  async init(): Promise<void> {
    this.#apicId = Number(await this.command(this.#abi.AGENT_OP_APIC_ID, 0, 0n, 0n));
  }

  msiMessageFor(vector: number): { address: bigint; data: number } {
    return this.#abi.msiMessage(this.#apicId ?? 0, vector);
  }

  /**
   * The agent binds dom0's `remotePort` (AGENT_OP_EVTCHN_BIND: `EVTCHNOP_bind_interdomain`,
   * with shared_info and the upcall vector set up on first use) and counts its notifications
   * in guest RAM, which this driver reads through its own mapping.
   */
  async bindEventChannel(remotePort: number): Promise<GuestEventChannel> {
    const a = this.#abi;
    const localPort = Number(await this.command(a.AGENT_OP_EVTCHN_BIND, 0, BigInt(remotePort), 0n));
    const counter = a.agentEvtchnCounterAddress(localPort);
    const port = BigInt(localPort);
    return {
      localPort,
      notifications: async () => this.#memory.load32(counter),
      status: async () => {
        const { state, remote } = a.decodeAgentEvtchnStatus(await this.command(a.AGENT_OP_EVTCHN_STATUS, 0, port, 0n));
        return { state, remote };
      },
      send: async () => {
        await this.command(a.AGENT_OP_EVTCHN_SEND, 0, port, 0n);
      },
      close: async () => {
        await this.command(a.AGENT_OP_EVTCHN_CLOSE, 0, port, 0n);
      },
    };
  }

  /** PVH guests have no PIC or IOAPIC: no wired lines. */
  vectorForLine(_line: number): number | undefined {
    return undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#disposed = true;
    await this.#busy;
  }
}
