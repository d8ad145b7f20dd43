/**
 * `dma.read` / `dma.write`: the benchmark device copies 64 MiB from (read) or to (write) guest
 * RAM in 1 MiB pieces through the core's DMA views (`context.dma.view`: bus-master and bounds
 * checks, a zero-copy view of the KVM RAM mapping, dirty marking for writes), against C's
 * `memcpy` of the same pieces on the same mapping: vmed's RAM memfd is handed to the C program
 * as its fd 3 and mapped there, so both copy the very same pages. Cost per MiB.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { countMajorGcs } from '../harness/gc-counter.js';
import { allAvailable, gccAvailable, kvmAvailable } from '../harness/environment.js';
import { cSample, measure } from '../harness/rounds.js';
import { BenchVm } from '../kvm/bench-vm.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale } from '../types.js';

const MiB = 1 << 20;
/** Where the copied range starts in guest RAM (above the guest image and the low MiB). */
const OFFSET_MIB = 16;
/** One DMA transfer: what a device's descriptor would move at once. */
const CHUNK = MiB;

const SIZES: Readonly<Record<BenchScale, { readonly mib: number; readonly passes: number; readonly warmup: number }>> = {
  full: { mib: 64, passes: 4, warmup: 1 },
  tiny: { mib: 4, passes: 1, warmup: 1 },
};

function dmaBenchmark(direction: 'read' | 'write'): Benchmark {
  const benchmark: Benchmark = {
    name: `dma.${direction}`,
    unit: 'µs/MiB',
    goal: 1.1,
    description:
      direction === 'read'
        ? 'device copies guest RAM into a host buffer through DMA views, vs memcpy on the same mapping'
        : 'device copies a host buffer into guest RAM through DMA views (dirty-marked), vs memcpy on the same mapping',
    available: () => allAvailable(kvmAvailable, gccAvailable),
    run: (context) => runDma(benchmark, direction, context),
  };
  return benchmark;
}

async function runDma(benchmark: Benchmark, direction: 'read' | 'write', context: BenchContext): Promise<BenchResult> {
  const { mib, passes, warmup } = SIZES[context.scale];
  const bytes = mib * MiB;
  const vm = await BenchVm.create({ memoryMiB: OFFSET_MIB + mib });
  try {
    const base = BigInt(OFFSET_MIB * MiB);
    const buffer = new Uint8Array(bytes).fill(0x5a);
    // Touch every guest page once so no pass pays for first-touch faults (C does the same).
    vm.backend.memory.write(base, new Uint8Array(bytes).fill(0xa5));
    const model = vm.model;
    const stats = vm.device.dma.stats;
    const pass = () => (direction === 'read' ? model.copyFromGuest(base, buffer, CHUNK) : model.copyToGuest(base, buffer, CHUNK));
    for (let i = 0; i < warmup; i++) pass();
    const memfd = findRamMemfd();
    const cArgs = ['dma', direction, String(OFFSET_MIB), String(mib), String(CHUNK / 1024), String(passes), String(warmup)];
    return await measure(benchmark, context, {
      expectedOps: passes * mib,
      vmed: async () => {
        // Untimed warm-up passes in every sample, as the C program does in each of its runs:
        // between samples the pages sit idle while the other side runs, and this machine's
        // proactive reclaim (kdamond) may have taken some of them, which the first pass refaults.
        for (let i = 0; i < warmup; i++) pass();
        const before = direction === 'read' ? stats.bytesRead : stats.bytesWritten;
        const { value: ms, majorGcs } = await countMajorGcs(() => {
          const start = performance.now();
          for (let i = 0; i < passes; i++) pass();
          return performance.now() - start;
        });
        const moved = (direction === 'read' ? stats.bytesRead : stats.bytesWritten) - before;
        return { perOp: (ms * 1000) / (passes * mib), ops: moved / MiB, detail: { majorGcs } };
      },
      c: async () => {
        const r = await context.c.run(memfd === undefined ? cArgs : [...cArgs, 'inherit'], memfd === undefined ? {} : { inheritFd: memfd });
        return cSample(r, 1000);
      },
      notes: [
        `${passes} × ${mib} MiB per sample in ${CHUNK / MiB} MiB views; ${
          memfd === undefined ? 'C copies its own memfd of the same shape (vmed RAM memfd not found)' : 'C maps vmed\'s own RAM memfd (the same pages)'
        }`,
      ],
    });
  } finally {
    await vm.close();
  }
}

/**
 * The fd of the KVM backend's RAM memfd in this process, found by its name (`memfd:vmed-ram`,
 * see backend-kvm `host/memfd.ts`), or undefined when there is not exactly one.
 */
function findRamMemfd(): number | undefined {
  const found: number[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${name}`).startsWith('/memfd:vmed-ram')) found.push(Number(name));
    } catch {
      // closed while listing
    }
  }
  return found.length === 1 ? found[0] : undefined;
}

export const dmaRead = dmaBenchmark('read');
export const dmaWrite = dmaBenchmark('write');
export const dmaBenchmarks: readonly Benchmark[] = [dmaRead, dmaWrite];
