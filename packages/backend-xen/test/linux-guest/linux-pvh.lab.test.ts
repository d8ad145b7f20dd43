/**
 * A stock Linux guest sees vmed's devices: in the Xen lab, a Debian kernel booted as a PVH
 * domU (busybox initramfs whose init prints what sysfs lists, `xen-lab/domu-init.sh`), with a
 * mediator serving serial and edu through the Xen backend. The domain is created paused, the
 * mediator attaches and opens the devices, then the guest runs and reports.
 *
 * The kernel command line, each option found needed in the lab:
 * - `pci=conf1`: configuration mechanism #1 without Linux's sanity check (`xen-lab/NOTES.md`);
 *   its probe's read-back of 0xCF8 is answered by the mediator's host bridge
 *   (`pciHostBridge: 'device-model'` on PVH), which is also the host bridge at 00:00.0.
 * - `noacpi`: the ACPI tables libxl gives a PVH guest describe no PCI root bridge, and with ACPI
 *   routing Linux scans only the roots ACPI lists; without ACPI routing it scans bus 0 itself
 *   (`pci_legacy_init`). Without it the guest lists no PCI function at all.
 * - `noearly`: skips Linux's early type-1 scans of all 256 buses (early quirks, the AGP
 *   aperture check): about 16 000 writes of 0xCF8, each an ioreq round trip to the mediator
 *   (Xen forwards them to whoever claims the port, as it does to QEMU on HVM) — ten
 *   microseconds each on hardware, minutes in all under the lab's emulation.
 */
import { existsSync } from 'node:fs';
import { createMediator, type Mediator } from '@vmed/core';
import { eduDevice, serialDevice } from '@vmed/devices';
import { createDomain, destroyDomain, labAssets, parseGuestPciReport, type GuestPciFunction, type LabDomain } from '@vmed/testkit/xen-lab';
import { describe, expect, it } from 'vitest';

const inLab = process.env.VMED_XEN_LAB === '1' && existsSync('/dev/xen/privcmd');
const why = "needs the Xen lab: pnpm xen-lab exec -- 'node node_modules/vitest/vitest.mjs run packages/backend-xen/test/linux-guest'";
const LAB_TIMEOUT = 1_800_000;
/** libxl's MMIO hole for a PVH guest starts at 0xF0000000; its ACPI tables sit at 0xFC000000. */
const PVH_MMIO_WINDOW = { base: 0xf000_0000n, length: 0x0c00_0000n };
const IORESOURCE_IO = 0x100n;
const IORESOURCE_MEM = 0x200n;

function only(functions: readonly GuestPciFunction[], vendor: number, device: number): GuestPciFunction {
  const matches = functions.filter((f) => f.vendor === vendor && f.device === device);
  expect(matches, `exactly one ${vendor.toString(16)}:${device.toString(16)} in ${JSON.stringify(functions.map((f) => f.bdf))}`).toHaveLength(1);
  return matches[0] as GuestPciFunction;
}

describe.skipIf(!inLab)(`a stock Linux PVH guest enumerates vmed's devices${inLab ? '' : ` (skipped: ${why})`}`, () => {
  it(
    'lists serial and edu with their IDs, classes and BARs, and the host bridge at 00:00.0',
    async () => {
      const assets = labAssets();
      const name = `vmed-linux-${process.pid}`;
      await destroyDomain(name);
      const domain: LabDomain = await createDomain({
        name,
        type: 'pvh',
        kernel: assets.kernel,
        ramdisk: assets.ramdisk,
        cmdline: 'console=hvc0 pci=conf1,noacpi,noearly',
        memoryMiB: 256,
        vcpus: 1,
        paused: true,
      });
      let mediator: Mediator | undefined;
      try {
        mediator = await createMediator(
          { hypervisor: 'xen', xen: { domid: domain.domid }, pci: { mmioWindow: PVH_MMIO_WINDOW } },
          { deviceTypes: [serialDevice, eduDevice] },
        );
        const serialDev = mediator.create('serial', { slot: 3 });
        serialDev.open();
        const eduDev = mediator.create('edu', { slot: 4 });
        eduDev.open();
        const started = Date.now();
        await domain.unpause();
        const console = await domain.waitForConsole(/VMED-DOMU: end \d+/, LAB_TIMEOUT - 120_000);
        process.stderr.write(`linux-pvh: guest reported after ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
        const report = parseGuestPciReport(console);
        expect(report.complete, console.split('\n').slice(-60).join('\n')).toBe(true);

        const bridge = only(report.functions, 0x1b36, 0x0008);
        expect(bridge.bdf).toBe('0000:00:00.0');
        expect(bridge.classCode).toBe(0x060000);

        const serial = only(report.functions, 0x1b36, 0x0002);
        expect(serial.bdf).toBe('0000:00:03.0');
        expect(serial.classCode).toBe(0x070002);
        const serialBars = serial.resources.filter((r) => r.index < 6);
        expect(serialBars.map((r) => [r.index, r.size, r.flags & (IORESOURCE_IO | IORESOURCE_MEM)])).toEqual([[0, 8n, IORESOURCE_IO]]);

        const edu = only(report.functions, 0x1234, 0x11e8);
        expect(edu.bdf).toBe('0000:00:04.0');
        expect(edu.classCode).toBe(0x00ff00);
        const eduBars = edu.resources.filter((r) => r.index < 6);
        expect(eduBars.map((r) => [r.index, r.size, r.flags & (IORESOURCE_IO | IORESOURCE_MEM)])).toEqual([[0, 1n << 20n, IORESOURCE_MEM]]);
        // Linux kept the addresses the mediator assigned (it found them free and claimed them).
        expect(eduBars[0]?.start).toBe(BigInt(eduDev.function.configRead(0x10, 4)) & ~0xfn);
        expect(serialBars[0]?.start).toBe(BigInt(serialDev.function.configRead(0x10, 4)) & ~3n);
      } finally {
        await mediator?.close().catch(() => undefined);
        await domain.destroy();
      }
    },
    LAB_TIMEOUT,
  );
});
