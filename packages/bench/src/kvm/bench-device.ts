/**
 * The device the KVM benchmarks drive: a PCI function whose handlers do the same small work
 * as the C side's handlers (store the value in a register, count, time the first and last
 * operation), so the ratio measures the path to the handler, not the handler.
 *
 * - BAR0, 4 KiB trapped memory: the register at 0x0 (MMIO exits), a doorbell at 0x100.
 * - BAR1, 16 ports: the register at 0x0 (port exits).
 * - One MSI vector; the doorbell handler either counts rings (`count`) or answers each ring
 *   with the next interrupt, up to the expected number (`echo`).
 * - DMA: copies between guest RAM and a host buffer through `dma.view`, chunk by chunk.
 */
import { performance } from 'node:perf_hooks';
import type { DeviceContext, DeviceDefinition, DeviceModel, PciFunctionDefinition, RegionAccessSize, StateReader, StateWriter } from '@vmed/core';

export const BENCH_DEVICE_TYPE = 'vmed-bench';
/** Offset of the register in BAR0 and BAR1. */
export const REGISTER_OFFSET = 0x0;
/** Offset of the doorbell in BAR0. */
export const DOORBELL_OFFSET = 0x100;

export const BENCH_PCI_FUNCTION: PciFunctionDefinition = {
  // QEMU's experimental vendor ID with a device ID nothing else uses.
  vendorId: 0x1234,
  deviceId: 0xbe9c,
  classCode: 0xff0000,
  interruptPin: 1,
  bars: [
    { kind: 'memory32', size: 4096 },
    { kind: 'io', size: 16 },
  ],
  msi: { vectors: 1, address64: true, perVectorMask: false },
};

/** What the doorbell handler does with a ring. */
export type DoorbellMode = 'count' | 'echo';

export class BenchDevice implements DeviceModel {
  readonly definition = BENCH_PCI_FUNCTION;
  readonly stateVersion = 1;
  readonly #context: DeviceContext;

  /** The register the guest writes. */
  register = 0;
  /** Register writes since {@link arm}. */
  writes = 0;
  /** Doorbell rings since {@link arm}, and how many handler calls they came in. */
  rings = 0;
  ringCalls = 0;
  /** Interrupts raised by `echo` since {@link arm}. */
  raised = 0;
  /** Rings that arrived with the first handler call (the operations before the clock started). */
  firstRingCount = 0;
  /** `performance.now()` at the first and at the last expected operation. */
  firstAt = 0;
  lastAt = 0;
  #expected = 0;
  #mode: DoorbellMode = 'count';

  constructor(context: DeviceContext) {
    this.#context = context;
    context.doorbell({ bar: 0, offset: DOORBELL_OFFSET, length: 4 }, (count) => this.#ring(count));
  }

  /** Starts a measurement of `expected` operations. */
  arm(expected: number, mode: DoorbellMode = 'count'): void {
    this.#expected = expected;
    this.#mode = mode;
    this.writes = 0;
    this.rings = 0;
    this.ringCalls = 0;
    this.raised = 0;
    this.firstRingCount = 0;
    this.firstAt = 0;
    this.lastAt = 0;
  }

  read(_bar: number, offset: number, _size: RegionAccessSize): number {
    return offset === REGISTER_OFFSET ? this.register : 0xffff_ffff;
  }

  write(_bar: number, offset: number, _size: RegionAccessSize, value: number): void {
    if (offset !== REGISTER_OFFSET) return;
    this.register = value;
    const n = ++this.writes;
    if (n === 1) this.firstAt = performance.now();
    else if (n === this.#expected) this.lastAt = performance.now();
  }

  #ring(count: number): void {
    this.ringCalls++;
    if (this.#mode === 'count') {
      if (this.rings === 0) {
        this.firstAt = performance.now();
        this.firstRingCount = count;
      }
      this.rings += count;
      if (this.rings >= this.#expected && this.lastAt === 0) this.lastAt = performance.now();
      return;
    }
    // echo: the guest rings once when ready and once per interrupt handled: expected + 1 rings.
    for (let k = 0; k < count; k++) {
      const n = ++this.rings;
      if (n === 1) this.firstAt = performance.now();
      if (n === this.#expected + 1) this.lastAt = performance.now();
      if (this.raised < this.#expected) {
        this.#context.interrupts.raise(0);
        this.raised++;
      }
    }
  }

  /** Copies `dst.length` bytes of guest RAM at `address` into `dst`, `chunk` bytes per view. */
  copyFromGuest(address: bigint, dst: Uint8Array, chunk: number): void {
    for (let at = 0; at < dst.length; at += chunk) {
      const view = this.#context.dma.view(address + BigInt(at), chunk, 'read');
      dst.set(view.bytes, at);
      view.dispose();
    }
  }

  /** Copies `src` into guest RAM at `address`, `chunk` bytes per view. */
  copyToGuest(address: bigint, src: Uint8Array, chunk: number): void {
    for (let at = 0; at < src.length; at += chunk) {
      const view = this.#context.dma.view(address + BigInt(at), chunk, 'readwrite');
      view.bytes.set(src.subarray(at, at + chunk));
      view.dispose();
    }
  }

  reset(): void {
    this.register = 0;
    this.arm(0);
  }

  saveState(out: StateWriter): void {
    out.u32(this.register);
  }

  loadState(input: StateReader): void {
    this.register = input.u32('register');
  }
}

export const benchDevice: DeviceDefinition = {
  type: BENCH_DEVICE_TYPE,
  description: 'benchmark device: one register, one doorbell, one MSI vector, DMA through views',
  maxInstances: 1,
  create: (context) => new BenchDevice(context),
};
