/**
 * Strict reading of a model's saved state. A model's `loadState` parses the whole stream into
 * a fresh state object with these helpers and only then replaces its own, so a refused stream
 * leaves the device exactly as it was even before the core restores anything.
 */
import { InvalidError, hex } from '@vmed/core';
import type { StateReader } from '@vmed/core';

/** Refuses a state version this model does not know (0, negative, fractional, or newer). */
export function checkStateVersion(operation: string, version: number, current: number): void {
  if (!Number.isInteger(version) || version < 1 || version > current) {
    throw new InvalidError(operation, `state version ${version} is not supported (this model writes 1..${current})`);
  }
}

/** A byte whose set bits must all lie in `allowed`. */
export function readBits8(input: StateReader, operation: string, field: string, allowed: number): number {
  const v = input.u8(field);
  refuseBits(operation, field, v, allowed);
  return v;
}

/** A 32-bit word whose set bits must all lie in `allowed`. */
export function readBits32(input: StateReader, operation: string, field: string, allowed: number): number {
  const v = input.u32(field);
  refuseBits(operation, field, v, allowed);
  return v;
}

/** Throws `Invalid` when `condition` is false: a combination of fields no device could reach. */
export function requireState(condition: boolean, operation: string, message: string): void {
  if (!condition) throw new InvalidError(operation, message);
}

function refuseBits(operation: string, field: string, value: number, allowed: number): void {
  if ((value & ~allowed) >>> 0 !== 0) {
    throw new InvalidError(operation, `${field}: ${hex(value)} sets bits outside ${hex(allowed >>> 0)}`);
  }
}
