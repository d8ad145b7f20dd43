/**
 * The `migration-stream` target: device state streams that crossed a network, written by
 * anyone. A program first drives one device (edu, serial, framebuffer or the probe) into some
 * state through guest accesses, then feeds it streams through the VFIO-style resume path
 * (RUNNING → RESUMING, chunks written, → RUNNING): its own valid stream, and that stream
 * truncated, bit-flipped (with and without a fixed-up checksum), with sections reordered,
 * dropped or added, oversized, with trailing bytes, of an unknown envelope version, a newer
 * model version or another device type, or with a section's payload replaced.
 *
 * A stream that must be refused is refused with a `VmedError`, the device stays in RESUMING and
 * unchanged (its save before and after compare equal), and it then accepts a good stream. A
 * valid stream round-trips exactly (save after resume equals the stream); reordered sections
 * are valid. A mutated stream the device happens to accept must leave it savable, and its new
 * save must itself round-trip.
 */
import { crc32c, decodeDeviceStream, encodeDeviceStream, isVmedError, MAX_DEVICE_STREAM, type DeviceStreamContents, type MediatedDevice } from '@vmed/core';
import { DeviceHarness, equalBytes, type DeviceSlotSpec, type DeviceTargetSpec } from '../device-harness.js';
import { faultable } from '../faultable.js';
import { describe } from '../guest.js';
import { FuzzSession } from '../session.js';
import type { FuzzTarget, ProgramOutcome } from '../types.js';
import { WordReader } from '../words.js';
import { eduSlot, framebufferSlot, probeSlot, serialSlot } from './devices.js';

type Expect = 'accept' | 'refuse' | 'maybe';

const SLOTS: ReadonlyArray<() => DeviceSlotSpec> = [() => eduSlot(3), () => serialSlot(3), () => framebufferSlot(3), () => probeSlot(3)];
const MUTATIONS = [
  'valid',
  'truncate',
  'flip',
  'flip-fixed',
  'reorder',
  'trailing',
  'version',
  'model-version',
  'wrong-type',
  'drop-section',
  'extra-section',
  'payload',
  'garbage',
  'model-version-zero',
  'section-length',
  'oversized',
] as const;
type Mutation = (typeof MUTATIONS)[number];

/** Recomputes the trailing CRC-32C after a patch, so decoding gets past the checksum. */
function fixChecksum(stream: Uint8Array): Uint8Array {
  if (stream.length < 4) return stream;
  const body = stream.length - 4;
  new DataView(stream.buffer, stream.byteOffset).setUint32(body, crc32c(stream.subarray(0, body)), true);
  return stream;
}

function randomBytes(r: WordReader, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r.word() & 0xff;
  return out;
}

class StreamRun {
  constructor(
    private readonly h: DeviceHarness,
    private readonly r: WordReader,
    private readonly count: (n: number) => void,
  ) {}

  private get device(): MediatedDevice {
    return (this.h.instances[0] as { device: MediatedDevice }).device;
  }

  private get session(): FuzzSession {
    return this.h.session;
  }

  async run(): Promise<void> {
    const r = this.r;
    while (!r.done && this.session.violations.length === 0) {
      this.session.step++;
      const valid = this.device.migration.save();
      const contents = decodeDeviceStream(valid, { deviceType: this.device.type, maxModelVersion: 0xffff_ffff, maxSize: MAX_DEVICE_STREAM });
      const mutation = r.pick(MUTATIONS);
      const [stream, expect] = this.mutate(mutation, valid, contents);
      if (this.session.tracing) this.session.note(`stream ${mutation}: ${stream.length} bytes (valid ${valid.length}), expect ${expect}`);
      await this.feed(stream, expect, valid, mutation);
    }
  }

