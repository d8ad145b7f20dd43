/**
 * A guest the conformance suite can drive: each backend provides one, so the same scenario
 * runs on every backend (crosvm's pattern). On `sim` it is the scripted in-process guest; on
 * KVM and Xen it is the project's own guest agent program (`guests/agent`), which executes
 * commands the host writes into a mailbox in guest RAM and counts interrupts in its handlers.
 *
 * Every access is a real guest instruction on KVM and Xen: an MMIO read here is a `mov` the
 * guest executes, which exits (KVM) or becomes an ioreq (Xen) and reaches the backend's sink.
 */
import type { AccessSize, PciAddress } from '@vmed/core';

export interface GuestDriver extends AsyncDisposable {
  /** `"sim"`, `"kvm-agent"`, `"xen-agent"`… */
  readonly name: string;
  /** Guest executes a read of `size` bytes at `address` (a `mov` from memory). */
  mmioRead(address: bigint, size: AccessSize): Promise<bigint>;
  mmioWrite(address: bigint, size: AccessSize, value: bigint): Promise<void>;
  /** Guest executes `in`/`out`; `size` 1, 2 or 4. */
  pioRead(port: number, size: 1 | 2 | 4): Promise<number>;
  pioWrite(port: number, size: 1 | 2 | 4, value: number): Promise<void>;
  /**
   * Guest executes a PCI config read through 0xCF8/0xCFC (mechanism #1): on KVM and `sim`
   * the core's host bridge decodes it; on Xen the hypervisor does.
   */
  configRead(device: PciAddress, register: number, size: 1 | 2 | 4): Promise<number>;
  configWrite(device: PciAddress, register: number, size: 1 | 2 | 4, value: number): Promise<void>;
  /**
   * How many times the guest's handler for IDT `vector` has run since boot. The handler
   * acknowledges the interrupt (LAPIC EOI, which also drives KVM's level-line resample).
   */
  interruptCount(vector: number): Promise<number>;
  /** Waits until `interruptCount(vector)` reaches `count`; false on timeout. */
  waitForInterrupts(vector: number, count: number, timeoutMs: number): Promise<boolean>;
  /**
   * The MSI message that targets this guest's handler for `vector` (x86: address
   * 0xFEE00000 with the guest's APIC id, data = vector, fixed delivery, edge).
   */
  msiMessageFor(vector: number): { address: bigint; data: number };
  /**
   * Where a wired line lands in this guest: the IDT vector its handler counts for GSI `line`
   * (the guest programs its PIC/IOAPIC). `undefined` when the guest has no wired lines (PVH).
   */
  vectorForLine(line: number): number | undefined;
  /** A guest RAM range the scenarios may scribble on (not the agent's code or mailbox). */
  readonly scratch: { readonly address: bigint; readonly length: number };
  /**
   * Xen: the guest binds `remotePort` of dom0 — a port left unbound for it, e.g. an
   * `EventChannelRoute`'s — as an interdomain event channel
   * (`EVTCHNOP_bind_interdomain`) and counts its notifications in its upcall handler.
   * Absent where the guest has no event channels (sim, KVM).
   */
  bindEventChannel?(remotePort: number): Promise<GuestEventChannel>;
}

/** The guest's end of an interdomain event channel (see {@link GuestDriver.bindEventChannel}). */
export interface GuestEventChannel {
  /** The guest's own port number. */
  readonly localPort: number;
  /** Notifications the guest's handler has taken on this port. */
  notifications(): Promise<number>;
  /**
   * The port as the guest sees it (`EVTCHNOP_status`): `interdomain` with `remote` = the
   * remote port while connected; `unbound` with `remote` = the domain that may bind it once
   * the remote end has closed; `closed` after {@link close}.
   */
  status(): Promise<{ readonly state: 'closed' | 'unbound' | 'interdomain' | 'other'; readonly remote: number }>;
  /** The guest notifies the remote end (`EVTCHNOP_send`). */
  send(): Promise<void>;
  /** The guest closes its end (`EVTCHNOP_close`). */
  close(): Promise<void>;
}
