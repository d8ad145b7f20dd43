/**
 * The interrupt model of the msi-msix target: from the guest's view alone (the MSI capability
 * registers, the MSI-X table and PBA as the guest reads them) and the probe's raises, which MSIs
 * must leave the device during an operation, and which must be left pending.
 *
 * - A raise in MSI-X mode delivers the entry's message unless the function or the entry is
 *   masked; a masked raise sets the vector's PBA bit.
 * - A raise in MSI mode delivers vector `v` (vector 0 when the guest allocated fewer than
 *   `v + 1`; data low bits carry the vector) unless its mask bit is set; a masked raise sets
 *   its pending bit.
 * - A pending vector that becomes unmasked is delivered exactly once, with the message
 *   programmed at that moment, and its pending bit clears. A pending bit is only ever seen on a
 *   masked vector, and stays set while the vector stays masked (never lost).
 */
import type { MsiMessage } from '@vmed/core';
import type { DeviceHarness, Instance, OpObserver } from '../device-harness.js';
import { PROBE_MSI_VECTORS, PROBE_MSIX, type ProbeObserver } from '../probe-device.js';

interface GuestView {
  msixEnabled: boolean;
  functionMask: boolean;
  entries: Array<{ message: MsiMessage; masked: boolean }>;
  pba: number;
  msiEnabled: boolean;
  msiCount: number;
  msiAddress: bigint;
  msiData: number;
  msiMask: number;
  msiPending: number;
}

/** Per-instance hook the probe's observer calls through. */
export const probeEvents = new WeakMap<Instance, ProbeObserver>();

export function observeProbe(inst: Instance): ProbeObserver {
  return { raising: (v) => probeEvents.get(inst)?.raising?.(v) };
}

export class MsiModel implements OpObserver {
  private start: GuestView | undefined;
  private raises: Array<{ vector: number; view: GuestView }> = [];

  constructor(private readonly h: DeviceHarness) {}

  private get inst(): Instance {
    return this.h.instances[0] as Instance;
  }

  before(): void {
    const inst = this.inst;
    probeEvents.set(inst, { raising: (v) => this.raises.push({ vector: v, view: this.view() }) });
    this.raises = [];
    this.h.session.takeDeliveries();
    this.start = inst.device.state === 'open' ? this.view() : undefined;
  }

  after(quiet: boolean): void {
    const delivered = this.h.session.takeDeliveries();
    const before = this.start;
    if (quiet || before === undefined || this.inst.device.state !== 'open') return;
    const after = this.view();
    const expected: MsiMessage[] = [];
    const mustPend: Array<{ kind: 'msix' | 'msi'; vector: number }> = [];
    for (const { vector, view } of this.raises) {
      if (view.msixEnabled) {
        if (vector >= PROBE_MSIX.vectors) continue; // refused by the core: the probe reports it
        const e = view.entries[vector] as { message: MsiMessage; masked: boolean };
        if (view.functionMask || e.masked) mustPend.push({ kind: 'msix', vector });
        else expected.push(e.message);
      } else if (view.msiEnabled) {
        if (vector >= PROBE_MSI_VECTORS) continue;
        const v = vector < view.msiCount ? vector : 0;
        if (((view.msiMask >>> v) & 1) === 1) mustPend.push({ kind: 'msi', vector: v });
        else expected.push(msiMessage(view, v));
      }
    }
    for (let v = 0; v < PROBE_MSIX.vectors; v++) {
      if (((before.pba >>> v) & 1) === 1 && !msixMasked(after, v)) expected.push((after.entries[v] as { message: MsiMessage }).message);
    }
    for (let v = 0; v < PROBE_MSI_VECTORS; v++) {
      if (((before.msiPending >>> v) & 1) === 1 && !msiMasked(after, v)) expected.push(msiMessage(after, v));
    }
    const key = (m: MsiMessage) => `0x${m.address.toString(16)}/0x${m.data.toString(16)}`;
    const want = expected.map(key).sort();
    const got = delivered.map(key).sort();
    if (want.join() !== got.join()) {
      this.h.session.fail('msi-delivery', `expected MSIs [${want.join(', ')}], the backend saw [${got.join(', ')}]`);
    }
    for (let v = 0; v < PROBE_MSIX.vectors; v++) {
      const pending = ((after.pba >>> v) & 1) === 1;
      if (pending && !msixMasked(after, v)) this.h.session.fail('msi-delivery', `MSI-X vector ${v} is pending in the PBA but not masked`);
      if (((before.pba >>> v) & 1) === 1 && msixMasked(after, v) && !pending) this.h.session.fail('msi-pending-lost', `MSI-X vector ${v} lost its pending bit while masked`);
    }
    for (let v = 0; v < PROBE_MSI_VECTORS; v++) {
      const pending = ((after.msiPending >>> v) & 1) === 1;
      if (pending && !msiMasked(after, v)) this.h.session.fail('msi-delivery', `MSI vector ${v} is pending but not masked`);
      if (((before.msiPending >>> v) & 1) === 1 && msiMasked(after, v) && !pending) this.h.session.fail('msi-pending-lost', `MSI vector ${v} lost its pending bit while masked`);
    }
    for (const p of mustPend) {
      const bits = p.kind === 'msix' ? after.pba : after.msiPending;
      const stillMasked = p.kind === 'msix' ? msixMasked(after, p.vector) : msiMasked(after, p.vector);
      if (stillMasked && ((bits >>> p.vector) & 1) === 0) this.h.session.fail('msi-pending-lost', `${p.kind.toUpperCase()} vector ${p.vector} was raised while masked and is not pending`);
    }
  }

