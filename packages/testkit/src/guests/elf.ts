/**
 * Just enough ELF32 (little-endian, i386) to load the test guests: program headers, the Xen
 * PVH entry note and the symbol table. Every offset read from the file is bounds-checked, so
 * a truncated or corrupted image is an `InvalidError`, never an out-of-range read.
 * @module
 */
import { InvalidError, hex } from '@vmed/core';

const OPERATION = 'guest.parseElf';

export const PT_LOAD = 1;
export const PT_NOTE = 4;
const SHT_SYMTAB = 2;
const EM_386 = 3;
/** `XEN_ELFNOTE_PHYS32_ENTRY` (xen/include/public/elfnote.h): the PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export interface ElfSegment {
  readonly type: number;
  readonly offset: number;
  readonly vaddr: number;
  readonly paddr: number;
  readonly fileSize: number;
  readonly memSize: number;
  readonly flags: number;
}

export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Uint8Array;
}

export interface Elf32Image {
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  readonly notes: readonly ElfNote[];
  /** Symbol values by name (global and local), from `.symtab` if present. */
  readonly symbols: ReadonlyMap<string, number>;
}

/**
 * Parses an ELF32 i386 executable.
 * @throws InvalidError when the bytes are not one, or any table points outside the file.
 */
export function parseElf32(bytes: Uint8Array): Elf32Image {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (offset: number, length: number, what: string): void => {
    if (offset < 0 || length < 0 || offset + length > bytes.byteLength) {
      throw new InvalidError(OPERATION, `${what} at ${hex(offset)}+${hex(length)} lies outside the ${bytes.byteLength}-byte file`);
    }
  };
  need(0, 52, 'ELF header');
  if (view.getUint32(0, false) !== 0x7f454c46) throw new InvalidError(OPERATION, 'not an ELF file');
  if (bytes[4] !== 1 || bytes[5] !== 1) throw new InvalidError(OPERATION, 'not a little-endian ELF32 file');
  if (view.getUint16(18, true) !== EM_386) throw new InvalidError(OPERATION, 'not an i386 ELF file');

  const entry = view.getUint32(24, true);
  const phoff = view.getUint32(28, true);
  const shoff = view.getUint32(32, true);
  const phentsize = view.getUint16(42, true);
  const phnum = view.getUint16(44, true);
  const shentsize = view.getUint16(46, true);
  const shnum = view.getUint16(48, true);

  const segments: ElfSegment[] = [];
  if (phnum > 0) {
    if (phentsize < 32) throw new InvalidError(OPERATION, `program header entries of ${phentsize} bytes`);
    need(phoff, phnum * phentsize, 'program headers');
  }
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const segment: ElfSegment = {
      type: view.getUint32(at, true),
      offset: view.getUint32(at + 4, true),
      vaddr: view.getUint32(at + 8, true),
      paddr: view.getUint32(at + 12, true),
      fileSize: view.getUint32(at + 16, true),
      memSize: view.getUint32(at + 20, true),
      flags: view.getUint32(at + 24, true),
    };
    if (segment.type === PT_LOAD || segment.type === PT_NOTE) need(segment.offset, segment.fileSize, `segment ${i}`);
    if (segment.memSize < segment.fileSize) throw new InvalidError(OPERATION, `segment ${i} has memsz < filesz`);
    segments.push(segment);
  }

  const notes: ElfNote[] = [];
  for (const segment of segments) {
    if (segment.type === PT_NOTE) notes.push(...parseNotes(bytes, view, segment.offset, segment.fileSize, need));
  }

  const symbols = new Map<string, number>();
  if (shnum > 0 && shoff !== 0) {
    if (shentsize < 40) throw new InvalidError(OPERATION, `section header entries of ${shentsize} bytes`);
    need(shoff, shnum * shentsize, 'section headers');
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * shentsize;
      if (view.getUint32(at + 4, true) !== SHT_SYMTAB) continue;
      const offset = view.getUint32(at + 16, true);
      const size = view.getUint32(at + 20, true);
      const link = view.getUint32(at + 24, true);
      const entsize = view.getUint32(at + 36, true);
      if (link >= shnum || entsize < 16) throw new InvalidError(OPERATION, 'malformed symbol table header');
      need(offset, size, 'symbol table');
      const strAt = shoff + link * shentsize;
      const strOffset = view.getUint32(strAt + 16, true);
      const strSize = view.getUint32(strAt + 20, true);
      need(strOffset, strSize, 'symbol string table');
      for (let s = offset; s + entsize <= offset + size; s += entsize) {
        const nameOffset = view.getUint32(s, true);
        if (nameOffset === 0) continue;
        if (nameOffset >= strSize) throw new InvalidError(OPERATION, `symbol name offset ${hex(nameOffset)} outside its table`);
        const name = cString(bytes, strOffset + nameOffset, strOffset + strSize);
        symbols.set(name, view.getUint32(s + 4, true));
      }
    }
  }

  return { entry, segments, notes, symbols };
}

/** The PVH entry point from the image's `XEN_ELFNOTE_PHYS32_ENTRY` note, or undefined. */
export function pvhEntryPoint(image: Elf32Image): number | undefined {
  const note = image.notes.find((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (note === undefined) return undefined;
  if (note.desc.byteLength < 4) throw new InvalidError(OPERATION, 'PHYS32_ENTRY note shorter than 4 bytes');
  return new DataView(note.desc.buffer, note.desc.byteOffset, note.desc.byteLength).getUint32(0, true);
}

function parseNotes(
  bytes: Uint8Array,
  view: DataView,
  start: number,
  length: number,
  need: (offset: number, length: number, what: string) => void,
): ElfNote[] {
  const notes: ElfNote[] = [];
  const align4 = (n: number): number => (n + 3) & ~3;
  let at = start;
  while (at + 12 <= start + length) {
    const namesz = view.getUint32(at, true);
    const descsz = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + align4(namesz);
    const next = descAt + align4(descsz);
    if (next > start + length) throw new InvalidError(OPERATION, `note at ${hex(at)} runs past its segment`);
    need(nameAt, next - nameAt, 'note');
    notes.push({ name: cString(bytes, nameAt, nameAt + namesz), type, desc: bytes.subarray(descAt, descAt + descsz) });
    at = next;
  }
  return notes;
}

/** A NUL-terminated string starting at `start`, not reading past `end`. */
function cString(bytes: Uint8Array, start: number, end: number): string {
  let stop = start;
  while (stop < end && bytes[stop] !== 0) stop++;
  return new TextDecoder('latin1').decode(bytes.subarray(start, stop));
}