  private mutate(m: Mutation, valid: Uint8Array, c: DeviceStreamContents): [Uint8Array, Expect] {
    const r = this.r;
    const re = (x: Partial<DeviceStreamContents>) => encodeDeviceStream({ ...c, ...x });
    switch (m) {
      case 'valid':
        return [valid, 'accept'];
      case 'truncate':
        return [valid.slice(0, r.below(valid.length)), 'refuse'];
      case 'flip': {
        const s = valid.slice();
        const bit = r.below(s.length * 8);
        s[bit >>> 3] = (s[bit >>> 3] ?? 0) ^ (1 << (bit & 7));
        return [s, 'refuse'];
      }
      case 'flip-fixed': {
        const s = valid.slice();
        const bit = r.below((s.length - 4) * 8);
        s[bit >>> 3] = (s[bit >>> 3] ?? 0) ^ (1 << (bit & 7));
        return [fixChecksum(s), 'maybe'];
      }
      case 'reorder': {
        const k = 1 + r.below(Math.max(1, c.sections.length - 1));
        return [re({ sections: [...c.sections.slice(k), ...c.sections.slice(0, k)] }), 'accept'];
      }
      case 'trailing': {
        const s = new Uint8Array(valid.length + 1 + r.below(16));
        s.set(valid);
        return [s, 'refuse'];
      }
      case 'version': {
        const s = valid.slice();
        new DataView(s.buffer).setUint16(4, 2 + r.below(0xfffd), true);
        return [fixChecksum(s), 'refuse'];
      }
      case 'model-version':
        return [re({ modelVersion: c.modelVersion + 1 + r.below(1000) }), 'refuse'];
      case 'model-version-zero':
        return [re({ modelVersion: 0 }), 'refuse'];
      case 'wrong-type':
        return [re({ deviceType: r.pick(['edu', 'serial', 'framebuffer', 'fuzz-probe', 'x'].filter((t) => t !== c.deviceType)) }), 'refuse'];
      case 'drop-section': {
        const i = r.below(c.sections.length);
        return [re({ sections: c.sections.filter((_, j) => j !== i) }), 'refuse'];
      }
      case 'extra-section':
        return [re({ sections: [...c.sections, { id: r.pick(['extra', 'bar1', 'bar5', 'config2']), bytes: randomBytes(r, r.below(32)) }] }), 'refuse'];
      case 'payload': {
        const i = r.below(c.sections.length);
        const old = c.sections[i]?.bytes ?? new Uint8Array(0);
        const keep = r.oneIn(2);
        const bytes = keep ? old.slice() : randomBytes(r, r.below(old.length + 8));
        if (keep && bytes.length > 0) {
          const at = r.below(bytes.length);
          bytes[at] = r.word() & 0xff;
        }
        return [re({ sections: c.sections.map((s, j) => (j === i ? { id: s.id, bytes } : s)) }), 'maybe'];
      }
      case 'garbage': {
        const s = randomBytes(r, r.below(96));
        return [s, 'refuse'];
      }
      case 'section-length': {
        // The first section's payload length field, just after the type name, the model version,
        // the section count and the first section's id.
        const s = valid.slice();
        const view = new DataView(s.buffer);
        const typeLength = view.getUint32(12, true);
        const idAt = 12 + 4 + typeLength + 4 + 4;
        const idLength = view.getUint32(idAt, true);
        view.setUint32(idAt + 4 + idLength, r.pick([0xffffffff, 0x7fffffff, s.length, s.length * 2]), true);
        return [fixChecksum(s), 'refuse'];
      }
      case 'oversized': {
        // Rarely the real thing (more than the resume buffer takes); otherwise a header that
        // claims more bytes than there are.
        if (r.oneIn(16)) {
          const s = new Uint8Array(MAX_DEVICE_STREAM + 1);
          s.set(valid);
          return [s, 'refuse'];
        }
        const s = valid.slice();
        new DataView(s.buffer).setUint32(8, s.length + 1 + r.below(0x1000), true);
        return [fixChecksum(s), 'refuse'];
      }
    }
  }

