/**
 * `vmed lspci [--hex]`: the reference devices' configuration space as a guest would read it,
 * in the spirit of `lspci -vv` — identity, command/status, BARs with their sizes (found with the
 * sizing protocol, through real config cycles), the capability list and, with `--hex`, a dump.
 * Runs on `sim`: it shows what the core builds, the same on every hypervisor.
 */
import { createMediator, type PciFunction } from '@vmed/core';
import { deviceTypes } from '@vmed/devices';
import { flag, parseArgs } from '../args.js';

const CAPABILITY_NAMES: Record<number, string> = { 0x01: 'Power Management', 0x05: 'MSI', 0x10: 'PCI Express', 0x11: 'MSI-X' };

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const mediator = await createMediator({ hypervisor: 'sim' }, { deviceTypes });
  try {
    for (const t of deviceTypes) mediator.create(t.type).open();
    for (const fn of mediator.bus.functions()) print(fn, flag(args, 'hex'));
  } finally {
    await mediator.close();
  }
  return 0;
}

function print(fn: PciFunction, hex: boolean): void {
  const r = (reg: number, size: 1 | 2 | 4) => fn.configRead(reg, size);
  const a = fn.address;
  const h = (v: number, w: number) => v.toString(16).padStart(w, '0');
  const classCode = r(0x08, 4) >>> 8;
  console.log(`${h(a.bus, 2)}:${h(a.device, 2)}.${a.function} class ${h(classCode, 6)}: ${h(r(0x00, 2), 4)}:${h(r(0x02, 2), 4)} (rev ${h(r(0x08, 1), 2)})`);
  console.log(`\tSubsystem: ${h(r(0x2c, 2), 4)}:${h(r(0x2e, 2), 4)}`);
  console.log(`\tCommand: ${h(r(0x04, 2), 4)}  Status: ${h(r(0x06, 2), 4)}`);
  const pin = r(0x3d, 1);
  if (pin !== 0) console.log(`\tInterrupt: pin ${'ABCD'[pin - 1]} routed to IRQ ${r(0x3c, 1)}`);
  for (const slot of fn.bars) {
    if (slot === undefined) continue;
    const kind = slot.kind === 'io' ? 'I/O ports' : `Memory (${slot.kind === 'memory64' ? '64-bit' : '32-bit'}, ${slot.prefetchable ? 'prefetchable' : 'non-prefetchable'})`;
    const backing = slot.definition.backing === 'direct' ? ', direct' : '';
    console.log(`\tRegion ${slot.index}: ${kind} [size=${formatSize(slot.size)}${backing}]`);
  }
  // Walk the list the way a guest does, with a hop limit against loops.
  let at = (r(0x06, 2) & 0x10) === 0 ? 0 : r(0x34, 1) & 0xfc;
  for (let hops = 0; at !== 0 && hops < 48; hops++) {
    const id = r(at, 1);
    console.log(`\tCapabilities: [${h(at, 2)}] ${CAPABILITY_NAMES[id] ?? `id ${h(id, 2)}`}`);
    at = r(at + 1, 1) & 0xfc;
  }
  if (hex) {
    const bytes = fn.dumpConfig().subarray(0, 256);
    for (let row = 0; row < bytes.length; row += 16) {
      console.log(`${h(row, 2)}: ${[...bytes.subarray(row, row + 16)].map((b) => h(b, 2)).join(' ')}`);
    }
  }
  console.log('');
}

function formatSize(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes >> 20}M`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes >> 10}K`;
  return String(bytes);
}
