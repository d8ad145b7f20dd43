/**
 * Library loading and handle opening on a machine without Xen: a missing library is one clear
 * line naming it; present libraries that cannot reach Xen fail with a typed error, and the
 * backend refuses to start without leaving anything open.
 */
import { existsSync } from 'node:fs';
import { isVmedError } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import { XEN_LIBRARIES, loadSharedLibrary } from '../src/libs/load.js';
import { createBackend } from '../src/backend.js';
import { countOpenFds } from '../src/libs/fds.js';
import { DeviceModelHandle } from '../src/libs/devicemodel.js';
import { EvtchnHandle } from '../src/libs/evtchn.js';
import { ForeignMemoryHandle } from '../src/libs/foreignmemory.js';

const haveXen = existsSync('/dev/xen/privcmd');
const haveLibs = Object.values(XEN_LIBRARIES).every((l) => ['/usr/lib/x86_64-linux-gnu/', '/lib/x86_64-linux-gnu/'].some((d) => existsSync(d + l.soname)));

describe('Xen library loading', () => {
  it('a missing library is one Unsupported line naming it and its package', () => {
    let error: unknown;
    try {
      loadSharedLibrary('libxen-not-there.so.9', 'Debian package libxen-not-there9');
    } catch (e) {
      error = e;
    }
    expect(isVmedError(error, 'Unsupported')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain('libxen-not-there.so.9');
    expect(message).toContain('libxen-not-there9');
    expect(message.split('\n')).toHaveLength(1);
  });

  it.skipIf(haveXen || !haveLibs)('without Xen (no /dev/xen/privcmd) opening a handle fails with a typed error naming the device', () => {
    for (const open of [() => DeviceModelHandle.open(), () => ForeignMemoryHandle.open(), () => EvtchnHandle.open()]) {
      let error: unknown;
      try {
        open();
      } catch (e) {
        error = e;
      }
      expect(isVmedError(error)).toBe(true);
      expect((error as { errno?: string }).errno).toBe('ENOENT');
      expect((error as Error).message).toMatch(/dom0|xen-evtchn/);
    }
  });

  it.skipIf(haveXen || !haveLibs)('without Xen createBackend rejects and leaves no descriptor open', async () => {
    const before = countOpenFds();
    await expect(createBackend({ domid: 1, guestType: 'pvh', ram: [{ base: 0, length: 0x100000 }] })).rejects.toMatchObject({ errno: 'ENOENT' });
    expect(countOpenFds()).toBe(before);
  });

  it('createBackend validates options before touching Xen', async () => {
    await expect(createBackend({ domid: 0 })).rejects.toMatchObject({ code: 'Invalid', operation: 'xen.options' });
  });
});
