/**
 * `kvm.doorbell`: the bench-doorbell guest writes the device's doorbell N times; KVM's
 * ioeventfd catches each write in the kernel (no exit to userspace) and the handler runs with
 * the count coalesced since its last call. Sustained rate: from the first handler call to the
 * one that brings the total to N, per doorbell.
 *
 * vmed: worker execution (the vCPU on its own thread), the poller thread waiting on the
 * eventfd, the handler on the I/O thread. C: a vCPU thread, and a device thread blocked in
 * `read()` on the eventfd.
 */
import type { ExecutionMode } from '@vmed/backend-kvm';
import { allAvailable, gccAvailable, kvmAvailable } from '../harness/environment.js';
import { cSample, measure } from '../harness/rounds.js';
import { until } from '../harness/wait.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale } from '../types.js';
import { DOORBELL_OFFSET } from './bench-device.js';
import { BenchVm, benchGuest } from './bench-vm.js';
import { hexArg } from './exits.js';

const COUNTS: Readonly<Record<BenchScale, { readonly rings: number; readonly warmup: number }>> = {
  full: { rings: 200_000, warmup: 20_000 },
  // Enough rings that they cannot all coalesce into the first handler call.
  tiny: { rings: 5_000, warmup: 200 },
};

/** The benchmark with the vCPU run by `execution` (the reported one uses `worker`). */
export function doorbellBenchmark(name: string, execution: ExecutionMode): Benchmark {
  const benchmark: Benchmark = {
    name,
    unit: 'µs/doorbell',
    goal: 1.5,
    description: `guest ioeventfd write → handler (coalesced), sustained (vmed ${execution} execution)`,
    available: () => allAvailable(kvmAvailable, gccAvailable),
    run: (context) => runDoorbell(benchmark, execution, context),
  };
  return benchmark;
}

export const doorbell = doorbellBenchmark('kvm.doorbell', 'worker');

async function runDoorbell(doorbell: Benchmark, execution: ExecutionMode, context: BenchContext): Promise<BenchResult> {
  const { rings, warmup } = COUNTS[context.scale];
  const image = await benchGuest('bench-doorbell');
  const vm = await BenchVm.create({ memoryMiB: 4 });
  try {
    const target = vm.mmioBase + BigInt(DOORBELL_OFFSET);
    const model = vm.model;
    const runVmed = async (count: number, measured = true) => {
      model.arm(count, 'count');
      await vm.runGuest(image, { ebx: Number(target), ecx: count, edx: 1 }, execution);
      // The guest can finish before the I/O thread has heard the last rings.
      await until(`${count} doorbell rings`, () => model.rings >= count);
      if (measured && model.firstRingCount >= count) throw new Error(`kvm.doorbell: all ${count} rings coalesced into the first handler call`);
      return {
        perOp: ((model.lastAt - model.firstAt) * 1000) / (count - model.firstRingCount),
        ops: model.rings,
        detail: { handlerCalls: model.ringCalls },
      };
    };
    await runVmed(warmup, false);
    return await measure(doorbell, context, {
      expectedOps: rings,
      vmed: () => runVmed(rings),
      c: async () =>
        cSample(
          await context.c.run(['doorbell', image.path, hexArg(image.loadAddress), hexArg(image.entry), hexArg(image.footprintEnd), hexArg(target), String(rings), String(warmup)]),
          1000,
          ['handlerCalls'],
        ),
      notes: [`${rings} MMIO doorbell writes per sample by bench-doorbell; vmed ${execution} execution + poller thread, C vCPU thread + blocking read()`],
    });
  } finally {
    await vm.close();
  }
}
