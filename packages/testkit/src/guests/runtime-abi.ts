/**
 * The runtime ABI every vmed test guest shares: memory layout, image header, the done port
 * and the runtime information page. The source of truth is `guests/common/runtime.inc`;
 * `test/guests/abi.test.ts` parses it and fails when a value here disagrees.
 *
 * Memory map (guest physical; the guests run with paging off):
 *
 * | address      | what                                                              |
 * | ------------ | ----------------------------------------------------------------- |
 * | `0x00010000` | image: code, data, .bss (the flat binary loads here; entry = here)  |
 * | `0x00020000` | runtime information page ({@link RT_INFO_ADDR})                    |
 * | `0x00021000` | interrupt counters, 256 × u32 ({@link IRQ_COUNTS_ADDR})            |
 * | `0x00022000` | Xen hypercall page (PVH only)                                      |
 * | `0x00023000` | program page (the agent's mailboxes)                               |
 * | `0x00030000` | stacks, 16 KiB per vCPU                                            |
 * | `0x00040000` | end of the guest's footprint ({@link GUEST_FOOTPRINT_END})         |
 *
 * Everything in `[GUEST_LOAD_ADDR, GUEST_FOOTPRINT_END)` beyond the flat binary's bytes must
 * be zero when the guest starts (fresh RAM on KVM; Xen zeroes the PT_LOAD's `memsz - filesz`).
 * @module
 */
import { InvalidError } from '@vmed/core';

export const GUEST_LOAD_ADDR = 0x0001_0000;
export const GUEST_FOOTPRINT_END = 0x0004_0000;
export const GUEST_MAX_VCPUS = 4;

/** Image header: fixed offsets from {@link GUEST_LOAD_ADDR}. */
export const HDR_MAGIC_OFFSET = 0x08;
/** `"VMDG"` little-endian. */
export const HDR_MAGIC = 0x4744_4d56;
export const HDR_VERSION_OFFSET = 0x0c;
export const HDR_VERSION = 1;
/** u32[4]: ebx, ecx, edx, edi, which the PVH entry uses in place of entry registers. */
export const HDR_PARAMS_OFFSET = 0x10;
export const HDR_PARAMS_COUNT = 4;

/** A 32-bit `out` of the exit code to this port ends the guest's run. */
export const DONE_PORT = 0x501;
export const DONE_OK = 0;
/** Plus the vector: a CPU exception the guest did not expect. */
export const DONE_EXCEPTION_BASE = 0x100;
/** The vCPU entered with an index ≥ {@link GUEST_MAX_VCPUS}. */
export const DONE_BAD_VCPU = 0x200;
/** A program's parameters are out of range. */
export const DONE_BAD_PARAMS = 0x201;

/** Entered at the flat entry (KVM). */
export const PLATFORM_FLAT = 0;
/** Entered through `XEN_ELFNOTE_PHYS32_ENTRY` (Xen PVH). */
export const PLATFORM_PVH = 1;

export const RT_INFO_ADDR = 0x0002_0000;
/** u32: {@link RT_READY} once boot finished, before the program's main runs. */
export const RT_MAGIC = 0x00;
/** `"RRDY"` little-endian. */
export const RT_READY = 0x5944_5252;
export const RT_ABI_VERSION = 0x04;
export const RT_ABI_VERSION_VALUE = 1;
/** u32: `PLATFORM_*`. */
export const RT_PLATFORM = 0x08;
/** u32: bit n set once vCPU n runs its main. */
export const RT_ONLINE_MASK = 0x0c;
/** u32: PVH `start_info` physical address, else 0. */
export const RT_START_INFO = 0x10;
export const RT_VCPU_BASE = 0x40;
export const RT_VCPU_STRIDE = 0x20;
/** u32: bumped by the program's idle loop (the agent's poll). */
export const RT_VCPU_HEARTBEAT = 0x00;
/** u32: the vCPU's LAPIC ID. */
export const RT_VCPU_APIC_ID = 0x04;
/** u32: `VCPU_STATE_*`. */
export const RT_VCPU_STATE = 0x08;
export const RT_VCPU_FAULT_VECTOR = 0x0c;
export const RT_VCPU_FAULT_ERROR = 0x10;
export const RT_VCPU_FAULT_EIP = 0x14;
/** u32: the code the vCPU wrote to the done port. */
export const RT_VCPU_DONE_CODE = 0x18;

