import { describe, expect, it } from 'vitest';
import {
  DEVICE_STREAM_MAX_NAME,
  DeviceStreamSink,
  DeviceStreamSource,
  crc32c,
  decodeDeviceStream,
  encodeDeviceStream,
} from '../../src/migration/index.js';
import type { DecodeDeviceStreamOptions, DeviceStreamContents } from '../../src/migration/index.js';
import { BadHandleError, InvalidError, NoSpaceError } from '../../src/errors.js';
import { craftStream, fixChecksum, layoutOf } from './craft.js';

const OPTS: DecodeDeviceStreamOptions = { deviceType: 'edu', maxModelVersion: 3, maxSize: 1 << 20 };
const bytes = (...v: number[]): Uint8Array => Uint8Array.from(v);

const SAMPLE: DeviceStreamContents = {
  deviceType: 'edu',
  modelVersion: 2,
  sections: [
    { id: 'config', bytes: Uint8Array.from({ length: 256 }, (_, i) => i) },
    { id: 'regs', bytes: bytes(0xde, 0xad, 0xbe, 0xef) },
    { id: 'empty', bytes: new Uint8Array(0) },
  ],
};

/** Decoding `stream` fails with an InvalidError whose message matches `message`. */
function expectRefused(stream: Uint8Array, message: RegExp, options: DecodeDeviceStreamOptions = OPTS): void {
  let caught: unknown;
  try {
    decodeDeviceStream(stream, options);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(InvalidError);
  expect((caught as InvalidError).code).toBe('Invalid');
  expect((caught as InvalidError).operation).toBe('migration.decodeDeviceStream');
  expect((caught as InvalidError).message).toMatch(message);
}

describe('crc32c', () => {
  it('gives the published check values', () => {
    // CRC-32C check value (RFC 3720 / the CRC catalogue): "123456789" → 0xe3069283.
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    // RFC 3720 B.4: 32 bytes of zeros → 0x8a9136aa, 32 bytes of 0xff → 0x62a8ab43.
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
  });

  it('continues over a following piece', () => {
    const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);
    for (const cut of [0, 1, 3, 500, 999, 1000]) {
      expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(crc32c(data));
    }
  });
});

