/**
 * The project's own x86 test guests, as loadable images.
 *
 * Each program is built from one source tree (`guests/`, GNU as) into two images of the same
 * code at the same addresses:
 *
 * - **`flat`** (KVM): raw bytes to copy into guest RAM at {@link GuestImage.loadAddress}
 *   (0x10000). Entry contract, per vCPU: 32-bit protected mode, paging off, flat 4 GiB
 *   code (CS: base 0, limit 0xffffffff, type 0xb, D=1, G=1) and data segments
 *   (DS/ES/FS/GS/SS: type 0x3) and CR0.PE set through `KVM_SET_SREGS` (selector values are
 *   not trusted: the guest loads its own GDT); `eip` = {@link GuestImage.entry}, `eflags` =
 *   0x2, `esi` = the vCPU index (0..3), `ebx`/`ecx`/`edx`/`edi` = the program's parameters
 *   ({@link flatEntryRegisters}). All vCPUs start at the same entry at once: with the
 *   in-kernel irqchip, set each AP's `KVM_SET_MP_STATE` to RUNNABLE (an AP otherwise waits
 *   for INIT/SIPI). The VM needs the in-kernel LAPIC (0xfee00000); the agent's IOAPIC_ROUTE
 *   needs the in-kernel IOAPIC (0xfec00000). Interrupt handlers end without `iret`, which
 *   this machine's KVM emulator cannot run in protected mode.
 * - **`pvh`** (Xen): an ELF32 whose PT_LOAD covers `[0x10000, 0x40000)` and whose PT_NOTE
 *   holds `XEN_ELFNOTE_PHYS32_ENTRY` = {@link GuestImage.entry}; give it to `xl` as the
 *   kernel of a `type = "pvh"` guest. Xen enters vCPU 0 only, `ebx` = start_info; the
 *   parameters come from the image header ({@link withGuestParams}). PVH has no IOAPIC or
 *   PIC: interrupts are MSIs only.
 *
 * Every guest ends its run with a 32-bit `out` of an exit code to port 0x501
 * ({@link DONE_PORT}); on PVH it then also asks Xen for SCHEDOP_shutdown (poweroff for 0,
 * crash otherwise). See `runtime-abi.ts` for the memory map and the runtime page a host can
 * read, `agent-abi.ts` for the agent's mailboxes and `demo-abi.ts` for the demo's exit codes.
 * @module
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidError, NotFoundError, hex } from '@vmed/core';
import { PT_LOAD, parseElf32, pvhEntryPoint, type Elf32Image } from './elf.js';
import {
  GUEST_LOAD_ADDR,
  HDR_MAGIC,
  HDR_MAGIC_OFFSET,
  HDR_PARAMS_OFFSET,
  checkGuestVcpu,
} from './runtime-abi.js';

export * from './runtime-abi.js';
export * from './agent-abi.js';
export * from './demo-abi.js';
export { parseElf32, pvhEntryPoint, XEN_ELFNOTE_PHYS32_ENTRY } from './elf.js';
export type { Elf32Image, ElfNote, ElfSegment } from './elf.js';

/** The guest programs, by the name of their prebuilt files. */
export const GUEST_PROGRAMS = [
  'agent',
  'demo',
  'bench-mmio',
  'bench-pio',
  'bench-doorbell',
  'bench-irq',
  'bench-mmio-smp',
] as const;

/**
 * - `agent`: command executor driven through mailboxes (conformance suite).
 * - `demo`: finds serial and edu on PCI bus 0, prints, factorial and DMA with MSI.
 * - `bench-mmio`, `bench-pio`: N 4-byte writes of `edx` to MMIO address / port `ebx`.
 * - `bench-doorbell`: the same to a port (`ebx` < 0x10000) or an MMIO address, for an ioeventfd.
 * - `bench-irq`: N interrupt round trips on vector `edx`, each answered by a doorbell write to `ebx`.
 * - `bench-mmio-smp`: `bench-mmio` on 2 vCPUs (or `edi`), all writing the same address.
 */
export type GuestProgram = (typeof GUEST_PROGRAMS)[number];
export type GuestFormat = 'flat' | 'pvh';

/** A loaded guest image. */
export interface GuestImage {
  readonly program: GuestProgram;
  readonly format: GuestFormat;
  /** `flat`: bytes to copy to {@link loadAddress}. `pvh`: the whole ELF file for Xen. */
  readonly bytes: Uint8Array;
  /** Guest physical address of the image's first byte (0x10000 for every program). */
  readonly loadAddress: number;
  /** `flat`: where every vCPU starts (= loadAddress). `pvh`: the PHYS32 entry note's value. */
  readonly entry: number;
  /** First byte after the guest's footprint; `[loadAddress, footprintEnd)` must start zeroed. */
  readonly footprintEnd: number;
  /** The file the bytes came from. */
  readonly path: string;
}

