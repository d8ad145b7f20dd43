/**
 * Assertions and waits the scenarios share. Waits poll rather than sleep a fixed time, so a
 * slow machine makes a scenario slower, never wrong; a "nothing more happens" check waits a
 * short quiet period, which can only miss a fault, never invent one.
 */
import assert from 'node:assert/strict';
import { PAGE_SIZE, isVmedError, type AddressRange, type VmedErrorCode } from '@vmed/core';
import type { GuestDriver } from './guest-driver.js';
import { RecordingSink } from './recording-sink.js';
import type { ConformanceSession } from './target.js';

/** How long a scenario waits for something the guest or a backend thread does. */
export const WAIT_MS = 5_000;
/** How long a scenario watches for something that must not happen. */
export const QUIET_MS = 50;

/** Asserts that `fn` throws a `VmedError` with `code`; returns it. */
export function expectCode(fn: () => unknown, code: VmedErrorCode, what: string): Error {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  assert.ok(thrown !== undefined, `${what}: expected a ${code} error, nothing was thrown`);
  assert.ok(isVmedError(thrown), `${what}: expected a VmedError ${code}, got ${describe(thrown)}`);
  assert.equal(thrown.code, code, `${what}: expected code ${code}, got ${thrown.code} (${thrown.message})`);
  assert.ok(thrown.operation.length > 0, `${what}: the error names no operation`);
  return thrown;
}

/** An absent capability must be refused with `Unsupported`, never a silent no-op. */
export function expectUnsupported(fn: () => unknown, what: string): void {
  expectCode(fn, 'Unsupported', what);
}

/** Asserts an `Invalid` error that says no byte moved. */
export function expectRefusedWhole(fn: () => unknown, what: string): void {
  const e = expectCode(fn, 'Invalid', what);
  assert.equal((e as { bytesDone?: number }).bytesDone, 0, `${what}: bytesDone must be 0 for a range refused whole`);
}

/** Polls `predicate` until it holds; fails with `what` after `timeoutMs`. */
export async function waitUntil(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for the guest's handler count of `vector` to reach `count`. */
export async function expectInterrupts(guest: GuestDriver, vector: number, count: number, what: string): Promise<void> {
  const reached = await guest.waitForInterrupts(vector, count, WAIT_MS);
  assert.ok(reached, `${what}: vector ${hex(vector)} reached ${await guest.interruptCount(vector)} handler runs, expected ${count}`);
}

/** Asserts the count of `vector` stays at `count` for a quiet period. */
export async function expectNoMoreInterrupts(guest: GuestDriver, vector: number, count: number, what: string): Promise<void> {
  await sleep(QUIET_MS);
  assert.equal(await guest.interruptCount(vector), count, `${what}: vector ${hex(vector)} ran its handler again`);
}

/** `n` page-aligned pages inside the guest's scratch range. */
export function scratchPages(guest: GuestDriver, n: number): bigint[] {
  const page = BigInt(PAGE_SIZE);
  const first = ((guest.scratch.address + page - 1n) / page) * page;
  const end = guest.scratch.address + BigInt(guest.scratch.length);
  const pages: bigint[] = [];
  for (let p = first; p + page <= end && pages.length < n; p += page) pages.push(p);
  assert.equal(pages.length, n, `the guest's scratch range holds fewer than ${n} whole pages`);
  return pages;
}

/** Whether `[address, address+length)` lies inside the guest's scratch range. */
export function inScratch(guest: GuestDriver, address: bigint, length: number): boolean {
  return address >= guest.scratch.address && address + BigInt(length) <= guest.scratch.address + BigInt(guest.scratch.length);
}

/** Deterministic non-trivial bytes, different for each `seed`. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/**
 * A range as a caller might pass it, unchecked, so scenarios can hand a backend malformed
 * ranges (zero length, wrapping) and see it refuse them.
 */
export function rawRange(base: bigint, length: bigint | number): AddressRange {
  return { base, length: BigInt(length) } as AddressRange;
}

/** Attaches a fresh {@link RecordingSink} as the session's dispatcher. */
export function attachRecorder(session: ConformanceSession): RecordingSink {
  const sink = new RecordingSink();
  session.backend.attach(sink);
  return sink;
}

/** Little-endian value of `size` bytes of `bytes` at `offset`. */
export function le(bytes: Uint8Array, offset: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[offset + i] as number);
  return v;
}

/** Waits until the handler count of `vector` stops moving (in-flight deliveries landed); returns it. */
export async function settledCount(guest: GuestDriver, vector: number): Promise<number> {
  let last = await guest.interruptCount(vector);
  for (let i = 0; i < 100; i++) {
    await sleep(QUIET_MS);
    const now = await guest.interruptCount(vector);
    if (now === last) return now;
    last = now;
  }
  assert.fail(`vector ${hex(vector)} kept firing for ${100 * QUIET_MS} ms after its source went quiet`);
}
