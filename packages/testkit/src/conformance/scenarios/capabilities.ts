/**
 * What `capabilities` says must be what the backend does: every absent capability throws
 * `Unsupported` when called — never a silent no-op — and what is present answers.
 */
import assert from 'node:assert/strict';
import { PAGE_SIZE } from '@vmed/core';
import { expectCode, expectUnsupported, rawRange, scratchPages } from '../helpers.js';
import { scenario } from '../scenario.js';

export const capabilityScenarios = [
  scenario('capabilities.honest', 'absent capabilities throw Unsupported; the RAM map and limits are well-formed', async (session) => {
    const { backend, guest } = session;
    const caps = backend.capabilities;
    assert.ok(typeof caps.hypervisor === 'string' && caps.hypervisor.length > 0, 'capabilities.hypervisor names the backend');
    assert.ok(Number.isSafeInteger(caps.maxMsiRoutes) && caps.maxMsiRoutes > 0, 'maxMsiRoutes is a positive integer');

    const ram = backend.memory.ram.ranges;
    assert.ok(ram.length > 0, 'the RAM map is not empty');
    for (let i = 1; i < ram.length; i++) {
      const prev = ram[i - 1];
      const r = ram[i];
      assert.ok(prev !== undefined && r !== undefined && prev.base + prev.length <= r.base, 'RAM regions are sorted and do not overlap');
    }

    const bdf = { bus: 0, device: 0x1e, function: 0 };
    if (caps.pciConfig === 'device-model') expectUnsupported(() => backend.claimPciFunction(bdf), 'claimPciFunction with pciConfig "device-model"');
    if (!caps.signalMsi) expectUnsupported(() => backend.signalMsi(guest.msiMessageFor(0x40)), 'signalMsi without the capability');
    const line = session.freeLine ?? 0;
    if (caps.lineIrq === false) {
      expectUnsupported(() => backend.createLineIrq({ kind: 'gsi', line }, 'edge'), 'createLineIrq(edge) without line IRQs');
      expectUnsupported(() => backend.createLineIrq({ kind: 'gsi', line }, 'level'), 'createLineIrq(level) without line IRQs');
    } else {
      if (!caps.lineIrq.edge) expectUnsupported(() => backend.createLineIrq({ kind: 'gsi', line }, 'edge'), 'createLineIrq(edge) without edge lines');
      if (!caps.lineIrq.level) expectUnsupported(() => backend.createLineIrq({ kind: 'gsi', line }, 'level'), 'createLineIrq(level) without level lines');
    }
    const [page] = scratchPages(guest, 1) as [bigint];
    if (caps.dirtyTracking === false) {
      expectUnsupported(() => backend.dirty.start(), 'dirty.start without dirty tracking');
      expectUnsupported(() => backend.dirty.stop(), 'dirty.stop without dirty tracking');
      expectUnsupported(() => backend.dirty.pull(), 'dirty.pull without dirty tracking');
      expectUnsupported(() => backend.dirty.push(rawRange(page, PAGE_SIZE)), 'dirty.push without dirty tracking');
    } else {
      assert.equal(backend.dirty.mode, caps.dirtyTracking, 'dirty.mode matches capabilities.dirtyTracking');
      if (caps.dirtyTracking === 'push') {
        backend.dirty.start();
        expectUnsupported(() => backend.dirty.pull(), 'dirty.pull in push mode');
        backend.dirty.stop();
      }
    }
    if (!caps.pageTracking) expectUnsupported(() => backend.trackWrites(rawRange(page, PAGE_SIZE), () => 'apply'), 'trackWrites without page tracking');
    if (!caps.pinning) expectUnsupported(() => backend.memory.pin(page, PAGE_SIZE), 'pin without pinning');
    if (!caps.doorbellDatamatch) {
      expectUnsupported(
        () => backend.registerIoEvent({ space: 'mmio', address: session.mmioWindow.base, length: 4, datamatch: 1n }, () => {}),
        'a datamatch doorbell without doorbellDatamatch',
      );
    }
    if (!caps.directRegions) {
      const memory = backend.allocateSharedMemory(PAGE_SIZE);
      expectUnsupported(() => backend.mapDirect(rawRange(session.mmioWindow.base, PAGE_SIZE), memory), 'mapDirect without direct regions');
      memory.dispose();
    }
    if (!caps.eventChannels) {
      expectUnsupported(() => backend.createEventChannel(), 'createEventChannel without event channels');
    } else {
      const channel = backend.createEventChannel();
      assert.ok(Number.isInteger(channel.port) && channel.port > 0, 'an event channel has a port');
      channel.trigger();
      channel.dispose();
      assert.ok(channel.disposed);
      expectCode(() => channel.trigger(), 'BadHandle', 'trigger on a disposed event channel');
    }
    // The sim and KVM take config cycles as port I/O; Xen decodes them itself.
    assert.ok(caps.pciConfig === 'device-model' || caps.pciConfig === 'hypervisor');
    assert.ok(caps.doorbells === 'kernel' || caps.doorbells === 'userspace');
  }),
];