/**
 * Program parameters: on the flat entry the registers of the same name, on PVH the image
 * header's HDR_PARAMS. For the bench programs: `ebx` = target (port if < 0x10000, else MMIO
 * address), `ecx` = count, `edx` = value written (bench-irq: the vector), `edi` = vCPUs
 * taking part (0 = the program's default). The agent and demo take none.
 */
export interface GuestParams {
  readonly ebx?: number;
  readonly ecx?: number;
  readonly edx?: number;
  readonly edi?: number;
}

export interface LoadGuestOptions {
  /** Read the images from this directory instead of the package's `guests/prebuilt`. */
  readonly directory?: string;
}

/**
 * Loads a prebuilt guest image.
 * @throws NotFoundError when the prebuilt files cannot be found.
 * @throws InvalidError when they are malformed or disagree with each other.
 */
export async function loadGuest(program: GuestProgram, format: GuestFormat, options: LoadGuestOptions = {}): Promise<GuestImage> {
  checkRequest(program, format);
  const directory = options.directory ?? guestPrebuiltDirectory();
  const elfPath = join(directory, `${program}.elf`);
  const elf = await readImageFile(elfPath);
  if (format === 'pvh') return pvhImage(program, elf, elfPath);
  const binPath = join(directory, `${program}.bin`);
  const bin = await readImageFile(binPath);
  return flatImage(program, elf, bin, binPath);
}

/** {@link loadGuest}, synchronously. */
export function loadGuestSync(program: GuestProgram, format: GuestFormat, options: LoadGuestOptions = {}): GuestImage {
  checkRequest(program, format);
  const directory = options.directory ?? guestPrebuiltDirectory();
  const elfPath = join(directory, `${program}.elf`);
  const elf = readImageFileSync(elfPath);
  if (format === 'pvh') return pvhImage(program, elf, elfPath);
  const binPath = join(directory, `${program}.bin`);
  return flatImage(program, elf, readImageFileSync(binPath), binPath);
}

/**
 * A copy of `image` whose header carries `params` (HDR_PARAMS: ebx, ecx, edx, edi), which
 * the PVH entry uses in place of entry registers. The flat entry ignores the header.
 * @throws InvalidError for a parameter that is not a u32.
 */
export function withGuestParams(image: GuestImage, params: GuestParams): GuestImage {
  const bytes = image.bytes.slice();
  const headerOffset = image.format === 'flat' ? 0 : elfFileOffset(parseElf32(bytes), image.loadAddress);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = paramValues(params, 'guest.withParams');
  values.forEach((value, i) => view.setUint32(headerOffset + HDR_PARAMS_OFFSET + 4 * i, value, true));
  return { ...image, bytes };
}

/** Registers of a vCPU at the flat entry (see the module doc for segments and CR0). */
export interface FlatEntryRegisters {
  readonly eip: number;
  readonly eflags: number;
  readonly esi: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
  readonly edi: number;
}

/**
 * The general registers a KVM host sets on vCPU `vcpu` to start a flat image.
 * @throws InvalidError for a PVH image, a vCPU outside 0..3 or a parameter that is not a u32.
 */
export function flatEntryRegisters(image: GuestImage, vcpu: number, params: GuestParams = {}): FlatEntryRegisters {
  if (image.format !== 'flat') throw new InvalidError('guest.flatEntryRegisters', 'only a flat image has a flat entry');
  checkGuestVcpu(vcpu, 'guest.flatEntryRegisters');
  const [ebx, ecx, edx, edi] = paramValues(params, 'guest.flatEntryRegisters');
  return { eip: image.entry, eflags: 0x2, esi: vcpu, ebx, ecx, edx, edi };
}

/**
 * The directory holding the prebuilt images: `guests/prebuilt` of this package, found by
 * walking up from this module (works from `src/` under vitest or tsx and from `dist/`).
 * @throws NotFoundError when no enclosing `@vmed/testkit` package has one.
 */
export function guestPrebuiltDirectory(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 8; depth++) {
    if (isTestkitRoot(dir)) return join(dir, 'guests', 'prebuilt');
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new NotFoundError('guest.prebuiltDirectory', `no @vmed/testkit package with guests/prebuilt above ${fileURLToPath(import.meta.url)}`);
}

