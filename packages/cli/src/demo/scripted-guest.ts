/**
 * The demo guest as a script, for backends without a CPU of their own (`sim`): the same steps
 * as the x86 demo guest (`packages/testkit/guests/demo`), each a real guest access through the
 * backend — PCI enumeration through 0xCF8/0xCFC, BAR reads, command register, UART output
 * polled on LSR, edu's factorial with an MSI, a DMA round trip through guest RAM.
 */
import type { GuestDriver } from '@vmed/testkit';

/** What the script needs beyond a {@link GuestDriver}: plain RAM loads and stores. */
export interface ScriptCpu extends GuestDriver {
  readRam(address: bigint, length: number): Promise<Uint8Array>;
  writeRam(address: bigint, bytes: Uint8Array): Promise<void>;
}

const SERIAL_ID = { vendor: 0x1b36, device: 0x0002 };
const EDU_ID = { vendor: 0x1234, device: 0x11e8 };
const MSI_CAP_ID = 0x05;
const EDU_VECTOR = 0x41;

// 16550 registers (offsets in the I/O BAR).
const UART_THR = 0;
const UART_DLL = 0;
const UART_DLM = 1;
const UART_FCR = 2;
const UART_LCR = 3;
const UART_LSR = 5;
const LSR_THRE = 0x20;

// edu registers (offsets in BAR0).
const EDU_ID_REG = 0x00;
const EDU_LIVENESS = 0x04;
const EDU_FACTORIAL = 0x08;
const EDU_STATUS = 0x20;
const EDU_IRQ_STATUS = 0x24;
const EDU_IRQ_ACK = 0x64;
const EDU_DMA_SRC = 0x80;
const EDU_DMA_DST = 0x88;
const EDU_DMA_COUNT = 0x90;
const EDU_DMA_CMD = 0x98;
const EDU_DMA_BUFFER = 0x40000n;
const STATUS_IRQ_AFTER_FACTORIAL = 0x80;
const DMA_START = 1;
const DMA_TO_RAM = 2;
const DMA_IRQ = 4;

