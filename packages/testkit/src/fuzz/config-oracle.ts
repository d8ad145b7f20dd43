/**
 * What the PCI specifications let a guest change in a function's configuration space, worked
 * out from the function's {@link PciFunctionDefinition} alone — not from the core's own masks —
 * so that a guest write can be judged independently:
 *
 * - `mayWrite`: bits a guest write may change (the spec's RW bits; an implementation may
 *   hardwire some of them, so a bit here is allowed to change, not required to);
 * - `clearable`: RW1C bits — only a 1 written clears them, nothing a guest writes sets them;
 * - `dynamic`: bits the function itself changes (Interrupt Status, MSI pending bits);
 * - every other bit is read-only and must never change on a guest write;
 * - `expected`: fields whose value the definition fixes (identity, pin, BAR flags, capability
 *   layout constants), compared on every check.
 *
 * Capability positions are the implementation's choice; they are found by walking the list the
 * guest sees, and the set of capabilities found must be exactly the one the definition asks for.
 */
import type { PciFunctionDefinition } from '@vmed/core';

/** Per-byte masks for one function, built once from its definition and its capability walk. */
export interface ConfigOracle {
  readonly size: number;
  readonly mayWrite: Uint8Array;
  readonly clearable: Uint8Array;
  readonly dynamic: Uint8Array;
  /** Bits whose value is fixed: `(byte & expectedMask) === expectedValue`. */
  readonly expectedMask: Uint8Array;
  readonly expectedValue: Uint8Array;
  /** Capability offsets by ID, as walked. */
  readonly capabilities: ReadonlyMap<number, number>;
  /** Why the capability list does not match the definition, if it does not. */
  readonly layoutProblem: string | undefined;
  /** BAR sizing answers: register offset → value a read must return after an all-ones write. */
  readonly sizing: ReadonlyMap<number, number>;
}

const CAP_PM = 0x01;
const CAP_MSI = 0x05;
const CAP_EXP = 0x10;
const CAP_MSIX = 0x11;

function set16(a: Uint8Array, at: number, v: number): void {
  a[at] = (a[at] ?? 0) | (v & 0xff);
  a[at + 1] = (a[at + 1] ?? 0) | ((v >>> 8) & 0xff);
}

function set32(a: Uint8Array, at: number, v: number): void {
  set16(a, at, v & 0xffff);
  set16(a, at + 2, v >>> 16);
}

function fixed(o: { expectedMask: Uint8Array; expectedValue: Uint8Array }, at: number, width: number, value: number, mask = 0xffffffff): void {
  for (let i = 0; i < width; i++) {
    const m = (mask >>> (8 * i)) & 0xff;
    o.expectedMask[at + i] = (o.expectedMask[at + i] ?? 0) | m;
    o.expectedValue[at + i] = ((o.expectedValue[at + i] ?? 0) & ~m) | ((value >>> (8 * i)) & m);
  }
}

/** Walks the capability list in `image` as a guest would (stops on loops and bad pointers). */
export function walkCapabilityList(image: Uint8Array): Array<{ id: number; offset: number }> {
  const out: Array<{ id: number; offset: number }> = [];
  if (((image[0x06] ?? 0) & 0x10) === 0) return out;
  const seen = new Set<number>();
  let at = (image[0x34] ?? 0) & 0xfc;
  while (at >= 0x40 && at < 0x100 && !seen.has(at)) {
    seen.add(at);
    out.push({ id: image[at] ?? 0, offset: at });
    at = (image[at + 1] ?? 0) & 0xfc;
  }
  return out;
}

