/**
 * Direct regions (a memory slot over shared memory: guest accesses without exits), I/O claim
 * bookkeeping, and the capabilities KVM does not have.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addressRange } from '@vmed/core';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink } from './helpers/kvm.js';

/* Reads 0xfebf4000 and reports it on port 0x570, writes 0x600dcafe to 0xfebf4ff8. */
const GUEST = `.code32
  mov 0xfebf4000, %eax
  mov $0x570, %dx
  out %eax, %dx
  movl $0x600dcafe, 0xfebf4ff8
  mov $0x1234, %dx
  mov $1, %al
  out %al, %dx
  hlt
`;

describe('direct regions', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('maps shared memory into the guest without exits, and unmapping restores exits', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    expect(b.capabilities.directRegions).toBe(true);
    const sink = new RecordingSink();
    b.attach(sink);
    const shared = b.allocateSharedMemory(4096);
    new DataView(shared.bytes.buffer, shared.bytes.byteOffset).setUint32(0, 0x12345678, true);
    const mapping = b.mapDirect(addressRange(0xfebf4000n, 0x1000n), shared);
    b.guest.load(0x1000n, assemble(GUEST, 0x1000));
    b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
    await b.guest.run({ donePort: 0x1234 });
    expect(sink.accesses.filter((a) => a.space === 'mmio')).toEqual([]);
    expect(sink.writes('pio', 0x570n)).toEqual([0x12345678n]);
    expect(new DataView(shared.bytes.buffer, shared.bytes.byteOffset).getUint32(0xff8, true)).toBe(0x600dcafe);
    expect(b.resources()).toMatchObject({ mappings: 1 + 1 + 1 });
    mapping.dispose();
    b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
    await b.guest.run({ donePort: 0x1234 });
    expect(sink.accesses.filter((a) => a.space === 'mmio').map((a) => [a.address, a.write])).toEqual([
      [0xfebf4000n, false],
      [0xfebf4ff8n, true],
    ]);
    expect(sink.writes('pio', 0x570n)).toEqual([0x12345678n, 0xffffffffn]);
  });

  it('disposing shared memory unmaps it from the guest first', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    const shared = b.allocateSharedMemory(8192);
    const mapping = b.mapDirect(addressRange(0xfebf4000n, 0x2000n), shared);
    shared.dispose();
    expect(mapping.disposed).toBe(true);
    expect(() => shared.bytes).toThrowError(expect.objectContaining({ code: 'BadHandle' }) as Error);
    expect(() => b.mapDirect(addressRange(0xfebf4000n, 0x2000n), shared)).toThrowError(expect.objectContaining({ code: 'BadHandle' }) as Error);
    expect(b.resources().mappings).toBe(2);
  });

  it('refuses direct regions over RAM, over each other, unaligned or larger than the memory', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    const shared = b.allocateSharedMemory(4096);
    expect(() => b.mapDirect(addressRange(0x80000n, 0x1000n), shared)).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    b.mapDirect(addressRange(0xe000_0000n, 0x1000n), shared);
    expect(() => b.mapDirect(addressRange(0xe000_0000n, 0x1000n), shared)).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    expect(() => b.mapDirect(addressRange(0xe000_1800n, 0x1000n), shared)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(() => b.mapDirect(addressRange(0xe001_0000n, 0x2000n), shared)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(() => b.allocateSharedMemory(0)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    const foreign = { size: 4096, bytes: new Uint8Array(4096), disposed: false, dispose() {}, [Symbol.dispose]() {} };
    expect(() => b.mapDirect(addressRange(0xe002_0000n, 0x1000n), foreign)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
  });
});

describe('I/O claims and absent capabilities', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('keeps claims, refusing overlaps, RAM and out-of-space port ranges', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    const bar = b.claimIo('mmio', addressRange(0xfebf0000n, 0x1000n));
    b.claimIo('pio', addressRange(0xc000n, 0x100n));
    expect(b.resources().claims).toBe(2);
    expect(() => b.claimIo('mmio', addressRange(0xfebf0800n, 0x1000n))).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    expect(() => b.claimIo('pio', addressRange(0xc0ffn, 2n))).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    expect(() => b.claimIo('mmio', addressRange(0x1000n, 0x1000n))).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    expect(() => b.claimIo('pio', addressRange(0xfff0n, 0x20n))).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(() => b.claimIo('mmio', { base: 0x2000n, length: 0n } as never)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    // The same range in the other space is a different claim.
    b.claimIo('pio', addressRange(0x1000n, 0x10n));
    bar.dispose();
    expect(bar.disposed).toBe(true);
    b.claimIo('mmio', addressRange(0xfebf0800n, 0x1000n));
    expect(b.resources().claims).toBe(3);
  });

  it('says Unsupported for PCI function claims and event channels', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    expect(b.capabilities.pciConfig).toBe('device-model');
    expect(b.capabilities.eventChannels).toBe(false);
    expect(() => b.claimPciFunction({ bus: 0, device: 3, function: 0 })).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
    expect(() => b.createEventChannel()).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
  });
});