export const VCPU_STATE_OFF = 0;
export const VCPU_STATE_BOOTING = 1;
export const VCPU_STATE_RUNNING = 2;
export const VCPU_STATE_DONE = 3;
export const VCPU_STATE_FAULT = 4;

/** u32 per IDT vector, incremented by the guest's handler before its LAPIC EOI. */
export const IRQ_COUNTS_ADDR = 0x0002_1000;
/** Vectors below this are CPU exceptions, fatal to the guest. */
export const IRQ_VECTOR_FIRST = 32;
/** The LAPIC's spurious vector: counted, never acknowledged. */
export const SPURIOUS_VECTOR = 0xff;
/** The LAPIC timer's vector (guests use it for timeouts). */
export const TIMER_VECTOR = 0xfe;

export const XEN_HYPERCALL_PAGE = 0x0002_2000;
export const PROGRAM_PAGE_ADDR = 0x0002_3000;
export const PROGRAM_PAGE_SIZE = 0x1000;
export const STACKS_ADDR = 0x0003_0000;
export const STACK_SIZE_SHIFT = 14;

/** An MSI for this guest: address `LAPIC_BASE | apicId << 12`, data = vector. */
export const LAPIC_BASE = 0xfee0_0000;

/**
 * Guest address of vCPU `vcpu`'s record in the runtime page.
 * @throws InvalidError unless `vcpu` is 0..{@link GUEST_MAX_VCPUS}-1.
 */
export function runtimeVcpuRecord(vcpu: number): number {
  checkGuestVcpu(vcpu, 'guest.runtimeVcpuRecord');
  return RT_INFO_ADDR + RT_VCPU_BASE + vcpu * RT_VCPU_STRIDE;
}

/**
 * Guest address of the interrupt counter for `vector`.
 * @throws InvalidError unless `vector` is 0..255.
 */
export function irqCounterAddress(vector: number): number {
  if (!Number.isInteger(vector) || vector < 0 || vector > 0xff) {
    throw new InvalidError('guest.irqCounterAddress', `vector ${vector} is not 0..255`);
  }
  return IRQ_COUNTS_ADDR + vector * 4;
}

/**
 * Refuses a vCPU index the guests cannot have.
 * @throws InvalidError unless `vcpu` is 0..{@link GUEST_MAX_VCPUS}-1.
 */
export function checkGuestVcpu(vcpu: number, operation: string): void {
  if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= GUEST_MAX_VCPUS) {
    throw new InvalidError(operation, `vCPU ${vcpu} is not 0..${GUEST_MAX_VCPUS - 1}`);
  }
}

/**
 * The MSI message that reaches the guest handler for `vector` on the vCPU whose LAPIC ID
 * is `apicId` (xAPIC physical destination, fixed delivery, edge).
 * @throws InvalidError for an APIC id outside 0..255 or a vector outside 32..255.
 */
export function msiMessage(apicId: number, vector: number): { address: bigint; data: number } {
  if (!Number.isInteger(apicId) || apicId < 0 || apicId > 0xff) {
    throw new InvalidError('guest.msiMessage', `APIC id ${apicId} is not 0..255`);
  }
  if (!Number.isInteger(vector) || vector < IRQ_VECTOR_FIRST || vector > 0xff) {
    throw new InvalidError('guest.msiMessage', `vector ${vector} is not ${IRQ_VECTOR_FIRST}..255`);
  }
  return { address: BigInt(LAPIC_BASE) | (BigInt(apicId) << 12n), data: vector };
}
