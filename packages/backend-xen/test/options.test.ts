/** Option validation, guest-type detection from libxl's xenstore record, the derived RAM map. */
import { InvalidError, NotFoundError, UnsupportedError } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import { parseGuestType } from '../src/guest.js';
import { LOW_MEMORY_END, defaultRamMap, parseMemoryKib } from '../src/memory/ram-map.js';
import { resolveXenOptions } from '../src/options.js';

describe('resolveXenOptions', () => {
  it('applies the defaults: restrict on, buffered ioreqs, inline waiting, teardown handlers', () => {
    const o = resolveXenOptions({ domid: 3 });
    expect(o).toMatchObject({
      domid: 3,
      guestType: undefined,
      restrict: true,
      bufferedIoreqs: true,
      wait: 'inline',
      teardownOnExit: true,
      xenstorePath: '/local/domain/3/data/vmed',
      ram: undefined,
    });
  });

  it.each([
    [{}, /domid/],
    [{ domid: 0 }, /domid/],
    [{ domid: 0x7ff0 }, /domid/],
    [{ domid: 1.5 }, /domid/],
    [{ domid: 1, guestType: 'pv' }, /guestType/],
    [{ domid: 1, wait: 'spin' }, /wait/],
    [{ domid: 1, restrict: 'yes' }, /restrict/],
    [{ domid: 1, ram: [] }, /no region/],
    [{ domid: 1, ram: [{ base: 0, length: 10 }, { base: 5, length: 10 }] }, /overlap/],
    [{ domid: 1, xenstorePath: 'relative' }, /xenstorePath/],
    [{ domid: 1, domId: 2 }, /unknown option domId/],
  ])('refuses %j', (raw, message) => {
    expect(() => resolveXenOptions(raw as Record<string, unknown>)).toThrow(InvalidError);
    expect(() => resolveXenOptions(raw as Record<string, unknown>)).toThrow(message);
  });

  it('takes an explicit RAM map', () => {
    const o = resolveXenOptions({ domid: 1, ram: [{ base: 0x100000n, length: 0x100000 }, { base: 0, length: 0xa0000 }] });
    expect(o.ram?.ranges.map((r) => r.base)).toEqual([0n, 0x100000n]);
  });
});

describe('guest type', () => {
  it('hvm and pvh are accepted; pv cannot have an IOREQ server; absent asks for the option', () => {
    expect(parseGuestType(1, 'hvm')).toBe('hvm');
    expect(parseGuestType(1, 'pvh\n')).toBe('pvh');
    expect(() => parseGuestType(1, 'pv')).toThrow(UnsupportedError);
    expect(() => parseGuestType(1, undefined)).toThrow(NotFoundError);
    expect(() => parseGuestType(1, undefined)).toThrow(/guestType option/);
    expect(() => parseGuestType(1, 'weird')).toThrow(UnsupportedError);
  });
});

describe('RAM map from the domain size', () => {
  it('small guests: one region from 0', () => {
    expect(defaultRamMap(256n << 20n).ranges).toEqual([{ base: 0n, length: 256n << 20n, name: 'low' }]);
  });

  it('large guests: low RAM up to the MMIO hole, the rest above 4 GiB', () => {
    const map = defaultRamMap(6n << 30n);
    expect(map.ranges).toEqual([
      { base: 0n, length: LOW_MEMORY_END, name: 'low' },
      { base: 1n << 32n, length: (6n << 30n) - LOW_MEMORY_END, name: 'high' },
    ]);
  });

  it('parses xenstore KiB values and rejects anything else', () => {
    expect(parseMemoryKib('262144')).toBe(256n << 20n);
    expect(parseMemoryKib(' 1024\n')).toBe(1n << 20n);
    for (const bad of [undefined, '', '0', '-5', '12kB', '1e9', '9'.repeat(20)]) expect(parseMemoryKib(bad)).toBeUndefined();
  });
});
