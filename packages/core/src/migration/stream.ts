/**
 * The device state stream: the envelope around a device's saved state, and the chunked
 * source and sink through which the mediator hands it out during STOP_COPY and takes it in
 * during RESUMING (as VFIO's migration data fd does with `read()` and `write()`).
 *
 * The resuming side reads a stream that crossed a network and may have been written by
 * anyone, so decoding trusts nothing: every length is checked against what is really there
 * before it is used, nothing is allocated beyond the stream's own size, and every refusal is
 * an `InvalidError` saying exactly what was wrong.
 *
 * ## Format (envelope version 1; all integers little-endian)
 *
 * | offset | size | field |
 * | --- | --- | --- |
 * | 0 | 4 | magic, the ASCII bytes `VMDS` |
 * | 4 | 2 | envelope format version, `1` |
 * | 6 | 2 | reserved, `0` (a writer that needs flags bumps the version instead) |
 * | 8 | 4 | total length of the stream in bytes, checksum included |
 * | 12 | 4 + n | device type name: length n (1–64), then n bytes of printable ASCII |
 * | … | 4 | model state version (the device model's `stateVersion`) |
 * | … | 4 | section count |
 * | … | | each section: id (length 1–64 + printable ASCII, as the type name), payload length, payload |
 * | total − 4 | 4 | CRC-32C (Castagnoli) of every byte before it |
 *
 * Section ids are unique within a stream; their order is the writer's and is kept. Decoding
 * checks, in this order: size against `maxSize`, magic, envelope version, reserved field,
 * total length against the bytes present (truncation, trailing bytes), checksum, then device
 * type, model version and sections.
 */
import { BadHandleError, InvalidError, NoSpaceError, hex } from '../errors.js';
import { StateReader, StateWriter } from './state-codec.js';

/** The four bytes a stream starts with, `VMDS`, read as a little-endian u32. */
export const DEVICE_STREAM_MAGIC = 0x53444d56;
/** The envelope format version this build writes and reads. */
export const DEVICE_STREAM_VERSION = 1;
/** Largest stream the envelope can describe (its total length is a u32). */
export const DEVICE_STREAM_MAX_SIZE = 0xffff_ffff;
/** Longest device type name or section id, in bytes. */
export const DEVICE_STREAM_MAX_NAME = 64;

const FIXED_HEADER = 12;
const CHECKSUM_SIZE = 4;
/** A section with a one-byte id and no payload. */
const MIN_SECTION = 4 + 1 + 4;
/** A stream with a one-byte type name and no sections. */
const MIN_STREAM = FIXED_HEADER + 4 + 1 + 4 + 4 + CHECKSUM_SIZE;

const ENCODE = 'migration.encodeDeviceStream';
const DECODE = 'migration.decodeDeviceStream';

/** One named piece of a device's state (e.g. `"config"`, `"regs"`, `"fifo"`). */
export interface DeviceStreamSection {
  readonly id: string;
  readonly bytes: Uint8Array;
}

/** What a stream carries. */
export interface DeviceStreamContents {
  /** The device type name, as in `DeviceDefinition.type`. */
  readonly deviceType: string;
  /** The model's state layout version (`DeviceModel.stateVersion`), 0 … 2^32 − 1. */
  readonly modelVersion: number;
  readonly sections: readonly DeviceStreamSection[];
}

/** What the resuming side accepts. */
export interface DecodeDeviceStreamOptions {
  /** The device type being resumed: a stream of any other type is refused. */
  readonly deviceType: string;
  /** The newest model state version this device can load: a newer stream is refused. */
  readonly maxModelVersion: number;
  /** Largest stream accepted, in bytes. */
  readonly maxSize: number;
}

let crcTable: Uint32Array | undefined;

function crc32cTable(): Uint32Array {
  if (crcTable !== undefined) return crcTable;
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    // 0x82f63b78 is the Castagnoli polynomial 0x1edc6f41 bit-reversed, for LSB-first processing.
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  crcTable = table;
  return table;
}

