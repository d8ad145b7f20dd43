/**
 * The watchdog on real Xen 4.17, in the lab: a child process serving a PVH domU (the guest
 * agent) is SIGKILLed while the guest waits on one of its answers. Its watchdog helper must
 * answer that access (all-ones) and destroy the server: the guest goes on, the formerly
 * claimed range reads all-ones (Xen's own answer for unclaimed MMIO), and the next server
 * created for the domain gets the dead one's id back.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { allOnes } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import type { XenBackend } from '../../src/backend.js';
import { XEN_MMIO_WINDOW, createConformanceTarget } from '../../src/conformance.js';

const inLab = process.env.VMED_XEN_LAB === '1' && existsSync('/dev/xen/privcmd');
const why = "needs the Xen lab: pnpm xen-lab exec -- 'node node_modules/vitest/vitest.mjs run packages/backend-xen/test/watchdog'";
const LAB_TIMEOUT = 900_000;
const W = XEN_MMIO_WINDOW.base;

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!inLab)(`the watchdog on real Xen${inLab ? '' : ` (skipped: ${why})`}`, () => {
  it(
    'a SIGKILLed serving process: the access in flight completes, the range reads all-ones, a new server gets the id',
    async () => {
      const target = createConformanceTarget();
      try {
        // This session drives the guest agent; its own server claims nothing the child does.
        const driver = await target.open();
        try {
          const backend = driver.backend as XenBackend;
          const ram = backend.memory.ram.ranges.map((r) => `${r.base}:${r.length}`).join(',');
          const child = spawn(
            process.execPath,
            ['--conditions=source', '--import', 'tsx', fileURLToPath(new URL('./fixtures/lab-serve-and-hang.ts', import.meta.url)), String(backend.domid), ram, W.toString()],
            { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'] },
          );
          let out = '';
          let err = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          // The helper inherits the child's stderr: its report of the rescue arrives here.
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_c, s) => resolve(s)));
          await until('the child to serve', () => out.includes('serving'), 300_000);
          const [, id, helper] = /serving (\d+) (\d+)/.exec(out) ?? [];
          expect(helper, `the child runs a watchdog helper: ${out}${err}`).toMatch(/^\d+$/);

          expect(await driver.guest.mmioRead(W + 4n, 4)).toBe(0x600dn);
          const inFlight = driver.guest.mmioRead(W + 0x10n, 4);
          await until('the child to hang on the access', () => out.includes('hanging'), 120_000);
          child.kill('SIGKILL');
          expect(await exited).toBe('SIGKILL');

          // Answered by the watchdog, not left waiting: the agent would time out otherwise.
          expect(await inFlight).toBe(allOnes(4));
          expect(await driver.guest.mmioRead(W + 4n, 4)).toBe(allOnes(4));
          await until('the watchdog to report', () => /destroyed the server/.test(err), 60_000);
          expect(err).toMatch(new RegExp(`IOREQ server ${id} of domain ${backend.domid}: answered 1 waiting vCPU\\(s\\), destroyed the server`));

          const next = await target.open();
          try {
            expect(String((next.backend as XenBackend).server.id)).toBe(id);
          } finally {
            await next.close();
          }
        } finally {
          await driver.close();
        }
      } finally {
        await target.dispose?.();
      }
    },
    LAB_TIMEOUT,
  );
});