describe('encodeDeviceStream / decodeDeviceStream', () => {
  it('round-trips type, version and sections, in order', () => {
    const decoded = decodeDeviceStream(encodeDeviceStream(SAMPLE), OPTS);
    expect(decoded).toEqual(SAMPLE);
    expect(decoded.sections.map((s) => s.id)).toEqual(['config', 'regs', 'empty']);
  });

  it('round-trips a stream with no sections, and version 0', () => {
    const c = { deviceType: 'serial', modelVersion: 0, sections: [] };
    expect(decodeDeviceStream(encodeDeviceStream(c), { ...OPTS, deviceType: 'serial' })).toEqual(c);
  });

  it('writes exactly the documented format', () => {
    const encoded = encodeDeviceStream(SAMPLE);
    const crafted = craftStream({ deviceType: 'edu', modelVersion: 2, sections: SAMPLE.sections.map((s) => ({ ...s })) });
    expect(encoded).toEqual(crafted);
    expect(Array.from(encoded.subarray(0, 4), (c) => String.fromCharCode(c)).join('')).toBe('VMDS');
  });

  it('returns sections that are copies, not views of the stream', () => {
    const stream = encodeDeviceStream(SAMPLE);
    const decoded = decodeDeviceStream(stream, OPTS);
    stream.fill(0);
    expect(decoded.sections[1]!.bytes).toEqual(bytes(0xde, 0xad, 0xbe, 0xef));
  });

  it('decodes a stream that sits inside a larger buffer', () => {
    const stream = encodeDeviceStream(SAMPLE);
    const big = new Uint8Array(stream.length + 10);
    big.set(stream, 7);
    expect(decodeDeviceStream(big.subarray(7, 7 + stream.length), OPTS)).toEqual(SAMPLE);
  });

  it('accepts older model versions and exactly maxModelVersion', () => {
    for (const v of [0, 1, 3]) {
      expect(decodeDeviceStream(encodeDeviceStream({ ...SAMPLE, modelVersion: v }), OPTS).modelVersion).toBe(v);
    }
  });

  it('accepts a stream of exactly maxSize bytes', () => {
    const stream = encodeDeviceStream(SAMPLE);
    expect(decodeDeviceStream(stream, { ...OPTS, maxSize: stream.length }).sections).toHaveLength(3);
  });

  describe('refuses, saying what was wrong,', () => {
    const good = encodeDeviceStream(SAMPLE);

    it('a stream larger than maxSize', () => {
      expectRefused(good, new RegExp(`stream is ${good.length} bytes, more than maxSize ${good.length - 1}`), {
        ...OPTS,
        maxSize: good.length - 1,
      });
    });

    it('a truncated stream, at every length', () => {
      for (let n = 0; n < good.length; n++) expectRefused(good.subarray(0, n), /truncated/);
      expectRefused(good.subarray(0, 2), /magic: stream truncated/);
      expectRefused(good.subarray(0, good.length - 1), new RegExp(`header says ${good.length} bytes, ${good.length - 1} present`));
    });

    it('bad magic', () => {
      expectRefused(craftStream({ magic: 0x46494f56 }), /bad magic 0x46494f56 .*not a device state stream/);
    });

    it('an unknown envelope version', () => {
      expectRefused(craftStream({ version: 2 }), /unknown envelope format version 2 \(this build reads version 1\)/);
      expectRefused(craftStream({ version: 0 }), /unknown envelope format version 0/);
    });

    it('a non-zero reserved field', () => {
      expectRefused(craftStream({ reserved: 0x8000 }), /reserved field is 0x8000, must be 0/);
    });

    it('a newer model version than supported', () => {
      expectRefused(craftStream({ modelVersion: 4 }), /model state version 4 is newer than version 3/);
      expectRefused(craftStream({ modelVersion: 0xffffffff }), /model state version 4294967295 is newer/);
    });

    it('a different device type', () => {
      expectRefused(craftStream({ deviceType: 'serial' }), /stream is for device type "serial", not "edu"/);
      expectRefused(craftStream({ deviceType: 'EDU' }), /device type "EDU", not "edu"/);
    });

    it('a checksum mismatch', () => {
      const bad = good.slice();
      bad[good.length - 10]! ^= 0x01;
      expectRefused(bad, /checksum mismatch: the stream says 0x[0-9a-f]+, its contents give 0x[0-9a-f]+/);
      expectRefused(craftStream({ checksum: 0 }), /checksum mismatch/);
    });

    it('a section length past the end, checksum correct', () => {
      expectRefused(
        craftStream({ sections: [{ id: 'regs', bytes: bytes(1, 2, 3, 4), length: 5 }] }),
        /section "regs" length 5 runs past the end of the stream \(4 bytes left\)/,
      );
      expectRefused(
        craftStream({ sections: [{ id: 'regs', bytes: bytes(1, 2), length: 0xffffffff }] }),
        /section "regs" length 4294967295 runs past the end/,
      );
    });

    it('a section id whose length field is hostile', () => {
      expectRefused(craftStream({ sections: [{ id: 'a', idLength: 0xffffffff, bytes: bytes() }] }), /section 0 id: length 4294967295 exceeds 64/);
      expectRefused(craftStream({ typeLength: 0x7fffffff }), /device type: length 2147483647 exceeds 64/);
    });

    it('a section id or type name that is empty or not printable ASCII', () => {
      expectRefused(craftStream({ sections: [{ id: '', bytes: bytes(1) }] }), /section 0 id is empty/);
      expectRefused(craftStream({ sections: [{ id: bytes(0x61, 0x20, 0x62), bytes: bytes() }] }), /section 0 id has byte 0x20 at 1/);
      expectRefused(craftStream({ deviceType: bytes(0x65, 0xc3, 0xa9) }), /device type has byte 0xc3 at 1/);
    });

    it('trailing bytes after the stream', () => {
      const longer = new Uint8Array(good.length + 3);
      longer.set(good);
      expectRefused(longer, new RegExp(`3 trailing bytes after the ${good.length}-byte stream`));
    });

    it('trailing bytes after the last section, checksum correct', () => {
      expectRefused(craftStream({ sections: [{ id: 'a', bytes: bytes(1) }], tail: bytes(0, 0) }), /2 trailing bytes after the last section/);
    });

    it('duplicate section ids', () => {
      expectRefused(
        craftStream({
          sections: [
            { id: 'regs', bytes: bytes(1) },
            { id: 'fifo', bytes: bytes(2) },
            { id: 'regs', bytes: bytes(3) },
          ],
        }),
        /duplicate section id "regs"/,
      );
    });

    it('a section count the stream cannot hold', () => {
      expectRefused(craftStream({ count: 0xffffffff }), /section count 4294967295 cannot fit in the 0 bytes left/);
      expectRefused(craftStream({ count: 2, sections: [{ id: 'a', bytes: bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) }] }), /section 1 id.length: stream truncated \(need 4 bytes, 0 left\)/);
    });

    it('a total length smaller than the smallest stream', () => {
      const tiny = craftStream({ total: 12 }).subarray(0, 12);
      expectRefused(tiny, /total length 12 is less than the 29 bytes of the smallest stream/);
    });

    it('input that is not a Uint8Array', () => {
      expectRefused('VMDS' as unknown as Uint8Array, /stream must be a Uint8Array/);
    });
  });

  it('refuses bad decode options', () => {
    const good = encodeDeviceStream(SAMPLE);
    expect(() => decodeDeviceStream(good, { ...OPTS, maxSize: -1 })).toThrow(/maxSize -1 must be a whole number/);
    expect(() => decodeDeviceStream(good, { ...OPTS, maxSize: Number.NaN })).toThrow(InvalidError);
    expect(() => decodeDeviceStream(good, { ...OPTS, maxModelVersion: 1.5 })).toThrow(InvalidError);
    expect(() => decodeDeviceStream(good, { ...OPTS, deviceType: '' })).toThrow(InvalidError);
  });

  describe('encoding refuses', () => {
    const encode = (c: Partial<DeviceStreamContents>) => () => encodeDeviceStream({ ...SAMPLE, ...c });
    it('bad device type names', () => {
      for (const t of ['', 'has space', 'é', 'x'.repeat(DEVICE_STREAM_MAX_NAME + 1)]) {
        expect(encode({ deviceType: t })).toThrow(/device type .* must be 1 to 64 characters/);
      }
      expect(encode({ deviceType: 'x'.repeat(DEVICE_STREAM_MAX_NAME) })).not.toThrow();
    });
    it('bad model versions', () => {
      for (const v of [-1, 1.5, 2 ** 32, Number.NaN]) expect(encode({ modelVersion: v })).toThrow(/model version/);
    });
    it('bad and duplicate section ids, and payloads that are not bytes', () => {
      expect(encode({ sections: [{ id: 'a b', bytes: bytes() }] })).toThrow(/section id "a b"/);
      expect(encode({ sections: [{ id: 'a', bytes: bytes() }, { id: 'a', bytes: bytes(1) }] })).toThrow(/duplicate section id "a"/);
      expect(encode({ sections: [{ id: 'a', bytes: [1, 2] as unknown as Uint8Array }] })).toThrow(/bytes must be a Uint8Array/);
    });
  });

  it('the layout helper reads the encoder output', () => {
    const stream = encodeDeviceStream(SAMPLE);
    const layout = layoutOf(stream);
    expect(layout.sections).toHaveLength(3);
    expect(stream.subarray(layout.sections[1]!.payloadAt, layout.sections[1]!.end)).toEqual(bytes(0xde, 0xad, 0xbe, 0xef));
    expect(fixChecksum(stream)).toEqual(stream);
  });
});

