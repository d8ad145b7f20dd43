/**
 * Helpers every reference model shares at the edge of its read and write switches: the core
 * already splits accesses into aligned 1/2/4-byte pieces, but a model still refuses anything
 * else on its own, because a throw from `read`/`write` marks the device broken.
 */

/** All-ones of an access width: what PCI returns for a read nothing answers. */
export function allOnes(size: number): number {
  return size >= 4 ? 0xffffffff : (1 << (8 * size)) - 1;
}

/** True for an access the model can serve: 1, 2 or 4 bytes, naturally aligned, inside a BAR of `barSize` bytes. */
export function isServableAccess(offset: number, size: number, barSize: number): boolean {
  return (
    (size === 1 || size === 2 || size === 4) &&
    Number.isSafeInteger(offset) &&
    offset >= 0 &&
    offset % size === 0 &&
    offset + size <= barSize
  );
}

/** Bits 31:0 of a 64-bit register. */
export function low32(value: bigint): number {
  return Number(value & 0xffffffffn);
}

/** Bits 63:32 of a 64-bit register. */
export function high32(value: bigint): number {
  return Number((value >> 32n) & 0xffffffffn);
}

/** `register` with bits 31:0 replaced by `value`. */
export function withLow32(register: bigint, value: number): bigint {
  return (register & 0xffffffff00000000n) | BigInt(value >>> 0);
}

/** `register` with bits 63:32 replaced by `value`. */
export function withHigh32(register: bigint, value: number): bigint {
  return (register & 0xffffffffn) | (BigInt(value >>> 0) << 32n);
}
