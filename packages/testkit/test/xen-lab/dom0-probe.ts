/**
 * Runs in the lab's dom0 (started by xen-lab.test.ts through `exec`): reports `xl info`,
 * boots the lab's stock Linux domU of the type given as argument (`pvh` or `hvm`) from the
 * asset folder, paused first, and prints what PCI functions it enumerated. Prints one JSON
 * object as its last line; exits non-zero when any step fails.
 */
import { XenLabError, createDomain, labAssets, listDomains, parseGuestPciReport, xlInfo } from '../../src/xen-lab/index.js';
import type { DomainType } from '../../src/xen-lab/index.js';

const type = (process.argv[2] ?? 'pvh') as DomainType;
const bootTimeoutMs = Number(process.argv[3] ?? 240_000);

const info = await xlInfo();
console.log(`xl-info xen_version=${info.xen_major}.${info.xen_minor}${info.xen_extra ?? ''} virt_caps=${JSON.stringify(info.virt_caps)} free_memory=${info.free_memory}`);

const assets = labAssets();
const name = `probe-${type}`;

/**
 * Boots the domU once and waits for its report. Under QEMU TCG the stock kernel has been seen
 * to triple-fault early in boot, once in some ten lab runs (no line on its console; Xen logs
 * `Triple fault`): that is the emulator's, not the lab's, so a domain that dies that way is
 * booted once more, and the retry is printed. A second death fails the probe.
 */
async function boot(attempt: number) {
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
  console.log(`created ${name} domid=${domain.domid} state=${whilePaused?.state ?? 'missing'}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
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
  return { domain, whilePaused, consoleText, started };
}

let booted: Awaited<ReturnType<typeof boot>>;
try {
  booted = await boot(1);
} catch (e) {
  if (!(e instanceof XenLabError) || e.stage !== 'guest') throw e;
  console.log(`probe: ${name} died before its report (${e.message.split('\n')[0]}); booting it once more`);
  booted = await boot(2);
}
const { domain, whilePaused, consoleText, started } = booted;
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