describe('DeviceStreamSource', () => {
  const stream = encodeDeviceStream(SAMPLE);

  it('hands out the stream in chunks of at most chunkSize, then end of stream for good', () => {
    const source = new DeviceStreamSource(stream, { chunkSize: 100 });
    const chunks: Uint8Array[] = [];
    for (let c = source.read(); c !== null; c = source.read()) chunks.push(c.slice());
    expect(chunks.every((c) => c.length > 0 && c.length <= 100)).toBe(true);
    expect(chunks.slice(0, -1).every((c) => c.length === 100)).toBe(true);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(stream));
    expect(source.remaining).toBe(0);
    expect(source.position).toBe(stream.length);
    expect(source.read()).toBeNull();
    expect(source.read(1)).toBeNull();
  });

  it('honours a smaller maxBytes per read', () => {
    const source = new DeviceStreamSource(stream, { chunkSize: 100 });
    expect(source.read(7)!.length).toBe(7);
    expect(source.read(1000)!.length).toBe(100);
    expect(source.position).toBe(107);
    expect(source.read(1)).toEqual(stream.subarray(107, 108));
  });

  it('hands out an empty stream as end of stream at once', () => {
    expect(new DeviceStreamSource(new Uint8Array(0)).read()).toBeNull();
  });

  it('keeps its own copy of the stream', () => {
    const data = stream.slice();
    const source = new DeviceStreamSource(data, { chunkSize: 1 << 16 });
    data.fill(0);
    expect(source.read()).toEqual(stream);
  });

  it('refuses bad sizes, and every call once closed', () => {
    expect(() => new DeviceStreamSource(stream, { chunkSize: 0 })).toThrow(InvalidError);
    const source = new DeviceStreamSource(stream);
    expect(() => source.read(0)).toThrow(InvalidError);
    expect(() => source.read(-5)).toThrow(InvalidError);
    expect(() => source.read(2.5)).toThrow(InvalidError);
    source[Symbol.dispose]();
    expect(source.closed).toBe(true);
    expect(() => source.read()).toThrow(BadHandleError);
    source.close();
  });
});

