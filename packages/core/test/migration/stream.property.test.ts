/**
 * Property tests of the device state stream: whatever is done to a valid stream, decoding
 * either refuses it with an InvalidError (never another exception) or, for untouched streams,
 * gives back exactly what was encoded.
 */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { DeviceStreamSink, DeviceStreamSource, crc32c, decodeDeviceStream, encodeDeviceStream } from '../../src/migration/index.js';
import type { DecodeDeviceStreamOptions, DeviceStreamContents } from '../../src/migration/index.js';
import { InvalidError } from '../../src/errors.js';
import { fixChecksum, layoutOf } from './craft.js';

const MAX_VERSION = 1000;
const name = fc
  .array(fc.integer({ min: 0x21, max: 0x7e }), { minLength: 1, maxLength: 64 })
  .map((codes) => String.fromCharCode(...codes));
const contents: fc.Arbitrary<DeviceStreamContents> = fc.record({
  deviceType: name,
  modelVersion: fc.integer({ min: 0, max: MAX_VERSION }),
  sections: fc.uniqueArray(fc.record({ id: name, bytes: fc.uint8Array({ maxLength: 96 }) }), {
    selector: (s) => s.id,
    maxLength: 6,
  }),
});
/** Contents with at least one non-empty section, so that there are section bytes to disturb. */
const withPayload = contents.filter((c) => c.sections.some((s) => s.bytes.length > 1));

const optionsFor = (c: DeviceStreamContents): DecodeDeviceStreamOptions => ({
  deviceType: c.deviceType,
  maxModelVersion: MAX_VERSION,
  maxSize: 1 << 20,
});

/** Decodes, and says whether the stream was refused; any failure other than InvalidError is rethrown. */
function refused(stream: Uint8Array, options: DecodeDeviceStreamOptions): boolean {
  try {
    decodeDeviceStream(stream, options);
    return false;
  } catch (e) {
    if (e instanceof InvalidError && e.code === 'Invalid') return true;
    throw e;
  }
}

/** Like {@link refused}, and also checks the message. */
function refusedWith(stream: Uint8Array, options: DecodeDeviceStreamOptions, message: RegExp): boolean {
  try {
    decodeDeviceStream(stream, options);
    return false;
  } catch (e) {
    if (!(e instanceof InvalidError)) throw e;
    expect(e.message).toMatch(message);
    return true;
  }
}

