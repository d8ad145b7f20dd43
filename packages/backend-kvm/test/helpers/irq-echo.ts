/**
 * Interrupt round trips through a doorbell, the path `kvm.irq_inject` measures, as a test:
 * testkit's `bench-irq` guest writes a doorbell (an ioeventfd, no exit) when ready and from
 * each run of its handler for VECTOR; the doorbell's handler answers each write with the next
 * MSI through an irqfd route, `rounds` times. Every round trip crosses the path from a guest
 * write to a handler on the I/O context and back into the guest, so a lost or doubled wake-up
 * anywhere on it shows as a wrong count or a run that never ends.
 */
import { DONE_OK, DONE_PORT, IRQ_COUNTS_ADDR, loadGuestSync } from '@vmed/testkit';
import type { KvmBackend, VcpuFinish } from '../../src/index.js';

/** Where the doorbell sits (unbacked guest-physical space: without it the write would exit). */
export const ECHO_DOORBELL = 0xfebf_0100n;
/** The guest's vector (bench-irq takes 32..253); fixed delivery to APIC 0. */
export const ECHO_VECTOR = 0x41;

export interface EchoResult {
  readonly finish: VcpuFinish;
  /** Interrupts the guest's handler counted for ECHO_VECTOR. */
  readonly handled: number;
  /** MSIs the doorbell handler triggered. */
  readonly raised: number;
  /** Doorbell writes heard (the coalesced counts added up): `rounds + 1` when all arrived. */
  readonly rings: number;
  /** Handler calls (a call may carry several coalesced writes). */
  readonly calls: number;
  /** libuv poll handles the session held while the doorbell was registered. */
  readonly pollHandles: number | undefined;
}

/** Runs `rounds` round trips on `backend` (one vCPU, in-kernel irqchip) and disposes what it made. */
export async function irqEcho(backend: KvmBackend, rounds: number, execution: 'inline' | 'worker'): Promise<EchoResult> {
  const image = loadGuestSync('bench-irq', 'flat');
  const route = backend.createMsiRoute();
  route.setMsi({ address: 0xfee0_0000n, data: ECHO_VECTOR });
  route.unmask();
  let rings = 0;
  let calls = 0;
  let raised = 0;
  const doorbell = backend.registerIoEvent({ space: 'mmio', address: ECHO_DOORBELL, length: 4 }, (count) => {
    calls++;
    rings += count;
    for (let k = 0; k < count && raised < rounds; k++) {
      route.trigger();
      raised++;
    }
  });
  const pollHandles = backend.resources().pollHandles;
  try {
    const guest = backend.guest;
    guest.load(BigInt(image.loadAddress), new Uint8Array(image.footprintEnd - image.loadAddress));
    guest.load(BigInt(image.loadAddress), image.bytes);
    guest.setEntry(0, {
      mode: 'protected32',
      ip: image.entry,
      regs: { rbx: ECHO_DOORBELL, rcx: BigInt(rounds), rdx: BigInt(ECHO_VECTOR) },
    });
    const result = await guest.run({ execution, donePort: DONE_PORT });
    const finish = result.vcpus[0] as VcpuFinish;
    // The guest can finish before the I/O context heard its last doorbell write.
    const deadline = Date.now() + 10_000;
    while (finish.reason === 'done' && finish.value === BigInt(DONE_OK) && rings < rounds + 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const counter = new Uint8Array(4);
    backend.memory.read(BigInt(IRQ_COUNTS_ADDR + 4 * ECHO_VECTOR), counter);
    const handled = new DataView(counter.buffer).getUint32(0, true);
    return { finish, handled, raised, rings, calls, pollHandles };
  } finally {
    doorbell.dispose();
    route.dispose();
  }
}
