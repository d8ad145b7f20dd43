import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { serialDevice, uart } from '../src/index.js';
import { fakeContext, load, save } from './fake-context.js';

const {
  UART_RBR,
  UART_THR,
  UART_DLL,
  UART_DLM,
  UART_IER,
  UART_IIR,
  UART_FCR,
  UART_LCR,
  UART_MCR,
  UART_LSR,
  UART_MSR,
  UART_SCR,
} = uart;

function setup(options: Parameters<typeof serialDevice.create>[1] = {}) {
  const f = fakeContext();
  const transmitted: number[] = [];
  const dev = serialDevice.create(f.ctx, { onTransmit: (b) => transmitted.push(...b), ...options });
  const r = (offset: number): number => dev.read(0, offset, 1);
  const w = (offset: number, value: number): void => dev.write(0, offset, 1, value);
  return { ...f, dev, r, w, transmitted };
}

/** Reads RBR until LSR.DR clears. */
function drain(r: (o: number) => number): number[] {
  const out: number[] = [];
  while ((r(UART_LSR) & uart.LSR_DR) !== 0) out.push(r(UART_RBR));
  return out;
}

describe('serial: PCI function and device type', () => {
  it('is a 16550 that Linux 8250_pci binds by class: one 8-byte I/O BAR, INTA, one MSI vector', () => {
    const { dev } = setup();
    const d = dev.definition;
    expect([d.vendorId, d.deviceId]).toEqual([0x1b36, 0x0002]);
    expect(d.classCode >> 8).toBe(0x0700); // PCI_CLASS_COMMUNICATION_SERIAL
    expect(d.classCode & 0xff).toBe(0x02); // 16550-compatible programming interface
    expect(d.bars).toEqual([{ kind: 'io', size: 8 }]);
    expect(d.interruptPin).toBe(1);
    expect(d.msi?.vectors).toBe(1);
    expect(serialDevice.type).toBe('serial');
    expect(serialDevice.maxInstances).toBeGreaterThan(0);
    expect(dev.stateVersion).toBe(1);
  });
});

