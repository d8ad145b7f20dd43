/**
 * A writer for the `newc` cpio format the Linux kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Entries carry fixed owners and
 * times, so the same inputs always give the same bytes and a rebuild is needed only when an
 * input changes.
 */
import { gzipSync } from 'node:zlib';

/** One member of an initramfs. Parent folders must be listed before their contents. */
export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly kind: 'file'; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: 'char'; readonly path: string; readonly major: number; readonly minor: number; readonly mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`cpio: field ${n} does not fit 32 bits`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function member(ino: number, mode: number, name: string, data: Uint8Array, rdev: [number, number] = [0, 0]): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  // Fields in order: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check.
  const fields = [ino, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0];
  const header = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return [
    header,
    nameBytes,
    Buffer.alloc(pad4(header.length + nameBytes.length)),
    Buffer.from(data.buffer, data.byteOffset, data.length),
    Buffer.alloc(pad4(data.length)),
  ];
}

function normalise(path: string): string {
  const p = path.replace(/^\/+/, '');
  if (p === '' || p.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new RangeError(`cpio: bad member path ${JSON.stringify(path)}`);
  }
  return p;
}

/** The uncompressed archive. */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const name = normalise(e.path);
    switch (e.kind) {
      case 'dir':
        parts.push(...member(i + 1, S_IFDIR | (e.mode ?? 0o755), name, new Uint8Array()));
        break;
      case 'file':
        parts.push(...member(i + 1, S_IFREG | (e.mode ?? 0o644), name, e.data));
        break;
      case 'char':
        parts.push(...member(i + 1, S_IFCHR | (e.mode ?? 0o600), name, new Uint8Array(), [e.major, e.minor]));
        break;
    }
  });
  parts.push(...member(0, 0, TRAILER, new Uint8Array()));
  return Buffer.concat(parts);
}

/** The archive gzip-compressed, as Xen and Linux take an initrd. */
export function gzippedCpio(entries: readonly CpioEntry[]): Buffer {
  return gzipSync(cpioArchive(entries), { level: 6 });
}
