/**
 * The host mapping of standalone guest RAM sits between PROT_NONE guard pages
 * (`src/memory/guarded-ram.ts`): `/proc/self/maps` shows `---p` on both sides of every run of
 * RAM, guest-adjacent regions stay host-adjacent (no guard between them), the guards go away
 * with the backend, and a raw host read one byte past RAM kills the process with SIGSEGV
 * instead of returning whatever lies there.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GUARD_BYTES } from '../../src/memory/guarded-ram.js';
import { createBackend, type KvmBackend } from '../../src/index.js';
import { KVM_SKIP } from '../helpers/kvm.js';
import { MiB } from './helpers/agent-guest.js';
import { mapLines, mappingAround } from './helpers/maps.js';

const REPO = fileURLToPath(new URL('../../../..', import.meta.url));

describe('guard pages around guest RAM', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('puts PROT_NONE pages before and after every run of RAM, and none inside a run', async () => {
    backend = await createBackend({
      mode: 'standalone',
      memoryMiB: 5,
      vcpus: 1,
      ramLayout: [
        { base: 0, size: 1.5 * MiB, name: 'low' },
        { base: 1.5 * MiB, size: 2.5 * MiB, name: 'mid' },
        { base: 8 * MiB, size: MiB, name: 'high' },
      ],
    });
    const [low, mid, high] = backend.memory.ram.ranges;
    if (low === undefined || mid === undefined || high === undefined) throw new Error('three regions expected');
    // Guest-adjacent regions are host-adjacent: one run, one mapping line.
    expect(mid.hostAddress).toBe(low.hostAddress + low.length);
    const runs = [
      { start: low.hostAddress, end: mid.hostAddress + mid.length },
      { start: high.hostAddress, end: high.hostAddress + high.length },
    ];
    const lines = mapLines();
    for (const run of runs) {
      const { before, line, after } = mappingAround(run.start, lines);
      expect(line.path).toMatch(/memfd:vmed-ram/);
      expect(line.perms).toBe('rw-s');
      expect([line.start, line.end]).toEqual([run.start, run.end]);
      expect(before?.perms).toBe('---p');
      expect(before?.end).toBe(run.start);
      expect(after?.perms).toBe('---p');
      expect(after?.start).toBe(run.end);
      expect(Number((before?.end ?? 0n) - (before?.start ?? 0n))).toBeGreaterThanOrEqual(GUARD_BYTES);
      expect(Number((after?.end ?? 0n) - (after?.start ?? 0n))).toBeGreaterThanOrEqual(GUARD_BYTES);
    }
    // The hole between the runs is a guard too: the end of `mid` does not lead to `high`.
    expect(high.hostAddress - (mid.hostAddress + mid.length)).toBeGreaterThanOrEqual(BigInt(GUARD_BYTES));

    // A view across the two adjacent regions still works (they are one run).
    const across = backend.memory.view(low.length - 8n, 16, 'readwrite');
    across.bytes.fill(7);
    across.dispose();

    const reservation = { start: low.hostAddress - BigInt(GUARD_BYTES), end: high.hostAddress + high.length + BigInt(GUARD_BYTES) };
    await backend.close();
    backend = undefined;
    // Everything (RAM and guards) is unmapped with the backend.
    expect(mapLines().filter((l) => l.start < reservation.end && l.end > reservation.start)).toEqual([]);
  });

  it('kills a raw host read one byte past RAM with SIGSEGV (and not one of the last byte)', () => {
    const script = fileURLToPath(new URL('./fixtures/guard-touch.ts', import.meta.url));
    const run = (mode: string) =>
      spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', script, mode], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    const last = run('last');
    expect({ status: last.status, signal: last.signal, stdout: last.stdout }).toEqual({ status: 0, signal: null, stdout: 'last=0\n' });
    const past = run('past');
    expect(past.signal).toBe('SIGSEGV');
    expect(past.stdout).toBe('last=0\n');
  });
});
