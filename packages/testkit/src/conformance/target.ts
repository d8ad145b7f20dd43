/**
 * What a backend hands the conformance suite: a way to make a fresh session with a guest to
 * drive, and the differences it is allowed. Each backend package exports
 * `createConformanceTarget(options)` from its `./conformance` subpath; `sim`'s lives here.
 */
import type { Backend } from '@vmed/core';
import type { GuestDriver } from './guest-driver.js';

/** One session for one scenario: a backend attached to a running guest agent. */
export interface ConformanceSession {
  readonly backend: Backend;
  readonly guest: GuestDriver;
  /**
   * Free guest-physical MMIO space the scenarios may claim (not RAM, not the agent's own
   * devices), at least 1 MiB, page aligned.
   */
  readonly mmioWindow: { readonly base: bigint; readonly length: bigint };
  /** Free I/O ports the scenarios may claim, at least 256. */
  readonly pioWindow: { readonly base: number; readonly length: number };
  /** A free GSI for line-interrupt scenarios, if the guest has wired lines. */
  readonly freeLine: number | undefined;
  /**
   * Counts of OS-level resources (open fds of this process, mappings in /proc/self/maps,
   * threads), taken by the target so leak checks compare like with like.
   */
  osResources(): { fds: number; mappings: number; threads: number };
  /** Ends the session: closes the backend (if not already), stops the guest. */
  close(): Promise<void>;
}

export interface ConformanceTarget {
  /** `"sim"`, `"kvm"`, `"xen"`… */
  readonly name: string;
  /**
   * Scenarios this backend skips, with the reason: a real limit of the hypervisor, e.g.
   * `{ 'line-irq.level-resample': 'Xen PVH guests have no emulated IOAPIC' }`.
   */
  readonly skips: Readonly<Record<string, string>>;
  /**
   * Per-scenario time limit in ms, for targets whose guests are slow (Xen under QEMU
   * emulation); default 30 000. The runner's own option wins.
   */
  readonly timeoutMs?: number;
  /** A fresh session; the suite closes it after each scenario. */
  open(): Promise<ConformanceSession>;
  /** Releases anything shared between sessions (a booted guest, a lab). */
  dispose?(): Promise<void>;
}
