/**
 * `msix-hog`: a device with a 2048-vector MSI-X table (the most the spec allows) in BAR0, and
 * a tiny 32-bit guest program that programs such a table the way a driver does, with real
 * MMIO and config-cycle instructions: memory decode and bus mastering on, every entry given
 * an address and data and unmasked, then one config write to MSI-X Message Control. Two hogs
 * ask for 4096 routes, more than a KVM VM's routing table holds.
 */
import type { DeviceDefinition, DeviceModel, Mediator, PciAddress, PciFunctionDefinition } from '@vmed/core';
import type { KvmBackend } from '../../../src/index.js';
import { assemble } from '../../helpers/assemble.js';

export const HOG_VECTORS = 2048;
/** MSI-X Message Control: enable, function mask. */
export const MSIX_ENABLE = 0x8000;

const FUNCTION: PciFunctionDefinition = {
  vendorId: 0x1af4,
  deviceId: 0x10ff,
  classCode: 0xff0000,
  bars: [{ kind: 'memory32', size: 64 * 1024 }],
  msix: { vectors: HOG_VECTORS, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x8000 },
};

class HogModel implements DeviceModel {
  readonly definition = FUNCTION;
  readonly stateVersion = 1;
  read(): number {
    return 0xffff_ffff;
  }
  write(): void {}
  reset(): void {}
  saveState(): void {}
  loadState(): void {}
}

export const msixHogDevice: DeviceDefinition<Record<string, never>> = {
  type: 'msix-hog',
  description: 'a 2048-vector MSI-X device (route exhaustion tests)',
  maxInstances: 3,
  create: () => new HogModel(),
};

/**
 * ebx = BAR0 (the table at offset 0), ecx = entries to program (0: none), edi = 0xCF8 value of
 * the command register's dword, ebp = 0xCF8 value of the MSI-X capability's first dword,
 * esi = the Message Control value to write. Ends with a write of 0 to port 0x501.
 */
const PROGRAM = `.code32
  mov %edi, %eax
  mov $0xcf8, %dx
  out %eax, %dx
  mov $0xcfc, %dx
  mov $0x6, %ax
  out %ax, %dx
  test %ecx, %ecx
  jz control
entry:
  movl $0xfee00000, 0(%ebx)
  movl $0, 4(%ebx)
  movl $0x50, 8(%ebx)
  movl $0, 12(%ebx)
  add $16, %ebx
  dec %ecx
  jnz entry
control:
  mov %ebp, %eax
  mov $0xcf8, %dx
  out %eax, %dx
  mov $0xcfe, %dx
  mov %esi, %eax
  out %ax, %dx
  xor %eax, %eax
  mov $0x501, %dx
  out %eax, %dx
  hlt
`;

/** The 0xCF8 value addressing `register`'s dword of `device`. */
export function cf8(device: PciAddress, register: number): number {
  return (0x8000_0000 | (device.bus << 16) | (device.device << 11) | (device.function << 8) | (register & 0xfc)) >>> 0;
}

/** Offset of the MSI-X capability (id 0x11) in `device`'s config space. */
export function msixCapability(mediator: Mediator, device: PciAddress): number {
  let at = Number(mediator.bus.configRead(device, 0x34, 1)) & 0xfc;
  while (at !== 0 && (Number(mediator.bus.configRead(device, at, 1)) & 0xff) !== 0x11) at = Number(mediator.bus.configRead(device, at + 1, 1)) & 0xfc;
  // The program writes Message Control at 0xCFE: the capability must start a dword.
  if (at === 0 || (at & 3) !== 0) throw new Error(`MSI-X capability at ${at} is missing or not dword aligned`);
  return at;
}

/**
 * Runs the program on vCPU 0: programs `entries` table entries of `device` (at BAR0 `bar`,
 * as firmware assigned it) and writes `control` to its Message Control.
 */
export async function runHogDriver(backend: KvmBackend, mediator: Mediator, device: PciAddress, bar: bigint, entries: number, control: number): Promise<string> {
  const cap = msixCapability(mediator, device);
  backend.guest.load(0x1000n, assemble(PROGRAM, 0x1000));
  backend.guest.setEntry(0, {
    mode: 'protected32',
    ip: 0x1000,
    regs: { rbx: bar, rcx: BigInt(entries), rdi: BigInt(cf8(device, 0x04)), rbp: BigInt(cf8(device, cap)), rsi: BigInt(control) },
  });
  const result = await backend.guest.run({ execution: 'inline', donePort: 0x501 });
  return result.vcpus.map((v) => v.reason).join(',');
}

/**
 * Resolves once the backend's poller thread serves doorbells: a guest `out` to a doorbell
 * port, seen by the handler. The poller is a worker thread that boots asynchronously (under
 * tsx it compiles its sources first); a test that counts the process's fds starts after it.
 */
export async function pollerServing(backend: KvmBackend): Promise<void> {
  let rings = 0;
  const doorbell = backend.registerIoEvent({ space: 'pio', address: 0x7f0n, length: 1 }, (count) => {
    rings += count;
  });
  try {
    backend.guest.load(0x1000n, assemble('.code32\n  mov $0x7f0, %dx\n  out %al, %dx\n  xor %eax, %eax\n  mov $0x501, %dx\n  out %eax, %dx\n  hlt\n', 0x1000));
    backend.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
    await backend.guest.run({ execution: 'inline', donePort: 0x501 });
    while (rings === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  } finally {
    doorbell.dispose();
  }
}
