/**
 * MMIO and port exits reach the sink, and values the sink returns reach the guest, in both
 * execution modes. The guest (32-bit flat, entry 0x1000):
 *
 *   mov $0x12345678, %eax ; out %eax, $0x10      -> pio write 4 bytes 0x12345678 at 0x10
 *   in $0x11, %al ; out %al, $0x12               -> pio read 1 byte at 0x11, echoed to 0x12
 *   movl $0xdeadbeef, 0xfebf0000                 -> mmio write 4 bytes
 *   mov 0xfebf0004, %ebx ; mov %ebx, 0xfebf0008  -> mmio read 4 bytes, echoed
 *   movw 0xfebf0010, %cx ; movw %cx, 0xfebf0012  -> 2-byte mmio read, echoed
 *   mov $0x1234, %dx ; mov $7, %al ; out %al, %dx -> done port 0x1234 (value 7)
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink } from './helpers/kvm.js';

const GUEST = `
.code32
  mov $0x12345678, %eax
  out %eax, $0x10
  in $0x11, %al
  out %al, $0x12
  movl $0xdeadbeef, 0xfebf0000
  mov 0xfebf0004, %ebx
  mov %ebx, 0xfebf0008
  movw 0xfebf0010, %cx
  movw %cx, 0xfebf0012
  mov $0x1234, %dx
  mov $7, %al
  out %al, %dx
  hlt
`;

/*
 * String I/O: `rep outsb` of 5 bytes from 0x3000 to port 0x5b0 and `rep insw` of 3 words from
 * port 0x5b2 to 0x3100 (KVM hands them over as exits with count > 1).
 */
const STRING_IO = `
.code32
  cld
  mov $0x3000, %esi
  mov $5, %ecx
  mov $0x5b0, %dx
  rep outsb
  mov $0x3100, %edi
  mov $3, %ecx
  mov $0x5b2, %dx
  rep insw
  mov $0x1234, %dx
  out %al, %dx
  hlt
`;

describe('MMIO and port exits', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  for (const execution of ['inline', 'worker'] as const) {
    it(`delivers exits to the sink and answers reads (${execution})`, async () => {
      backend = await createBackend({ mode: 'standalone', memoryMiB: 2, vcpus: 1 });
      const sink = new RecordingSink();
      sink.reads.set('pio:11', 0x5an);
      sink.reads.set('mmio:febf0004', 0xcafef00dn);
      sink.reads.set('mmio:febf0010', 0xbeefn);
      backend.attach(sink);
      backend.guest.load(0x1000n, assemble(GUEST, 0x1000));
      backend.guest.setEntry(0, { mode: 'protected32', ip: 0x1000, stack: 0x8000 });
      const result = await backend.guest.run({ execution, donePort: 0x1234 });
      expect(result.vcpus).toEqual([{ vcpu: 0, reason: 'done', value: 7n }]);
      expect(sink.accesses.map((a) => [a.space, a.address, a.size, a.write, a.value])).toEqual([
        ['pio', 0x10n, 4, true, 0x12345678n],
        ['pio', 0x11n, 1, false, 0x5an],
        ['pio', 0x12n, 1, true, 0x5an],
        ['mmio', 0xfebf0000n, 4, true, 0xdeadbeefn],
        ['mmio', 0xfebf0004n, 4, false, 0xcafef00dn],
        ['mmio', 0xfebf0008n, 4, true, 0xcafef00dn],
        ['mmio', 0xfebf0010n, 2, false, 0xbeefn],
        ['mmio', 0xfebf0012n, 2, true, 0xbeefn],
      ]);
      // The done write was completed before the run ended: RIP is past the `out`.
      const regs = backend.guest.registers(0);
      expect(regs.rbx).toBe(0xcafef00dn);
      expect(regs.rcx & 0xffffn).toBe(0xbeefn);
    });

    it(`serves string port I/O element by element (${execution})`, async () => {
      backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
      const b = backend;
      let next = 0xa000n;
      const writes: unknown[] = [];
      b.attach({
        read: (_space, _address, size) => {
          expect(size).toBe(2);
          return next++;
        },
        write: (space, address, size, value) => {
          writes.push([space, address, size, value]);
        },
      });
      b.memory.write(0x3000n, new Uint8Array([0x11, 0x22, 0x33, 0x44, 0x55]));
      b.guest.load(0x1000n, assemble(STRING_IO, 0x1000));
      b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
      const result = await b.guest.run({ execution, donePort: 0x1234 });
      expect(result.vcpus[0]?.reason).toBe('done');
      expect(writes).toEqual([0x11n, 0x22n, 0x33n, 0x44n, 0x55n].map((v) => ['pio', 0x5b0n, 1, v]));
      const words = new Uint8Array(6);
      b.memory.read(0x3100n, words);
      const view = new DataView(words.buffer);
      expect([view.getUint16(0, true), view.getUint16(2, true), view.getUint16(4, true)]).toEqual([0xa000, 0xa001, 0xa002]);
      expect(b.guest.registers(0).rcx & 0xffffffffn).toBe(0n);
    });
  }
});
