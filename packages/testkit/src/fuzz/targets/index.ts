/**
 * Every fuzz target, by name. The device targets run the reference devices (and the probe)
 * through the whole core path; `dispatcher` and `migration-stream` fuzz one part alone.
 */
import { deviceTarget, type DeviceTargetSpec, type OpName } from '../device-harness.js';
import type { FuzzTarget } from '../types.js';
import { dispatcherTarget } from './dispatcher.js';
import { eduSlot, framebufferSlot, probeSlot, serialSlot } from './devices.js';
import { migrationStreamTarget } from './migration-stream.js';
import { MsiModel, observeProbe } from './msi-model.js';

/** Repeats `name` `n` times: the op table's weights. */
function w(name: OpName, n: number): OpName[] {
  return new Array<OpName>(n).fill(name);
}

/**
 * The mix of a device target: mostly BAR accesses, then config cycles, then the rest. Lifecycle
 * and migration steps cost some 10–40 times an access (a migration step restores a twin
 * device), so they are rarer: about one operation in 60.
 */
const DEVICE_OPS: readonly OpName[] = [...w('bar', 84), ...w('config', 20), ...w('ram', 6), ...w('raw', 6), ...w('host', 8), 'lifecycle', 'migration', 'migration', 'fault'];

const serial: DeviceTargetSpec = {
  name: 'serial',
  description: 'two PCI 16550A UARTs: registers, FIFO, loopback, modem lines, INTx/MSI, host input',
  words: { min: 2048, max: 12288 },
  devices: [serialSlot(3), serialSlot(4)],
  primary: 2,
  ops: DEVICE_OPS,
};

const edu: DeviceTargetSpec = {
  name: 'edu',
  description: "two QEMU edu devices: factorial, interrupts, DMA with guest-programmed addresses",
  words: { min: 2048, max: 12288 },
  devices: [eduSlot(3), eduSlot(4)],
  primary: 2,
  ops: DEVICE_OPS,
};

const framebuffer: DeviceTargetSpec = {
  name: 'framebuffer',
  description: 'two framebuffers: direct pixel BAR (mapped, or trapped as on Xen) and mode registers',
  words: { min: 2048, max: 12288 },
  devices: [framebufferSlot(3), framebufferSlot(4)],
  primary: 2,
  // A framebuffer's state carries its pixel memory: migration steps cost more, so fewer.
  ops: [...DEVICE_OPS.filter((o) => o !== 'migration'), 'migration'],
  // The program's first word picks how the backend serves direct BARs: mapped (KVM, sim) or
  // trapped and served from the shared memory (Xen).
  simOptions: (r) => ({ capabilities: { directRegions: (r.word() & 1) === 0 } }),
};

const configSpace: DeviceTargetSpec = {
  name: 'config-space',
  description: 'config space of the probe (PM, MSI, MSI-X, PCIe) and the reference devices through 0xCF8/0xCFC, ECAM and pci requests',
  words: { min: 2048, max: 12288 },
  devices: [probeSlot(3), serialSlot(5), eduSlot(6), framebufferSlot(7)],
  primary: 4,
  ops: [...w('config', 80), ...w('bar', 12), ...w('raw', 4), ...w('host', 8), 'lifecycle', 'migration', 'fault'],
  checkPaths: true,
};

const msiMsix: DeviceTargetSpec = {
  name: 'msi-msix',
  description: 'MSI and MSI-X tables, masks and pending bits of the probe, raises and DMA completions against an interrupt model',
  words: { min: 2048, max: 12288 },
  devices: [probeSlot(3, observeProbe)],
  primary: 1,
  ops: [...w('bar', 70), ...w('config', 40), ...w('ram', 8), ...w('raw', 4), 'lifecycle', 'lifecycle', 'migration', 'migration', 'fault'],
  observe: (h) => new MsiModel(h),
};

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  deviceTarget(serial),
  deviceTarget(edu),
  deviceTarget(framebuffer),
  deviceTarget(configSpace),
  deviceTarget(msiMsix),
  dispatcherTarget,
  migrationStreamTarget,
];

/** The target called `name`, if any. */
export function fuzzTarget(name: string): FuzzTarget | undefined {
  return FUZZ_TARGETS.find((t) => t.name === name);
}