describe('serial: registers', () => {
  it('has the 16550A power-on values', () => {
    const { r } = setup();
    expect(r(UART_IER)).toBe(0);
    expect(r(UART_IIR)).toBe(0x01);
    expect(r(UART_LCR)).toBe(0);
    expect(r(UART_MCR)).toBe(0);
    expect(r(UART_LSR)).toBe(uart.LSR_THRE | uart.LSR_TEMT);
    expect(r(UART_MSR)).toBe(uart.MSR_CTS | uart.MSR_DSR | uart.MSR_DCD);
    expect(r(UART_SCR)).toBe(0);
  });

  it('keeps what is written to SCR and LCR', () => {
    const { r, w } = setup();
    w(UART_SCR, 0xa5);
    w(UART_LCR, 0x1b);
    expect(r(UART_SCR)).toBe(0xa5);
    expect(r(UART_LCR)).toBe(0x1b);
  });

  it('masks IER and MCR to the bits a 16550A has', () => {
    const { r, w } = setup();
    w(UART_IER, 0xff);
    w(UART_MCR, 0xff);
    expect(r(UART_IER)).toBe(0x0f);
    expect(r(UART_MCR)).toBe(0x1f);
  });

  it('ignores writes to LSR and MSR', () => {
    const { r, w } = setup();
    w(UART_LSR, 0xff);
    w(UART_MSR, 0x0f);
    expect(r(UART_LSR)).toBe(uart.LSR_THRE | uart.LSR_TEMT);
    expect(r(UART_MSR)).toBe(0xb0);
  });

  it('maps the divisor latch over RBR/THR and IER while LCR.DLAB is set', () => {
    const { dev, r, w, transmitted } = setup();
    w(UART_IER, 0x05);
    w(UART_LCR, uart.LCR_DLAB | 0x03);
    w(UART_DLL, 0x01);
    w(UART_DLM, 0x02);
    expect(r(UART_DLL)).toBe(0x01);
    expect(r(UART_DLM)).toBe(0x02);
    expect(transmitted).toEqual([]); // a DLL write is not a THR write
    w(UART_LCR, 0x03);
    expect(r(UART_IER)).toBe(0x05); // DLM did not overwrite IER
    w(UART_THR, 0x41);
    expect(transmitted).toEqual([0x41]);
    w(UART_LCR, uart.LCR_DLAB);
    expect(r(UART_DLL) | (r(UART_DLM) << 8)).toBe(0x0201);
    expect(dev.lineSettings().divisor).toBe(0x0201);
  });

  it('describes the line from the divisor and LCR', () => {
    const { dev, w } = setup();
    w(UART_LCR, uart.LCR_DLAB);
    w(UART_DLL, 1);
    w(UART_DLM, 0);
    w(UART_LCR, 0x03); // 8N1
    expect(dev.lineSettings()).toEqual({ divisor: 1, baud: 115200, dataBits: 8, stopBits: 1, parity: 'none', breakActive: false });
    w(UART_LCR, uart.LCR_DLAB);
    w(UART_DLL, 12);
    w(UART_LCR, uart.LCR_STOP | uart.LCR_PARITY | uart.LCR_EVEN_PARITY); // 5E1.5
    expect(dev.lineSettings()).toMatchObject({ baud: 9600, dataBits: 5, stopBits: 1.5, parity: 'even' });
    w(UART_LCR, 0x02 | uart.LCR_STOP | uart.LCR_PARITY | uart.LCR_STICK_PARITY | uart.LCR_BREAK);
    expect(dev.lineSettings()).toMatchObject({ dataBits: 7, stopBits: 2, parity: 'mark', breakActive: true });
    w(UART_LCR, uart.LCR_PARITY);
    expect(dev.lineSettings().parity).toBe('odd');
    w(UART_LCR, uart.LCR_PARITY | uart.LCR_EVEN_PARITY | uart.LCR_STICK_PARITY);
    expect(dev.lineSettings().parity).toBe('space');
    w(UART_LCR, uart.LCR_DLAB);
    w(UART_DLL, 0);
    expect(dev.lineSettings().baud).toBe(0);
  });

  it('transmits THR writes to the host and counts them', () => {
    const { dev, w, transmitted } = setup();
    for (const c of 'hi\n') w(UART_THR, c.charCodeAt(0));
    expect(String.fromCharCode(...transmitted)).toBe('hi\n');
    expect(dev.stats().bytesTransmitted).toBe(3);
  });

  it('delivers host bytes through RBR in order, with LSR.DR while any is left', () => {
    const { dev, r, w } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO);
    dev.receive(new Uint8Array([1, 2, 3]));
    expect(r(UART_LSR) & uart.LSR_DR).toBe(uart.LSR_DR);
    expect(drain(r)).toEqual([1, 2, 3]);
    expect(r(UART_LSR) & uart.LSR_DR).toBe(0);
    expect(r(UART_RBR)).toBe(0); // an empty receiver reads 0
    expect(dev.stats().bytesReceived).toBe(3);
  });

  it('serves 2- and 4-byte accesses as consecutive registers, low byte first', () => {
    const { dev, w } = setup();
    w(UART_MCR, 0x0b);
    w(UART_SCR, 0x77);
    // offset 4: MCR, LSR
    expect(dev.read(0, 4, 2)).toBe(0x0b | (0x60 << 8));
    // offset 4, 4 bytes: MCR, LSR, MSR, SCR
    expect(dev.read(0, 4, 4)).toBe((0x0b | (0x60 << 8) | (0xb0 << 16) | (0x77 << 24)) >>> 0);
    dev.write(0, 6, 2, 0x1200); // MSR (ignored), SCR = 0x12
    expect(dev.read(0, 7, 1)).toBe(0x12);
  });

  it('reads all-ones and ignores writes outside BAR0 or misaligned', () => {
    const { dev, r } = setup();
    expect(dev.read(1, 0, 1)).toBe(0xff);
    expect(dev.read(0, 8, 1)).toBe(0xff);
    expect(dev.read(0, 6, 4)).toBe(0xffffffff);
    expect(dev.read(0, 1, 2)).toBe(0xffff);
    expect(dev.read(0, -1, 1)).toBe(0xff);
    dev.write(0, 5, 4, 0xffffffff);
    dev.write(2, 7, 1, 0x55);
    dev.write(0, 3, 2, 0xffff);
    expect(r(UART_SCR)).toBe(0);
    expect(r(UART_LCR)).toBe(0);
  });
});