  /** What the guest would read now (host-side reads through the function's guest interface). */
  private view(): GuestView {
    const fn = this.inst.device.function;
    const caps = this.inst.oracle.capabilities;
    const msix = caps.get(0x11) ?? 0;
    const msi = caps.get(0x05) ?? 0;
    const control = fn.configRead(msix + 2, 2);
    const entries: GuestView['entries'] = [];
    for (let v = 0; v < PROBE_MSIX.vectors; v++) {
      const at = PROBE_MSIX.tableOffset + 16 * v;
      const low = fn.msixRead(PROBE_MSIX.tableBar, at, 4);
      const high = fn.msixRead(PROBE_MSIX.tableBar, at + 4, 4);
      const data = fn.msixRead(PROBE_MSIX.tableBar, at + 8, 4);
      const ctrl = fn.msixRead(PROBE_MSIX.tableBar, at + 12, 4);
      entries.push({ message: { address: (BigInt(high) << 32n) | BigInt(low), data }, masked: (ctrl & 1) === 1 });
    }
    const msiControl = fn.configRead(msi + 2, 2);
    return {
      msixEnabled: (control & 0x8000) !== 0,
      functionMask: (control & 0x4000) !== 0,
      entries,
      pba: fn.msixRead(PROBE_MSIX.pbaBar, PROBE_MSIX.pbaOffset, 4),
      msiEnabled: (msiControl & 1) !== 0,
      msiCount: 1 << ((msiControl >>> 4) & 7),
      msiAddress: (BigInt(fn.configRead(msi + 8, 4)) << 32n) | BigInt(fn.configRead(msi + 4, 4)),
      msiData: fn.configRead(msi + 12, 2),
      msiMask: fn.configRead(msi + 16, 4),
      msiPending: fn.configRead(msi + 20, 4),
    };
  }
}

function msixMasked(view: GuestView, v: number): boolean {
  return !view.msixEnabled || view.functionMask || (view.entries[v]?.masked ?? true);
}

function msiMasked(view: GuestView, v: number): boolean {
  return !view.msiEnabled || view.msixEnabled || ((view.msiMask >>> v) & 1) === 1 || v >= view.msiCount;
}

function msiMessage(view: GuestView, v: number): MsiMessage {
  const span = view.msiCount;
  return { address: view.msiAddress, data: (view.msiData & ~(span - 1)) | (v & (span - 1)) };
}
