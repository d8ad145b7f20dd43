/**
 * Measures the ioreq round trip of the Xen backend with each way of waiting for event
 * channels (`wait: 'worker'` and `wait: 'inline'`), in the Xen lab's dom0:
 *
 *   pnpm xen-lab exec -- 'cd packages/backend-xen && node --conditions=source --import tsx bench/ioreq-roundtrip.ts [count]'
 *
 * The project's `bench-mmio` guest (PVH) does `count` 4-byte MMIO writes back to back; each is
 * an ioreq the backend serves. The time between the first and the last write seen by the sink,
 * divided by `count - 1`, is one round trip: guest exit → Xen → event channel → our wait →
 * serve → notify → Xen → guest resumes and writes again. Under the lab's CPU emulation the
 * absolute figure is slow; the ratio between the modes is the result.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { addressRange, allOnes } from '@vmed/core';
import { createBackend } from '../src/backend.js';
import * as guests from '@vmed/testkit';
import * as lab from '@vmed/testkit/xen-lab';

const count = Number(process.argv[2] ?? 400);
const TARGET = 0xd000_0000n;
const DONE_PORT = 0x501;

async function runOnce(mode: 'worker' | 'inline'): Promise<{ perRequestUs: number; seen: number }> {
  const image = guests.withGuestParams(await guests.loadGuest('bench-mmio', 'pvh'), { ebx: Number(TARGET), ecx: count, edx: 0x1234 });
  const dir = join(tmpdir(), 'vmed-bench');
  await mkdir(dir, { recursive: true });
  const kernel = join(dir, `bench-mmio-${mode}.elf`);
  await writeFile(kernel, image.bytes);
  const name = `vmed-bench-${mode}-${process.pid}`;
  const domain = await lab.createDomain({ name, type: 'pvh', kernel, memoryMiB: 32, vcpus: 1, paused: true });
  const backend = await createBackend({ domid: domain.domid, guestType: 'pvh', ram: [{ base: 0, length: 32 << 20 }], wait: mode });
  let seen = 0;
  let first = 0;
  let last = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  backend.attach({
    read: (_space, _address, size) => allOnes(size),
    write: (space, address) => {
      if (space === 'mmio' && address === TARGET) {
        const now = performance.now();
        if (seen === 0) first = now;
        last = now;
        seen++;
      } else if (space === 'pio' && address === BigInt(DONE_PORT)) {
        done();
      }
    },
  });
  backend.claimIo('mmio', addressRange(TARGET, 4));
  backend.claimIo('pio', addressRange(DONE_PORT, 4));
  try {
    await domain.unpause();
    await Promise.race([finished, new Promise((r) => setTimeout(r, 600_000))]);
  } finally {
    await backend.close();
    await domain.destroy().catch(() => {});
  }
  return { perRequestUs: seen > 1 ? ((last - first) * 1000) / (seen - 1) : Number.NaN, seen };
}

const results: Record<string, { perRequestUs: number; seen: number }> = {};
for (const mode of ['worker', 'inline'] as const) {
  results[mode] = await runOnce(mode);
  console.log(`${mode}: ${results[mode].seen} writes, ${results[mode].perRequestUs.toFixed(1)} µs per ioreq round trip`);
}
const w = results.worker?.perRequestUs ?? Number.NaN;
const i = results.inline?.perRequestUs ?? Number.NaN;
console.log(JSON.stringify({ count, workerUs: w, inlineUs: i, workerOverInline: w / i }));