describe('serial: THR-empty interrupt', () => {
  it('becomes pending when IER.THRI is enabled with THR empty, and raises the line', () => {
    const { irq, r, w } = setup();
    expect(irq.asserted).toBe(false);
    w(UART_IER, uart.IER_THRI);
    expect(irq.asserted).toBe(true);
    expect(r(UART_IIR)).toBe(uart.IIR_THRI);
  });

  it('is cleared by reading IIR when it is the reported source', () => {
    const { irq, r, w } = setup();
    w(UART_IER, uart.IER_THRI);
    expect(r(UART_IIR)).toBe(0x02);
    expect(irq.asserted).toBe(false);
    expect(r(UART_IIR)).toBe(0x01);
  });

  it('is not cleared by an IIR read that reports a higher-priority source', () => {
    const { dev, r, w } = setup();
    w(UART_IER, uart.IER_THRI | uart.IER_RDI);
    dev.receive([0x33]);
    expect(r(UART_IIR)).toBe(uart.IIR_RDI);
    r(UART_RBR);
    expect(r(UART_IIR)).toBe(uart.IIR_THRI);
    expect(r(UART_IIR)).toBe(uart.IIR_NO_INT);
  });

  it('is cleared by a THR write and set again when the byte has left (a fresh edge)', () => {
    const { irq, r, w } = setup();
    w(UART_IER, uart.IER_THRI);
    irq.take();
    w(UART_THR, 0x41);
    expect(irq.take()).toEqual(['lower', 'raise']);
    expect(r(UART_IIR)).toBe(uart.IIR_THRI);
    // Acknowledged by the IIR read, then a THR write brings it back.
    w(UART_THR, 0x42);
    expect(irq.asserted).toBe(true);
    expect(r(UART_IIR)).toBe(uart.IIR_THRI);
  });

  it('is dropped when IER.THRI is disabled, and not re-raised by rewriting IER with THRI kept', () => {
    const { irq, r, w } = setup();
    w(UART_IER, uart.IER_THRI);
    w(UART_IER, 0);
    expect(irq.asserted).toBe(false);
    expect(r(UART_IIR)).toBe(0x01);
    w(UART_IER, uart.IER_THRI);
    expect(r(UART_IIR)).toBe(0x02); // acknowledged
    w(UART_IER, uart.IER_THRI | uart.IER_RDI); // THRI stays on: no new THR-empty event
    expect(r(UART_IIR)).toBe(0x01);
  });

  it('stays quiet after transmission while IER.THRI is off', () => {
    const { irq, r, w } = setup();
    w(UART_THR, 0x41);
    expect(irq.events).toEqual([]);
    expect(r(UART_IIR)).toBe(0x01);
  });
});

describe('serial: interrupt priority', () => {
  it('reports line status, then received data, then THR empty, then modem status', () => {
    const { dev, irq, r, w } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO); // trigger level 1
    dev.receive(new Uint8Array(17)); // 16 kept, one overrun
    dev.setModemLines({ cts: false }); // DCTS
    w(UART_IER, uart.IER_RDI | uart.IER_THRI | uart.IER_RLSI | uart.IER_MSI);
    expect(irq.asserted).toBe(true);
    const fifoBits = uart.IIR_FIFOS_ENABLED;
    expect(r(UART_IIR)).toBe(fifoBits | uart.IIR_RLSI);
    expect(r(UART_LSR) & uart.LSR_OE).toBe(uart.LSR_OE); // reading LSR clears OE
    expect(r(UART_IIR)).toBe(fifoBits | uart.IIR_RDI);
    expect(drain(r)).toHaveLength(16);
    expect(r(UART_IIR)).toBe(fifoBits | uart.IIR_THRI); // this read acknowledges it
    expect(r(UART_IIR)).toBe(fifoBits | uart.IIR_MSI);
    expect(r(UART_MSR) & uart.MSR_DCTS).toBe(uart.MSR_DCTS);
    expect(r(UART_IIR)).toBe(fifoBits | uart.IIR_NO_INT);
    expect(irq.asserted).toBe(false);
  });

  it('holds the line only while an enabled condition is pending', () => {
    const { dev, irq, r, w } = setup();
    dev.receive([1]);
    expect(irq.asserted).toBe(false); // not enabled
    w(UART_IER, uart.IER_RDI);
    expect(irq.asserted).toBe(true);
    r(UART_RBR);
    expect(irq.asserted).toBe(false);
    expect(irq.events).toEqual(['raise', 'lower']);
  });

  it('sends one MSI per rising edge when the guest picked MSI', () => {
    const { dev, irq, r, w } = setup();
    irq.mode = 'msi';
    w(UART_IER, uart.IER_RDI);
    dev.receive([1]);
    dev.receive([2]); // still pending: no new edge
    expect(irq.messages).toBe(1);
    drain(r);
    dev.receive([3]);
    expect(irq.messages).toBe(2);
  });
});