/**
 * CRC-32C (Castagnoli, as in iSCSI and ext4) of `data`, table-driven. Pass a previous result
 * as `crc` to continue over a following piece: `crc32c(b, crc32c(a))` is the CRC of `a` then `b`.
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  const table = crc32cTable();
  let c = ~crc >>> 0;
  for (const byte of data) c = table[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function isName(value: string): boolean {
  if (value.length < 1 || value.length > DEVICE_STREAM_MAX_NAME) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function nameBytes(value: string): Uint8Array {
  const out = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) out[i] = value.charCodeAt(i);
  return out;
}

function checkName(value: unknown, what: string, operation: string): asserts value is string {
  if (typeof value !== 'string' || !isName(value)) {
    throw new InvalidError(
      operation,
      `${what} ${JSON.stringify(value)} must be 1 to ${DEVICE_STREAM_MAX_NAME} characters of printable ASCII without spaces`,
    );
  }
}

function checkSize(value: unknown, what: string, operation: string, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > DEVICE_STREAM_MAX_SIZE) {
    throw new InvalidError(operation, `${what} ${String(value)} must be a whole number in [${min}, ${DEVICE_STREAM_MAX_SIZE}]`);
  }
}

/**
 * Wraps a device's state sections in a stream (format in the module doc).
 *
 * @throws InvalidError for a bad type name, version or section id, a duplicate section id, or
 *   contents that would not fit the 4 GiB − 1 the envelope can describe.
 */
export function encodeDeviceStream(contents: DeviceStreamContents): Uint8Array {
  const { deviceType, modelVersion, sections } = contents;
  checkName(deviceType, 'device type', ENCODE);
  checkSize(modelVersion, 'model version', ENCODE, 0);
  if (!Array.isArray(sections)) throw new InvalidError(ENCODE, 'sections must be an array');
  let total = FIXED_HEADER + 4 + deviceType.length + 4 + 4 + CHECKSUM_SIZE;
  const ids = new Set<string>();
  for (const section of sections) {
    checkName(section.id, 'section id', ENCODE);
    if (ids.has(section.id)) throw new InvalidError(ENCODE, `duplicate section id "${section.id}"`);
    ids.add(section.id);
    if (!(section.bytes instanceof Uint8Array)) throw new InvalidError(ENCODE, `section "${section.id}": bytes must be a Uint8Array`);
    total += 4 + section.id.length + 4 + section.bytes.length;
  }
  if (total > DEVICE_STREAM_MAX_SIZE) {
    throw new InvalidError(ENCODE, `stream would be ${total} bytes, more than the ${DEVICE_STREAM_MAX_SIZE} an envelope can describe`);
  }

  const w = new StateWriter()
    .u32(DEVICE_STREAM_MAGIC)
    .u16(DEVICE_STREAM_VERSION)
    .u16(0)
    .u32(total)
    .bytes(nameBytes(deviceType))
    .u32(modelVersion)
    .u32(sections.length);
  for (const section of sections) w.bytes(nameBytes(section.id)).bytes(section.bytes);
  w.u32(crc32c(w.finish()));
  return w.finish();
}

/** A name field: u32 length, then printable ASCII. */
function readName(r: StateReader, field: string): string {
  const raw = r.bytes(field, DEVICE_STREAM_MAX_NAME);
  if (raw.length === 0) throw new InvalidError(DECODE, `${field} is empty`);
  let s = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c < 0x21 || c > 0x7e) throw new InvalidError(DECODE, `${field} has byte ${hex(c)} at ${i}, which is not printable ASCII`);
    s += String.fromCharCode(c);
  }
  return s;
}

/**
 * Checks and unwraps a stream written by {@link encodeDeviceStream}. The sections are copies:
 * together never more than the stream's own size, whatever its length fields say.
 *
 * @throws InvalidError naming what was wrong: larger than `maxSize`, truncated, bad magic,
 *   unknown envelope version, non-zero reserved field, trailing bytes, checksum mismatch, another
 *   device type, a model version newer than `maxModelVersion`, a bad or duplicate section id, a
 *   section length past the end, or a section count the stream cannot hold.
 */
