/**
 * The mediator end to end on the `sim` backend: lifecycle, enumeration, BAR mapping, crash
 * isolation, migration, config loading and release — every step through real guest accesses.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceDefinition, DeviceModel, MediatedDevice, Mediator } from '@vmed/core';
import { createMediator, isVmedError } from '@vmed/core';
import { EDU_PCI_FUNCTION, eduDevice, serialDevice } from '@vmed/devices';
import type { SimBackend } from '@vmed/testkit';
import { afterEach, describe, expect, it } from 'vitest';

const open: Mediator[] = [];
afterEach(async () => {
  for (const m of open.splice(0)) await m.close();
});

async function simMediator(types: Array<DeviceDefinition<never>> = [serialDevice, eduDevice]) {
  const mediator = await createMediator({ hypervisor: 'sim' }, { deviceTypes: types });
  open.push(mediator);
  return { mediator, sim: mediator.backend as SimBackend, guest: (mediator.backend as SimBackend).guest };
}

const bdf = (device: number) => ({ bus: 0, device, function: 0 });

/** The guest turns on decode (and bus mastering) and returns BAR0's address. */
async function enableBar0(m: { guest: SimBackend['guest'] }, device: MediatedDevice): Promise<bigint> {
  const at = bdf(device.address.device);
  await m.guest.configWrite(at, 0x04, 2, 0x7);
  const low = await m.guest.configRead(at, 0x10, 4);
  return BigInt((low & ~0xf) >>> 0);
}

describe('mediator lifecycle (mdev)', () => {
  it('reports types with available instances, refuses duplicates, exhaustion and unknown types', async () => {
    const { mediator } = await simMediator();
    const eduInfo = () => mediator.deviceTypes().find((t) => t.type === 'edu');
    const max = eduInfo()?.maxInstances ?? 0;
    expect(max).toBeGreaterThan(0);
    const uuid = '3f1c0000-0000-4000-8000-000000000001';
    mediator.create('edu', { uuid });
    expect(eduInfo()?.availableInstances).toBe(max - 1);
    expect(() => mediator.create('edu', { uuid })).toThrow(expect.objectContaining({ code: 'Exists' }));
    expect(() => mediator.create('nope')).toThrow(expect.objectContaining({ code: 'NotFound' }));
    expect(() => mediator.create('edu', { uuid: 'not-a-uuid' })).toThrow(expect.objectContaining({ code: 'Invalid' }));
    for (let i = 1; i < max; i++) mediator.create('edu');
    expect(eduInfo()?.availableInstances).toBe(0);
    expect(() => mediator.create('edu')).toThrow(expect.objectContaining({ code: 'NoSpace' }));
    mediator.device(uuid).remove();
    expect(eduInfo()?.availableInstances).toBe(1);
    expect(() => mediator.device(uuid)).toThrow(expect.objectContaining({ code: 'NotFound' }));
  });

  it('emits an event on every transition, in order, and refuses calls on a removed device', async () => {
    const { mediator } = await simMediator();
    const seen: string[] = [];
    for (const e of ['device-created', 'device-opened', 'device-reset', 'device-closed', 'device-removed'] as const) {
      mediator.on(e, (d) => seen.push(`${e}:${d.type}`));
    }
    const d = mediator.create('serial');
    d.open();
    d.reset();
    d.close();
    d.open();
    d.remove();
    expect(seen).toEqual([
      'device-created:serial',
      'device-opened:serial',
      'device-reset:serial',
      'device-closed:serial',
      'device-opened:serial',
      'device-removed:serial',
    ]);
    expect(() => d.open()).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => mediator.create('edu').close()).toThrow(expect.objectContaining({ code: 'State' }));
  });

  it('the guest sees a device only while it is open', async () => {
    const m = await simMediator();
    const d = m.mediator.create('edu', { slot: 5 });
    expect(await m.guest.configRead(bdf(5), 0, 4)).toBe(0xffffffff);
    d.open();
    expect(await m.guest.configRead(bdf(5), 0, 4)).toBe((EDU_PCI_FUNCTION.deviceId << 16) | EDU_PCI_FUNCTION.vendorId);
    // The host bridge is there too, as on a real machine.
    expect((await m.guest.configRead(bdf(0), 0x08, 4)) >>> 8).toBe(0x060000);
    d.close();
    expect(await m.guest.configRead(bdf(5), 0, 4)).toBe(0xffffffff);
  });
});

