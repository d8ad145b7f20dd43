/**
 * The mediator's PCI wiring against Linux's configuration-mechanism-#1 probe, with Xen's port
 * routing modelled (`xen-routing-model.ts`), so the design is checked on any host; the same
 * thing with a real Linux PVH guest on real Xen is `linux-pvh.lab.test.ts`.
 *
 * Linux (`arch/x86/pci/direct.c`, `pci_check_type1`) writes 0x01 to 0xCFB, saves 0xCF8, writes
 * 0x80000000 there and wants it read back; then it scans bus 0 through 0xCF8/0xCFC and sizes
 * each BAR by writing all-ones and reading back. On a PVH guest nothing but the device model
 * can answer that read of 0xCF8, so the mediator's host bridge must; on HVM, QEMU's chipset
 * does, and the mediator must leave it alone.
 */
import { createMediator, pciConfigAddress, type Mediator } from '@vmed/core';
import { eduDevice, serialDevice } from '@vmed/devices';
import { afterEach, describe, expect, it } from 'vitest';
import { XenRoutingModel } from './xen-routing-model.js';

const MMIO_WINDOW = { base: 0xf000_0000n, length: 0x0c00_0000n };

/** How a claim of function 00:dd.0's config space reads in {@link claimList}. */
function pciClaim(device: number): string {
  const base = pciConfigAddress({ bus: 0, device, function: 0 }, 0);
  return `pci ${base.toString(16)}-${(base + 0xfffn).toString(16)}`;
}

function claimList(model: XenRoutingModel): string[] {
  return [...model.claims].map((c) => `${c.space} ${c.first.toString(16)}-${c.last.toString(16)}`).sort();
}

interface Probed {
  readonly device: number;
  readonly vendor: number;
  readonly deviceId: number;
  readonly classCode: number;
  readonly bars: ReadonlyArray<{ readonly index: number; readonly io: boolean; readonly base: number; readonly size: number }>;
}

/** Linux's type-1 probe, as `pci_check_type1` does it. */
function checkType1(io: XenRoutingModel): boolean {
  io.out(0xcfb, 1, 0x01);
  const saved = io.in(0xcf8, 4);
  io.out(0xcf8, 4, 0x8000_0000);
  const works = io.in(0xcf8, 4) === 0x8000_0000;
  io.out(0xcf8, 4, saved);
  return works;
}

function configAddress(device: number, register: number): number {
  return (0x8000_0000 | (device << 11) | (register & 0xfc)) >>> 0;
}

function configRead(io: XenRoutingModel, device: number, register: number): number {
  io.out(0xcf8, 4, configAddress(device, register));
  return io.in(0xcfc, 4) >>> 0;
}

function configWrite(io: XenRoutingModel, device: number, register: number, value: number): void {
  io.out(0xcf8, 4, configAddress(device, register));
  io.out(0xcfc, 4, value >>> 0);
}

/** Bus 0 as Linux scans it: IDs, class, and each BAR sized with decoding off. */
function scanBus0(io: XenRoutingModel): Probed[] {
  const found: Probed[] = [];
  for (let device = 0; device < 32; device++) {
    const ids = configRead(io, device, 0);
    const vendor = ids & 0xffff;
    if (vendor === 0xffff || vendor === 0) continue;
    const command = configRead(io, device, 4) & 0xffff;
    configWrite(io, device, 4, command & ~3);
    const bars: Probed['bars'][number][] = [];
    for (let index = 0; index < 6; index++) {
      const register = 0x10 + index * 4;
      const base = configRead(io, device, register);
      configWrite(io, device, register, 0xffff_ffff);
      const sized = configRead(io, device, register);
      configWrite(io, device, register, base);
      if (sized === 0 || sized === 0xffff_ffff) continue;
      const isIo = (sized & 1) === 1;
      const mask = (isIo ? sized & 0xffff_fffc : sized & 0xffff_fff0) >>> 0;
      bars.push({ index, io: isIo, base: (isIo ? base & ~3 : base & ~0xf) >>> 0, size: (mask & -mask) >>> 0 });
    }
    configWrite(io, device, 4, command);
    found.push({ device, vendor, deviceId: ids >>> 16, classCode: configRead(io, device, 8) >>> 8, bars });
  }
  return found;
}