export function decodeDeviceStream(stream: Uint8Array, options: DecodeDeviceStreamOptions): DeviceStreamContents {
  if (!(stream instanceof Uint8Array)) throw new InvalidError(DECODE, 'stream must be a Uint8Array');
  checkName(options.deviceType, 'expected device type', DECODE);
  checkSize(options.maxModelVersion, 'maxModelVersion', DECODE, 0);
  checkSize(options.maxSize, 'maxSize', DECODE, 0);
  const size = stream.length;
  if (size > options.maxSize) throw new InvalidError(DECODE, `stream is ${size} bytes, more than maxSize ${options.maxSize}`);

  const header = new StateReader(stream, DECODE);
  const magic = header.u32('magic');
  if (magic !== DEVICE_STREAM_MAGIC) {
    throw new InvalidError(DECODE, `bad magic ${hex(magic)} (expected ${hex(DEVICE_STREAM_MAGIC)}, "VMDS"): not a device state stream`);
  }
  const version = header.u16('envelope format version');
  if (version !== DEVICE_STREAM_VERSION) {
    throw new InvalidError(DECODE, `unknown envelope format version ${version} (this build reads version ${DEVICE_STREAM_VERSION})`);
  }
  const reserved = header.u16('reserved field');
  if (reserved !== 0) throw new InvalidError(DECODE, `reserved field is ${hex(reserved)}, must be 0`);
  const total = header.u32('total length');
  if (total > size) throw new InvalidError(DECODE, `stream truncated: its header says ${total} bytes, ${size} present`);
  if (total < size) throw new InvalidError(DECODE, `${size - total} trailing bytes after the ${total}-byte stream`);
  if (total < MIN_STREAM) {
    throw new InvalidError(DECODE, `total length ${total} is less than the ${MIN_STREAM} bytes of the smallest stream`);
  }

  const bodyEnd = size - CHECKSUM_SIZE;
  const stored = new DataView(stream.buffer, stream.byteOffset + bodyEnd, CHECKSUM_SIZE).getUint32(0, true);
  const computed = crc32c(stream.subarray(0, bodyEnd));
  if (stored !== computed) {
    throw new InvalidError(DECODE, `checksum mismatch: the stream says ${hex(stored)}, its contents give ${hex(computed)}`);
  }

  const body = stream.subarray(FIXED_HEADER, bodyEnd);
  const bodyView = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const r = new StateReader(body, DECODE);
  const deviceType = readName(r, 'device type');
  if (deviceType !== options.deviceType) {
    throw new InvalidError(DECODE, `stream is for device type "${deviceType}", not "${options.deviceType}"`);
  }
  const modelVersion = r.u32('model state version');
  if (modelVersion > options.maxModelVersion) {
    throw new InvalidError(
      DECODE,
      `model state version ${modelVersion} is newer than version ${options.maxModelVersion}, the newest this device loads`,
    );
  }
  const count = r.u32('section count');
  // Bounded by the bytes present, so a hostile count cannot make the loop below run long.
  if (count > Math.floor(r.remaining / MIN_SECTION)) {
    throw new InvalidError(DECODE, `section count ${count} cannot fit in the ${r.remaining} bytes left`);
  }

  const sections: DeviceStreamSection[] = [];
  const ids = new Set<string>();
  for (let i = 0; i < count; i++) {
    const id = readName(r, `section ${i} id`);
    if (ids.has(id)) throw new InvalidError(DECODE, `duplicate section id "${id}"`);
    ids.add(id);
    // Peek at the payload length so that a bad one is reported as what it is.
    const at = body.length - r.remaining;
    if (r.remaining >= 4) {
      const length = bodyView.getUint32(at, true);
      if (length > r.remaining - 4) {
        throw new InvalidError(
          DECODE,
          `section "${id}" length ${length} runs past the end of the stream (${r.remaining - 4} bytes left)`,
        );
      }
    }
    sections.push({ id, bytes: r.bytes(`section "${id}"`, r.remaining) });
  }
  if (r.remaining !== 0) throw new InvalidError(DECODE, `${r.remaining} trailing bytes after the last section`);
  return { deviceType, modelVersion, sections };
}

/** How a {@link DeviceStreamSource} hands out its stream. */
export interface DeviceStreamSourceOptions {
  /** Largest chunk one `read` returns, in bytes; 64 KiB by default. */
  readonly chunkSize?: number;
}

/**
 * The saving side of a data transfer session (STOP_COPY): hands out a saved stream in chunks,
 * then end of stream, as `read()` on VFIO's migration data fd does. Disposable: a closed source
 * refuses every call.
 */
export class DeviceStreamSource implements Disposable {
  /** The stream's size in bytes. */
  readonly size: number;
  /** Largest chunk one `read` returns. */
  readonly chunkSize: number;
  private readonly data: Uint8Array;
  private offset = 0;
  private isClosed = false;