function isTestkitRoot(dir: string): boolean {
  try {
    const pkg: unknown = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    return typeof pkg === 'object' && pkg !== null && (pkg as { name?: unknown }).name === '@vmed/testkit';
  } catch {
    return false;
  }
}

function checkRequest(program: string, format: string): void {
  if (!(GUEST_PROGRAMS as readonly string[]).includes(program)) {
    throw new InvalidError('guest.load', `unknown guest program '${program}' (known: ${GUEST_PROGRAMS.join(', ')})`);
  }
  if (format !== 'flat' && format !== 'pvh') throw new InvalidError('guest.load', `unknown image format '${format}' (flat or pvh)`);
}

async function readImageFile(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (cause) {
    throw new NotFoundError('guest.load', `cannot read ${path}`, { cause });
  }
}

function readImageFileSync(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (cause) {
    throw new NotFoundError('guest.load', `cannot read ${path}`, { cause });
  }
}

function loadSegment(elf: Elf32Image, path: string): { paddr: number; fileSize: number; memSize: number; offset: number } {
  const loads = elf.segments.filter((s) => s.type === PT_LOAD);
  const [first] = loads;
  if (first === undefined || loads.length !== 1) {
    throw new InvalidError('guest.load', `${path}: expected one PT_LOAD segment, found ${loads.length}`);
  }
  if (first.paddr !== GUEST_LOAD_ADDR) {
    throw new InvalidError('guest.load', `${path}: loads at ${hex(first.paddr)}, not ${hex(GUEST_LOAD_ADDR)}`);
  }
  return first;
}

function pvhImage(program: GuestProgram, elf: Uint8Array, path: string): GuestImage {
  const parsed = parseElf32(elf);
  const segment = loadSegment(parsed, path);
  const entry = pvhEntryPoint(parsed);
  if (entry === undefined) throw new InvalidError('guest.load', `${path}: no XEN_ELFNOTE_PHYS32_ENTRY note`);
  if (entry < segment.paddr || entry >= segment.paddr + segment.fileSize) {
    throw new InvalidError('guest.load', `${path}: PVH entry ${hex(entry)} is outside the loaded code`);
  }
  checkHeader(elf, segment.offset, path);
  return { program, format: 'pvh', bytes: elf, loadAddress: segment.paddr, entry, footprintEnd: segment.paddr + segment.memSize, path };
}

function flatImage(program: GuestProgram, elf: Uint8Array, bin: Uint8Array, path: string): GuestImage {
  const parsed = parseElf32(elf);
  const segment = loadSegment(parsed, path);
  if (parsed.entry !== segment.paddr) {
    throw new InvalidError('guest.load', `${path}: flat entry ${hex(parsed.entry)} is not the load address`);
  }
  // The flat binary is the ELF's loaded bytes minus the trailing Xen note: a prefix of them.
  const loaded = elf.subarray(segment.offset, segment.offset + segment.fileSize);
  if (bin.byteLength > loaded.byteLength || bin.some((b, i) => b !== loaded[i])) {
    throw new InvalidError('guest.load', `${path} is not the image of ${program}.elf (rebuild with guests/build.sh --prebuilt)`);
  }
  checkHeader(bin, 0, path);
  return { program, format: 'flat', bytes: bin, loadAddress: segment.paddr, entry: parsed.entry, footprintEnd: segment.paddr + segment.memSize, path };
}

function checkHeader(bytes: Uint8Array, imageOffset: number, path: string): void {
  const at = imageOffset + HDR_MAGIC_OFFSET;
  if (at + 4 > bytes.byteLength) throw new InvalidError('guest.load', `${path}: too short for the image header`);
  const magic = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);
  if (magic !== HDR_MAGIC) throw new InvalidError('guest.load', `${path}: header magic ${hex(magic)}, expected ${hex(HDR_MAGIC)}`);
}

function elfFileOffset(elf: Elf32Image, address: number): number {
  const segment = elf.segments.find((s) => s.type === PT_LOAD && address >= s.paddr && address < s.paddr + s.fileSize);
  if (segment === undefined) throw new InvalidError('guest.withParams', `${hex(address)} is not in a loaded segment`);
  return segment.offset + (address - segment.paddr);
}

function paramValues(params: GuestParams, operation: string): [number, number, number, number] {
  const values: [number, number, number, number] = [params.ebx ?? 0, params.ecx ?? 0, params.edx ?? 0, params.edi ?? 0];
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new InvalidError(operation, `parameter ${v} is not a u32`);
  }
  return values;
}
