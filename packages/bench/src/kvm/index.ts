/** The KVM benchmarks. */
import type { Benchmark } from '../types.js';
import { doorbell } from './doorbell.js';
import { mmioExit, mmioExitForwarded, pioExit } from './exits.js';
import { irqInject } from './irq.js';

export const kvmBenchmarks: readonly Benchmark[] = [mmioExit, pioExit, mmioExitForwarded, doorbell, irqInject];
export { BenchDevice, benchDevice, BENCH_DEVICE_TYPE, BENCH_PCI_FUNCTION, DOORBELL_OFFSET, REGISTER_OFFSET } from './bench-device.js';
export { BenchVm } from './bench-vm.js';