  /** Takes a copy of `stream`, so the device may save again while this one is read out. */
  constructor(stream: Uint8Array, options: DeviceStreamSourceOptions = {}) {
    if (!(stream instanceof Uint8Array)) throw new InvalidError('migration.createSource', 'stream must be a Uint8Array');
    const chunkSize = options.chunkSize ?? 65536;
    checkSize(chunkSize, 'chunkSize', 'migration.createSource', 1);
    this.chunkSize = chunkSize;
    this.data = stream.slice();
    this.size = stream.length;
  }

  /** Bytes handed out so far. */
  get position(): number {
    return this.offset;
  }

  /** Bytes still to be handed out. */
  get remaining(): number {
    return this.size - this.offset;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * The next chunk: at most `min(maxBytes, chunkSize)` bytes, never empty; `null` at end of
   * stream (and on every later call). The chunk is a view: do not keep it past the source.
   *
   * @throws BadHandleError after `close()`.
   * @throws InvalidError when `maxBytes` is not a whole number ≥ 1.
   */
  read(maxBytes: number = this.chunkSize): Uint8Array | null {
    if (this.isClosed) throw new BadHandleError('migration.streamRead', 'the save stream is closed');
    checkSize(maxBytes, 'maxBytes', 'migration.streamRead', 1);
    if (this.offset >= this.size) return null;
    const n = Math.min(maxBytes, this.chunkSize, this.size - this.offset);
    const chunk = this.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return chunk;
  }

  /** Ends the session (leaving STOP_COPY); later calls throw `BadHandle`. Idempotent. */
  close(): void {
    this.isClosed = true;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** How a {@link DeviceStreamSink} accepts its stream. */
export interface DeviceStreamSinkOptions {
  /** Largest stream accepted, in bytes: a write that would pass it is refused with `NoSpace`. */
  readonly maxSize: number;
}

/**
 * The resuming side of a data transfer session (RESUMING): accumulates written chunks, whatever
 * their sizes, up to `maxSize`, as `write()` on VFIO's migration data fd does. `finish()` gives
 * the whole stream for {@link decodeDeviceStream}. Disposable: a closed sink refuses every call.
 */
export class DeviceStreamSink implements Disposable {
  readonly maxSize: number;
  private buffer: Uint8Array;
  private length = 0;
  private isClosed = false;

  constructor(options: DeviceStreamSinkOptions) {
    checkSize(options.maxSize, 'maxSize', 'migration.createSink', 0);
    this.maxSize = options.maxSize;
    this.buffer = new Uint8Array(Math.min(this.maxSize, 4096));
  }

  /** Bytes written so far. */
  get size(): number {
    return this.length;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Appends a copy of `chunk` and returns its length. All or nothing: a chunk that would take
   * the stream past `maxSize` is refused whole and the sink stays as it was.
   *
   * @throws BadHandleError after `close()` or `finish()`.
   * @throws NoSpaceError when the stream would pass `maxSize` (`bytesDone` is 0).
   */
  write(chunk: Uint8Array): number {
    if (this.isClosed) throw new BadHandleError('migration.streamWrite', 'the resume stream is closed');
    if (!(chunk instanceof Uint8Array)) throw new InvalidError('migration.streamWrite', 'chunk must be a Uint8Array');
    const end = this.length + chunk.length;
    if (end > this.maxSize) {
      throw new NoSpaceError(
        'migration.streamWrite',
        `${chunk.length} more bytes would make the stream ${end} bytes, more than maxSize ${this.maxSize}`,
        { bytesDone: 0 },
      );
    }
    if (end > this.buffer.length) {
      // Grow by doubling, never past maxSize: the writer's sizes decide how much we hold.
      const next = new Uint8Array(Math.min(this.maxSize, Math.max(end, this.buffer.length * 2)));
      next.set(this.buffer.subarray(0, this.length));
      this.buffer = next;
    }
    this.buffer.set(chunk, this.length);
    this.length = end;
    return chunk.length;
  }

  /**
   * The stream as written, and the sink closed (leaving RESUMING ends the session).
   *
   * @throws BadHandleError when already closed or finished.
   */
  finish(): Uint8Array {
    if (this.isClosed) throw new BadHandleError('migration.streamFinish', 'the resume stream is closed');
    this.isClosed = true;
    const out = this.buffer.subarray(0, this.length);
    this.buffer = new Uint8Array(0);
    return out;
  }

  /** Abandons the session (a reset while RESUMING); later calls throw `BadHandle`. Idempotent. */
  close(): void {
    this.isClosed = true;
    this.buffer = new Uint8Array(0);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
