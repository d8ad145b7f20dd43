/**
 * `xen.inject_msi`: the bench-irq guest (PVH) rings a doorbell (an MMIO write) when ready and
 * once from each run of its handler for the vector; the server answers each ring with the next
 * MSI, `xendevicemodel_inject_msi`. One operation is one round trip: doorbell ioreq → handler
 * → inject_msi → answer → guest resumes → LAPIC delivers → guest handler → EOI → doorbell.
 *
 * - vmed: `@vmed/backend-xen` with an MSI route (`createMsiRoute`, programmed and unmasked)
 *   triggered from the sink's doorbell handler, before the ioreq is answered.
 * - C: `c/xen/xen-bench.c msi`: the same server, `xendevicemodel_inject_msi` from the handler.
 *
 * Both sides stamp rings `warmup + 1` to the last and report the median gap between
 * consecutive rings (the mean goes in the details). vmed also checks the guest's own handler
 * count for the vector; C checks the guest rang once per interrupt.
 */
import { addressRange, allOnes } from '@vmed/core';
import { DONE_PORT, IRQ_COUNTS_ADDR } from '@vmed/testkit';
import { closeKeepingAlive } from '../harness/wait.js';
import { measure } from '../harness/rounds.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale, Sample } from '../types.js';
import { BENCH_DOMAIN_MIB, withBenchDomain } from './bench-domain.js';
import { XenCServer } from './c-server.js';
import { SAMPLE_TIMEOUT_MS, Stamps, cMedianSample, deferred, hexArg, withTimeout, xenBenchAvailable } from './common.js';
import { XEN_BENCH_TARGET } from './ioreq-roundtrip.js';

/** The guest's vector (32 ≤ v < 0xfe); vCPU 0's LAPIC (APIC id 0) takes it. */
const VECTOR = 0x41;
const MSI_ADDRESS = 0xfee0_0000n;

const COUNTS: Readonly<Record<BenchScale, { readonly count: number; readonly warmup: number }>> = {
  full: { count: 200, warmup: 20 },
  tiny: { count: 10, warmup: 3 },
};

export const injectMsi: Benchmark = {
  name: 'xen.inject_msi',
  unit: 'µs/interrupt',
  goal: 1.25,
  description: 'doorbell ioreq → handler → inject_msi → guest handler → EOI → doorbell, per interrupt (PVH domU, Xen lab)',
  available: xenBenchAvailable,
  run: (context) => runMsi(context),
};

async function runMsi(context: BenchContext): Promise<BenchResult> {
  const { count, warmup } = COUNTS[context.scale];
  const interrupts = warmup + count;
  const params = { ebx: XEN_BENCH_TARGET, ecx: interrupts, edx: VECTOR };
  const server = XenCServer.compile();
  try {
    return await measure(injectMsi, context, {
      expectedOps: interrupts,
      vmed: () => withBenchDomain('bench-irq', params, 'vmed', (domain) => vmedSample(domain.domid, () => domain.unpause(), warmup, count)),
      c: () =>
        withBenchDomain('bench-irq', params, 'c', async (domain) => {
          const r = await server.serve(
            ['msi', String(domain.domid), hexArg(XEN_BENCH_TARGET), hexArg(DONE_PORT), hexArg(VECTOR), String(warmup), String(count)],
            () => domain.unpause(),
            SAMPLE_TIMEOUT_MS,
          );
          if (r['rings'] !== interrupts + 1) throw new Error(`xen.inject_msi: the guest under C rang ${String(r['rings'])} times, not ${interrupts + 1}`);
          return cMedianSample(r);
        }),
      notes: [
        `${interrupts} round trips per sample by bench-irq on vector ${hexArg(VECTOR)} (PVH, ${BENCH_DOMAIN_MIB} MiB); figure: the median gap between the last ${count + 1} rings (mean in details); one fresh domU per sample`,
        'vmed: an MSI route triggered from the sink (XenBackend defaults); C: inject_msi from the handler, same libraries',
        'Xen runs under QEMU TCG in the lab: absolute times are emulation, the ratio is the figure',
      ],
    });
  } finally {
    server.dispose();
  }
}

async function vmedSample(domid: number, unpause: () => Promise<void>, warmup: number, count: number): Promise<Sample> {
  const interrupts = warmup + count;
  // Loaded here, not at module scope: listing benchmarks must not load Xen's libraries.
  const { createBackend } = await import('@vmed/backend-xen');
  const backend = await createBackend({ domid, guestType: 'pvh', ram: [{ base: 0, length: BENCH_DOMAIN_MIB << 20 }] });
  try {
    const route = backend.createMsiRoute();
    route.setMsi({ address: MSI_ADDRESS, data: VECTOR });
    route.unmask();
    const done = deferred();
    const doorbell = BigInt(XEN_BENCH_TARGET);
    const donePort = BigInt(DONE_PORT);
    let rings = 0;
    let raised = 0;
    const stamps = new Stamps(count + 1);
    let handled = -1;
    backend.attach({
      read: (_space, _address, size) => allOnes(size),
      write: (space, address) => {
        if (space === 'mmio' && address === doorbell) {
          rings++;
          if (rings >= warmup + 1) stamps.add(performance.now());
          if (raised < interrupts) {
            route.trigger();
            raised++;
          }
        } else if (space === 'pio' && address === donePort) {
          // The guest waits on this ioreq: its counters are still there to read.
          const bytes = new Uint8Array(4);
          backend.memory.read(BigInt(IRQ_COUNTS_ADDR + 4 * VECTOR), bytes);
          handled = new DataView(bytes.buffer).getUint32(0, true);
          done.resolve();
        }
      },
    });
    backend.claimIo('mmio', addressRange(doorbell, 4));
    backend.claimIo('pio', addressRange(donePort, 4));
    await unpause();
    await withTimeout(done.promise, SAMPLE_TIMEOUT_MS, `bench-irq under vmed (${rings} rings seen)`);
    if (handled !== interrupts) throw new Error(`xen.inject_msi: the guest handled ${handled} interrupts, not ${interrupts}`);
    if (rings !== interrupts + 1) throw new Error(`xen.inject_msi: the guest rang ${rings} times, not ${interrupts + 1}`);
    route.dispose();
    const { medianUs, meanUs } = stamps.figures();
    return { perOp: medianUs, ops: raised, detail: { meanUs } };
  } finally {
    await closeKeepingAlive(() => backend.close());
  }
}
