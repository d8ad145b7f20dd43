/**
 * One guest per sample: a bench program (PVH build, parameters in its image header) created
 * paused as a PVH domU with `xl`, handed to whichever side serves it, unpaused by that side
 * once its IOREQ server is up, and gone after the run (the guest powers itself off when it
 * writes the done port; it is destroyed if it did not).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadGuest, withGuestParams, type GuestParams, type GuestProgram } from '@vmed/testkit';
import { createDomain, destroyDomain, type LabDomain } from '@vmed/testkit/xen-lab';

/** Guest RAM: the bench programs live below 256 KiB; Xen's PVH minimum is what costs. */
export const BENCH_DOMAIN_MIB = 16;

let serial = 0;

/**
 * Creates a paused PVH domU running `program` with `params`, runs `body` on it, and destroys
 * it whatever happened.
 */
export async function withBenchDomain<T>(program: GuestProgram, params: GuestParams, side: string, body: (domain: LabDomain) => Promise<T>): Promise<T> {
  const image = withGuestParams(await loadGuest(program, 'pvh'), params);
  const dir = join(tmpdir(), 'vmed-xen-bench');
  await mkdir(dir, { recursive: true });
  const name = `vmed-bench-${side}-${process.pid}-${serial++}`;
  const kernel = join(dir, `${name}.elf`);
  await writeFile(kernel, image.bytes);
  try {
    await destroyDomain(name);
    const domain = await createDomain({ name, type: 'pvh', kernel, memoryMiB: BENCH_DOMAIN_MIB, vcpus: 1, paused: true });
    try {
      return await body(domain);
    } finally {
      await domain.destroy();
    }
  } finally {
    await rm(kernel, { force: true });
  }
}
