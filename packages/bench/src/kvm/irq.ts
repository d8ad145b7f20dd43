/**
 * `kvm.irq_inject`: the bench-irq guest rings the device's doorbell when ready and once from
 * each run of its handler for the vector; the device answers each ring with the next MSI, N
 * times. One operation is one round trip: doorbell → device handler → MSI (irqfd) → guest
 * handler → EOI → doorbell.
 *
 * vmed: worker execution; the doorbell handler raises MSI vector 0 of the device, which the
 * guest side (here, the benchmark) programmed through the MSI capability, so the interrupt
 * goes through the core's MSI routes to the KVM backend's irqfd. C: a vCPU thread and a
 * device thread that reads the doorbell eventfd and writes the irqfd of an MSI-routed GSI.
 * Both sides check the guest's own interrupt count for the vector.
 */
import type { ExecutionMode } from '@vmed/backend-kvm';
import { allAvailable, gccAvailable, kvmAvailable } from '../harness/environment.js';
import { cSample, measure } from '../harness/rounds.js';
import { until } from '../harness/wait.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale } from '../types.js';
import { DOORBELL_OFFSET } from './bench-device.js';
import { BenchVm, benchGuest } from './bench-vm.js';
import { hexArg } from './exits.js';
import { IRQ_COUNTS_ADDR } from './guests.js';

/** The guest's interrupt vector (IRQ_VECTOR_FIRST ≤ v < TIMER_VECTOR). */
const VECTOR = 0x41;

const COUNTS: Readonly<Record<BenchScale, { readonly interrupts: number; readonly warmup: number }>> = {
  full: { interrupts: 10_000, warmup: 1_000 },
  tiny: { interrupts: 50, warmup: 10 },
};

/** The benchmark with the vCPU run by `execution` (the reported one uses `worker`). */
export function irqBenchmark(name: string, execution: ExecutionMode): Benchmark {
  const benchmark: Benchmark = {
    name,
    unit: 'µs/interrupt',
    goal: 1.25,
    description: `doorbell → device handler → MSI via irqfd → guest handler → EOI → doorbell, per interrupt (vmed ${execution} execution)`,
    available: () => allAvailable(kvmAvailable, gccAvailable),
    run: (context) => runIrq(benchmark, execution, context),
  };
  return benchmark;
}

export const irqInject = irqBenchmark('kvm.irq_inject', 'worker');

async function runIrq(irqInject: Benchmark, execution: ExecutionMode, context: BenchContext): Promise<BenchResult> {
  const { interrupts, warmup } = COUNTS[context.scale];
  const image = await benchGuest('bench-irq');
  const vm = await BenchVm.create({ memoryMiB: 4 });
  try {
    vm.enableMsi(VECTOR);
    const target = vm.mmioBase + BigInt(DOORBELL_OFFSET);
    const model = vm.model;
    const runVmed = async (count: number) => {
      model.arm(count, 'echo');
      await vm.runGuest(image, { ebx: Number(target), ecx: count, edx: VECTOR }, execution);
      await until(`${count + 1} rings`, () => model.rings >= count + 1);
      const handled = vm.readGuestU32(IRQ_COUNTS_ADDR + 4 * VECTOR);
      if (handled !== count) throw new Error(`kvm.irq_inject: the guest handled ${handled} interrupts, not ${count}`);
      return { perOp: ((model.lastAt - model.firstAt) * 1000) / count, ops: model.raised };
    };
    await runVmed(warmup);
    return await measure(irqInject, context, {
      expectedOps: interrupts,
      vmed: () => runVmed(interrupts),
      c: async () => {
        const r = await context.c.run([
          'irq', image.path, hexArg(image.loadAddress), hexArg(image.entry), hexArg(image.footprintEnd),
          hexArg(target), hexArg(VECTOR), String(interrupts), String(warmup),
        ]);
        if (r['guestInterrupts'] !== interrupts) throw new Error(`kvm.irq_inject: the guest under C handled ${String(r['guestInterrupts'])} interrupts`);
        return cSample(r, 1000);
      },
      notes: [`${interrupts} round trips per sample by bench-irq on vector ${hexArg(VECTOR)}; vmed ${execution} execution, C vCPU thread + device thread`],
    });
  } finally {
    await vm.close();
  }
}