/** The oracle of a function with `definition` whose config space currently reads `image`. */
export function buildConfigOracle(definition: PciFunctionDefinition, image: Uint8Array): ConfigOracle {
  const size = definition.pcie === true ? 0x1000 : 0x100;
  const o = {
    mayWrite: new Uint8Array(size),
    clearable: new Uint8Array(size),
    dynamic: new Uint8Array(size),
    expectedMask: new Uint8Array(size),
    expectedValue: new Uint8Array(size),
  };
  const sizing = new Map<number, number>();

  // ---- Type-0 header (PCI Local Bus 3.0 §6.2) ----
  fixed(o, 0x00, 2, definition.vendorId);
  fixed(o, 0x02, 2, definition.deviceId);
  // Command: bits 10:0 may be implemented; 15:11 are reserved and read 0.
  set16(o.mayWrite, 0x04, 0x07ff);
  fixed(o, 0x04, 2, 0, 0xf800);
  // Status: error bits are RW1C, Interrupt Status is the function's, Capabilities List is fixed.
  set16(o.clearable, 0x06, 0xf900);
  set16(o.dynamic, 0x06, 0x0008);
  const wantCaps = definition.powerManagement === true || definition.msi !== undefined || definition.msix !== undefined || definition.pcie === true;
  fixed(o, 0x06, 2, wantCaps ? 0x10 : 0, 0x0010);
  fixed(o, 0x08, 1, definition.revision ?? 0);
  fixed(o, 0x09, 3, definition.classCode, 0xffffff);
  o.mayWrite[0x0c] = 0xff; // cache line size
  o.mayWrite[0x0d] = 0xff; // latency timer (hardwired 0 on PCIe, allowed either way)
  fixed(o, 0x0e, 1, 0x00, 0x7f); // header type 0; bit 7 (multi-function) is the bus's
  o.dynamic[0x0e] = 0x80;
  // BARs.
  const bars = definition.bars ?? [];
  for (let i = 0; i < 6; i++) {
    const bar = bars[i];
    const reg = 0x10 + 4 * i;
    const previous = i > 0 ? bars[i - 1] : undefined;
    if (previous?.kind === 'memory64') continue; // upper dword, set below
    if (bar === undefined) {
      fixed(o, reg, 4, 0);
      continue;
    }
    if (bar.kind === 'io') {
      const mask = ~(bar.size - 1) & 0xfffffffc;
      set32(o.mayWrite, reg, mask);
      fixed(o, reg, 4, 0x1, ~mask >>> 0);
      // Bits 31:16 of an I/O BAR may be hardwired 0 (x86 ports are 16 bits): a sized read
      // answers with or without them.
      sizing.set(reg, (mask | 0x1) >>> 0);
    } else {
      const flags = (bar.kind === 'memory64' ? 0x4 : 0x0) | (bar.prefetchable === true ? 0x8 : 0);
      const mask = (bar.size >= 2 ** 32 ? 0 : ~(bar.size - 1) & 0xfffffff0) >>> 0;
      set32(o.mayWrite, reg, mask);
      fixed(o, reg, 4, flags, ~mask >>> 0);
      sizing.set(reg, (mask | flags) >>> 0);
      if (bar.kind === 'memory64') {
        const high = Number((((1n << 64n) - BigInt(bar.size)) >> 32n) & 0xffffffffn);
        set32(o.mayWrite, reg + 4, high);
        fixed(o, reg + 4, 4, 0, ~high >>> 0);
        sizing.set(reg + 4, high >>> 0);
      }
    }
  }
  fixed(o, 0x28, 4, 0); // CardBus CIS
  fixed(o, 0x2c, 2, definition.subsystemVendorId ?? 0);
  fixed(o, 0x2e, 2, definition.subsystemId ?? 0);
  fixed(o, 0x30, 4, 0); // no expansion ROM
  fixed(o, 0x35, 3, 0); // reserved
  fixed(o, 0x38, 4, 0); // reserved
  o.mayWrite[0x3c] = 0xff; // interrupt line
  fixed(o, 0x3d, 1, definition.interruptPin ?? 0);

  // ---- Capabilities ----
  const walked = walkCapabilityList(image);
  const capabilities = new Map<number, number>();
  for (const c of walked) capabilities.set(c.id, c.offset);
  const wanted = [
    ...(definition.powerManagement === true ? [CAP_PM] : []),
    ...(definition.msi !== undefined ? [CAP_MSI] : []),
    ...(definition.msix !== undefined ? [CAP_MSIX] : []),
    ...(definition.pcie === true ? [CAP_EXP] : []),
  ].sort((a, b) => a - b);
  const found = walked.map((c) => c.id).sort((a, b) => a - b);
  const layoutProblem = found.join() === wanted.join() ? undefined : `capability list has IDs [${found.join(', ')}], the definition asks for [${wanted.join(', ')}]`;
  // Headers: ID and next pointer are read-only (checked as unchanged, not as fixed values).
  const pm = capabilities.get(CAP_PM);
  if (pm !== undefined) {
    // PMCSR: PowerState RW, PME_En RW, PME_Status RW1C; the rest read-only.
    set16(o.mayWrite, pm + 4, 0x0103);
    set16(o.clearable, pm + 4, 0x8000);
  }
  const msi = capabilities.get(CAP_MSI);
  if (msi !== undefined && definition.msi !== undefined) {
    const d = definition.msi;
    const control = (Math.log2(d.vectors) << 1) | (d.address64 ? 0x80 : 0) | (d.perVectorMask ? 0x100 : 0);
    set16(o.mayWrite, msi + 2, 0x0071); // enable, multiple message enable
    fixed(o, msi + 2, 2, control, 0xff8e);
    set32(o.mayWrite, msi + 4, 0xfffffffc);
    fixed(o, msi + 4, 1, 0, 0x03);
    const data = msi + (d.address64 ? 12 : 8);
    if (d.address64) set32(o.mayWrite, msi + 8, 0xffffffff);
    set16(o.mayWrite, data, 0xffff);
    if (d.perVectorMask) {
      const bits = d.vectors === 32 ? 0xffffffff : (1 << d.vectors) - 1;
      const mask = msi + (d.address64 ? 16 : 12);
      set32(o.mayWrite, mask, bits);
      fixed(o, mask, 4, 0, ~bits >>> 0);
      set32(o.dynamic, mask + 4, bits);
      fixed(o, mask + 4, 4, 0, ~bits >>> 0);
    }
  }
  const msix = capabilities.get(CAP_MSIX);
  if (msix !== undefined && definition.msix !== undefined) {
    const d = definition.msix;
    set16(o.mayWrite, msix + 2, 0xc000);
    fixed(o, msix + 2, 2, d.vectors - 1, 0x3fff);
    fixed(o, msix + 4, 4, (d.tableOffset | d.tableBar) >>> 0);
    fixed(o, msix + 8, 4, (d.pbaOffset | d.pbaBar) >>> 0);
  }
  const exp = capabilities.get(CAP_EXP);
  if (exp !== undefined) {
    set16(o.mayWrite, exp + 0x08, 0x7fff); // Device Control
    set16(o.clearable, exp + 0x0a, 0x000f); // Device Status error bits
    set16(o.mayWrite, exp + 0x10, 0x0fff); // Link Control
    set16(o.mayWrite, exp + 0x28, 0xffff); // Device Control 2
    set16(o.mayWrite, exp + 0x30, 0xffff); // Link Control 2
  }
  return { size, ...o, capabilities, layoutProblem, sizing };
}

