/**
 * `@vmed/backend-kvm/conformance`: the KVM backend as a conformance target of `@vmed/testkit`.
 * Each session is a fresh standalone VM running the testkit guest agent; the suite drives the
 * agent through its mailbox (see `conformance/agent-driver.ts`).
 *
 * Layout of a session: RAM [0, 1.5 MiB) and [1.5 MiB, 4 MiB) (adjacent: a boundary inside the
 * agent's scratch range at 1 MiB..2 MiB) and [8 MiB, 9 MiB) after a hole; free MMIO at
 * 0xd0000000 (16 MiB), free ports 0xc000..0xc0ff, GSI 10 routed by the agent's IOAPIC to
 * vector 0x60 (level-triggered).
 *
 * Not imported by the package's main entry: only this subpath needs `@vmed/testkit`.
 */
import * as guests from '@vmed/testkit';
import { processResources, type ConformanceSession, type ConformanceTarget } from '@vmed/testkit';
import { createBackend, type KvmBackend } from './backend.js';
import { KvmAgentDriver } from './conformance/agent-driver.js';
import type { ExecutionMode } from './guest/controller.js';

const MiB = 1 << 20;

export const KVM_MMIO_WINDOW = Object.freeze({ base: 0xd000_0000n, length: 0x100_0000n });
export const KVM_PIO_WINDOW = Object.freeze({ base: 0xc000, length: 0x100 });
export const KVM_FREE_LINE = 10;
export const KVM_LINE_VECTOR = 0x60;

export interface KvmConformanceOptions {
  /** How the agent's vCPU runs (default `worker`). */
  readonly execution?: ExecutionMode;
  /** Name shown in results; default `"kvm"` (`"kvm-inline"` for inline execution). */
  readonly name?: string;
  readonly skips?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

/** A session of the KVM target: the backend is a standalone {@link KvmBackend}. */
export interface KvmConformanceSession extends ConformanceSession {
  readonly backend: KvmBackend;
}

export function createConformanceTarget(options: KvmConformanceOptions = {}): ConformanceTarget {
  const execution = options.execution ?? 'worker';
  return {
    name: options.name ?? (execution === 'inline' ? 'kvm-inline' : 'kvm'),
    skips: Object.freeze({ ...(options.skips ?? {}) }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    async open(): Promise<KvmConformanceSession> {
      const image = await guests.loadGuest('agent', 'flat');
      const backend = await createBackend({
        mode: 'standalone',
        memoryMiB: 5,
        vcpus: 1,
        ramLayout: [
          { base: 0, size: 1.5 * MiB, name: 'low' },
          { base: 1.5 * MiB, size: 2.5 * MiB, name: 'mid' },
          { base: 8 * MiB, size: MiB, name: 'high' },
        ],
      });
      let guest: KvmAgentDriver;
      try {
        guest = new KvmAgentDriver(backend, guests, image, { execution, freeLine: KVM_FREE_LINE, lineVector: KVM_LINE_VECTOR });
      } catch (error) {
        await backend.close();
        throw error;
      }
      return {
        backend,
        guest,
        mmioWindow: KVM_MMIO_WINDOW,
        pioWindow: KVM_PIO_WINDOW,
        freeLine: KVM_FREE_LINE,
        osResources: processResources,
        async close() {
          await guest[Symbol.asyncDispose]();
          await backend.close();
        },
      };
    },
  };
}