  /** One resume attempt; `valid` is the device's state before it. */
  private async feed(stream: Uint8Array, expect: Expect, valid: Uint8Array, what: string): Promise<void> {
    this.count(1);
    const m = this.device.migration;
    await m.setState('RESUMING');
    let error: unknown;
    let inWrite = false;
    const chunk = this.r.pick([65536, 1, 13, 4096]);
    try {
      inWrite = true;
      for (let at = 0; at < stream.length; at += chunk) m.write(stream.subarray(at, Math.min(stream.length, at + chunk)));
      inWrite = false;
      await this.session.droppingAsync(() => m.setState('RUNNING'));
    } catch (e) {
      error = e;
    }
    if (error !== undefined) {
      if (!isVmedError(error)) this.session.fail('stream-refused', `the ${what} stream was refused with ${describe(error)}, not a VmedError`);
      else if (error.message.length < 20) this.session.fail('stream-refused', `the ${what} stream was refused without saying why: "${error.message}"`);
      if (expect === 'accept') this.session.fail('resume-roundtrip', `a ${what} stream was refused: ${describe(error)}`);
      if (m.state !== 'RESUMING') this.session.fail('stream-unchanged', `after refusing the ${what} stream the device is in ${m.state}, not RESUMING`);
      if (!equalBytes(m.save(), valid)) this.session.fail('stream-unchanged', `refusing the ${what} stream changed the device`);
      if (m.state !== 'RESUMING') return;
      // A refused stream leaves RESUMING open for a good one (after a refused chunk, by reset).
      if (inWrite) {
        this.session.dropping(() => this.device.reset());
        await m.setState('RESUMING');
      }
      m.write(valid);
      await this.session.droppingAsync(() => m.setState('RUNNING'));
      if (!equalBytes(m.save(), valid)) this.session.fail('resume-roundtrip', `resuming the good stream after the refused ${what} one did not restore the device`);
      return;
    }
    if (expect === 'refuse') {
      this.session.fail('stream-refused', `a ${what} stream (${stream.length} bytes) was accepted`);
      return;
    }
    const now = m.save();
    if (expect === 'accept' && !equalBytes(now, valid)) this.session.fail('resume-roundtrip', `after resuming a ${what} stream the device saves different bytes`);
    if (expect === 'maybe') {
      // Accepted: whatever state it loaded must itself save and resume exactly.
      await m.setState('RESUMING');
      m.write(now);
      try {
        await this.session.droppingAsync(() => m.setState('RUNNING'));
      } catch (e) {
        this.session.fail('resume-roundtrip', `the state loaded from an accepted ${what} stream saves a stream the device refuses: ${describe(e)}`);
        return;
      }
      if (!equalBytes(m.save(), now)) this.session.fail('resume-roundtrip', `the state loaded from an accepted ${what} stream does not round-trip`);
    }
  }
}

export const migrationStreamTarget: FuzzTarget = {
  name: 'migration-stream',
  description: 'device state streams truncated, bit-flipped, reordered, oversized, of unknown version or type, fed to RESUMING',
  words: { min: 32, max: 512 },
  // Each stream fed counts as one access, and costs about as much as 50 guest accesses (saves,
  // checksums and a state load or two): the budget is scaled down by that much.
  accessCost: 50,
  async run(program: Uint32Array, count: (n: number) => void, trace: boolean): Promise<ProgramOutcome> {
    const r = new WordReader(program);
    const plain = r.pick(SLOTS)();
    // Wrapped as in the other targets (the harness reaches models through the wrapper); no fault is armed here.
    const slot: DeviceSlotSpec = { ...plain, definition: faultable(plain.definition) };
    const spec: DeviceTargetSpec = {
      name: 'migration-stream',
      description: '',
      words: { min: 0, max: 0 },
      devices: [slot],
      primary: 1,
      ops: ['bar', 'bar', 'bar', 'config', 'ram', 'host'],
    };
    const session = await FuzzSession.open({ types: [slot.definition], trace });
    const harness = new DeviceHarness(session, spec, r, {});
    try {
      await harness.start();
      await harness.run(r.below(48));
      if (session.violations.length === 0) await new StreamRun(harness, r, count).run();
    } catch (e) {
      session.fail('unexpected-throw', `the harness caught ${describe(e)}`);
    } finally {
      count(session.guest.accesses);
      await session.close(session.violations.length === 0).catch(() => undefined);
    }
    return { violations: session.violations, trace: session.trace ?? [], consumed: r.position };
  },
};
