/**
 * Doorbells: KVM_IOEVENTFD catches guest writes in the kernel (the sink never sees them) and
 * the handler runs on the I/O context with the coalesced count. Datamatch doorbells let other
 * values through to the sink.
 *
 * Guest (32-bit flat):
 *   movl $1, 0xfebf1000 (x2)        -> MMIO doorbell, length 4, any value
 *   movl $5, 0xfebf1004             -> MMIO doorbell, datamatch 5
 *   movl $6, 0xfebf1004             -> not a match: an ordinary MMIO write
 *   movw $3, 0xfebf1008             -> MMIO doorbell of length 0 (any width)
 *   outb 9 -> port 0x540            -> port doorbell, length 1
 *   outb 7 -> port 0x1234           -> done
 */
import { threadId } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink, until } from './helpers/kvm.js';

const GUEST = `
.code32
  movl $1, 0xfebf1000
  movl $1, 0xfebf1000
  movl $5, 0xfebf1004
  movl $6, 0xfebf1004
  movw $3, 0xfebf1008
  mov $0x540, %dx
  mov $9, %al
  out %al, %dx
  mov $0x1234, %dx
  mov $7, %al
  out %al, %dx
  hlt
`;

describe('doorbells (KVM_IOEVENTFD)', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  for (const execution of ['worker', 'inline'] as const) {
    it(`rings on the I/O context without an exit (${execution})`, async () => {
      backend = await createBackend({ mode: 'standalone', memoryMiB: 2, vcpus: 1 });
      const sink = new RecordingSink();
      backend.attach(sink);
      const counts = { any: 0, match: 0, wide: 0, port: 0 };
      const threads = new Set<number>();
      const ring = (key: keyof typeof counts) => (count: number) => {
        counts[key] += count;
        threads.add(threadId);
      };
      expect(backend.capabilities.doorbells).toBe('kernel');
      const any = backend.registerIoEvent({ space: 'mmio', address: 0xfebf1000n, length: 4 }, ring('any'));
      backend.registerIoEvent({ space: 'mmio', address: 0xfebf1004n, length: 4, datamatch: 5n }, ring('match'));
      backend.registerIoEvent({ space: 'mmio', address: 0xfebf1008n, length: 0 }, ring('wide'));
      backend.registerIoEvent({ space: 'pio', address: 0x540n, length: 1 }, ring('port'));
      expect(backend.resources().doorbells).toBe(4);
      backend.guest.load(0x1000n, assemble(GUEST, 0x1000));
      backend.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
      const result = await backend.guest.run({ execution, donePort: 0x1234 });
      expect(result.vcpus[0]?.reason).toBe('done');
      await until(() => counts.any === 2 && counts.match === 1 && counts.wide === 1 && counts.port === 1);
      // Only the non-matching write exited.
      expect(sink.accesses).toEqual([{ space: 'mmio', address: 0xfebf1004n, size: 4, write: true, value: 6n }]);
      expect([...threads]).toEqual([threadId]);
      expect(any.rings).toBeGreaterThanOrEqual(1);
      expect(any.rings).toBeLessThanOrEqual(2);
      // After dispose the address exits again.
      any.dispose();
      expect(any.disposed).toBe(true);
      expect(backend.resources().doorbells).toBe(3);
      backend.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
      await backend.guest.run({ execution, donePort: 0x1234 });
      expect(sink.writes('mmio', 0xfebf1000n)).toEqual([1n, 1n]);
    });
  }

  it('refuses overlapping doorbells with the same match and bad specs', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    b.registerIoEvent({ space: 'mmio', address: 0x1000_0000n, length: 4, datamatch: 1n }, () => {});
    // Same address, different datamatch: both can exist.
    b.registerIoEvent({ space: 'mmio', address: 0x1000_0000n, length: 4, datamatch: 2n }, () => {});
    expect(() => b.registerIoEvent({ space: 'mmio', address: 0x1000_0002n, length: 2 }, () => {})).toThrowError(
      expect.objectContaining({ code: 'Exists' }) as Error,
    );
    expect(() => b.registerIoEvent({ space: 'mmio', address: 0x1000_0000n, length: 4, datamatch: 1n }, () => {})).toThrowError(
      expect.objectContaining({ code: 'Exists' }) as Error,
    );
    // A different space does not collide.
    b.registerIoEvent({ space: 'pio', address: 0x1000n, length: 4 }, () => {});
    for (const bad of [
      { space: 'pio', address: 0x10000n, length: 1 },
      { space: 'pio', address: 0x10n, length: 8 },
      { space: 'mmio', address: 0x2000n, length: 3 },
      { space: 'mmio', address: 0x2000n, length: 0, datamatch: 1n },
      { space: 'mmio', address: 0x2000n, length: 1, datamatch: 0x100n },
      { space: 'pci', address: 0x2000n, length: 1 },
    ]) {
      expect(() => b.registerIoEvent(bad as never, () => {})).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    }
    expect(b.resources().doorbells).toBe(3);
  });
});
