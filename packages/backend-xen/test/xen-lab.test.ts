/**
 * The Xen backend against real Xen 4.17: runs only in the project's Xen lab (dom0 under QEMU
 * emulation: `pnpm xen-lab test -- xen-lab`), where `VMED_XEN_LAB=1` and `/dev/xen/privcmd`
 * exist. One PVH domU running the project's guest agent serves every test here and then the
 * whole conformance suite; each test opens its own session (a fresh IOREQ server).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { addressRange, allOnes, pciConfigAddress } from '@vmed/core';
import { RecordingSink, registerConformanceSuite, type ConformanceSession } from '@vmed/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import type { XenBackend } from '../src/backend.js';
import { XEN_MMIO_WINDOW, XEN_PIO_WINDOW, createConformanceTarget } from '../src/conformance.js';

const inLab = process.env.VMED_XEN_LAB === '1' && existsSync('/dev/xen/privcmd');
const why = 'needs the Xen lab (VMED_XEN_LAB=1 and /dev/xen/privcmd): run `pnpm xen-lab test -- xen-lab`';
const LAB_TIMEOUT = 600_000;

const target = createConformanceTarget();
const W = XEN_MMIO_WINDOW.base;
const P = XEN_PIO_WINDOW.base;

async function withSession<T>(run: (s: ConformanceSession) => Promise<T>, backend?: Record<string, unknown>): Promise<T> {
  const s = await target.open(backend);
  try {
    return await run(s);
  } finally {
    await s.close();
  }
}

describe.skipIf(!inLab)(`Xen backend in the lab: a PVH domU served as a secondary IOREQ server${inLab ? '' : ` (skipped: ${why})`}`, () => {
  it(
    "serves the guest's MMIO (1-8 bytes), port and PCI config accesses; unclaimed ones read all-ones",
    async () => {
      await withSession(async ({ backend, guest }) => {
        const sink = new RecordingSink();
        backend.attach(sink);
        const answer = (a: bigint, size: number) => BigInt.asUintN(size * 8, 0x1122_3344_5566_7788n ^ a);
        const mmio = backend.claimIo('mmio', addressRange(W, 0x1000));
        sink.serve('mmio', W, 0x1000n, answer);
        for (const size of [1, 2, 4, 8] as const) expect(await guest.mmioRead(W + 0x40n, size)).toBe(answer(W + 0x40n, size));
        await guest.mmioWrite(W + 0x80n, 4, 0xcafe_f00dn);
        expect(sink.within('mmio', W + 0x80n, 4n)).toEqual([{ kind: 'write', space: 'mmio', address: W + 0x80n, size: 4, value: 0xcafe_f00dn }]);
        expect(await guest.mmioRead(W + 0x10_0000n, 4)).toBe(0xffff_ffffn);

        const ports = backend.claimIo('pio', addressRange(P, 0x10));
        sink.serve('pio', BigInt(P), 0x10n, answer);
        expect(await guest.pioRead(P + 2, 2)).toBe(Number(answer(BigInt(P + 2), 2)));
        await guest.pioWrite(P + 4, 1, 0x5a);
        expect(sink.within('pio', BigInt(P + 4), 1n).map((r) => r.value)).toEqual([0x5an]);

        const bdf = { bus: 0, device: 0x1d, function: 0 };
        const pci = backend.claimPciFunction(bdf);
        sink.serve('pci', pciConfigAddress(bdf, 0), 0x1000n, (a) => (a & 0xfffn) === 0n ? 0x1234_1af4n : 0n);
        expect(await guest.configRead(bdf, 0, 4)).toBe(0x1234_1af4);
        await guest.configWrite(bdf, 0x04, 2, 0x0006);
        expect(sink.within('pci', pciConfigAddress(bdf, 4), 2n).map((r) => [r.kind, r.size, r.value])).toEqual([['write', 2, 6n]]);
        // A function nobody claimed: Xen answers all-ones itself.
        expect(await guest.configRead({ bus: 0, device: 0x1c, function: 0 }, 0, 4)).toBe(0xffff_ffff);
        for (const c of [mmio, ports, pci]) c.dispose();
        expect(await guest.mmioRead(W + 0x40n, 4)).toBe(0xffff_ffffn);
        const stats = (backend as XenBackend).stats();
        expect(stats.mmio).toBeGreaterThanOrEqual(5);
        expect(stats.pio).toBe(2);
        expect(stats.pci).toBe(2);
        expect(stats.faults).toBe(0);
      });
    },
    LAB_TIMEOUT,
  );

  it(
    'injects MSIs (route and signalMsi) that reach the guest handler',
    async () => {
      await withSession(async ({ backend, guest }) => {
        const route = backend.createMsiRoute();
        route.setMsi(guest.msiMessageFor(0x42));
        route.unmask();
        const before = await guest.interruptCount(0x42);
        route.trigger();
        expect(await guest.waitForInterrupts(0x42, before + 1, 30_000)).toBe(true);
        backend.signalMsi(guest.msiMessageFor(0x42));
        expect(await guest.waitForInterrupts(0x42, before + 2, 30_000)).toBe(true);
        route.dispose();
      });
    },
    LAB_TIMEOUT,
  );

  it(
    'maps guest memory: host writes reach guest loads, guest stores reach host reads',
    async () => {
      await withSession(async ({ backend, guest }) => {
        const a = guest.scratch.address + 0x3000n;
        backend.memory.write(a, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
        expect(await guest.mmioRead(a, 8)).toBe(0x0807_0605_0403_0201n);
        await guest.mmioWrite(a + 8n, 4, 0xdead_beefn);
        const back = new Uint8Array(4);
        backend.memory.read(a + 8n, back);
        expect([...back]).toEqual([0xef, 0xbe, 0xad, 0xde]);
        const view = backend.memory.view(a, 16, 'readwrite');
        expect(view.data.getUint32(8, true)).toBe(0xdead_beef);
        view.dispose();
      });
    },
    LAB_TIMEOUT,
  );

  it(
    'refuses line interrupts on a PVH guest with Unsupported (no DM call: Xen 4.17 would panic)',
    async () => {
      await withSession(async ({ backend }) => {
        expect(backend.capabilities.lineIrq).toBe(false);
        expect(() => backend.createLineIrq({ kind: 'gsi', line: 5 }, 'level')).toThrow(expect.objectContaining({ code: 'Unsupported' }));
        expect(() => backend.createLineIrq({ kind: 'intx', device: { bus: 0, device: 3, function: 0 }, pin: 1, line: 11 }, 'level')).toThrow(
          expect.objectContaining({ code: 'Unsupported' }),
        );
      });
    },
    LAB_TIMEOUT,
  );

  it(
    'closing leaves no IOREQ server: a former claim reads all-ones (no guest waits) and the next server reuses the id',
    async () => {
      const firstId = await withSession(async ({ backend, guest }) => {
        const sink = new RecordingSink();
        backend.attach(sink);
        backend.claimIo('mmio', addressRange(W, 0x100));
        sink.serve('mmio', W, 0x100n, () => 0x77n);
        expect(await guest.mmioRead(W, 4)).toBe(0x77n);
        // The claim is never disposed: closing the session must release it with the server.
        return (backend as XenBackend).server.id;
      });
      await withSession(async ({ backend, guest }) => {
        expect(await guest.mmioRead(W, 4)).toBe(allOnes(4));
        expect((backend as XenBackend).server.id).toBe(firstId);
      });
    },
    LAB_TIMEOUT,
  );

  it(
    'a serving process killed with SIGTERM destroys its server first: the guest goes on',
    async () => {
      await withSession(async ({ backend, guest }) => {
        const domid = (backend as XenBackend).domid;
        const ram = (backend as XenBackend).memory.ram.ranges.map((r) => `${r.base}:${r.length}`).join(',');
        const id = (backend as XenBackend).server.id;
        await backend.close();
        const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', fileURLToPath(new URL('./fixtures/lab-serve-child.ts', import.meta.url)), String(domid), ram, W.toString()], {
          cwd: fileURLToPath(new URL('..', import.meta.url)),
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_c, s) => resolve(s)));
        const deadline = Date.now() + 300_000;
        while (!out.includes('serving')) {
          if (Date.now() > deadline) throw new Error(`child never served: ${out}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(await guest.mmioRead(W + 4n, 4)).toBe(0x600dn);
        child.kill('SIGTERM');
        expect(await exited).toBe('SIGTERM');
        // Nobody serves the range now, and the guest is not left waiting on a dead server.
        expect(await guest.mmioRead(W + 4n, 4)).toBe(allOnes(4));
        const again = await target.open();
        try {
          expect((again.backend as XenBackend).server.id).toBe(id);
        } finally {
          await again.close();
        }
      });
    },
    LAB_TIMEOUT,
  );

  it(
    'legacy page mapping is refused on a PVH guest (Xen keeps no legacy ioreq gfns for it: ENOMEM) and the half-made server is destroyed',
    async () => {
      const id = await withSession(async ({ backend }) => (backend as XenBackend).server.id);
      await expect(target.open({ legacyPageMapping: true })).rejects.toMatchObject({ operation: 'xen.getIoreqServerInfo', errno: 'ENOMEM' });
      await withSession(async ({ backend }) => {
        expect((backend as XenBackend).server.id).toBe(id);
      });
    },
    LAB_TIMEOUT,
  );

  it.each([
    ['worker waiting (a poller thread)', { wait: 'worker' }],
    ['no buffered ring', { bufferedIoreqs: false }],
    ['without deprivileging', { restrict: false }],
  ] as const)(
    'serves the same way with %s',
    async (_what, options) => {
      await withSession(async ({ backend, guest }) => {
        const sink = new RecordingSink();
        backend.attach(sink);
        const c = backend.claimIo('mmio', addressRange(W, 0x100));
        sink.serve('mmio', W, 0x100n, (a) => a & 0xffn);
        expect(await guest.mmioRead(W + 0x24n, 4)).toBe(0x24n);
        expect((backend as XenBackend).server.pageMapping).toBe('resource');
        c.dispose();
      }, options);
    },
    LAB_TIMEOUT,
  );
});

// Destroying the domU takes over a minute under emulation: more than the default hook limit.
if (inLab) registerConformanceSuite(target, { describe, it, afterAll: (body) => afterAll(body, LAB_TIMEOUT) });
else it.skip(`conformance: xen (skipped: ${why})`, () => {});
