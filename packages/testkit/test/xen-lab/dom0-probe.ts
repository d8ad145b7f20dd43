/**
 * Runs in the lab's dom0 (started by xen-lab.test.ts through `exec`): reports `xl info`,
 * boots the lab's stock Linux domU of the type given as argument (`pvh` or `hvm`) from the
 * asset folder, paused first, and prints what PCI functions it enumerated. Prints one JSON
 * object as its last line; exits non-zero when any step fails.
 */
import { createDomain, labAssets, listDomains, parseGuestPciReport, xlInfo } from '../../src/xen-lab/index.js';
import type { DomainType } from '../../src/xen-lab/index.js';

const type = (process.argv[2] ?? 'pvh') as DomainType;
const bootTimeoutMs = Number(process.argv[3] ?? 240_000);

const info = await xlInfo();
console.log(`xl-info xen_version=${info.xen_major}.${info.xen_minor}${info.xen_extra ?? ''} virt_caps=${JSON.stringify(info.virt_caps)} free_memory=${info.free_memory}`);

const assets = labAssets();
const name = `probe-${type}`;
const started = Date.now();
const domain = await createDomain({
  name,
  type,
  kernel: assets.kernel,
  ramdisk: assets.ramdisk,
  cmdline: `${type === 'pvh' ? 'console=hvc0' : 'console=ttyS0'} quiet ${process.env.PROBE_CMDLINE ?? ''}`.trim(),
  memoryMiB: 256,
  vcpus: 1,
  paused: true,
});
const whilePaused = (await listDomains()).find((d) => d.id === domain.domid);
console.log(`created ${name} domid=${domain.domid} state=${whilePaused?.state ?? 'missing'}`);

let consoleText = '';
try {
  await domain.unpause();
  consoleText = await domain.waitForConsole(/VMED-DOMU: end \d+/, bootTimeoutMs);
} finally {
  console.log(`--- ${name} console (${domain.consoleLog}) ---`);
  console.log((consoleText || (await domain.consoleOutput())).trimEnd());
  console.log('--- end of console ---');
  await domain.destroy();
}
const bootMs = Date.now() - started;
const report = parseGuestPciReport(consoleText);
const gone = !(await listDomains()).some((d) => d.name === name);
console.log(
  JSON.stringify({
    xenVersion: `${info.xen_major}.${info.xen_minor}`,
    virtCaps: info.virt_caps,
    type,
    domid: domain.domid,
    pausedState: whilePaused?.state,
    guestBootMs: bootMs,
    pciComplete: report.complete,
    pci: report.functions.map((f) => ({ bdf: f.bdf, vendor: f.vendor, device: f.device, classCode: f.classCode, bars: f.resources.map((r) => ({ index: r.index, size: Number(r.size) })) })),
    destroyed: gone,
  }),
);