describe('BARs follow the guest', () => {
  it('maps a BAR only while decode is on, and moves it when the guest reprograms it', async () => {
    const m = await simMediator();
    const d = m.mediator.create('edu', { slot: 4 });
    d.open();
    const at = bdf(4);
    const base = BigInt(((await m.guest.configRead(at, 0x10, 4)) & ~0xf) >>> 0);
    expect(base).toBeGreaterThan(0n); // assigned as firmware would
    expect(await m.guest.mmioRead(base, 4)).toBe(0xffffffffn); // decode still off
    await m.guest.configWrite(at, 0x04, 2, 0x2);
    expect(await m.guest.mmioRead(base, 4)).toBe(0x010000edn);
    const moved = base + 0x0100_0000n;
    await m.guest.configWrite(at, 0x10, 4, Number(moved));
    expect(await m.guest.mmioRead(base, 4)).toBe(0xffffffffn);
    expect(await m.guest.mmioRead(moved, 4)).toBe(0x010000edn);
    await m.guest.configWrite(at, 0x04, 2, 0x0);
    expect(await m.guest.mmioRead(moved, 4)).toBe(0xffffffffn);
    expect(d.decodedRanges()).toEqual([]);
  });

  it('refuses to map a BAR the guest put over RAM, with a warning', async () => {
    const m = await simMediator();
    const warnings: string[] = [];
    m.mediator.on('warning', (msg) => warnings.push(msg));
    const d = m.mediator.create('edu', { slot: 4 });
    d.open();
    await m.guest.configWrite(bdf(4), 0x10, 4, 0x0010_0000 - 0x10_0000); // 0: RAM at 0
    await m.guest.configWrite(bdf(4), 0x10, 4, 0x0008_0000 & ~0xfffff); // still inside RAM
    await m.guest.configWrite(bdf(4), 0x10, 4, 0x0020_0000); // the 'high' RAM region
    await m.guest.configWrite(bdf(4), 0x04, 2, 0x2);
    expect(warnings.some((w) => /over guest RAM/.test(w))).toBe(true);
    expect(d.decodedRanges()).toEqual([]);
    // Guest RAM there is untouched and still RAM.
    expect((await m.guest.readRam(0x20_0000n, 4)).length).toBe(4);
  });
});

describe('crash isolation', () => {
  it('a throwing model is fenced off; the other device keeps working; reset recovers', async () => {
    let explode = true;
    const faulty: DeviceDefinition<never> = {
      type: 'faulty',
      description: 'throws on BAR reads while told to',
      maxInstances: 1,
      create(): DeviceModel {
        return {
          definition: { vendorId: 0x1af4, deviceId: 0x10ff, classCode: 0xff0000, bars: [{ kind: 'memory32', size: 4096 }] },
          stateVersion: 1,
          read() {
            if (explode) throw new Error('model bug');
            return 0x1234;
          },
          write() {},
          reset() {},
          saveState() {},
          loadState() {},
        };
      },
    };
    const m = await simMediator([eduDevice, faulty]);
    const broken: unknown[] = [];
    m.mediator.on('device-broken', (_d, cause) => broken.push(cause));
    const bad = m.mediator.create('faulty', { slot: 6 });
    const good = m.mediator.create('edu', { slot: 7 });
    bad.open();
    good.open();
    const badBar = await enableBar0(m, bad);
    const goodBar = await enableBar0(m, good);
    expect(await m.guest.mmioRead(badBar, 4)).toBe(0xffffffffn);
    expect(bad.broken).toBe(true);
    expect(broken).toHaveLength(1);
    explode = false;
    expect(await m.guest.mmioRead(badBar, 4)).toBe(0xffffffffn); // still fenced off
    expect(await m.guest.mmioRead(goodBar, 4)).toBe(0x010000edn);
    bad.reset();
    expect(bad.broken).toBe(false);
    const again = await enableBar0(m, bad);
    expect(await m.guest.mmioRead(again, 4)).toBe(0x1234n);
  });
});

