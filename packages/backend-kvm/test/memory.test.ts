/**
 * Guest memory: bounds checks against the RAM map (a guest address outside RAM is Invalid
 * with bytesDone 0 and moves no byte), ranges spanning two slots, zero-copy views the guest
 * sees, and reference-counted pins (mlock per page; over RLIMIT_MEMLOCK is NoSpace).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink } from './helpers/kvm.js';

const MiB = 1 << 20;

function lockedKiB(): number {
  const match = /VmLck:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1] ?? NaN);
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('guest memory', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('reads and writes across two adjacent slots, and refuses ranges leaving RAM whole', async () => {
    backend = await createBackend({
      mode: 'standalone',
      memoryMiB: 3,
      vcpus: 1,
      ramLayout: [
        { base: 0, size: MiB, name: 'a' },
        { base: MiB, size: MiB, name: 'b' },
        { base: 4 * MiB, size: MiB, name: 'c' },
      ],
    });
    const m = backend.memory;
    expect(m.ram.ranges.map((r) => [r.base, r.length, r.name])).toEqual([
      [0n, BigInt(MiB), 'a'],
      [BigInt(MiB), BigInt(MiB), 'b'],
      [BigInt(4 * MiB), BigInt(MiB), 'c'],
    ]);
    const pattern = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
    m.write(BigInt(MiB - 32), pattern);
    const back = new Uint8Array(64);
    m.read(BigInt(MiB - 32), back);
    expect(back).toEqual(pattern);
    // A view across the slot boundary (host-contiguous here) aliases the same bytes.
    const view = m.view(BigInt(MiB - 32), 64, 'readwrite');
    expect(view.bytes).toEqual(pattern);
    view.bytes[40] = 0xee;
    m.read(BigInt(MiB + 8), back.subarray(0, 1));
    expect(back[0]).toBe(0xee);
    view.dispose();
    expect(() => view.bytes).toThrowError(expect.objectContaining({ code: 'BadHandle' }) as Error);

    // Past the end of b (into the hole below c): refused before any byte moves.
    const dst = new Uint8Array(16).fill(0x55);
    const readError = errorOf(() => m.read(BigInt(2 * MiB - 8), dst));
    expect(isVmedError(readError, 'Invalid')).toBe(true);
    expect((readError as { bytesDone: number }).bytesDone).toBe(0);
    expect(dst.every((x) => x === 0x55)).toBe(true);
    const before = new Uint8Array(8);
    m.read(BigInt(2 * MiB - 8), before);
    const writeError = errorOf(() => m.write(BigInt(2 * MiB - 8), new Uint8Array(16).fill(0xaa)));
    expect(isVmedError(writeError, 'Invalid')).toBe(true);
    const after = new Uint8Array(8);
    m.read(BigInt(2 * MiB - 8), after);
    expect(after).toEqual(before);
    // Beyond all RAM, near 2^64, and malformed arguments.
    for (const fn of [
      () => m.read(BigInt(6 * MiB), new Uint8Array(1)),
      () => m.read((1n << 64n) - 1n, new Uint8Array(2)),
      () => m.view(BigInt(2 * MiB - 8), 16, 'read'),
      () => m.view(0n, 0, 'read'),
      () => m.view(0n, 2 ** 32, 'read'),
      () => m.view(0n, 8, 'execute' as never),
      () => m.pin(BigInt(5 * MiB - 4096), 8192),
      () => m.read(-1n, new Uint8Array(1)),
    ]) {
      expect(isVmedError(errorOf(fn), 'Invalid')).toBe(true);
    }
  });

  it('gives the guest what the host wrote through a view, and the host what the guest wrote', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    const sink = new RecordingSink();
    b.attach(sink);
    b.guest.load(
      0x1000n,
      assemble(
        `.code32
  mov 0x6000, %eax
  mov $0x580, %dx
  out %eax, %dx
  movl $0x87654321, 0x6004
  mov $0x1234, %dx
  out %al, %dx
  hlt
`,
        0x1000,
      ),
    );
    const view = b.memory.view(0x6000n, 8, 'readwrite');
    view.data.setUint32(0, 0xa5a5f00d, true);
    b.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
    await b.guest.run({ donePort: 0x1234 });
    expect(sink.writes('pio', 0x580n)).toEqual([0xa5a5f00dn]);
    expect(view.data.getUint32(4, true)).toBe(0x87654321);
  });

  it('pins are reference-counted per page (mlock)', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 2, vcpus: 1 });
    const m = backend.memory;
    const base = lockedKiB();
    const first = m.pin(0x10000n, 8192); // pages 0x10, 0x11
    expect(lockedKiB() - base).toBe(8);
    const second = m.pin(0x11800n, 4096); // pages 0x11, 0x12
    expect(lockedKiB() - base).toBe(12);
    expect(backend.resources().pins).toBe(2);
    const view = first.view('read');
    first.dispose();
    expect(view.disposed).toBe(true);
    expect(lockedKiB() - base).toBe(8); // 0x11 is still held by the second pin
    second.dispose();
    expect(lockedKiB() - base).toBe(0);
    expect(backend.resources().pins).toBe(0);
    expect(() => first.view('read')).toThrowError(expect.objectContaining({ code: 'BadHandle' }) as Error);
  });

  it('a pin over RLIMIT_MEMLOCK is NoSpace and locks nothing (child without CAP_IPC_LOCK)', (ctx) => {
    let tools = true;
    try {
      execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
      execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    } catch {
      tools = false;
    }
    ctx.skip(!tools || process.getuid?.() !== 0, 'needs root, setpriv and prlimit to drop CAP_IPC_LOCK');
    const script = fileURLToPath(new URL('./fixtures/pin-limit.ts', import.meta.url));
    const out = execFileSync(
      'setpriv',
      ['--inh-caps=-ipc_lock', '--bounding-set=-ipc_lock', 'prlimit', '--memlock=65536', process.execPath, '--import', 'tsx', '--conditions=source', script],
      { encoding: 'utf8', cwd: fileURLToPath(new URL('../../..', import.meta.url)) },
    );
    const report = JSON.parse(out) as Record<string, unknown>;
    expect(report).toEqual({
      smallPins: 1,
      big: { code: 'NoSpace', errno: expect.stringMatching(/^(EAGAIN|ENOMEM|EPERM)$/) as string, operation: 'memory.pin' },
      pinsAfter: 1,
    });
  });
});
