/**
 * Assembles tiny x86 guest programs at test time with GNU as/ld (on every machine of this
 * kind), so each test keeps its guest's source next to its assertions. Results are cached
 * by content hash in the OS temp directory.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function has(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** True when `as` and `ld` are installed. */
export const HAS_BINUTILS = has('as') && has('ld');

/**
 * Assembles `source` (GNU syntax; start with `.code16` or `.code32`) linked at `base`, as a
 * flat binary.
 */
export function assemble(source: string, base: number): Uint8Array {
  const key = createHash('sha256').update(`${base}\n${source}`).digest('hex').slice(0, 20);
  const dir = join(tmpdir(), 'vmed-kvm-guests');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${key}.bin`);
  if (existsSync(out)) return new Uint8Array(readFileSync(out));
  const unique = `${key}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  const src = join(dir, `${unique}.S`);
  const obj = join(dir, `${unique}.o`);
  const bin = join(dir, `${unique}.bin`);
  writeFileSync(src, source);
  execFileSync('as', ['--32', '-o', obj, src], { stdio: 'pipe' });
  execFileSync('ld', ['-m', 'elf_i386', '-Ttext', `0x${base.toString(16)}`, '--oformat', 'binary', '-o', bin, obj], { stdio: 'pipe' });
  renameSync(bin, out);
  return new Uint8Array(readFileSync(out));
}
