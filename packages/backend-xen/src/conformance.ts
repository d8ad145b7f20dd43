/**
 * `@vmed/backend-xen/conformance`: the Xen backend as a target of the backend conformance
 * suite (`@vmed/testkit`). Runs in dom0 — in the project's Xen lab (`pnpm xen-lab test`,
 * `pnpm xen-lab conformance -- --backend xen`).
 *
 * The target boots the project's guest agent as a PVH domU once, created paused; the first
 * session attaches (creates its IOREQ server) before the guest is unpaused, as a device model
 * must. Every session is a fresh `XenBackend` — a new IOREQ server — on that same running
 * guest; the guest is destroyed by `dispose()`.
 *
 * Allowed differences, each a real limit of Xen rather than of this backend: a PVH guest has no
 * emulated PIC or IOAPIC, so `lineIrq` is false and the two line-delivery scenarios are skipped
 * with that reason (the `Unsupported` refusal is checked by the others); there are no direct
 * regions on an IOREQ server; dirty tracking is `push`.
 */
import { processResources, type ConformanceSession, type ConformanceTarget } from '@vmed/testkit';
import { createBackend, type XenBackend } from './backend.js';
import { AgentMemory, XenAgentDriver } from './conformance/agent-driver.js';
import * as guests from '@vmed/testkit';
import * as lab from '@vmed/testkit/xen-lab';
import type { LabDomain } from '@vmed/testkit/xen-lab';

/** Options of {@link createConformanceTarget}. */
export interface XenConformanceOptions {
  /** Guest memory in MiB. Default 64. */
  readonly memoryMiB?: number;
  /** Extra backend options for every session (e.g. `{ wait: 'worker' }`). */
  readonly backend?: Record<string, unknown>;
  /** Per-scenario limit in ms (the lab emulates the CPU: everything is slow). Default 180 000. */
  readonly timeoutMs?: number;
  /** Shown in results. Default `"xen"`. */
  readonly name?: string;
}

/** Free guest-physical MMIO for the scenarios: below the LAPIC, far above a small PVH guest's RAM. */
export const XEN_MMIO_WINDOW = Object.freeze({ base: 0xd000_0000n, length: 0x100_0000n });
/** Ports nothing in a PVH guest uses (Xen emulates no legacy devices for it). */
export const XEN_PIO_WINDOW = Object.freeze({ base: 0xc000, length: 0x100 });
/**
 * Where the target splits low RAM into two adjacent regions: inside the agent's scratch range,
 * so the suite can check accesses that span regions. The memory is the same; only the map
 * describes it in two pieces.
 */
export const XEN_RAM_SPLIT = 0x18_0000;

const MiB = 1 << 20;
const PVH_NO_LINES = 'a Xen PVH guest has no emulated PIC or IOAPIC: there are no wired lines to raise';

/** The Xen target; `open` may take backend options for one session (tests of option variants). */
export interface XenConformanceTarget extends ConformanceTarget {
  open(backendOptions?: Record<string, unknown>): Promise<ConformanceSession>;
}

/** A Xen conformance target; see the module doc. */
export function createConformanceTarget(options: XenConformanceOptions = {}): XenConformanceTarget {
  const memoryMiB = options.memoryMiB ?? 64;
  let shared: Promise<{ domain: LabDomain; memory: AgentMemory; running: boolean }> | undefined;

  const boot = async () => {
    const image = await guests.loadGuest('agent', 'pvh');
    const name = `vmed-conformance-${process.pid}`;
    await lab.destroyDomain(name);
    const domain = await lab.createDomain({ name, type: 'pvh', kernel: image.path, memoryMiB, vcpus: 1, paused: true });
    try {
      return { domain, memory: new AgentMemory(domain.domid, guests), running: false };
    } catch (error) {
      await domain.destroy();
      throw error;
    }
  };

  return {
    name: options.name ?? 'xen',
    // Line interrupts need an emulated PIC/IOAPIC, which PVH guests do not have; the refusal
    // itself (Unsupported, with no DM call) is still checked by capabilities.honest and
    // line-irq.invalid-target.
    skips: Object.freeze({
      'line-irq.edge': PVH_NO_LINES,
      'line-irq.level-resample': PVH_NO_LINES,
    }),
    timeoutMs: options.timeoutMs ?? 180_000,
    async open(backendOptions?: Record<string, unknown>): Promise<ConformanceSession> {
      shared ??= boot();
      const guest = await shared;
      const backend = (await createBackend({
        domid: guest.domain.domid,
        guestType: 'pvh',
        ram: [
          { base: 0, length: XEN_RAM_SPLIT, name: 'low' },
          { base: XEN_RAM_SPLIT, length: memoryMiB * MiB - XEN_RAM_SPLIT, name: 'low-rest' },
        ],
        ...options.backend,
        ...backendOptions,
      })) as XenBackend;
      const driver = new XenAgentDriver(guest.memory);
      try {
        if (!guest.running) {
          // The device model is attached: now the guest may run (and probe what it finds).
          await guest.domain.unpause();
          guest.running = true;
          await guest.memory.waitReady(120_000);
        }
        await driver.init();
      } catch (error) {
        await backend.close();
        throw error;
      }
      return {
        backend,
        guest: driver,
        mmioWindow: XEN_MMIO_WINDOW,
        pioWindow: XEN_PIO_WINDOW,
        freeLine: undefined,
        osResources: processResources,
        async close() {
          await driver[Symbol.asyncDispose]();
          await backend.close();
        },
      };
    },
    async dispose() {
      const s = shared;
      shared = undefined;
      if (s === undefined) return;
      const guest = await s.catch(() => undefined);
      if (guest === undefined) return;
      guest.memory.close();
      await guest.domain.destroy();
    },
  };
}

export { XenAgentDriver, AgentMemory } from './conformance/agent-driver.js';
export type { AgentAbi } from './conformance/agent-driver.js';
