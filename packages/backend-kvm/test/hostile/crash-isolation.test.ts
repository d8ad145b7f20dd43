/**
 * Crash isolation on a real KVM guest: a device model that throws — on a register read, in a
 * doorbell handler (ioeventfd, no exit), in the completion of a DMA — while the guest runs.
 * That device is fenced off (its BAR reads all-ones, writes are dropped, `device-broken` is
 * emitted once with the cause), the guest keeps getting answers and finishes its run, edu on
 * the same mediator keeps working, and the broken device comes back with `reset()` or goes
 * away with `remove()`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MediatedDevice } from '@vmed/core';
import type { EduDevice } from '@vmed/devices';
import { edu, eduDevice } from '@vmed/devices';
import * as guests from '@vmed/testkit';
import { KVM_SKIP } from '../helpers/kvm.js';
import { AgentGuest, kvmMediator, until, type KvmMediator } from './helpers/agent-guest.js';
import type { FragileModel } from './helpers/fragile-device.js';
import { FRAGILE_DOORBELL, FRAGILE_ID, fragileDevice, type FragileFault } from './helpers/fragile-device.js';

const FRAGILE = { bus: 0, device: 3, function: 0 };
const EDU = { bus: 0, device: 4, function: 0 };
const DMA_TARGET = BigInt(guests.AGENT_SCRATCH_ADDR) + 0x100n;
const ALL_ONES = 0xffff_ffffn;

describe('crash isolation on KVM', () => {
  let kvm: KvmMediator | undefined;
  let agent: AgentGuest | undefined;
  let fragile: MediatedDevice;
  let model: FragileModel;
  let eduModel: EduDevice;
  let fragileBar: bigint;
  let eduBar: bigint;
  const broken: Array<{ device: MediatedDevice; cause: unknown }> = [];

  beforeEach(async (ctx) => {
    ctx.skip(KVM_SKIP !== undefined, KVM_SKIP);
    broken.length = 0;
    kvm = await kvmMediator({ vcpus: 1, deviceTypes: [fragileDevice, eduDevice] });
    kvm.mediator.on('device-broken', (device, cause) => broken.push({ device, cause }));
    fragile = kvm.mediator.create('fragile', { slot: FRAGILE.device });
    fragile.open();
    model = fragile.model as FragileModel;
    const eduDev = kvm.mediator.create('edu', { slot: EDU.device });
    eduDev.open();
    eduModel = eduDev.model as EduDevice;
    agent = await AgentGuest.start(kvm.backend);
    fragileBar = await enable(FRAGILE);
    eduBar = await enable(EDU);
  });

  afterEach(async () => {
    if (agent !== undefined && agent.ended === undefined) await agent.abandon();
    await kvm?.mediator.close();
    kvm = undefined;
    agent = undefined;
  });

  /** The guest's driver turns on memory decode and bus mastering and finds BAR0. */
  async function enable(device: typeof FRAGILE): Promise<bigint> {
    const a = agent as AgentGuest;
    await a.cfgWrite(device, 0x04, 2, 0x6);
    return a.barAddress(device, 0);
  }

  const f = (offset: number): bigint => fragileBar + BigInt(offset);

  /** edu answers the guest: a factorial computed and read back through MMIO. */
  async function eduWorks(n: number): Promise<void> {
    const a = agent as AgentGuest;
    const computed = eduModel.stats().factorialsComputed;
    await a.mmioWrite(eduBar + BigInt(edu.EDU_FACTORIAL), n);
    expect(Number(await a.mmioRead(eduBar + BigInt(edu.EDU_FACTORIAL)))).toBe(factorial(n));
    expect(eduModel.stats().factorialsComputed).toBe(computed + 1);
  }

  function factorial(n: number): number {
    let r = 1;
    for (let i = 2; i <= n; i++) r *= i;
    return r;
  }

  /** Makes the model throw through `fault`, from the guest, and waits until the device is fenced. */
  async function breakIt(fault: Exclude<FragileFault, 'none'>): Promise<void> {
    const a = agent as AgentGuest;
    model.fault = fault;
    switch (fault) {
      case 'read':
        // The faulting read itself gets all-ones, as a master abort would.
        expect(await a.mmioRead(f(0x10))).toBe(ALL_ONES);
        break;
      case 'dma':
        await a.mmioWrite(f(0x0c), Number(DMA_TARGET));
        await a.mmioWrite(f(0x04), 0xabcd1234);
        await a.mmioWrite(f(0x08), 1);
        break;
      case 'doorbell':
        // Caught by the kernel (ioeventfd): the handler runs later on the I/O context.
        await a.mmioWrite(f(FRAGILE_DOORBELL), 1);
        await until(() => broken.length > 0);
        break;
    }
  }

  for (const fault of ['read', 'doorbell', 'dma'] as const) {
    it(`a throw ${fault === 'read' ? 'on a register read' : fault === 'doorbell' ? 'in a doorbell handler' : 'in a DMA completion'} fences the device; the VM and edu carry on; reset brings it back`, async () => {
      const a = agent as AgentGuest;
      const k = kvm as KvmMediator;
      // Healthy first.
      expect(await a.mmioRead(f(0x00))).toBe(BigInt(FRAGILE_ID));
      await a.mmioWrite(f(0x04), 0x55);
      expect(await a.mmioRead(f(0x04))).toBe(0x55n);
      await eduWorks(5);

      await breakIt(fault);
      expect(broken).toHaveLength(1);
      expect(broken[0]?.device).toBe(fragile);
      expect(String((broken[0]?.cause as Error).message)).toMatch(fault === 'read' ? /status read bug/ : fault === 'doorbell' ? /doorbell handler bug/ : /DMA completion bug/);
      expect(fragile.broken).toBe(true);
      expect(fragile.brokenBy).toBe(broken[0]?.cause);

      // Fenced: every register reads all-ones, writes are dropped, doorbells are ignored.
      const scratchBefore = model.scratch;
      const ringsBefore = model.rings;
      expect(await a.mmioRead(f(0x00))).toBe(ALL_ONES);
      expect(await a.mmioRead(f(0x04))).toBe(ALL_ONES);
      await a.mmioWrite(f(0x04), 0x77);
      expect(model.scratch).toBe(scratchBefore);
      const doorbell = k.doorbells.find((d) => !d.disposed && d.spec.address === f(FRAGILE_DOORBELL));
      const served = doorbell?.rings ?? -1;
      await a.mmioWrite(f(FRAGILE_DOORBELL), 1);
      // The guest's config space still answers (the function is there, the model is not reached).
      expect(await a.cfgRead(FRAGILE, 0x00)).toBe(0x10fe1af4);
      // The VM runs on and edu still answers.
      await eduWorks(6);
      // The backend served the ring (read the eventfd, called the device's handler), and the
      // fenced device did not pass it to the model.
      await until(() => (doorbell?.rings ?? -1) > served);
      expect(model.rings).toBe(ringsBefore);
      expect(broken).toHaveLength(1); // emitted once
      expect(k.errors).toEqual([]); // the mediator caught it; the backend saw nothing

      // Reset: the model and config space go back to power-on and the fence is lifted.
      model.fault = 'none';
      fragile.reset();
      expect(fragile.broken).toBe(false);
      fragileBar = await enable(FRAGILE);
      expect(await a.mmioRead(f(0x00))).toBe(BigInt(FRAGILE_ID));
      await a.mmioWrite(f(0x04), 0x99);
      expect(await a.mmioRead(f(0x04))).toBe(0x99n);
      // DMA and the doorbell work again.
      await a.mmioWrite(f(0x0c), Number(DMA_TARGET));
      await a.mmioWrite(f(0x08), 1);
      const landed = new Uint8Array(4);
      k.backend.memory.read(DMA_TARGET, landed);
      expect(new DataView(landed.buffer).getUint32(0, true)).toBe(0x99);
      const completed = model.completed;
      await a.mmioWrite(f(FRAGILE_DOORBELL), 1);
      await until(() => model.completed === completed + 1);

      const end = await a.finish();
      expect(end.vcpus.map((v) => v.reason)).toEqual(['done']);
    });
  }

  it('a broken device can be removed: its BAR goes unclaimed, its instance slot frees, edu carries on', async () => {
    const a = agent as AgentGuest;
    const k = kvm as KvmMediator;
    const available = () => k.mediator.deviceTypes().find((t) => t.type === 'fragile')?.availableInstances;
    const slotsBefore = available();
    const held = k.backend.resources();
    await breakIt('read');
    expect(fragile.broken).toBe(true);
    fragile.remove();
    expect(fragile.state).toBe('removed');
    expect(available()).toBe((slotsBefore ?? 0) + 1);
    // Gone from the bus and from the BAR range.
    expect(await a.cfgRead(FRAGILE, 0x00)).toBe(0xffff_ffff);
    expect(await a.mmioRead(f(0x00))).toBe(ALL_ONES);
    // Its doorbell and BAR claim went with it; edu's are still there.
    const after = k.backend.resources();
    expect(after.doorbells).toBe(held.doorbells - 1);
    expect(after.claims).toBe(held.claims - 1);
    await eduWorks(7);
    // A new instance on the same slot works from scratch.
    const again = k.mediator.create('fragile', { slot: FRAGILE.device });
    again.open();
    fragileBar = await enable(FRAGILE);
    expect(await a.mmioRead(f(0x00))).toBe(BigInt(FRAGILE_ID));
    const end = await a.finish();
    expect(end.vcpus.map((v) => v.reason)).toEqual(['done']);
  });
});
