/**
 * The sim as a conformance target: each session is a fresh {@link SimBackend} with its
 * scripted guest. The sim skips nothing; it is the reference the other targets are held to.
 */
import type { ConformanceSession, ConformanceTarget } from '../conformance/target.js';
import { processResources } from '../conformance/os-resources.js';
import { SimBackend } from './backend.js';
import type { SimBackendOptions } from './options.js';

export interface SimConformanceOptions {
  /** Options of every session's backend (e.g. capabilities taken away). */
  readonly backend?: SimBackendOptions;
  /** Name shown in results; default `"sim"`. */
  readonly name?: string;
  /** Scenarios to skip, with the reason (the sim itself needs none). */
  readonly skips?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

/** A session of the sim target: the backend is the sim's own, with its guest and faults. */
export interface SimConformanceSession extends ConformanceSession {
  readonly backend: SimBackend;
}

/** Free guest-physical space for scenarios: far from the sim's RAM and the LAPIC window. */
export const SIM_MMIO_WINDOW = Object.freeze({ base: 0xc000_0000n, length: 0x100_0000n });
export const SIM_PIO_WINDOW = Object.freeze({ base: 0xc000, length: 0x100 });
export const SIM_FREE_LINE = 10;

export function createConformanceTarget(options: SimConformanceOptions = {}): ConformanceTarget {
  return {
    name: options.name ?? 'sim',
    skips: Object.freeze({ ...(options.skips ?? {}) }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    async open(): Promise<SimConformanceSession> {
      const backend = new SimBackend(options.backend);
      return {
        backend,
        guest: backend.guest,
        mmioWindow: SIM_MMIO_WINDOW,
        pioWindow: SIM_PIO_WINDOW,
        freeLine: backend.capabilities.lineIrq === false ? undefined : SIM_FREE_LINE,
        osResources: processResources,
        async close() {
          await backend.close();
          await backend.guest[Symbol.asyncDispose]();
        },
      };
    },
  };
}