/** A config write as the function saw it: the first register and the bytes written, in order. */
export interface ConfigWrite {
  readonly register: number;
  readonly bytes: readonly number[];
}

/**
 * Checks one guest config write against the oracle: returns a description of the first rule
 * broken, or `undefined`. `before`/`after` are the images read around the write; `write` is
 * `undefined` for a write the function must have refused (so nothing may change).
 */
export function judgeConfigWrite(oracle: ConfigOracle, before: Uint8Array, after: Uint8Array, write: ConfigWrite | undefined): { invariant: 'config-read-only' | 'config-rw1c' | 'config-untouched-bytes' | 'config-identity' | 'config-refused-access' | 'bar-sizing'; message: string } | undefined {
  const n = Math.min(oracle.size, before.length, after.length);
  for (let i = 0; i < n; i++) {
    const b = before[i] ?? 0;
    const a = after[i] ?? 0;
    const changed = (a ^ b) & ~(oracle.dynamic[i] ?? 0);
    const inside = write !== undefined && i >= write.register && i < write.register + write.bytes.length;
    if (changed !== 0 && !inside) {
      return {
        invariant: write === undefined ? 'config-refused-access' : 'config-untouched-bytes',
        message: `byte 0x${i.toString(16)} changed 0x${hex2(b)} → 0x${hex2(a)} on ${write === undefined ? 'a refused write' : `a ${write.bytes.length}-byte write at 0x${write.register.toString(16)}`}`,
      };
    }
    if (!inside || write === undefined) continue;
    const written = write.bytes[i - write.register] ?? 0;
    const w1c = oracle.clearable[i] ?? 0;
    const readOnly = ~((oracle.mayWrite[i] ?? 0) | w1c | (oracle.dynamic[i] ?? 0)) & 0xff;
    if ((changed & readOnly) !== 0) {
      return { invariant: 'config-read-only', message: `read-only bits 0x${hex2(changed & readOnly)} of byte 0x${i.toString(16)} changed 0x${hex2(b)} → 0x${hex2(a)} on writing 0x${hex2(written)}` };
    }
    // RW1C: a bit written 1 reads 0 afterwards, a bit written 0 keeps its value, none is set.
    const setByWrite = ~b & a & w1c;
    const survivedOne = a & written & w1c;
    const clearedByZero = b & ~a & ~written & w1c;
    if (setByWrite !== 0 || survivedOne !== 0 || clearedByZero !== 0) {
      return { invariant: 'config-rw1c', message: `RW1C byte 0x${i.toString(16)}: 0x${hex2(b)} → 0x${hex2(a)} on writing 0x${hex2(written)}` };
    }
  }
  const identity = checkExpected(oracle, after);
  if (identity !== undefined) return { invariant: 'config-identity', message: identity };
  // BAR sizing: every dword the write filled with all-ones reads back the size mask and flags.
  for (let reg = write?.register ?? 0; write !== undefined && reg + 4 <= write.register + write.bytes.length; reg += 4) {
    const at = reg - write.register;
    if (reg % 4 !== 0 || write.bytes.slice(at, at + 4).some((x) => x !== 0xff)) continue;
    const want = oracle.sizing.get(reg);
    if (want === undefined) continue;
    const got = ((after[reg] ?? 0) | ((after[reg + 1] ?? 0) << 8) | ((after[reg + 2] ?? 0) << 16) | ((after[reg + 3] ?? 0) << 24)) >>> 0;
    // An I/O BAR may hardwire bits 31:16; compare the low 16 bits there.
    const io = (want & 1) === 1;
    const ok = io ? (got & 0xffff) === (want & 0xffff) && (got >>> 16 === 0 || got >>> 16 === 0xffff) : got === want;
    if (!ok) return { invariant: 'bar-sizing', message: `BAR register 0x${reg.toString(16)} reads 0x${got.toString(16)} after the all-ones probe, expected 0x${want.toString(16)}` };
  }
  return undefined;
}

/** The first fixed field that does not hold its expected value, if any. */
export function checkExpected(oracle: ConfigOracle, image: Uint8Array): string | undefined {
  if (oracle.layoutProblem !== undefined) return oracle.layoutProblem;
  for (let i = 0; i < oracle.size; i++) {
    const m = oracle.expectedMask[i] ?? 0;
    if (m !== 0 && ((image[i] ?? 0) & m) !== (oracle.expectedValue[i] ?? 0)) {
      return `byte 0x${i.toString(16)} reads 0x${hex2(image[i] ?? 0)}, the definition fixes bits 0x${hex2(m)} to 0x${hex2(oracle.expectedValue[i] ?? 0)}`;
    }
  }
  return undefined;
}

function hex2(v: number): string {
  return v.toString(16).padStart(2, '0');
}
