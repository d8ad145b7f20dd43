/**
 * The backend's config section is validated before anything is opened: bad input is Invalid
 * with the operation `kvm.createBackend`, a missing KVM device is Unsupported.
 */
import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { createBackend } from '../src/index.js';
import { defaultRamLayout, parseOptions } from '../src/options.js';
import { KVM_SKIP } from './helpers/kvm.js';

function invalid(options: Record<string, unknown>): string {
  try {
    parseOptions(options);
  } catch (error) {
    if (isVmedError(error, 'Invalid') && error.operation === 'kvm.createBackend') return error.message;
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(options, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
}

describe('options', () => {
  it('accepts standalone and adopt configs and fills defaults', () => {
    expect(parseOptions({ mode: 'standalone', memoryMiB: 16, vcpus: 2 })).toEqual({ mode: 'standalone', memoryMiB: 16, vcpus: 2, irqchip: 'kernel' });
    expect(parseOptions({ memoryMiB: 4 })).toMatchObject({ mode: 'standalone', vcpus: 1 });
    const adopt = parseOptions({ mode: 'adopt', vmFd: 7, memory: [{ guestAddress: 0, size: 4096, hostAddress: 0x7000_0000n, slot: 3 }] });
    expect(adopt).toEqual({ mode: 'adopt', vmFd: 7, irqchip: 'kernel', memory: [{ guestAddress: 0n, size: 4096n, hostAddress: 0x7000_0000n, slot: 3 }] });
  });

  it('refuses malformed configs', () => {
    expect(invalid({ mode: 'hyperv', memoryMiB: 1 })).toMatch(/mode/);
    expect(invalid({ mode: 'standalone', memoryMiB: 0 })).toMatch(/memoryMiB/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1.5 })).toMatch(/memoryMiB/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1, vcpus: 0 })).toMatch(/vcpus/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1, vcpus: 65 })).toMatch(/vcpus/);
    expect(invalid({ mode: 'standalone', memoryMiB: 2, ramLayout: [{ base: 0, size: 1 << 20 }] })).toMatch(/add up/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1, ramLayout: [{ base: -1, size: 1 << 20 }] })).toMatch(/base/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1, irqchip: 'split' })).toMatch(/irqchip/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1, quantumMs: 0 })).toMatch(/quantumMs/);
    expect(invalid({ mode: 'standalone', memoryMiB: 1, onError: 'log' })).toMatch(/onError/);
    expect(invalid({ mode: 'adopt', vmFd: -1, memory: [] })).toMatch(/vmFd/);
    expect(invalid({ mode: 'adopt', vmFd: 3, memory: [] })).toMatch(/memory/);
    expect(invalid({ mode: 'adopt', vmFd: 3, memory: [{ guestAddress: 0, size: 4096, hostAddress: 0 }] })).toMatch(/hostAddress/);
    expect(invalid({ mode: 'adopt', vmFd: 3, memory: [{ guestAddress: 0, size: 4096, hostAddress: 'here' }] })).toMatch(/hostAddress/);
    expect(invalid({ mode: 'adopt', vmFd: 3, memory: [{ guestAddress: 0, size: 4096, hostAddress: 1n, slot: -2 }] })).toMatch(/slot/);
    expect(invalid({ mode: 'adopt', vmFd: 3, memory: [{ guestAddress: 0, size: 4096, hostAddress: 1n }], gsiRoutes: [{ gsi: 5, kind: 'bogus' }] })).toMatch(/kind/);
    expect(invalid({ mode: 'adopt', vmFd: 3, memory: [{ guestAddress: 0, size: 4096, hostAddress: 1n }], slotRange: { first: 32760, count: 100 } })).toMatch(/slotRange/);
  });

  it('lays default RAM out below 3 GiB and from 4 GiB', () => {
    expect(defaultRamLayout(16)).toEqual([{ base: 0n, size: 16n << 20n, name: 'low' }]);
    expect(defaultRamLayout(4096)).toEqual([
      { base: 0n, size: 3n << 30n, name: 'low' },
      { base: 4n << 30n, size: 1n << 30n, name: 'high' },
    ]);
  });

  it('refuses unaligned RAM regions and says Unsupported for a missing KVM device', async (ctx) => {
    ctx.skip(KVM_SKIP !== undefined, KVM_SKIP);
    await expect(createBackend({ mode: 'standalone', memoryMiB: 1, device: '/nonexistent/kvm' })).rejects.toMatchObject({ code: 'Unsupported', operation: 'kvm.open' });
    await expect(
      createBackend({ mode: 'standalone', memoryMiB: 1, ramLayout: [{ base: 0x800, size: 1 << 20 }] }),
    ).rejects.toMatchObject({ code: 'Invalid' });
    await expect(
      createBackend({
        mode: 'standalone',
        memoryMiB: 2,
        ramLayout: [
          { base: 0, size: 1 << 20 },
          { base: 0x80000, size: 1 << 20 },
        ],
      }),
    ).rejects.toMatchObject({ code: 'Invalid' });
  });
});
