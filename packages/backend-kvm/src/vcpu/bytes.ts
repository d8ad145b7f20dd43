/**
 * Little-endian access values as the guest's x86 byte order has them, shared by the exit
 * path on both sides of the mailbox. No imports: the vCPU thread loads only the ABI.
 */

/** Little-endian value of `size` bytes at `at`. */
export function readLe(bytes: Uint8Array, at: number, size: number): bigint {
  let value = 0n;
  for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i] as number);
  return value;
}
