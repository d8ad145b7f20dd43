/**
 * The doorbell → handler → interrupt path on Node's main thread, where doorbells are heard by
 * libuv poll handles on the main loop (see `poller/eventfd-poller.ts`): 20,000 round trips
 * through testkit's bench-irq guest without a lost or doubled wake-up, with the vCPU on its
 * own thread and inline on the I/O thread (where the poller thread must end the slice for the
 * loop to hear the doorbell), then a close that leaves no poll handle behind.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DONE_OK } from '@vmed/testkit';
import { createBackend, type KvmBackend } from '../src/index.js';
import { uvHandleCounts } from '../src/poller/uv-loop.js';
import { irqEcho } from './helpers/irq-echo.js';
import { KVM_SKIP, until } from './helpers/kvm.js';

const ROUNDS = 20_000;

describe('doorbell → interrupt round trips on the main loop', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  for (const execution of ['worker', 'inline'] as const) {
    it(`${ROUNDS} round trips, none lost, then a clean close (${execution})`, { timeout: 120_000 }, async () => {
      const errors: unknown[] = [];
      const before = uvHandleCounts();
      backend = await createBackend({ mode: 'standalone', memoryMiB: 4, vcpus: 1, onError: (e: unknown) => errors.push(e) });
      const echo = await irqEcho(backend, ROUNDS, execution);
      expect(echo.finish).toEqual({ vcpu: 0, reason: 'done', value: BigInt(DONE_OK) });
      expect(echo).toMatchObject({ handled: ROUNDS, raised: ROUNDS, rings: ROUNDS + 1, pollHandles: 1 });
      // Each write is answered before the guest writes again: nothing to coalesce.
      expect(echo.calls).toBe(ROUNDS + 1);
      expect(errors).toEqual([]);
      // The doorbell is gone: its handle is stopped at once and freed on a later loop turn.
      expect(backend.resources().pollHandles).toBe(0);
      await backend.close();
      backend = undefined;
      expect(uvHandleCounts().open).toBe(before.open);
      await until(() => uvHandleCounts().closing === 0);
    });
  }
});
