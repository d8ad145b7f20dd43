/**
 * Direct regions: shared memory mapped into the guest is read and written by the guest
 * without reaching the sink, and goes away with its mapping.
 */
import assert from 'node:assert/strict';
import { PAGE_SIZE } from '@vmed/core';
import { attachRecorder, expectCode, expectUnsupported, le, pattern, rawRange } from '../helpers.js';
import { scenario } from '../scenario.js';

export const directRegionScenarios = [
  scenario('direct-region.guest-sees-memory', 'the guest reads and writes mapped shared memory directly; unmapping ends it', async (session) => {
    const { backend, guest } = session;
    const size = 2 * PAGE_SIZE;
    const memory = backend.allocateSharedMemory(size);
    assert.equal(memory.size, size);
    assert.equal(memory.bytes.length, size);
    const d = session.mmioWindow.base + 0x8_0000n;
    if (!backend.capabilities.directRegions) {
      expectUnsupported(() => backend.mapDirect(rawRange(d, size), memory), 'mapDirect without direct regions');
      memory.dispose();
      expectCode(() => memory.bytes, 'BadHandle', 'bytes of disposed shared memory');
      return;
    }
    const sink = attachRecorder(session);
    const data = pattern(size, 8);
    memory.bytes.set(data);
    const mapping = backend.mapDirect(rawRange(d, size), memory);
    assert.equal(mapping.range.base, d);
    assert.equal(mapping.range.length, BigInt(size));

    assert.equal(await guest.mmioRead(d + 0x10n, 4), le(data, 0x10, 4), 'the guest reads the shared memory');
    assert.equal(await guest.mmioRead(d + BigInt(size - 8), 8), le(data, size - 8, 8), 'to its last byte');
    await guest.mmioWrite(d + 0x100n, 4, 0xa5a5_a5a5n);
    assert.deepEqual([...memory.bytes.subarray(0x100, 0x104)], [0xa5, 0xa5, 0xa5, 0xa5], 'guest stores land in the shared memory');
    memory.bytes[0x200] = 0x3c;
    assert.equal(await guest.mmioRead(d + 0x200n, 1), 0x3cn, 'the device model writes, the guest sees it at once');
    assert.equal(sink.within('mmio', d, BigInt(size)).length, 0, 'no direct access reaches the sink');

    const other = backend.allocateSharedMemory(PAGE_SIZE);
    expectCode(() => backend.mapDirect(rawRange(d + BigInt(PAGE_SIZE), PAGE_SIZE), other), 'Exists', 'a mapping over a mapping');
    expectCode(() => backend.mapDirect(rawRange(d + BigInt(size) + 1n, PAGE_SIZE), other), 'Invalid', 'an unaligned mapping');

    mapping.dispose();
    assert.equal(mapping.disposed, true);
    assert.equal(await guest.mmioRead(d + 0x10n, 4), 0xffff_ffffn, 'an unmapped region reads as nothing');
    other.dispose();
    expectCode(() => backend.mapDirect(rawRange(d, PAGE_SIZE), other), 'BadHandle', 'mapping disposed shared memory');
    memory.dispose();
    expectCode(() => memory.bytes, 'BadHandle', 'bytes of disposed shared memory');
  }),
];