describe('serial: FIFOs', () => {
  it('reports FIFOs enabled in IIR bits 7:6 only while FCR.0 is set', () => {
    const { r, w } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO);
    expect(r(UART_IIR)).toBe(0xc1);
    w(UART_FCR, 0);
    expect(r(UART_IIR)).toBe(0x01);
  });

  it.each([
    [0x00, 1],
    [0x40, 4],
    [0x80, 8],
    [0xc0, 14],
  ])('FCR trigger bits %s: received-data interrupt at %i bytes, character timeout below', (bits, level) => {
    const { dev, r, w } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO | bits);
    w(UART_IER, uart.IER_RDI);
    if (level > 1) {
      dev.receive(new Uint8Array(level - 1));
      expect(r(UART_IIR)).toBe(0xc0 | uart.IIR_RX_TIMEOUT);
    }
    dev.receive([0x55]); // reaches the trigger level
    expect(r(UART_IIR)).toBe(0xc0 | uart.IIR_RDI);
    r(UART_RBR);
    const left = level - 1;
    expect(r(UART_IIR)).toBe(left === 0 ? 0xc1 : 0xc0 | uart.IIR_RX_TIMEOUT);
  });

  it('keeps the first 16 bytes on overrun, loses the 17th and flags OE until LSR is read', () => {
    const { dev, r, w } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO);
    expect(dev.receiveSpace).toBe(16);
    dev.receive(Uint8Array.from({ length: 17 }, (_, i) => i));
    expect(dev.receiveSpace).toBe(0);
    expect(r(UART_LSR)).toBe(uart.LSR_DR | uart.LSR_OE | uart.LSR_THRE | uart.LSR_TEMT);
    expect(r(UART_LSR) & uart.LSR_OE).toBe(0);
    expect(drain(r)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(dev.stats().overruns).toBe(1);
  });

  it('in 16450 mode holds one byte, and an overrun overwrites it', () => {
    const { dev, r } = setup();
    expect(dev.receiveSpace).toBe(1);
    dev.receive([0x10, 0x20]);
    expect(r(UART_LSR) & (uart.LSR_DR | uart.LSR_OE)).toBe(uart.LSR_DR | uart.LSR_OE);
    expect(drain(r)).toEqual([0x20]);
  });

  it('raises a line-status interrupt on overrun when IER.RLSI is set', () => {
    const { dev, irq, r, w } = setup();
    w(UART_IER, uart.IER_RLSI);
    dev.receive([1]);
    expect(irq.asserted).toBe(false);
    dev.receive([2]);
    expect(irq.asserted).toBe(true);
    expect(r(UART_IIR)).toBe(uart.IIR_RLSI);
    r(UART_LSR);
    expect(irq.asserted).toBe(false);
  });

  it('empties the receiver on FCR receiver reset and on a FIFO enable change', () => {
    const { dev, r, w } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO);
    dev.receive([1, 2, 3]);
    w(UART_FCR, uart.FCR_ENABLE_FIFO | uart.FCR_CLEAR_XMIT); // transmitter reset only
    expect(r(UART_LSR) & uart.LSR_DR).toBe(uart.LSR_DR);
    w(UART_FCR, uart.FCR_ENABLE_FIFO | uart.FCR_CLEAR_RCVR);
    expect(r(UART_LSR) & uart.LSR_DR).toBe(0);
    dev.receive([4, 5]);
    w(UART_FCR, uart.FCR_ENABLE_FIFO | 0xc0); // same enable, new trigger: data kept
    expect(r(UART_LSR) & uart.LSR_DR).toBe(uart.LSR_DR);
    w(UART_FCR, 0); // FIFOs off: both emptied
    expect(r(UART_LSR) & uart.LSR_DR).toBe(0);
  });

  it('does not program trigger bits written with FCR.0 clear', () => {
    const { dev, r, w } = setup();
    w(UART_FCR, 0xc0);
    w(UART_IER, uart.IER_RDI);
    dev.receive([1]);
    expect(r(UART_IIR)).toBe(uart.IIR_RDI); // 16450 mode, no FIFO bits
  });
});