describe('migration', () => {
  it('moves edu state to a second mediator through STOP_COPY and RESUMING', async () => {
    const src = await simMediator();
    const a = src.mediator.create('edu', { slot: 4 });
    a.open();
    const barA = await enableBar0(src, a);
    await src.guest.mmioWrite(barA + 0x04n, 4, 0xabcdn); // liveness register holds ~value
    await src.guest.mmioWrite(barA + 0x08n, 4, 6n); // factorial: 720
    await a.migration.setState('STOP_COPY');
    const chunks: Uint8Array[] = [];
    for (let c = a.migration.read(64); c !== null; c = a.migration.read(64)) chunks.push(c.slice());
    await a.migration.setState('STOP');

    const dst = await simMediator();
    const b = dst.mediator.create('edu', { slot: 4 });
    b.open();
    await b.migration.setState('RESUMING');
    for (const c of chunks) b.migration.write(c);
    await b.migration.setState('RUNNING');
    const barB = BigInt(((await dst.guest.configRead(bdf(4), 0x10, 4)) & ~0xf) >>> 0);
    expect(await dst.guest.mmioRead(barB + 0x04n, 4)).toBe(BigInt(~0xabcd >>> 0));
    expect(await dst.guest.mmioRead(barB + 0x08n, 4)).toBe(720n);
    // The config space came along: decode is already on at the destination.
    expect((await dst.guest.configRead(bdf(4), 0x04, 2)) & 0x2).toBe(0x2);
  });

  it('refuses a corrupted stream, stays in RESUMING and leaves the device as it was', async () => {
    const m = await simMediator();
    const d = m.mediator.create('edu', { slot: 4 });
    d.open();
    const bar = await enableBar0(m, d);
    await m.guest.mmioWrite(bar + 0x08n, 4, 5n);
    const before = d.migration.save();
    const stream = before.slice();
    stream[stream.length - 10] = (stream[stream.length - 10] as number) ^ 0x40;
    await d.migration.setState('RESUMING');
    d.migration.write(stream);
    await expect(d.migration.setState('RUNNING')).rejects.toSatisfy((e: unknown) => isVmedError(e, 'Invalid'));
    expect(d.migration.state).toBe('RESUMING');
    expect(d.migration.save()).toEqual(before);
    // A good stream is still accepted afterwards.
    d.migration.write(before);
    await d.migration.setState('RUNNING');
    expect(await m.guest.mmioRead(bar + 0x08n, 4)).toBe(120n);
  });

  it('refuses a stream of another device type', async () => {
    const m = await simMediator();
    const edu = m.mediator.create('edu');
    const serial = m.mediator.create('serial');
    await serial.migration.setState('RESUMING');
    serial.migration.write(edu.migration.save());
    await expect(serial.migration.setState('STOP')).rejects.toThrow(/device type|type/);
  });

  it('guest accesses are refused while stopped and served again when running', async () => {
    const m = await simMediator();
    const d = m.mediator.create('edu', { slot: 4 });
    d.open();
    const bar = await enableBar0(m, d);
    await d.migration.setState('STOP');
    expect(await m.guest.mmioRead(bar, 4)).toBe(0xffffffffn);
    await d.migration.setState('RUNNING');
    expect(await m.guest.mmioRead(bar, 4)).toBe(0x010000edn);
  });
});

describe('DMA and dirty tracking', () => {
  it('device-model writes land in the mediator dirty bitmap', async () => {
    const m = await simMediator();
    const d = m.mediator.create('edu', { slot: 4 });
    d.open();
    const bar = await enableBar0(m, d);
    const target = 0x3000n;
    await m.guest.mmioWrite(bar + 0x80n, 8, 0x40000n);
    await m.guest.mmioWrite(bar + 0x88n, 8, target);
    await m.guest.mmioWrite(bar + 0x90n, 8, 16n);
    await m.guest.mmioWrite(bar + 0x98n, 8, 3n); // start, device → RAM
    const c = m.mediator.dirty.collect();
    expect(c.pages()).toContain(target);
    c.commit();
  });
});

describe('createMediator', () => {
  it('loads a JSON config with device modules and creates the listed devices', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmed-config-'));
    const file = join(dir, 'vmed.json');
    writeFileSync(file, JSON.stringify({ hypervisor: 'sim', deviceModules: ['@vmed/devices'], devices: [{ type: 'serial' }, { type: 'edu', open: false }] }));
    const mediator = await createMediator(file);
    open.push(mediator);
    expect(mediator.list().map((d) => [d.type, d.state])).toEqual([
      ['serial', 'open'],
      ['edu', 'created'],
    ]);
  });

  it('a missing backend package is one clear line', async () => {
    const importer = async () => {
      throw Object.assign(new Error("Cannot find package '@vmed/backend-xen'"), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    await expect(createMediator({ hypervisor: 'xen', xen: { domid: 1 } }, { importer })).rejects.toThrow(
      /^mediator\.loadBackend: hypervisor "xen" needs the package @vmed\/backend-xen, which is not installed/,
    );
    await expect(createMediator({ hypervisor: 'vmware' })).rejects.toThrow(/unknown hypervisor "vmware"/);
  });

  it('closing the mediator releases everything the backend handed out', async () => {
    const { mediator, sim } = await simMediator();
    const d = mediator.create('edu');
    d.open();
    await enableBar0({ guest: sim.guest }, d);
    expect(sim.resources().claims).toBeGreaterThan(0);
    await mediator.close();
    open.splice(open.indexOf(mediator), 1);
    expect(sim.resources()).toMatchObject({ claims: 0, msiRoutes: 0, lineIrqs: 0, doorbells: 0, mappings: 0 });
    expect(() => mediator.create('edu')).toThrow(expect.objectContaining({ code: 'BadHandle' }));
  });
});
