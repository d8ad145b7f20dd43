/**
 * `lifecycle.create_destroy`: one cycle of a mediated device's life, as a VMM drives it:
 * `mediator.create` → `open` (BARs placed) → the guest turns I/O decoding on (the BAR is
 * claimed and its doorbell armed: eventfd, `KVM_IOEVENTFD`, poller watch) → the guest enables
 * MSI (an MSI route: eventfd, `KVM_SET_GSI_ROUTING`, `KVM_IRQFD`) → `close` (all of it
 * released) → `remove`. The C side makes and releases the same kernel objects with the same
 * syscalls, in the same order, on a VM of the same shape.
 */
import { performance } from 'node:perf_hooks';
import { PCI_COMMAND_IO, createMediator, type MediatedDevice, type Mediator } from '@vmed/core';
import { uart } from '@vmed/devices';
import { allAvailable, gccAvailable, kvmAvailable } from '../harness/environment.js';
import { cSample, measure } from '../harness/rounds.js';
import { closeKeepingAlive } from '../harness/wait.js';
import { enableMsi, setCommand } from '../kvm/pci-driver.js';
import type { BenchContext, BenchResult, Benchmark, BenchScale } from '../types.js';
import { SERIAL_DOORBELL_TYPE, serialWithDoorbell } from './serial-doorbell.js';

const VECTOR = 0x42;

const COUNTS: Readonly<Record<BenchScale, { readonly cycles: number; readonly warmup: number }>> = {
  // KVM_IOEVENTFD deassign waits for an SRCU grace period (milliseconds on this nested KVM), on both sides.
  full: { cycles: 150, warmup: 10 },
  tiny: { cycles: 5, warmup: 2 },
};

export const createDestroy: Benchmark = {
  name: 'lifecycle.create_destroy',
  unit: 'µs/cycle',
  goal: 3.0,
  description: 'create, open, decode on (doorbell), MSI on (route), close, remove of a serial device',
  available: () => allAvailable(kvmAvailable, gccAvailable),
  run: (context) => runLifecycle(context),
};

/** One cycle; returns nothing, everything it made is released by `close`/`remove`. */
export function lifecycleCycle(mediator: Mediator, onOpen?: (device: MediatedDevice) => void): void {
  const device = mediator.create(SERIAL_DOORBELL_TYPE);
  device.open();
  setCommand(device.function, PCI_COMMAND_IO);
  enableMsi(device.function, VECTOR);
  onOpen?.(device);
  device.close();
  device.remove();
}

async function runLifecycle(context: BenchContext): Promise<BenchResult> {
  const { cycles, warmup } = COUNTS[context.scale];
  const { createBackend } = await import('@vmed/backend-kvm');
  const errors: unknown[] = [];
  const backend = await createBackend({ mode: 'standalone', memoryMiB: 4, vcpus: 1, onError: (e: unknown) => errors.push(e) });
  let mediator: Mediator;
  try {
    mediator = await createMediator({ hypervisor: 'kvm', pci: { assignBars: true } }, { backend, deviceTypes: [serialWithDoorbell] });
  } catch (e) {
    await closeKeepingAlive(() => backend.close());
    throw e;
  }
  try {
    let removed = 0;
    mediator.on('device-removed', () => removed++);
    const held = { doorbells: 0, msiRoutes: 0 };
    let doorbellPort = -1;
    // A checked cycle first: while open, the device holds exactly one doorbell and one route.
    lifecycleCycle(mediator, (device) => {
      Object.assign(held, backend.resources());
      doorbellPort = Number(device.function.barLocation(0)?.base ?? -1n) + uart.UART_SCR;
    });
    if (doorbellPort < 0) throw new Error("lifecycle: the serial's I/O BAR has no address");
    if (held.doorbells !== 1 || held.msiRoutes !== 1) {
      throw new Error(`lifecycle: an open device held ${held.doorbells} doorbells and ${held.msiRoutes} MSI routes, not 1 and 1`);
    }
    for (let i = 0; i < warmup; i++) lifecycleCycle(mediator);
    return await measure(createDestroy, context, {
      expectedOps: cycles,
      vmed: async () => {
        const before = removed;
        const start = performance.now();
        for (let i = 0; i < cycles; i++) lifecycleCycle(mediator);
        const ms = performance.now() - start;
        const left = backend.resources();
        if (left.doorbells !== 0 || left.msiRoutes !== 0 || mediator.list().length !== 0 || errors.length > 0) {
          throw new Error(`lifecycle: after the cycles ${left.doorbells} doorbells, ${left.msiRoutes} routes and ${mediator.list().length} devices are left${errors.length > 0 ? `; ${String(errors[0])}` : ''}`);
        }
        return { perOp: (ms * 1000) / cycles, ops: removed - before };
      },
      // The C side registers its doorbell where vmed's firmware step put the serial's I/O BAR.
      c: async () => cSample(await context.c.run(['lifecycle', String(cycles), String(warmup), `0x${doorbellPort.toString(16)}`, `0x${VECTOR.toString(16)}`]), 1000),
      notes: [`${cycles} cycles per sample; C makes and releases the same eventfds, ioeventfd, epoll watch, GSI routes and irqfd`],
    });
  } finally {
    await closeKeepingAlive(() => mediator.close());
  }
}

export const lifecycleBenchmarks: readonly Benchmark[] = [createDestroy];
