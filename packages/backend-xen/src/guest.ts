/**
 * What kind of guest the session serves, which decides whether line interrupts exist.
 *
 * HVM guests have Xen's emulated PIC and IOAPIC; PVH guests have neither, and on Xen 4.17
 * `set_isa_irq_level`/`set_pci_intx_level` on a PVH guest were followed by a hypervisor panic
 * (GPF in `hvm_vcpu_has_pending_irq`; release builds skip the `has_vpic` assert). So the
 * backend must know the type before anything can reach those calls: from the `guestType`
 * option, else from libxl's record in xenstore (`/libxl/<domid>/type`: `hvm`, `pvh` or `pv`).
 * A PV guest cannot have an IOREQ server at all.
 */
import { NotFoundError, UnsupportedError } from '@vmed/core';
import type { XenstoreHandle } from './libs/xenstore.js';

/** A guest an IOREQ server can serve. */
export type XenGuestType = 'hvm' | 'pvh';

/** The libxl node holding a domain's type. */
export function guestTypePath(domid: number): string {
  return `/libxl/${domid}/type`;
}

/** Interprets libxl's type string. */
export function parseGuestType(domid: number, value: string | undefined): XenGuestType {
  const type = value?.trim();
  if (type === 'hvm' || type === 'pvh') return type;
  if (type === 'pv') throw new UnsupportedError('xen.guestType', `domain ${domid} is a PV guest: it has no IOREQ servers (vmed needs HVM or PVH)`);
  if (type === undefined) {
    throw new NotFoundError('xen.guestType', `domain ${domid} has no ${guestTypePath(domid)} in xenstore: pass the guestType option ('hvm' or 'pvh')`);
  }
  throw new UnsupportedError('xen.guestType', `domain ${domid} has unknown type ${JSON.stringify(type)}`);
}

/** Reads the guest type from xenstore. */
export function detectGuestType(xs: XenstoreHandle, domid: number): XenGuestType {
  return parseGuestType(domid, xs.read(guestTypePath(domid)));
}