let mediator: Mediator | undefined;
afterEach(async () => {
  await mediator?.close();
  mediator = undefined;
});

async function serve(model: XenRoutingModel, pci?: Record<string, unknown>): Promise<Mediator> {
  mediator = await createMediator({ hypervisor: 'xen', ...(pci === undefined ? {} : { pci }) }, { backend: model.backend, deviceTypes: [serialDevice, eduDevice] });
  mediator.create('serial').open();
  mediator.create('edu').open();
  return mediator;
}

describe('a Linux PVH guest probing PCI through Xen, with the mediator as device model', () => {
  it("passes Linux's type-1 probe: the host bridge answers 0xCF8 with what was written", async () => {
    const model = new XenRoutingModel('pvh');
    expect(checkType1(model)).toBe(false);
    await serve(model, { mmioWindow: MMIO_WINDOW });
    expect(checkType1(model)).toBe(true);
  });

  it('enumerates the host bridge, serial and edu with their IDs, classes and BARs, assigned inside the windows', async () => {
    const model = new XenRoutingModel('pvh');
    await serve(model, { mmioWindow: MMIO_WINDOW });
    const found = scanBus0(model);
    expect(found.map((f) => [f.device, f.vendor, f.deviceId, f.classCode])).toEqual([
      [0, 0x1b36, 0x0008, 0x060000],
      [1, 0x1b36, 0x0002, 0x070002],
      [2, 0x1234, 0x11e8, 0x00ff00],
    ]);
    const [bridge, serial, edu] = found as [Probed, Probed, Probed];
    expect(bridge.bars).toEqual([]);
    expect(serial.bars).toEqual([{ index: 0, io: true, base: expect.any(Number), size: 8 }]);
    expect(serial.bars[0]?.base).toBeGreaterThanOrEqual(0xc000);
    expect(edu.bars).toEqual([{ index: 0, io: false, base: expect.any(Number), size: 1 << 20 }]);
    const eduBase = BigInt(edu.bars[0]?.base ?? 0);
    expect(eduBase >= MMIO_WINDOW.base && eduBase + (1n << 20n) <= MMIO_WINDOW.base + MMIO_WINDOW.length).toBe(true);
  });

  it('claims only the address register and the functions: data-port cycles stay with Xen', async () => {
    const model = new XenRoutingModel('pvh');
    await serve(model);
    expect(claimList(model)).toEqual([pciClaim(0), pciClaim(1), pciClaim(2), 'pio cf8-cfb'].sort());
    model.serverPortAccesses = 0;
    configRead(model, 2, 0);
    // One round trip for the latch write; the data read is a PCI request, not port I/O.
    expect(model.serverPortAccesses).toBe(1);
  });

  it('refuses narrow and misplaced accesses to the address register as the chipset would', async () => {
    const model = new XenRoutingModel('pvh');
    await serve(model);
    model.out(0xcf8, 4, 0x8000_0810);
    model.out(0xcf8, 2, 0x1234);
    model.out(0xcfa, 1, 0x56);
    expect(model.in(0xcf8, 4)).toBe(0x8000_0810);
    expect(model.in(0xcf8, 2)).toBe(0xffff);
    expect(model.in(0xcf9, 1)).toBe(0xff);
    // Reserved bits read back as zero.
    model.out(0xcf8, 4, 0xffff_ffff);
    expect(model.in(0xcf8, 4)).toBe(0x80ff_fffc);
  });

  it('releases its claims when the mediator closes', async () => {
    const model = new XenRoutingModel('pvh');
    const m = await serve(model);
    await m.close();
    expect(model.claims.size).toBe(0);
    expect(checkType1(model)).toBe(false);
  });
});

describe('an HVM guest: the chipset is QEMU’s', () => {
  it('claims neither 0xCF8 nor 00:00.0 and leaves BARs to the firmware', async () => {
    const model = new XenRoutingModel('hvm');
    await serve(model);
    expect(claimList(model)).toEqual([pciClaim(1), pciClaim(2)].sort());
    // Nobody in this model plays QEMU: the probe's read of 0xCF8 is Xen's all-ones.
    expect(checkType1(model)).toBe(false);
    const found = scanBus0(model);
    expect(found.map((f) => f.device)).toEqual([1, 2]);
    expect(found.map((f) => f.bars[0]?.base)).toEqual([0, 0]);
  });
});
