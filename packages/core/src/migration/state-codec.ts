/**
 * A small little-endian codec for device state. Readers check every length against what is
 * left, so a truncated or hostile stream fails with `Invalid` naming the field, never with a
 * RangeError or a read past the buffer.
 */
import { InvalidError } from '../errors.js';

/** Appends fields to a growing buffer. */
export class StateWriter {
  private buffer = new Uint8Array(256);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  u8(value: number): this {
    this.reserve(1);
    this.view.setUint8(this.length, value);
    this.length += 1;
    return this;
  }

  u16(value: number): this {
    this.reserve(2);
    this.view.setUint16(this.length, value, true);
    this.length += 2;
    return this;
  }

  u32(value: number): this {
    this.reserve(4);
    this.view.setUint32(this.length, value >>> 0, true);
    this.length += 4;
    return this;
  }

  u64(value: bigint): this {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt.asUintN(64, value), true);
    this.length += 8;
    return this;
  }

  bool(value: boolean): this {
    return this.u8(value ? 1 : 0);
  }

  /** A byte string prefixed by its 32-bit length. */
  bytes(value: Uint8Array): this {
    this.u32(value.length);
    this.reserve(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
    return this;
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
    this.view = new DataView(next.buffer);
  }
}

/** Reads fields back, refusing to run past the end. */
export class StateReader {
  private offset = 0;
  private readonly view: DataView;

  constructor(
    private readonly data: Uint8Array,
    private readonly operation = 'state.read',
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get remaining(): number {
    return this.data.length - this.offset;
  }

  u8(field: string): number {
    this.need(1, field);
    const v = this.view.getUint8(this.offset);
    this.offset += 1;
    return v;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    return v;
  }

  bool(field: string): boolean {
    const v = this.u8(field);
    if (v > 1) throw new InvalidError(this.operation, `${field}: ${v} is not a boolean`);
    return v === 1;
  }

  /** A length-prefixed byte string of at most `maxLength` bytes (a copy). */
  bytes(field: string, maxLength: number): Uint8Array {
    const n = this.u32(`${field}.length`);
    if (n > maxLength) throw new InvalidError(this.operation, `${field}: length ${n} exceeds ${maxLength}`);
    this.need(n, field);
    const v = this.data.slice(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  /** A number in `[min, max]`, read as u32. */
  u32InRange(field: string, min: number, max: number): number {
    const v = this.u32(field);
    if (v < min || v > max) throw new InvalidError(this.operation, `${field}: ${v} is outside [${min}, ${max}]`);
    return v;
  }

  /** Fails unless every byte was consumed: trailing garbage is a malformed stream. */
  end(): void {
    if (this.remaining !== 0) throw new InvalidError(this.operation, `${this.remaining} unexpected trailing bytes`);
  }

  private need(n: number, field: string): void {
    if (this.offset + n > this.data.length) {
      throw new InvalidError(this.operation, `${field}: stream truncated (need ${n} bytes, ${this.remaining} left)`);
    }
  }
}