describe('device state stream properties', () => {
  it('any valid encoding decodes to the same contents, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(contents, (c) => {
        const stream = encodeDeviceStream(c);
        const decoded = decodeDeviceStream(stream, optionsFor(c));
        expect(decoded).toEqual(c);
        expect(encodeDeviceStream(decoded)).toEqual(stream);
      }),
    );
  });

  it('refuses every stream with one, two or three bits flipped', () => {
    // CRC-32C has a Hamming distance of at least 4 at these lengths, so up to three flipped
    // bits anywhere (checksum included) are always caught, if no earlier check caught them.
    fc.assert(
      fc.property(contents, fc.uniqueArray(fc.nat(), { minLength: 1, maxLength: 3 }), (c, picks) => {
        const stream = encodeDeviceStream(c);
        const bits = new Set(picks.map((p) => p % (stream.length * 8)));
        const bad = stream.slice();
        for (const bit of bits) bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(refused(bad, optionsFor(c))).toBe(true);
      }),
    );
  });

  it('refuses many random bit flips with InvalidError', () => {
    fc.assert(
      fc.property(contents, fc.uniqueArray(fc.nat(), { minLength: 4, maxLength: 64 }), (c, picks) => {
        const stream = encodeDeviceStream(c);
        const bad = stream.slice();
        for (const p of picks) bad[(p >> 3) % stream.length]! ^= 1 << (p & 7);
        fc.pre(!bad.every((b, i) => b === stream[i]));
        expect(refused(bad, optionsFor(c))).toBe(true);
      }),
    );
  });

  it('refuses the stream truncated at every length, as truncated', () => {
    fc.assert(
      fc.property(contents, (c) => {
        const stream = encodeDeviceStream(c);
        for (let n = 0; n < stream.length; n++) {
          expect(refusedWith(stream.subarray(0, n), optionsFor(c), /truncated/)).toBe(true);
        }
      }),
      { numRuns: 40 },
    );
  });

  it("refuses the sections' bytes reordered", () => {
    fc.assert(
      fc.property(withPayload, fc.array(fc.nat(), { minLength: 2, maxLength: 400 }), (c, keys) => {
        const stream = encodeDeviceStream(c);
        const { sectionsStart, sectionsEnd } = layoutOf(stream);
        const region = Array.from(stream.subarray(sectionsStart, sectionsEnd));
        // A permutation of the region from random sort keys.
        const order = region.map((_, i) => i).sort((a, b) => (keys[a % keys.length]! ^ a) - (keys[b % keys.length]! ^ b) || a - b);
        const bad = stream.slice();
        order.forEach((from, to) => (bad[sectionsStart + to] = region[from]!));
        fc.pre(!bad.every((b, i) => b === stream[i]));
        expect(refused(bad, optionsFor(c))).toBe(true);
      }),
    );
  });

  it('refuses the payloads of two sections swapped', () => {
    fc.assert(
      fc.property(withPayload, fc.nat(), fc.nat(), (c, i, j) => {
        fc.pre(c.sections.length >= 2);
        const a = i % c.sections.length;
        const b = j % c.sections.length;
        const swapped = c.sections.map((s, k) => ({ ...s, bytes: k === a ? c.sections[b]!.bytes : k === b ? c.sections[a]!.bytes : s.bytes }));
        const stream = encodeDeviceStream(c);
        const moved = encodeDeviceStream({ ...c, sections: swapped });
        fc.pre(moved.length === stream.length && !moved.every((x, k) => x === stream[k]));
        // Same frame, other payloads under the old checksum.
        moved.set(stream.subarray(stream.length - 4), stream.length - 4);
        expect(refusedWith(moved, optionsFor(c), /checksum mismatch/)).toBe(true);
      }),
    );
  });

  it('refuses oversized length fields, with and without a checksum that matches them', () => {
    fc.assert(
      fc.property(contents, fc.nat(), fc.integer({ min: 1, max: 0xffff_ffff }), fc.boolean(), (c, which, excess, fix) => {
        const stream = encodeDeviceStream(c);
        const layout = layoutOf(stream);
        const fields = [
          layout.totalAt,
          layout.typeLengthAt,
          layout.countAt,
          ...layout.sections.flatMap((s) => [s.idLengthAt, s.lengthAt]),
        ];
        const at = fields[which % fields.length]!;
        const bad = stream.slice();
        const view = new DataView(bad.buffer);
        const old = view.getUint32(at, true);
        fc.pre(old < 0xffff_ffff);
        view.setUint32(at, Math.min(0xffff_ffff, old + excess), true);
        expect(refused(fix ? fixChecksum(bad) : bad, optionsFor(c))).toBe(true);
      }),
    );
  });

  it('copies out no more than the stream holds, whatever its length fields say', () => {
    // Section payloads and names are the only buffers decoding makes, all through slice().
    const slice = vi.spyOn(Uint8Array.prototype, 'slice');
    try {
      fc.assert(
        fc.property(contents, fc.nat(), fc.integer({ min: 0, max: 0xffff_ffff }), (c, which, value) => {
          const stream = encodeDeviceStream(c);
          const layout = layoutOf(stream);
          const fields = [layout.typeLengthAt, layout.countAt, ...layout.sections.flatMap((s) => [s.idLengthAt, s.lengthAt])];
          const bad = stream.slice();
          new DataView(bad.buffer).setUint32(fields[which % fields.length]!, value, true);
          const hostile = fixChecksum(bad);
          // The spy does see the copies: a good stream's sections all pass through it.
          slice.mockClear();
          decodeDeviceStream(stream, optionsFor(c));
          const good = slice.mock.results.reduce((n, r) => n + (r.value as Uint8Array).length, 0);
          expect(good).toBeGreaterThanOrEqual(c.sections.reduce((n, x) => n + x.bytes.length, 0));
          slice.mockClear();
          refused(hostile, optionsFor(c));
          const copied = slice.mock.results.reduce((n, r) => n + (r.value as Uint8Array).length, 0);
          expect(copied).toBeLessThanOrEqual(hostile.length);
        }),
      );
    } finally {
      slice.mockRestore();
    }
  });

  it('refuses unknown envelope versions and newer model versions', () => {
    fc.assert(
      fc.property(contents, fc.integer({ min: 0, max: 0xffff }), (c, version) => {
        fc.pre(version !== 1);
        const bad = encodeDeviceStream(c);
        new DataView(bad.buffer).setUint16(4, version, true);
        expect(refusedWith(fixChecksum(bad), optionsFor(c), new RegExp(`unknown envelope format version ${version}`))).toBe(true);
      }),
    );
    fc.assert(
      fc.property(contents, fc.integer({ min: 0, max: MAX_VERSION - 1 }), (c, supported) => {
        fc.pre(c.modelVersion > supported);
        const options = { ...optionsFor(c), maxModelVersion: supported };
        expect(refusedWith(encodeDeviceStream(c), options, /is newer than version/)).toBe(true);
      }),
    );
  });

  it('refuses random bytes with InvalidError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (junk) => {
        expect(refused(junk, { deviceType: 'edu', maxModelVersion: 5, maxSize: 1 << 20 })).toBe(true);
      }),
    );
  });

  it('handles random bodies in a well-framed envelope: refused with InvalidError, or decoded exactly', () => {
    // Header, length and checksum right, body random: the parsers behind the checksum get garbage.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (body, plausible) => {
        const stream = new Uint8Array(12 + body.length + 4);
        const view = new DataView(stream.buffer);
        view.setUint32(0, 0x53444d56, true);
        view.setUint16(4, 1, true);
        view.setUint32(8, stream.length, true);
        stream.set(body, 12);
        if (plausible && body.length >= 8) view.setUint32(12, 3, true); // a type length that fits "edu"
        view.setUint32(stream.length - 4, crc32c(stream.subarray(0, stream.length - 4)), true);
        const options = { deviceType: 'edu', maxModelVersion: 0xffff_ffff, maxSize: 1 << 20 };
        if (!refused(stream, options)) expect(encodeDeviceStream(decodeDeviceStream(stream, options))).toEqual(stream);
      }),
      { numRuns: 300 },
    );
  });

  it('reassembles through a source and a sink for any chunk sizes', () => {
    fc.assert(
      fc.property(contents, fc.integer({ min: 1, max: 64 }), fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1 }), (c, chunkSize, reads) => {
        const stream = encodeDeviceStream(c);
        const source = new DeviceStreamSource(stream, { chunkSize });
        const sink = new DeviceStreamSink({ maxSize: stream.length });
        for (let i = 0; ; i++) {
          const chunk = source.read(reads[i % reads.length]);
          if (chunk === null) break;
          expect(chunk.length).toBeLessThanOrEqual(chunkSize);
          sink.write(chunk);
        }
        expect(decodeDeviceStream(sink.finish(), optionsFor(c))).toEqual(c);
      }),
    );
  });
});
