/**
 * The device slots the targets put on the fuzzed bus: each reference device (and the probe)
 * with the registers and values worth hitting, the reads compared with a restored twin, its
 * DMA shadow and its host-side events.
 */
import { isVmedError, type DeviceDefinition } from '@vmed/core';
import { eduDevice, framebufferDevice, serialDevice, type FramebufferDevice, type SerialDevice } from '@vmed/devices';
import type { DeviceHarness, DeviceSlotSpec, Instance } from '../device-harness.js';
import { InjectedFault } from '../faultable.js';
import { describe } from '../guest.js';
import { PROBE_MSIX, probeDevice, type ProbeObserver } from '../probe-device.js';
import type { WordReader } from '../words.js';
import { EduShadow, ProbeShadow } from './shadows.js';

const range = (from: number, to: number, step: number) => Array.from({ length: Math.ceil((to - from) / step) }, (_, i) => from + i * step);

/** The serial's transmit callback throws once when the harness armed a host-side fault. */
function serialOptions(inst: Instance): Record<string, unknown> {
  return {
    onTransmit: () => {
      if (!inst.hostFault) return;
      inst.hostFault = false;
      inst.hostFired = true;
      throw new InjectedFault('injected fault in the host transmit callback');
    },
  };
}

function serialHost(r: WordReader, inst: Instance): string {
  const uart = inst.model.inner as SerialDevice;
  if (r.oneIn(3)) {
    const lines = { cts: (r.word() & 1) === 1, dsr: (r.word() & 1) === 1, ri: (r.word() & 1) === 1, dcd: (r.word() & 1) === 1 };
    uart.setModemLines(lines);
    return `modem lines ${JSON.stringify(lines)}`;
  }
  const n = r.below(20);
  const bytes: number[] = [];
  for (let i = 0; i < n; i++) bytes.push(r.word() & 0xff);
  uart.receive(bytes);
  return `receive ${n} bytes`;
}

export function serialSlot(slot: number): DeviceSlotSpec {
  return {
    definition: serialDevice as DeviceDefinition<never>,
    slot,
    options: serialOptions,
    barHints: { 0: range(0, 8, 1) },
    valueHints: [0x80, 0x03, 0x0f, 0x10, 0x01, 0xc7, 0x1f, 0x02, 0x0b, 0x41],
    sweep: [...range(0, 8, 1), ...range(0, 8, 1)].map((offset) => ({ bar: 0, offset, size: 1 as const })),
    hostOp: serialHost,
  };
}

export function eduSlot(slot: number): DeviceSlotSpec {
  return {
    definition: eduDevice as DeviceDefinition<never>,
    slot,
    barHints: { 0: [0x00, 0x04, 0x08, 0x20, 0x24, 0x60, 0x64, 0x80, 0x84, 0x88, 0x8c, 0x90, 0x94, 0x98, 0x9c, 0xa0] },
    valueHints: [0x40000, 0x40800, 0x40ff0, 0x41000, 0x1000, 0x1, 0x3, 0x5, 0x7, 0x80, 0x100, 12, 0x10, 0xfff0],
    sweep: range(0, 0xa4, 4).map((offset) => ({ bar: 0, offset, size: 4 as const })),
    shadow: () => new EduShadow(),
  };
}

function framebufferHost(r: WordReader, inst: Instance, h: DeviceHarness): string {
  const fb = inst.model.inner as FramebufferDevice;
  try {
    const image = r.oneIn(2) ? fb.toPpm() : fb.snapshot().rgb;
    return `snapshot ${image.length} bytes`;
  } catch (e) {
    if (!isVmedError(e)) h.session.fail('unexpected-throw', `framebuffer snapshot threw ${describe(e)}`);
    return `snapshot refused: ${describe(e)}`;
  }
}

export function framebufferSlot(slot: number, vramSize = 0x10000): DeviceSlotSpec {
  return {
    definition: framebufferDevice as DeviceDefinition<never>,
    slot,
    options: () => ({ vramSize, width: 64, height: 48 }),
    barHints: { 0: [0, 4, vramSize - 4, 0x100], 2: range(0, 0x28, 4) },
    valueHints: [640, 480, 64, 48, 0x34325258, 0x36314752, 1, 0xffff, 0x10000, 0x100],
    sweep: [...range(0, 0x28, 4).map((offset) => ({ bar: 2, offset, size: 4 as const })), ...[0, 4, 0x100].map((offset) => ({ bar: 0, offset, size: 4 as const }))],
    hostOp: framebufferHost,
  };
}

/** Error bits of the status register a function may set on its own (Received Master Abort…). */
export function signalStatus(r: WordReader, inst: Instance): string {
  const bits = (r.word() & 0xf900) || 0x2000;
  inst.device.function.signalStatus(bits);
  return `signal status 0x${bits.toString(16)}`;
}

const TABLE = PROBE_MSIX.tableOffset;

export function probeSlot(slot: number, events?: (inst: Instance) => ProbeObserver): DeviceSlotSpec {
  const table = range(0, PROBE_MSIX.vectors, 1).flatMap((v) => [0, 4, 8, 12].map((k) => TABLE + 16 * v + k));
  return {
    definition: probeDevice as DeviceDefinition<never>,
    slot,
    options: (inst) => (events === undefined ? {} : { observer: events(inst) }),
    barHints: { 0: [...table, 0x0, 0x4, 0xfc, TABLE - 4, TABLE + 16 * PROBE_MSIX.vectors], 2: [...range(0, 0x24, 4), 0x800, 0x804, 0x808, 0x7fc], 4: [0, 4, 0x1c] },
    valueHints: [0xfee00000, 0xfee01000, 0x0, 0x1, 0x20, 0x31, 0x45, 0x11, 0x13, 0x17, 0x1b, 0x1f, 0x111, 0x511, 0xb11, 0x1000, 0x10, 0x8000, 0xfff8, 0x1fff0, 5, 11, 12, 3],
    sweep: [...range(0, 0x24, 4).map((offset) => ({ bar: 2, offset, size: 4 as const })), { bar: 2, offset: 0x800, size: 4 }, ...table.slice(0, 16).map((offset) => ({ bar: 0, offset, size: 4 as const }))],
    shadow: () => new ProbeShadow(),
    hostOp: signalStatus,
  };
}