describe('DeviceStreamSink', () => {
  const stream = encodeDeviceStream(SAMPLE);

  it('accumulates chunks of any size into the stream, which then decodes', () => {
    const sink = new DeviceStreamSink({ maxSize: stream.length });
    const source = new DeviceStreamSource(stream, { chunkSize: 13 });
    for (let c = source.read(); c !== null; c = source.read()) expect(sink.write(c)).toBe(c.length);
    expect(sink.write(new Uint8Array(0))).toBe(0);
    expect(sink.size).toBe(stream.length);
    const out = sink.finish();
    expect(out).toEqual(stream);
    expect(decodeDeviceStream(out, OPTS)).toEqual(SAMPLE);
  });

  it('refuses a write past maxSize with NoSpace, whole, and stays usable', () => {
    const sink = new DeviceStreamSink({ maxSize: 10 });
    sink.write(bytes(1, 2, 3, 4, 5, 6, 7, 8));
    let caught: unknown;
    try {
      sink.write(bytes(9, 10, 11));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(NoSpaceError);
    expect((caught as NoSpaceError).code).toBe('NoSpace');
    expect((caught as NoSpaceError).bytesDone).toBe(0);
    expect((caught as NoSpaceError).message).toMatch(/3 more bytes would make the stream 11 bytes, more than maxSize 10/);
    expect(sink.size).toBe(8);
    sink.write(bytes(9, 10));
    expect(() => sink.write(bytes(11))).toThrow(NoSpaceError);
    expect(sink.finish()).toEqual(bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
  });

  it('copies what is written', () => {
    const sink = new DeviceStreamSink({ maxSize: 100 });
    const chunk = bytes(1, 2, 3);
    sink.write(chunk);
    chunk.fill(0);
    expect(sink.finish()).toEqual(bytes(1, 2, 3));
  });

  it('grows past its first buffer', () => {
    const big = Uint8Array.from({ length: 10_000 }, (_, i) => i & 0xff);
    const sink = new DeviceStreamSink({ maxSize: 10_000 });
    for (let i = 0; i < big.length; i += 999) sink.write(big.subarray(i, i + 999));
    expect(sink.finish()).toEqual(big);
  });

  it('with maxSize 0 takes only empty chunks', () => {
    const sink = new DeviceStreamSink({ maxSize: 0 });
    expect(sink.write(new Uint8Array(0))).toBe(0);
    expect(() => sink.write(bytes(1))).toThrow(NoSpaceError);
  });

  it('refuses bad options and input, and every call once finished or closed', () => {
    expect(() => new DeviceStreamSink({ maxSize: -1 })).toThrow(InvalidError);
    expect(() => new DeviceStreamSink({ maxSize: 2 ** 32 })).toThrow(InvalidError);
    const sink = new DeviceStreamSink({ maxSize: 10 });
    expect(() => sink.write('abc' as unknown as Uint8Array)).toThrow(InvalidError);
    sink.finish();
    expect(sink.closed).toBe(true);
    expect(() => sink.write(bytes(1))).toThrow(BadHandleError);
    expect(() => sink.finish()).toThrow(BadHandleError);
    const other = new DeviceStreamSink({ maxSize: 10 });
    other[Symbol.dispose]();
    expect(() => other.write(bytes(1))).toThrow(BadHandleError);
  });
});
