/**
 * Where the Xen benchmarks can run: dom0 of the project's Xen lab (`pnpm xen-lab bench`), with
 * the Xen libraries' headers for the C side. Each check returns `true` or the one-line reason.
 */
import { existsSync } from 'node:fs';

/** Headers the C side includes (Debian's libxen-dev). */
const XEN_HEADERS = ['/usr/include/xendevicemodel.h', '/usr/include/xenforeignmemory.h', '/usr/include/xenevtchn.h', '/usr/include/xen/hvm/ioreq.h'];

/** Whether this process runs in dom0 of the Xen lab, where it may create guests. */
export function xenLabAvailable(): true | string {
  if (process.env['VMED_XEN_LAB'] !== '1' || !existsSync('/dev/xen/privcmd')) {
    return 'needs dom0 of the Xen lab (VMED_XEN_LAB=1 and /dev/xen/privcmd): run `pnpm xen-lab bench`';
  }
  return true;
}

/** Whether the C side can be compiled against the Xen libraries. */
export function xenHeadersAvailable(): true | string {
  const missing = XEN_HEADERS.filter((h) => !existsSync(h));
  return missing.length === 0 ? true : `the Xen libraries' headers are missing (${missing.join(', ')}): install libxen-dev`;
}
