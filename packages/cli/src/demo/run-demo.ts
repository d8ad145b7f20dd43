/**
 * The demo, hypervisor by hypervisor: the same two devices (serial, edu) on one mediator, and
 * a guest that uses them — the x86 demo guest on KVM, the scripted guest on `sim`, whatever
 * runs in the domain on Xen (`pnpm xen-lab demo` makes it the demo guest; see `xen-domain.ts`).
 */
import { accessSync, constants } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createMediator, type Mediator } from '@vmed/core';
import { eduDevice, serialDevice } from '@vmed/devices';
import type { KvmBackend } from '@vmed/backend-kvm';
import { DONE_PORT, demoExitMessage, flatEntryRegisters, loadGuest, type SimBackend } from '@vmed/testkit';
import { runScriptedDemoGuest } from './scripted-guest.js';
import { XEN_PVH_MMIO_WINDOW, serveXenDomain } from './xen-domain.js';

export type DemoHypervisor = 'sim' | 'kvm' | 'xen';

export interface DemoOptions {
  readonly hypervisor: DemoHypervisor;
  /** Xen: the domain to serve. */
  readonly domid?: number;
  /** Xen: unpause the domain (`xl unpause`) once the devices are served; create it paused. */
  readonly unpause?: boolean;
  /** Xen: give up waiting for the guest after this long (default: wait until stopped). */
  readonly timeoutMs?: number;
  /** Serial output, as the guest writes it. */
  readonly onSerial: (text: string) => void;
  /** Progress lines. */
  readonly onInfo: (line: string) => void;
}

export interface DemoSummary {
  readonly hypervisor: DemoHypervisor;
  readonly exitCode: number;
  readonly accesses: number;
  readonly reads: number;
  readonly writes: number;
  readonly unclaimed: number;
  readonly interrupts: number;
  readonly dmaBytes: number;
  readonly serialBytes: number;
  readonly serialText: string;
  readonly milliseconds: number;
}

/** `auto` → KVM when /dev/kvm opens read-write, else `sim`. Others are taken as given. */
export async function chooseHypervisor(requested: string): Promise<DemoHypervisor> {
  if (requested === 'sim' || requested === 'kvm' || requested === 'xen') return requested;
  if (requested !== 'auto') throw new Error(`unknown hypervisor "${requested}": use auto, sim, kvm or xen`);
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'sim';
  }
}

export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const started = performance.now();
  let serialText = '';
  let serialBytes = 0;
  const onTransmit = (bytes: Uint8Array) => {
    serialBytes += bytes.length;
    const text = Buffer.from(bytes).toString('latin1');
    serialText += text;
    options.onSerial(text);
  };
  const mediator = await createMediator(demoConfig(options), { deviceTypes: [serialDevice, eduDevice] });
  try {
    mediator.create('serial', { slot: 3, options: { onTransmit } }).open();
    mediator.create('edu', { slot: 4 }).open();
    options.onInfo(`vmed demo: serial and edu on the ${options.hypervisor} backend; running the guest`);
    const exitCode = await runGuest(options, mediator);
    const stats = mediator.dispatcher.stats;
    const devices = mediator.list();
    return {
      hypervisor: options.hypervisor,
      exitCode,
      accesses: stats.reads + stats.writes,
      reads: stats.reads,
      writes: stats.writes,
      unclaimed: stats.unclaimed,
      interrupts: devices.reduce((n, d) => n + d.interruptsRaised, 0),
      dmaBytes: devices.reduce((n, d) => n + d.dma.stats.bytesRead + d.dma.stats.bytesWritten, 0),
      serialBytes,
      serialText,
      milliseconds: performance.now() - started,
    };
  } finally {
    await mediator.close();
  }
}

function demoConfig(options: DemoOptions) {
  switch (options.hypervisor) {
    case 'sim':
      return { hypervisor: 'sim' as const };
    case 'kvm':
      return { hypervisor: 'kvm' as const, kvm: { mode: 'standalone', memoryMiB: 16, vcpus: 1 } };
    case 'xen':
      if (options.domid === undefined || !Number.isInteger(options.domid) || options.domid < 1) {
        throw new Error('the Xen demo serves an existing domain: pass --domid N');
      }
      // A PVH guest has no firmware: the mediator assigns BARs (its default there), from
      // libxl's MMIO hole, which no PVH guest's RAM reaches. On HVM the firmware assigns them.
      return { hypervisor: 'xen' as const, xen: { domid: options.domid }, pci: { mmioWindow: XEN_PVH_MMIO_WINDOW } };
  }
}

async function runGuest(options: DemoOptions, mediator: Mediator): Promise<number> {
  switch (options.hypervisor) {
    case 'sim': {
      const sim = mediator.backend as SimBackend;
      const scratch = sim.guest.scratch;
      return runScriptedDemoGuest(sim.guest, { address: scratch.address, length: Math.min(scratch.length, 0x1000) });
    }
    case 'kvm':
      return runKvmDemoGuest(mediator.backend as KvmBackend, options);
    case 'xen':
      return serveXenDomain(mediator, {
        domid: options.domid as number,
        unpause: options.unpause ?? false,
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
        onInfo: options.onInfo,
      });
  }
}

/** The x86 demo guest (`guests/demo`, flat image) on a standalone VM, one vCPU served inline. */
async function runKvmDemoGuest(backend: KvmBackend, options: DemoOptions): Promise<number> {
  const image = await loadGuest('demo', 'flat');
  backend.guest.load(BigInt(image.loadAddress), image.bytes);
  const regs = flatEntryRegisters(image, 0);
  backend.guest.setEntry('all', { mode: 'protected32', ip: regs.eip, regs: { rsi: BigInt(regs.esi) } });
  const result = await backend.guest.run({ execution: 'inline', donePort: DONE_PORT });
  const finish = result.vcpus[0];
  if (finish?.reason !== 'done') {
    options.onInfo(`vmed demo: the guest stopped without finishing (${finish?.reason ?? 'no vCPU'}${finish?.detail ? `: ${finish.detail}` : ''})`);
    return 255;
  }
  const code = Number(finish.value ?? 255n);
  if (code !== 0) options.onInfo(`vmed demo: the guest reported ${demoExitMessage(code)}`);
  return code;
}