describe('serial: loopback and modem status', () => {
  it('sends transmitted bytes to its own receiver, not to the host', () => {
    const { dev, r, w, transmitted } = setup();
    w(UART_FCR, uart.FCR_ENABLE_FIFO);
    w(UART_MCR, uart.MCR_LOOP);
    w(UART_THR, 0x61);
    w(UART_THR, 0x62);
    expect(transmitted).toEqual([]);
    expect(drain(r)).toEqual([0x61, 0x62]);
    expect(dev.stats()).toMatchObject({ bytesTransmitted: 0, bytesReceived: 2 });
  });

  it('disconnects the receiver from the host while in loopback', () => {
    const { dev, r, w } = setup();
    w(UART_MCR, uart.MCR_LOOP);
    dev.receive([1, 2]);
    expect(r(UART_LSR) & uart.LSR_DR).toBe(0);
  });

  it('mirrors RTS, DTR, OUT1, OUT2 into CTS, DSR, RI, DCD, with delta bits', () => {
    const { r, w } = setup();
    w(UART_MCR, uart.MCR_LOOP);
    // Host lines CTS|DSR|DCD were on; in loopback with all outputs off they all drop.
    expect(r(UART_MSR)).toBe(uart.MSR_DCTS | uart.MSR_DDSR | uart.MSR_DDCD);
    expect(r(UART_MSR)).toBe(0); // deltas cleared by the read
    w(UART_MCR, uart.MCR_LOOP | uart.MCR_RTS);
    expect(r(UART_MSR)).toBe(uart.MSR_CTS | uart.MSR_DCTS);
    w(UART_MCR, uart.MCR_LOOP | uart.MCR_DTR);
    expect(r(UART_MSR)).toBe(uart.MSR_DSR | uart.MSR_DCTS | uart.MSR_DDSR);
    w(UART_MCR, uart.MCR_LOOP | uart.MCR_OUT1 | uart.MCR_OUT2);
    expect(r(UART_MSR)).toBe(uart.MSR_RI | uart.MSR_DCD | uart.MSR_DDSR | uart.MSR_DDCD);
    w(UART_MCR, uart.MCR_LOOP); // RI falls: trailing edge
    expect(r(UART_MSR)).toBe(uart.MSR_TERI | uart.MSR_DDCD);
    w(UART_MCR, 0); // back to the host's lines
    expect(r(UART_MSR)).toBe(uart.MSR_CTS | uart.MSR_DSR | uart.MSR_DCD | uart.MSR_DCTS | uart.MSR_DDSR | uart.MSR_DDCD);
  });

  it('flags host line changes, TERI only on the trailing edge of RI, and interrupts with IER.MSI', () => {
    const { dev, irq, r, w } = setup();
    w(UART_IER, uart.IER_MSI);
    dev.setModemLines({ ri: true });
    expect(r(UART_MSR)).toBe(0xb0 | uart.MSR_RI); // leading edge: no TERI
    expect(irq.asserted).toBe(false);
    dev.setModemLines({ ri: false });
    expect(irq.asserted).toBe(true);
    expect(r(UART_IIR)).toBe(uart.IIR_MSI);
    expect(r(UART_MSR)).toBe(0xb0 | uart.MSR_TERI);
    expect(irq.asserted).toBe(false);
    dev.setModemLines({ dcd: false, dsr: true });
    expect(r(UART_MSR)).toBe(uart.MSR_CTS | uart.MSR_DSR | uart.MSR_DDCD);
    expect(dev.modemLines).toEqual({ cts: true, dsr: true, ri: false, dcd: false });
  });

  it('takes the initial modem lines from options', () => {
    const { r } = setup({ modemLines: { cts: false, ri: true } });
    expect(r(UART_MSR)).toBe(uart.MSR_DSR | uart.MSR_RI | uart.MSR_DCD);
  });
});

describe('serial: reset', () => {
  it('returns registers to power-on values, empties the receiver, lowers the line, keeps host lines', () => {
    const { dev, irq, r, w } = setup();
    dev.setModemLines({ cts: false });
    w(UART_FCR, uart.FCR_ENABLE_FIFO);
    w(UART_IER, 0x0f);
    w(UART_LCR, 0x1b);
    w(UART_MCR, 0x1f);
    w(UART_SCR, 0x12);
    w(UART_MCR, uart.MCR_LOOP);
    w(UART_THR, 1);
    expect(irq.asserted).toBe(true);
    dev.reset();
    expect(irq.asserted).toBe(false);
    expect([r(UART_IER), r(UART_IIR), r(UART_LCR), r(UART_MCR), r(UART_LSR), r(UART_SCR)]).toEqual([0, 1, 0, 0, 0x60, 0]);
    expect(r(UART_MSR)).toBe(uart.MSR_DSR | uart.MSR_DCD);
    w(UART_LCR, uart.LCR_DLAB);
    expect(r(UART_DLL)).toBe(12);
  });
});

