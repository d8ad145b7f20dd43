/**
 * Exit round trips: the bench-mmio / bench-pio guest writes the device's register N times;
 * each write exits to userspace, reaches the handler (which stores the value) and resumes.
 *
 * - `kvm.mmio_exit`, `kvm.pio_exit`: vmed runs the vCPU inline (KVM_RUN on the I/O thread,
 *   the handler on the same thread); C runs KVM_RUN and the handler on one thread.
 * - `kvm.mmio_exit_forwarded`: vmed runs the vCPU in a worker thread and serves the exit on
 *   the I/O thread (SharedArrayBuffer mailbox, Atomics); C runs a vCPU thread and a device
 *   thread handing each exit over through a mailbox and a futex.
 *
 * Both sides time from the first to the last write, inside the handler.
 */
import type { ExecutionMode } from '@vmed/backend-kvm';
import { allAvailable, gccAvailable, kvmAvailable } from '../harness/environment.js';
import { cSample, measure } from '../harness/rounds.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale } from '../types.js';
import { REGISTER_OFFSET } from './bench-device.js';
import { BenchVm, benchGuest } from './bench-vm.js';

/** What the guest writes: the handler must end holding it. */
const VALUE = 0x5a5a_0001;

interface ExitSpec {
  readonly name: string;
  readonly space: 'mmio' | 'pio';
  readonly execution: ExecutionMode;
  readonly goal: number;
  readonly description: string;
  /** Exits per sample, and per warm-up run. */
  readonly counts: Readonly<Record<BenchScale, { readonly exits: number; readonly warmup: number }>>;
}

function exitBenchmark(spec: ExitSpec): Benchmark {
  const benchmark: Benchmark = {
    name: spec.name,
    unit: 'µs/exit',
    goal: spec.goal,
    description: spec.description,
    available: () => allAvailable(kvmAvailable, gccAvailable),
    run: (context) => runExits(benchmark, spec, context),
  };
  return benchmark;
}

async function runExits(benchmark: Benchmark, spec: ExitSpec, context: BenchContext): Promise<BenchResult> {
  const { exits, warmup } = spec.counts[context.scale];
  const image = await benchGuest(spec.space === 'mmio' ? 'bench-mmio' : 'bench-pio');
  const vm = await BenchVm.create({ memoryMiB: 4 });
  try {
    const target = spec.space === 'mmio' ? vm.mmioBase + BigInt(REGISTER_OFFSET) : BigInt(vm.ioBase + REGISTER_OFFSET);
    const runVmed = async (count: number) => {
      vm.model.arm(count);
      await vm.runGuest(image, { ebx: Number(target), ecx: count, edx: VALUE }, spec.execution);
      if (vm.model.register !== VALUE) throw new Error(`${spec.name}: the register holds 0x${vm.model.register.toString(16)}`);
      return { perOp: ((vm.model.lastAt - vm.model.firstAt) * 1000) / (count - 1), ops: vm.model.writes };
    };
    // Warm-up: the JIT compiles the exit path before the first measured round.
    await runVmed(warmup);
    const threading = spec.execution === 'inline' ? 'inline' : 'forwarded';
    const cArgs = ['exits', spec.space, threading, image.path, hexArg(image.loadAddress), hexArg(image.entry), hexArg(image.footprintEnd)];
    return await measure(benchmark, context, {
      expectedOps: exits,
      vmed: () => runVmed(exits),
      c: async () => {
        const r = await context.c.run([...cArgs, `0x${target.toString(16)}`, String(exits), String(VALUE), String(warmup)]);
        if (r['register'] !== VALUE) throw new Error(`${spec.name}: the C device's register holds ${String(r['register'])}`);
        return cSample(r, 1000);
      },
      notes: [
        `${exits} ${spec.space.toUpperCase()} writes per sample by ${image.program}; vmed ${spec.execution} execution, C ${threading === 'inline' ? 'one thread' : 'vCPU thread + device thread (futex)'}`,
      ],
    });
  } finally {
    await vm.close();
  }
}

export function hexArg(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

export const mmioExit = exitBenchmark({
  name: 'kvm.mmio_exit',
  space: 'mmio',
  execution: 'inline',
  goal: 1.15,
  description: 'guest MMIO write → device handler → resume, vCPU and handler on one thread',
  counts: { full: { exits: 50_000, warmup: 5_000 }, tiny: { exits: 200, warmup: 50 } },
});

export const pioExit = exitBenchmark({
  name: 'kvm.pio_exit',
  space: 'pio',
  execution: 'inline',
  goal: 1.15,
  description: 'guest port write → device handler → resume, vCPU and handler on one thread',
  counts: { full: { exits: 50_000, warmup: 5_000 }, tiny: { exits: 200, warmup: 50 } },
});

export const mmioExitForwarded = exitBenchmark({
  name: 'kvm.mmio_exit_forwarded',
  space: 'mmio',
  execution: 'worker',
  goal: 2.0,
  description: 'guest MMIO write → handed to the device thread → handler → answer → resume',
  counts: { full: { exits: 30_000, warmup: 3_000 }, tiny: { exits: 200, warmup: 50 } },
});
