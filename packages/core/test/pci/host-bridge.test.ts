import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PciBus, PciHostBridge } from '../../src/pci/index.js';
import { FULL, PLAIN } from './definitions.js';
import { harness } from './fakes.js';

function machine() {
  const bus = new PciBus();
  const bridge = new PciHostBridge(bus);
  const full = harness(FULL, { segment: 0, bus: 0, device: 3, function: 0 });
  bus.add(full.fn);
  return { bus, bridge, full };
}

const cf8 = (device: number, fn: number, register: number, bus = 0) =>
  BigInt((0x80000000 | (bus << 16) | (device << 11) | (fn << 8) | (register & 0xfc)) >>> 0);

describe('configuration mechanism #1', () => {
  it('reads a function through 0xCF8/0xCFC with byte lanes', () => {
    const { bridge } = machine();
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0));
    expect(bridge.portRead(0xcfc, 4)).toBe(0x11e81234n);
    expect(bridge.portRead(0xcfe, 2)).toBe(0x11e8n);
    expect(bridge.portRead(0xcfd, 1)).toBe(0x12n);
    expect(bridge.portRead(0xcff, 1)).toBe(0x11n);
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0x08));
    expect(bridge.portRead(0xcfc, 4)).toBe(0x00ff0010n);
  });

  it('writes through the data window', () => {
    const { bridge, full } = machine();
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0x04));
    bridge.portWrite(0xcfc, 2, 0x0006n);
    expect(full.fn.memoryDecode).toBe(true);
    expect(full.fn.busMaster).toBe(true);
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0x3c));
    bridge.portWrite(0xcfc, 1, 0x1234n); // only the low byte reaches the register
    expect(full.fn.configRead(0x3c, 1)).toBe(0x34);
  });

  it('reads all-ones with the enable bit clear, and drops writes', () => {
    const { bridge, full } = machine();
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0x04) & 0x7fffffffn);
    expect(bridge.portRead(0xcfc, 4)).toBe(0xffffffffn);
    bridge.portWrite(0xcfc, 2, 0x7n);
    expect(full.fn.configRead(0x04, 2)).toBe(0);
  });

  it('reads all-ones from absent functions and other buses', () => {
    const { bridge } = machine();
    bridge.portWrite(0xcf8, 4, cf8(4, 0, 0));
    expect(bridge.portRead(0xcfc, 4)).toBe(0xffffffffn);
    bridge.portWrite(0xcf8, 4, cf8(3, 1, 0));
    expect(bridge.portRead(0xcfc, 2)).toBe(0xffffn);
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0, 1));
    expect(bridge.portRead(0xcfc, 4)).toBe(0xffffffffn);
  });

  it('takes only dword accesses at 0xCF8 and reads back what it holds', () => {
    const { bridge } = machine();
    bridge.portWrite(0xcf8, 4, 0xff001b03n);
    expect(bridge.portRead(0xcf8, 4)).toBe(0x80001b00n); // reserved 30:24 and 1:0 read 0
    bridge.portWrite(0xcf8, 4, 0x80000000n);
    expect(bridge.portRead(0xcf8, 4)).toBe(0x80000000n); // Linux's type-1 probe
    bridge.portWrite(0xcf8, 1, 0x00n);
    bridge.portWrite(0xcf9, 1, 0x06n); // the reset control register is not ours
    bridge.portWrite(0xcfa, 2, 0xffffn);
    expect(bridge.portRead(0xcf8, 4)).toBe(0x80000000n);
    expect(bridge.portRead(0xcf8, 2)).toBe(0xffffn);
    expect(bridge.portRead(0xcf9, 1)).toBe(0xffn);
  });

  it('refuses data accesses that run past 0xCFF', () => {
    const { bridge } = machine();
    bridge.portWrite(0xcf8, 4, cf8(3, 0, 0));
    expect(bridge.portRead(0xcfe, 4)).toBe(0xffffffffn);
    expect(bridge.portRead(0xcff, 2)).toBe(0xffffn);
    expect(bridge.portRead(0xcfc, 8)).toBe(0xffffffffffffffffn);
  });

  it('answers as a host bridge at 00:00.0', () => {
    const { bridge } = machine();
    bridge.portWrite(0xcf8, 4, cf8(0, 0, 0));
    expect(bridge.portRead(0xcfc, 4)).toBe(0x00081b36n);
    bridge.portWrite(0xcf8, 4, cf8(0, 0, 0x08));
    expect(bridge.portRead(0xcfc, 4) >> 8n).toBe(0x060000n);
  });
});

