// The prebuilt images are exactly what guests/build.sh makes from the sources: rebuild into a
// temporary directory and compare bytes.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { GUEST_PROGRAMS } from '../../src/guests/index.js';

const guests = fileURLToPath(new URL('../../guests/', import.meta.url));
const assembler = spawnSync('as', ['--version'], { encoding: 'utf8' });
const assemblerVersion = assembler.status === 0 ? (assembler.stdout.split('\n')[0] ?? '') : undefined;
const prebuiltVersion = readFileSync(join(guests, 'prebuilt', 'BUILD-INFO'), 'utf8').trim();
const skipReason =
  assemblerVersion === undefined
    ? 'GNU as is not installed'
    : assemblerVersion !== prebuiltVersion
      ? `prebuilt by "${prebuiltVersion}", this machine has "${assemblerVersion}"`
      : undefined;

const out = mkdtempSync(join(tmpdir(), 'vmed-guest-build-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('guests/build.sh', () => {
  it.skipIf(skipReason !== undefined)(`rebuilds the prebuilt images byte for byte${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
    execFileSync('sh', [join(guests, 'build.sh'), out], { stdio: 'pipe' });
    for (const program of GUEST_PROGRAMS) {
      for (const ext of ['bin', 'elf']) {
        const rebuilt = readFileSync(join(out, `${program}.${ext}`));
        const prebuilt = readFileSync(join(guests, 'prebuilt', `${program}.${ext}`));
        expect({ file: `${program}.${ext}`, same: rebuilt.equals(prebuilt) }).toEqual({ file: `${program}.${ext}`, same: true });
      }
    }
  });
});