/** A device with every kind of state set: FIFO data, OE, deltas, THR pending, DLAB values. */
function busyDevice() {
  const t = setup();
  const { dev, w } = t;
  w(UART_LCR, uart.LCR_DLAB);
  w(UART_DLL, 0x34);
  w(UART_DLM, 0x12);
  w(UART_LCR, 0x1b);
  w(UART_FCR, uart.FCR_ENABLE_FIFO | 0x80);
  w(UART_SCR, 0x5a);
  w(UART_MCR, uart.MCR_DTR | uart.MCR_OUT2);
  dev.receive(Uint8Array.from({ length: 17 }, (_, i) => 0x40 + i));
  dev.setModemLines({ ri: true, cts: false });
  w(UART_IER, uart.IER_THRI | uart.IER_MSI);
  return t;
}

describe('serial: save and load', () => {
  it('round-trips every register, the FIFO and pending interrupts into a fresh device', () => {
    const a = busyDevice();
    const bytes = save(a.dev);
    const b = setup();
    load(b.dev, bytes);
    expect(save(b.dev)).toEqual(bytes);
    // Same behaviour from here on: the guest reads the same sequence from both.
    const script = (t: ReturnType<typeof setup>): number[] => [
      t.r(UART_IIR),
      t.r(UART_LSR),
      t.r(UART_IIR),
      t.r(UART_MSR),
      t.r(UART_IIR),
      ...drain(t.r),
      t.r(UART_IIR),
      t.r(UART_LCR),
      t.r(UART_SCR),
    ];
    expect(script(b)).toEqual(script(a));
  });

  it('re-drives the INTx line to the loaded level, but sends no MSI', () => {
    const a = busyDevice();
    const bytes = save(a.dev);
    const b = setup();
    load(b.dev, bytes);
    expect(b.irq.asserted).toBe(true);
    const c = setup();
    c.irq.mode = 'msi';
    load(c.dev, bytes);
    expect(c.irq.messages).toBe(0);
    load(b.dev, save(setup().dev)); // a quiet state lowers the line
    expect(b.irq.asserted).toBe(false);
  });

  /** Expects `bytes` to be refused with Invalid and the device's state to be unchanged. */
  function expectRefused(bytes: Uint8Array, version = 1): void {
    const t = busyDevice();
    const before = save(t.dev);
    let error: unknown;
    try {
      load(t.dev, bytes, version);
    } catch (e) {
      error = e;
    }
    expect(isVmedError(error, 'Invalid'), String(error)).toBe(true);
    expect(save(t.dev)).toEqual(before);
  }

  it('refuses every truncation of a valid stream and stays unchanged', () => {
    const bytes = save(setup().dev);
    for (let n = 0; n < bytes.length; n++) expectRefused(bytes.subarray(0, n));
  });

  it('refuses impossible values: reserved bits, non-booleans, FIFO too long, THR pending without THRI', () => {
    const good = save(setup().dev);
    const at = (i: number, v: number): Uint8Array => {
      const b = good.slice();
      b[i] = v;
      return b;
    };
    expectRefused(at(0, 0x10)); // IER bit 4
    expectRefused(at(2, 0x20)); // MCR bit 5
    expectRefused(at(3, 0x02)); // FCR clear bit is never stored
    expectRefused(at(3, 0x40)); // trigger bits with FIFOs off
    expectRefused(at(7, 2)); // overrun not a boolean
    expectRefused(at(8, 0x10)); // MSR deltas with a line bit
    expectRefused(at(9, 0x01)); // host lines with a delta bit
    expectRefused(at(10, 1)); // THR pending, IER.THRI off
    expectRefused(at(11, 17)); // FIFO length 17 (and too short a stream)
    const twoInHolding = new Uint8Array([...good.subarray(0, 11), 2, 0, 0, 0, 1, 2]);
    expectRefused(twoInHolding); // 2 bytes in 16450 mode
    const fifoOn = at(3, 0x01);
    const seventeen = new Uint8Array([...fifoOn.subarray(0, 11), 17, 0, 0, 0, ...new Uint8Array(17)]);
    expectRefused(seventeen);
    expectRefused(new Uint8Array([...good, 0])); // a trailing byte
  });

  it('refuses unknown state versions', () => {
    const bytes = save(setup().dev);
    expectRefused(bytes, 2);
    expectRefused(bytes, 0);
  });
});
