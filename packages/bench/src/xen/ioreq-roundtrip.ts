/**
 * `xen.ioreq_roundtrip`: the bench-mmio guest (PVH) writes one MMIO register back to back;
 * each write is a synchronous ioreq: guest exit → Xen → event channel → the serving process
 * wakes → handler → answer in the ioreq slot → notify → Xen resumes the guest, which writes
 * again. One operation is one round trip.
 *
 * - vmed: `@vmed/backend-xen` as a secondary IOREQ server (its defaults: inline waiting,
 *   buffered ring, deprivileged handles) with a sink that records the write, as the core's
 *   dispatcher would be handed it.
 * - C: `c/xen/xen-bench.c ioreq`, the same server over the same libraries (blocking
 *   `xenevtchn_pending`, no buffered ring: these writes never use it).
 *
 * Both sides stamp writes `warmup + 1` to the last in the handler and report the median gap
 * between consecutive writes (the mean goes in the details); each sample is a fresh guest
 * (bench-mmio ends its run by powering off).
 */
import { addressRange, allOnes } from '@vmed/core';
import { DONE_PORT } from '@vmed/testkit';
import { closeKeepingAlive } from '../harness/wait.js';
import { measure } from '../harness/rounds.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale, Sample } from '../types.js';
import { BENCH_DOMAIN_MIB, withBenchDomain } from './bench-domain.js';
import { XenCServer } from './c-server.js';
import { SAMPLE_TIMEOUT_MS, Stamps, cMedianSample, deferred, hexArg, withTimeout, xenBenchAvailable } from './common.js';

/** Free guest-physical MMIO in a PVH guest (no device there, far above its RAM). */
export const XEN_BENCH_TARGET = 0xd000_0000;
/** What the guest writes; both handlers must end holding it. */
const VALUE = 0x5a5a_0001;

const COUNTS: Readonly<Record<BenchScale, { readonly count: number; readonly warmup: number }>> = {
  full: { count: 400, warmup: 50 },
  tiny: { count: 20, warmup: 5 },
};

export const ioreqRoundtrip: Benchmark = {
  name: 'xen.ioreq_roundtrip',
  unit: 'µs/ioreq',
  goal: 1.25,
  description: 'guest MMIO write → ioreq → event channel → handler → answer → guest resumes, per write (PVH domU, Xen lab)',
  available: xenBenchAvailable,
  run: (context) => runIoreq(context),
};

async function runIoreq(context: BenchContext): Promise<BenchResult> {
  const { count, warmup } = COUNTS[context.scale];
  const total = warmup + count + 1;
  const params = { ebx: XEN_BENCH_TARGET, ecx: total, edx: VALUE };
  const server = XenCServer.compile();
  try {
    return await measure(ioreqRoundtrip, context, {
      expectedOps: total,
      vmed: () => withBenchDomain('bench-mmio', params, 'vmed', (domain) => vmedSample(domain.domid, () => domain.unpause(), warmup, count)),
      c: () =>
        withBenchDomain('bench-mmio', params, 'c', async (domain) => {
          const r = await server.serve(
            ['ioreq', String(domain.domid), hexArg(XEN_BENCH_TARGET), hexArg(DONE_PORT), String(warmup), String(count)],
            () => domain.unpause(),
            SAMPLE_TIMEOUT_MS,
          );
          if (r['value'] !== VALUE) throw new Error(`xen.ioreq_roundtrip: the C handler ended holding ${String(r['value'])}`);
          return cMedianSample(r);
        }),
      notes: [
        `${total} MMIO writes per sample by bench-mmio (PVH, ${BENCH_DOMAIN_MIB} MiB); figure: the median gap between the last ${count + 1} (mean in details); one fresh domU per sample`,
        'vmed: XenBackend defaults (inline waiting, buffered ring, restricted handles), sink handler; C: blocking xenevtchn_pending, same libraries',
        'Xen runs under QEMU TCG in the lab: absolute times are emulation, the ratio is the figure',
      ],
    });
  } finally {
    server.dispose();
  }
}

async function vmedSample(domid: number, unpause: () => Promise<void>, warmup: number, count: number): Promise<Sample> {
  // Loaded here, not at module scope: listing benchmarks must not load Xen's libraries.
  const { createBackend } = await import('@vmed/backend-xen');
  const backend = await createBackend({ domid, guestType: 'pvh', ram: [{ base: 0, length: BENCH_DOMAIN_MIB << 20 }] });
  try {
    const done = deferred();
    const target = BigInt(XEN_BENCH_TARGET);
    const donePort = BigInt(DONE_PORT);
    let writes = 0;
    const stamps = new Stamps(count + 1);
    let value = 0n;
    backend.attach({
      read: (_space, _address, size) => allOnes(size),
      write: (space, address, _size, v) => {
        if (space === 'mmio' && address === target) {
          if (writes >= warmup) stamps.add(performance.now());
          value = v;
          writes++;
        } else if (space === 'pio' && address === donePort) {
          done.resolve();
        }
      },
    });
    backend.claimIo('mmio', addressRange(target, 4));
    backend.claimIo('pio', addressRange(donePort, 4));
    await unpause();
    await withTimeout(done.promise, SAMPLE_TIMEOUT_MS, `bench-mmio under vmed (${writes} writes seen)`);
    if (value !== BigInt(VALUE)) throw new Error(`xen.ioreq_roundtrip: the vmed handler ended holding 0x${value.toString(16)}`);
    const { medianUs, meanUs } = stamps.figures();
    return { perOp: medianUs, ops: writes, detail: { meanUs } };
  } finally {
    await closeKeepingAlive(() => backend.close());
  }
}
