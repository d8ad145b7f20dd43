/**
 * Builds device state streams field by field, written independently of the encoder so that
 * tests can make streams the encoder never would (bad lengths, duplicates, trailing bytes)
 * while keeping a correct checksum, and so that the encoder is checked against the format.
 */
import { StateReader, StateWriter } from '../../src/migration/state-codec.js';
import { crc32c } from '../../src/migration/index.js';

export interface CraftSection {
  id: string | Uint8Array;
  /** Overrides the id's length field. */
  idLength?: number;
  bytes: Uint8Array;
  /** Overrides the payload's length field. */
  length?: number;
}

export interface CraftOptions {
  magic?: number;
  version?: number;
  reserved?: number;
  /** Overrides the total length field (default: the real length). */
  total?: number;
  deviceType?: string | Uint8Array;
  typeLength?: number;
  modelVersion?: number;
  /** Overrides the section count (default: sections.length). */
  count?: number;
  sections?: CraftSection[];
  /** Bytes between the last section and the checksum. */
  tail?: Uint8Array;
  /** Overrides the checksum (default: the correct CRC-32C). */
  checksum?: number;
}

const ascii = (s: string | Uint8Array): Uint8Array => (typeof s === 'string' ? new TextEncoder().encode(s) : s);

function raw(w: StateWriter, bytes: Uint8Array): void {
  for (const b of bytes) w.u8(b);
}

export function craftStream(o: CraftOptions = {}): Uint8Array {
  const type = ascii(o.deviceType ?? 'edu');
  const sections = o.sections ?? [];
  const tail = o.tail ?? new Uint8Array(0);
  let total = 12 + 4 + type.length + 4 + 4 + tail.length + 4;
  for (const s of sections) total += 4 + ascii(s.id).length + 4 + s.bytes.length;

  const w = new StateWriter()
    .u32(o.magic ?? 0x53444d56)
    .u16(o.version ?? 1)
    .u16(o.reserved ?? 0)
    .u32(o.total ?? total)
    .u32(o.typeLength ?? type.length);
  raw(w, type);
  w.u32(o.modelVersion ?? 1).u32(o.count ?? sections.length);
  for (const s of sections) {
    const id = ascii(s.id);
    w.u32(s.idLength ?? id.length);
    raw(w, id);
    w.u32(s.length ?? s.bytes.length);
    raw(w, s.bytes);
  }
  raw(w, tail);
  const body = w.finish();
  w.u32(o.checksum ?? crc32c(body));
  return w.finish();
}

/** Rewrites the checksum of `stream` so that only the change under test is wrong. */
export function fixChecksum(stream: Uint8Array): Uint8Array {
  const out = stream.slice();
  const end = out.length - 4;
  new DataView(out.buffer).setUint32(end, crc32c(out.subarray(0, end)), true);
  return out;
}

/** Where the fields of a valid stream are. */
export interface StreamLayout {
  totalAt: number;
  typeLengthAt: number;
  modelVersionAt: number;
  countAt: number;
  sections: { idLengthAt: number; lengthAt: number; payloadAt: number; end: number }[];
  sectionsStart: number;
  sectionsEnd: number;
}

/** Parses the layout of a stream known to be valid (a test-side reader of the format). */
export function layoutOf(stream: Uint8Array): StreamLayout {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  let at = 12;
  const typeLengthAt = at;
  at += 4 + view.getUint32(at, true);
  const modelVersionAt = at;
  at += 4;
  const countAt = at;
  const count = view.getUint32(at, true);
  at += 4;
  const sectionsStart = at;
  const sections: StreamLayout['sections'] = [];
  for (let i = 0; i < count; i++) {
    const idLengthAt = at;
    at += 4 + view.getUint32(at, true);
    const lengthAt = at;
    const length = view.getUint32(at, true);
    at += 4;
    sections.push({ idLengthAt, lengthAt, payloadAt: at, end: at + length });
    at += length;
  }
  // Cross-check with the codec: the whole body was consumed.
  new StateReader(stream.subarray(at, stream.length - 4)).end();
  return { totalAt: 8, typeLengthAt, modelVersionAt, countAt, sections, sectionsStart, sectionsEnd: at };
}
