/**
 * `pnpm xen-lab demo [-- demo options]`, the dom0 side: creates a paused PVH domain running the
 * project's demo guest (`guests/demo`, PVH image), runs `vmed demo --hypervisor xen --domid N
 * --unpause` against it in this process, and destroys the domain whatever happened. Exits
 * with the demo's status. Runs only inside the Xen lab (`VMED_XEN_LAB=1`).
 */
import { loadGuest } from '@vmed/testkit';
import { createDomain, destroyDomain, inXenLab } from '@vmed/testkit/xen-lab';
import { run as runDemoCommand } from '../commands/demo.js';

/** Big enough for the demo guest's 256 KiB footprint, small enough for any lab. */
const MEMORY_MIB = 64;

/** Default limit for the guest to report, under emulation on a loaded machine. */
const DEFAULT_TIMEOUT_S = 900;

export async function runLabDemo(argv: readonly string[]): Promise<number> {
  if (!inXenLab()) {
    console.error('xen-lab demo: this runs in the Xen lab\'s dom0; on the host run `pnpm xen-lab demo`');
    return 2;
  }
  const image = await loadGuest('demo', 'pvh');
  const name = `vmed-demo-${process.pid}`;
  await destroyDomain(name);
  const started = Date.now();
  const domain = await createDomain({ name, type: 'pvh', kernel: image.path, memoryMiB: MEMORY_MIB, vcpus: 1, paused: true });
  const args = ['--hypervisor', 'xen', '--domid', String(domain.domid), '--unpause', ...(argv.includes('--timeout') ? [] : ['--timeout', String(DEFAULT_TIMEOUT_S)]), ...argv];
  console.error(`xen-lab demo: PVH domain ${name} is domid ${domain.domid} (demo guest, ${MEMORY_MIB} MiB, paused), created in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.error(`xen-lab demo: vmed demo ${args.join(' ')}`);
  try {
    return await runDemoCommand(args);
  } finally {
    await domain.destroy().catch((e: unknown) => console.error(`xen-lab demo: destroying domain ${domain.domid} failed: ${String(e)}`));
  }
}

runLabDemo(process.argv.slice(2).filter((a) => a !== '--')).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? `xen-lab demo: ${e.message}` : e);
    process.exitCode = 1;
  },
);
