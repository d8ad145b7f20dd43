/**
 * Dirty logging (KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG, pull mode) and write-protect
 * page tracking (read-only slots: guest writes exit to the tracked-write handler, reads do not).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addressRange, type DirtyBitmap, type TrackedWrite } from '@vmed/core';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink, until } from './helpers/kvm.js';

const DONE = `
  mov $0x1234, %dx
  mov $1, %al
  out %al, %dx
  hlt
`;

function dirtyPages(bitmaps: DirtyBitmap[]): bigint[] {
  const pages: bigint[] = [];
  for (const b of bitmaps) {
    for (let i = 0; i < b.pages; i++) if (((b.bits[i >>> 5] as number) >>> (i & 31)) & 1) pages.push(b.base / 4096n + BigInt(i));
  }
  return pages;
}

describe('dirty log', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('reports the pages the guest wrote, per RAM region, and clears on pull', async () => {
    // Two regions: [0, 1 MiB) and [1 MiB, 2 MiB) as separate slots.
    backend = await createBackend({
      mode: 'standalone',
      memoryMiB: 2,
      vcpus: 1,
      ramLayout: [
        { base: 0, size: 1 << 20 },
        { base: 1 << 20, size: 1 << 20 },
      ],
    });
    const b = backend;
    expect(b.capabilities.dirtyTracking).toBe('pull');
    expect(b.dirty.active).toBe(false);
    expect(() => b.dirty.pull()).toThrowError(expect.objectContaining({ code: 'State' }) as Error);
    b.attach(new RecordingSink());
    b.guest.load(
      0x1000n,
      assemble(
        `.code32
  movl $1, 0x10000
  movl $1, 0x12ffe
  movl $1, 0x100000
  movl $1, 0x1ff000
${DONE}`,
        0x1000,
      ),
    );
    b.dirty.start();
    expect(b.dirty.active).toBe(true);
    // The host's own writes are not in KVM's log.
    b.memory.write(0x30000n, new Uint8Array([1, 2, 3]));
    b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
    await b.guest.run({ donePort: 0x1234 });
    const first = b.dirty.pull();
    expect(first.map((x) => [x.base, x.pages])).toEqual([
      [0n, 256],
      [0x100000n, 256],
    ]);
    // 0x12ffe + 4 bytes straddles pages 0x12 and 0x13.
    expect(dirtyPages(first)).toEqual([0x10n, 0x12n, 0x13n, 0x100n, 0x1ffn]);
    expect(dirtyPages(b.dirty.pull())).toEqual([]);
    b.dirty.stop();
    expect(b.dirty.active).toBe(false);
    expect(() => b.dirty.pull()).toThrowError(expect.objectContaining({ code: 'State' }) as Error);
    // push is accepted (the core keeps device writes itself) but checks its range.
    b.dirty.push(addressRange(0x1000n, 0x1000n));
  });
});

describe('write-protect page tracking', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  /*
   * Reads the tracked page (no exit), writes twice into it (one applied, one dropped by the
   * handler), writes the next page (not tracked), reads back, reports on ports 0x560..0x562.
   */
  const GUEST = `.code32
  mov 0x20000, %eax
  mov $0x560, %dx
  out %eax, %dx
  movl $0xaaaa, 0x20004
  movl $0xbbbb, 0x20008
  movl $0xcccc, 0x21000
  mov 0x20004, %eax
  mov $0x561, %dx
  out %eax, %dx
  mov 0x20008, %eax
  mov $0x562, %dx
  out %eax, %dx
${DONE}`;

  for (const execution of ['worker', 'inline'] as const) {
    it(`sends guest writes to the handler, which applies or drops them (${execution})`, async () => {
      backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
      const b = backend;
      expect(b.capabilities.pageTracking).toBe(true);
      const sink = new RecordingSink();
      b.attach(sink);
      b.memory.write(0x20000n, new Uint8Array([0x11, 0x11, 0x11, 0x11]));
      b.guest.load(0x1000n, assemble(GUEST, 0x1000));
      const writes: TrackedWrite[] = [];
      b.dirty.start();
      const track = b.trackWrites(addressRange(0x20000n, 0x1000n), (w) => {
        writes.push(w);
        return w.address === 0x20008n ? 'drop' : 'apply';
      });
      expect(b.resources().pageTracks).toBe(1);
      b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
      await b.guest.run({ execution, donePort: 0x1234 });
      expect(writes).toEqual([
        { address: 0x20004n, size: 4, value: 0xaaaan },
        { address: 0x20008n, size: 4, value: 0xbbbbn },
      ]);
      // Reads did not exit; tracked writes never reached the sink.
      expect(sink.accesses.filter((a) => a.space === 'mmio')).toEqual([]);
      expect(sink.writes('pio', 0x560n)).toEqual([0x11111111n]);
      expect(sink.writes('pio', 0x561n)).toEqual([0xaaaan]);
      expect(sink.writes('pio', 0x562n)).toEqual([0n]);
      const word = new Uint8Array(4);
      b.memory.read(0x21000n, word);
      expect(new DataView(word.buffer).getUint32(0, true)).toBe(0xcccc);
      // The applied write is in the dirty log although KVM never saw it land.
      expect(dirtyPages(b.dirty.pull())).toEqual([0x20n, 0x21n]);
      // Disposed: the page is plain RAM again and the handler is not called.
      track.dispose();
      expect(b.resources().pageTracks).toBe(0);
      b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
      await b.guest.run({ execution, donePort: 0x1234 });
      expect(writes).toHaveLength(2);
      expect(sink.writes('pio', 0x562n)).toEqual([0n, 0xbbbbn]);
    });
  }

  it('starts tracking a page while worker vCPUs are running', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    b.attach(new RecordingSink());
    // Increments the word at 0x20000 until the host sets 0x30000 to 1.
    b.guest.load(
      0x1000n,
      assemble(
        `.code32
spin:
  incl 0x20000
  cmpl $1, 0x30000
  jne spin
${DONE}`,
        0x1000,
      ),
    );
    b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
    const run = b.guest.run({ execution: 'worker', donePort: 0x1234 });
    const counter = new Uint8Array(4);
    const read = () => {
      b.memory.read(0x20000n, counter);
      return new DataView(counter.buffer).getUint32(0, true);
    };
    await until(() => read() > 0);
    const seen: bigint[] = [];
    b.trackWrites(addressRange(0x20000n, 0x1000n), (w) => {
      seen.push(w.value);
      return 'apply';
    });
    await until(() => seen.length >= 3);
    b.memory.write(0x30000n, new Uint8Array([1, 0, 0, 0]));
    const result = await run;
    expect(result.vcpus[0]?.reason).toBe('done');
    // Each caught write is the previous value + 1: none was lost or doubled.
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBe((seen[i - 1] as bigint) + 1n);
    expect(BigInt(read())).toBe(seen[seen.length - 1]);
  });

  it('refuses unaligned, non-RAM and overlapping ranges', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    const apply = () => 'apply' as const;
    b.trackWrites(addressRange(0x4000n, 0x2000n), apply);
    expect(() => b.trackWrites(addressRange(0x5000n, 0x1000n), apply)).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    expect(() => b.trackWrites(addressRange(0x8001n, 0x1000n), apply)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(() => b.trackWrites(addressRange(0xff000n, 0x2000n), apply)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(b.resources().pageTracks).toBe(1);
  });
});