/** Runs the demo; returns 0 on success, else a step number (as the x86 guest's exit code). */
export async function runScriptedDemoGuest(cpu: ScriptCpu, buffer: { address: bigint; length: number }): Promise<number> {
  const found = await enumerate(cpu);
  const serial = found.get(key(SERIAL_ID));
  const edu = found.get(key(EDU_ID));
  if (serial === undefined || edu === undefined) return 1;

  // Serial: I/O decode on, 115200 8N1 with FIFOs.
  const uart = (await barBase(cpu, serial, 0)) & ~3n;
  await cpu.configWrite(serial, 0x04, 2, 0x0001);
  const out = (r: number, v: number) => cpu.pioWrite(Number(uart) + r, 1, v);
  await out(UART_LCR, 0x80);
  await out(UART_DLL, 1);
  await out(UART_DLM, 0);
  await out(UART_LCR, 0x03);
  await out(UART_FCR, 0x07);
  const print = async (text: string) => {
    for (const ch of Buffer.from(text, 'latin1')) {
      while (((await cpu.pioRead(Number(uart) + UART_LSR, 1)) & LSR_THRE) === 0) {
        /* wait for the transmitter */
      }
      await out(UART_THR, ch);
    }
  };
  await print('vmed demo guest: hello from the guest through a PCI 16550 UART\r\n');

  // edu: memory decode and bus mastering on; identification and liveness.
  const mmio = (await barBase(cpu, edu, 0)) & ~0xfn;
  await cpu.configWrite(edu, 0x04, 2, 0x0006);
  const id = Number(await cpu.mmioRead(mmio + BigInt(EDU_ID_REG), 4));
  await cpu.mmioWrite(mmio + BigInt(EDU_LIVENESS), 4, 0x12345678n);
  const live = Number(await cpu.mmioRead(mmio + BigInt(EDU_LIVENESS), 4));
  await print(`edu: id ${hex(id)}, liveness ${live === (~0x12345678 >>> 0) ? 'ok' : 'BAD'}\r\n`);
  if (live !== (~0x12345678 >>> 0)) return 2;

  // MSI for edu, aimed at this guest's handler for EDU_VECTOR.
  const msi = await findCapability(cpu, edu, MSI_CAP_ID);
  if (msi === undefined) return 3;
  const message = cpu.msiMessageFor(EDU_VECTOR);
  const control = await cpu.configRead(edu, msi + 2, 2);
  await cpu.configWrite(edu, msi + 4, 4, Number(message.address & 0xffff_ffffn));
  const is64 = (control & 0x80) !== 0;
  if (is64) await cpu.configWrite(edu, msi + 8, 4, Number(message.address >> 32n));
  await cpu.configWrite(edu, msi + (is64 ? 12 : 8), 2, message.data);
  await cpu.configWrite(edu, msi + 2, 2, control | 1);

  // Factorial with an interrupt when done.
  let interrupts = await cpu.interruptCount(EDU_VECTOR);
  await cpu.mmioWrite(mmio + BigInt(EDU_STATUS), 4, BigInt(STATUS_IRQ_AFTER_FACTORIAL));
  await cpu.mmioWrite(mmio + BigInt(EDU_FACTORIAL), 4, 10n);
  if (!(await cpu.waitForInterrupts(EDU_VECTOR, interrupts + 1, 5000))) return 4;
  await ack(cpu, mmio);
  const fact = Number(await cpu.mmioRead(mmio + BigInt(EDU_FACTORIAL), 4));
  await print(`edu: 10! = ${fact} (interrupt taken)\r\n`);
  if (fact !== 3628800) return 5;

  // DMA round trip: RAM → edu buffer → RAM, each with a completion interrupt.
  const half = BigInt(buffer.length / 2);
  const pattern = Uint8Array.from({ length: 256 }, (_, i) => (i * 7 + 3) & 0xff);
  await cpu.writeRam(buffer.address, pattern);
  for (const [src, dst, cmd] of [
    [buffer.address, EDU_DMA_BUFFER, DMA_START | DMA_IRQ],
    [EDU_DMA_BUFFER, buffer.address + half, DMA_START | DMA_TO_RAM | DMA_IRQ],
  ] as const) {
    interrupts = await cpu.interruptCount(EDU_VECTOR);
    await cpu.mmioWrite(mmio + BigInt(EDU_DMA_SRC), 8, src);
    await cpu.mmioWrite(mmio + BigInt(EDU_DMA_DST), 8, dst);
    await cpu.mmioWrite(mmio + BigInt(EDU_DMA_COUNT), 8, BigInt(pattern.length));
    await cpu.mmioWrite(mmio + BigInt(EDU_DMA_CMD), 8, BigInt(cmd));
    if (!(await cpu.waitForInterrupts(EDU_VECTOR, interrupts + 1, 5000))) return 6;
    await ack(cpu, mmio);
  }
  const back = await cpu.readRam(buffer.address + half, pattern.length);
  const same = back.every((b, i) => b === pattern[i]);
  await print(`edu: DMA of ${pattern.length} bytes to the device and back: ${same ? 'DMA ok' : 'DMA bad'}\r\n`);
  if (!same) return 7;
  await print('vmed demo guest: done\r\n');
  return 0;
}

async function ack(cpu: ScriptCpu, mmio: bigint): Promise<void> {
  const status = await cpu.mmioRead(mmio + BigInt(EDU_IRQ_STATUS), 4);
  await cpu.mmioWrite(mmio + BigInt(EDU_IRQ_ACK), 4, status);
}

type Bdf = { bus: number; device: number; function: number };

async function enumerate(cpu: ScriptCpu): Promise<Map<string, Bdf>> {
  const found = new Map<string, Bdf>();
  for (let device = 0; device < 32; device++) {
    const bdf = { bus: 0, device, function: 0 };
    const id = await cpu.configRead(bdf, 0, 4);
    if ((id & 0xffff) === 0xffff) continue;
    found.set(key({ vendor: id & 0xffff, device: id >>> 16 }), bdf);
  }
  return found;
}

async function barBase(cpu: ScriptCpu, bdf: Bdf, bar: number): Promise<bigint> {
  const low = await cpu.configRead(bdf, 0x10 + bar * 4, 4);
  const is64 = (low & 1) === 0 && (low & 0x6) === 0x4;
  const high = is64 ? await cpu.configRead(bdf, 0x14 + bar * 4, 4) : 0;
  return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
}

async function findCapability(cpu: ScriptCpu, bdf: Bdf, id: number): Promise<number | undefined> {
  if (((await cpu.configRead(bdf, 0x06, 2)) & 0x10) === 0) return undefined;
  let at = (await cpu.configRead(bdf, 0x34, 1)) & 0xfc;
  for (let hops = 0; at !== 0 && hops < 48; hops++) {
    if ((await cpu.configRead(bdf, at, 1)) === id) return at;
    at = (await cpu.configRead(bdf, at + 1, 1)) & 0xfc;
  }
  return undefined;
}

function key(id: { vendor: number; device: number }): string {
  return `${id.vendor.toString(16)}:${id.device.toString(16)}`;
}

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16)}`;
}
