/**
 * Loading the Xen libraries (and libc) on first use, once per thread, with the prototypes of
 * `abi/xen.ts`. A missing library is one `Unsupported` line naming it and its package: koffi's
 * own message does not say which library was missing.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { UnsupportedError } from '@vmed/core';
import {
  DEVICEMODEL_PROTOTYPES,
  EVTCHN_PROTOTYPES,
  FOREIGNMEMORY_PROTOTYPES,
  LIBC_PROTOTYPES,
  XENSTORE_PROTOTYPES,
  bindPrototypes,
  type DeviceModelLib,
  type EvtchnLib,
  type ForeignMemoryLib,
  type LibcLib,
  type XenstoreLib,
} from '../abi/xen.js';

/** The Xen libraries this backend uses, with the Debian 12 package that ships each. */
export const XEN_LIBRARIES = {
  devicemodel: { soname: 'libxendevicemodel.so.1', debian: 'libxendevicemodel1' },
  foreignmemory: { soname: 'libxenforeignmemory.so.1', debian: 'libxenforeignmemory1' },
  evtchn: { soname: 'libxenevtchn.so.1', debian: 'libxenevtchn1' },
  xenstore: { soname: 'libxenstore.so.4', debian: 'libxenstore4' },
} as const;

type LibraryName = keyof typeof XEN_LIBRARIES;

/** Loads a shared library, or throws `Unsupported` with one line naming it and `hint`. */
export function loadSharedLibrary(soname: string, hint: string): LibraryHandle {
  try {
    return koffi.load(soname);
  } catch (cause) {
    throw new UnsupportedError('xen.load', `cannot load ${soname} (${hint}); the Xen backend needs it`, { cause });
  }
}

function loadXen(name: LibraryName): LibraryHandle {
  const lib = XEN_LIBRARIES[name];
  return loadSharedLibrary(lib.soname, `Debian package ${lib.debian}`);
}

let deviceModelLib: DeviceModelLib | undefined;
let foreignMemoryLib: ForeignMemoryLib | undefined;
let evtchnLib: EvtchnLib | undefined;
let xenstoreLib: XenstoreLib | undefined;
let libcLib: LibcLib | undefined;

/** Loads libxendevicemodel once per thread. */
export function loadDeviceModelLib(): DeviceModelLib {
  deviceModelLib ??= bindPrototypes<DeviceModelLib>(loadXen('devicemodel'), DEVICEMODEL_PROTOTYPES);
  return deviceModelLib;
}

/** Loads libxenforeignmemory once per thread. */
export function loadForeignMemoryLib(): ForeignMemoryLib {
  foreignMemoryLib ??= bindPrototypes<ForeignMemoryLib>(loadXen('foreignmemory'), FOREIGNMEMORY_PROTOTYPES);
  return foreignMemoryLib;
}

/** Loads libxenevtchn once per thread. */
export function loadEvtchnLib(): EvtchnLib {
  evtchnLib ??= bindPrototypes<EvtchnLib>(loadXen('evtchn'), EVTCHN_PROTOTYPES);
  return evtchnLib;
}

/** Loads libxenstore once per thread. */
export function loadXenstoreLib(): XenstoreLib {
  xenstoreLib ??= bindPrototypes<XenstoreLib>(loadXen('xenstore'), XENSTORE_PROTOTYPES);
  return xenstoreLib;
}

/** Loads the libc calls once per thread. */
export function loadLibc(): LibcLib {
  libcLib ??= bindPrototypes<LibcLib>(loadSharedLibrary('libc.so.6', 'the C library'), LIBC_PROTOTYPES);
  return libcLib;
}