describe('ECAM', () => {
  const ecam = (device: number, fn: number, register: number, bus = 0) => BigInt((bus << 20) | (device << 15) | (fn << 12) | register);

  it('reaches every function\'s full config space', () => {
    const { bridge, full } = machine();
    expect(bridge.ecamRead(ecam(3, 0, 0), 4)).toBe(0x11e81234n);
    expect(bridge.ecamRead(ecam(3, 0, 0x2), 2)).toBe(0x11e8n);
    expect(bridge.ecamRead(ecam(3, 0, 0x100), 4)).toBe(0n); // PCIe extended space
    expect(bridge.ecamRead(ecam(0, 0, 0x100), 4)).toBe(0xffffffffn); // conventional bridge
    bridge.ecamWrite(ecam(3, 0, 0x04), 2, 0x2n);
    expect(full.fn.memoryDecode).toBe(true);
  });

  it('splits an aligned 8-byte access into two dwords and refuses a misaligned one', () => {
    const { bridge, full } = machine();
    expect(bridge.ecamRead(ecam(3, 0, 0), 8)).toBe(0x00100000_11e81234n); // status:command above vendor:device
    bridge.ecamWrite(ecam(3, 0, 0x18), 8, 0x00000008_40000000n);
    full.fn.configWrite(0x04, 2, 0x2);
    expect(full.fn.barLocation(2)?.base).toBe(0x8_4000_0000n);
    expect(bridge.ecamRead(ecam(3, 0, 4), 8)).toBe(0xffffffffffffffffn);
  });

  it('reads all-ones outside the window and for absent functions', () => {
    const bus = new PciBus();
    const bridge = new PciHostBridge(bus, { ecamBuses: 2 });
    expect(bridge.ecamSize).toBe(2n << 20n);
    expect(bridge.ecamRead(2n << 20n, 4)).toBe(0xffffffffn);
    expect(bridge.ecamRead(-4n, 4)).toBe(0xffffffffn);
    expect(bridge.ecamRead(ecam(5, 0, 0, 1), 2)).toBe(0xffffn);
    expect(() => new PciHostBridge(new PciBus(), { ecamBuses: 0 })).toThrow();
  });

  it('CF8/CFC, ECAM and the bus entry agree for every function, register and size', () => {
    const { bus, bridge } = machine();
    bus.add(harness(PLAIN, { bus: 0, device: 3, function: 2 }).fn);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 0xff }),
        fc.constantFrom<1 | 2 | 4>(1, 2, 4),
        (device, fn, register, size) => {
          const aligned = register & ~(size - 1);
          bridge.portWrite(0xcf8, 4, cf8(device, fn, aligned));
          const viaPorts = bridge.portRead(0xcfc + (aligned & 3), size);
          const viaEcam = bridge.ecamRead(ecam(device, fn, aligned), size);
          const direct = BigInt(bus.configRead({ bus: 0, device, function: fn }, aligned, size));
          expect(viaPorts).toBe(direct);
          expect(viaEcam).toBe(direct);
        },
      ),
    );
  });
});

describe('PciBus', () => {
  it('refuses duplicates and functions of another bus, and reports removal of absent ones', () => {
    const { bus } = machine();
    expect(() => bus.add(harness(PLAIN, { bus: 0, device: 3, function: 0 }).fn)).toThrow(expect.objectContaining({ code: 'Exists' }));
    expect(() => bus.add(harness(PLAIN, { bus: 1, device: 5, function: 0 }).fn)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => bus.remove({ device: 9, function: 0 })).toThrow(expect.objectContaining({ code: 'NotFound' }));
    expect(() => new PciHostBridge(bus)).toThrow(expect.objectContaining({ code: 'Exists' }));
  });

  it('allocates the first empty slot after the host bridge, and runs out after 32', () => {
    const bus = new PciBus();
    new PciHostBridge(bus);
    expect(bus.allocateSlot()).toEqual({ segment: 0, bus: 0, device: 1, function: 0 });
    bus.add(harness(PLAIN, bus.allocateSlot()).fn);
    bus.add(harness(PLAIN, { bus: 0, device: 2, function: 3 }).fn);
    expect(bus.allocateSlot().device).toBe(3);
    for (let d = 3; d < 32; d++) bus.add(harness(PLAIN, bus.allocateSlot()).fn);
    expect(() => bus.allocateSlot()).toThrow(expect.objectContaining({ code: 'NoSpace' }));
    bus.remove({ device: 17, function: 0 });
    expect(bus.allocateSlot().device).toBe(17);
  });

  it('sets function 0\'s multi-function bit while its slot holds other functions', () => {
    const { bus, full } = machine();
    expect(full.fn.configRead(0x0e, 1)).toBe(0x00);
    bus.add(harness(PLAIN, { bus: 0, device: 3, function: 1 }).fn);
    expect(full.fn.configRead(0x0e, 1)).toBe(0x80);
    full.fn.reset(); // a property of the slot, not of the function's power-on state
    expect(full.fn.configRead(0x0e, 1)).toBe(0x80);
    bus.remove({ device: 3, function: 1 });
    expect(full.fn.configRead(0x0e, 1)).toBe(0x00);
  });

  it('serves hypervisor-decoded config cycles directly (Xen)', () => {
    const { bus, full } = machine();
    expect(bus.configRead({ bus: 0, device: 3, function: 0 }, 0, 4)).toBe(0x11e81234);
    bus.configWrite({ bus: 0, device: 3, function: 0 }, 0x04, 2, 0x1);
    expect(full.fn.ioDecode).toBe(true);
    expect(bus.configRead({ segment: 1, bus: 0, device: 3, function: 0 }, 0, 4)).toBe(0xffffffff);
    expect(bus.configRead({ bus: 0, device: 40, function: 0 }, 0, 4)).toBe(0xffffffff);
  });

  it('treats a disposed function as absent', () => {
    const { bus, full } = machine();
    full.fn.dispose();
    expect(bus.configRead({ bus: 0, device: 3, function: 0 }, 0, 2)).toBe(0xffff);
  });
});
