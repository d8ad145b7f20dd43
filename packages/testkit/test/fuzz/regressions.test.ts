/**
 * What the fuzzer found, each as the shrunk sequence it reported, replayed through the same path
 * (the sim backend's sink into the mediator). Each test fails on the code before its fix.
 */
import {
  createMediator,
  decodeDeviceStream,
  encodeDeviceStream,
  isVmedError,
  MAX_DEVICE_STREAM,
  type DeviceDefinition,
  type Mediator,
  type MediatedDevice,
} from '@vmed/core';
import { eduDevice, serialDevice } from '@vmed/devices';
import { afterEach, describe, expect, it } from 'vitest';
import { faultable, type FaultableModel } from '../../src/fuzz/faultable.js';
import { replayProgram } from '../../src/fuzz/index.js';
import { SimBackend } from '../../src/sim/backend.js';

let open: Mediator[] = [];

afterEach(async () => {
  for (const m of open) await m.close();
  open = [];
});

async function mediatorWith(...types: Array<DeviceDefinition<never>>): Promise<{ mediator: Mediator; backend: SimBackend }> {
  const backend = new SimBackend();
  const mediator = await createMediator({ hypervisor: 'sim' }, { backend, deviceTypes: types });
  open.push(mediator);
  return { mediator, backend };
}

/** Configuration mechanism #1, as the guest does it: address to 0xCF8, data through 0xCFC. */
function configWrite(m: Mediator, d: MediatedDevice, register: number, size: 1 | 2 | 4, value: number): void {
  m.dispatcher.write('pio', 0xcf8n, 4, BigInt((0x8000_0000 | (d.address.device << 11) | (register & 0xfc)) >>> 0));
  m.dispatcher.write('pio', 0xcfcn + BigInt(register & 3), size, BigInt(value));
}

function bar0(d: MediatedDevice): bigint {
  const loc = d.function.barLocation(0);
  if (loc === undefined) throw new Error('BAR 0 does not decode');
  return loc.base;
}

describe('fuzz regressions', () => {
  // dispatcher, shrunk to: add mmio [0x0, +0x4) "wide" #0; mmio read at 0x1 size 4.
  // Found: a target answering more bits than its piece (a sloppy model returning 0x1xx for a
  // byte read) had them OR-ed into the neighbouring piece's bytes and past the access width,
  // so the sink returned 0x2bff6d7be8 for a 4-byte read. Fixed in IoDispatcher.readPiece,
  // which now masks each piece to its size.
  it('dispatcher: a piece answered wider than its size does not spill into the access', async () => {
    // The shrunk program: op "add" (5), mmio, base 0 + (12 - 12), length 4, behaviour "wide" (6);
    // then op "access" (0), mmio, size 4, address 0 + (13 - 12) = 1, read.
    const words = [5, 0, 0, 0, 12, 0, 6, 0, 0, 0, 0, 0, 13, 0];
    const outcome = await replayProgram('dispatcher', words);
    expect(outcome.trace.join('\n')).toMatch(/add mmio \[0x0, \+0x4\) wide #0\n.*mmio read → 0x[0-9a-f]+ at 0x1 size 4/);
    expect(outcome.violations).toEqual([]);
    const { mediator } = await mediatorWith();
    mediator.dispatcher.add('mmio', { base: 0x9000_0000n, length: 4n } as never, { read: () => 0x1ff, write: () => {} }, 'wide');
    expect(mediator.dispatcher.read('mmio', 0x9000_0001n, 2)).toBe(0xffffn);
    expect(mediator.dispatcher.read('mmio', 0x9000_0000n, 1)).toBe(0xffn);
  });

  // migration-stream, shrunk to: 5 accepted streams, then "model-version-zero": the edu's own
  // stream re-encoded with model version 0 (valid envelope and checksum). Found: the model
  // refused it inside the RESUMING → STOP arc, so the device landed in ERROR instead of staying
  // in RESUMING as device-migration.ts promises. Fixed in DeviceMigration.setState, which now
  // loads the stream (atomically) before walking any arc.
  it('migration: a stream the model refuses leaves the device in RESUMING, unchanged', async () => {
    const { mediator } = await mediatorWith(eduDevice as DeviceDefinition<never>);
    const edu = mediator.create('edu', { slot: 3 });
    edu.open();
    configWrite(mediator, edu, 0x04, 2, 0x7);
    mediator.dispatcher.write('mmio', bar0(edu) + 0x04n, 4, 0x1234n); // liveness: some state
    const valid = edu.migration.save();
    const contents = decodeDeviceStream(valid, { deviceType: 'edu', maxModelVersion: 1, maxSize: MAX_DEVICE_STREAM });
    const refused = encodeDeviceStream({ ...contents, modelVersion: 0 });
    await edu.migration.setState('RESUMING');
    edu.migration.write(refused);
    const error = await edu.migration.setState('RUNNING').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVmedError(error, 'Invalid')).toBe(true);
    expect(edu.migration.state).toBe('RESUMING');
    expect(edu.migration.save()).toEqual(valid);
    // RESUMING still takes a good stream.
    edu.migration.write(valid);
    await edu.migration.setState('RUNNING');
    expect(edu.migration.state).toBe('RUNNING');
    expect(mediator.dispatcher.read('mmio', bar0(edu) + 0x04n, 4)).toBe(0xffff_edcbn); // liveness reads back inverted
  });

  // serial and edu, shrunk to: arm model fault in serial#0; read bar0 (the fault fires, the
  // device is broken); lifecycle toggle (close); lifecycle toggle (open). Found: the reopened
  // device was still broken (all-ones for ever, until an explicit reset), and a device closed
  // in a migration state other than RUNNING reopened in it. Fixed in MediatedDevice.detach:
  // close returns the device to power-on, RUNNING and not broken.
  it('lifecycle: a reopened device starts clean — not broken, migration RUNNING', async () => {
    const { mediator } = await mediatorWith(faultable(serialDevice) as DeviceDefinition<never>);
    const uart = mediator.create('serial', { slot: 3 });
    uart.open();
    configWrite(mediator, uart, 0x04, 2, 0x7);
    (uart.model as FaultableModel).armed = true;
    expect(mediator.dispatcher.read('pio', bar0(uart), 4)).toBe(0xffff_ffffn);
    expect(uart.broken).toBe(true);
    await uart.migration.setState('STOP');
    uart.close();
    uart.open();
    expect(uart.broken).toBe(false);
    expect(uart.migration.state).toBe('RUNNING');
    configWrite(mediator, uart, 0x04, 2, 0x7);
    // LSR of an idle 16550A: THR empty and transmitter empty.
    expect(mediator.dispatcher.read('pio', bar0(uart) + 5n, 1)).toBe(0x60n);
  });

  // serial, shrunk to: lifecycle toggle serial#0 (close); write serial#1 bar0+0x0 size 8 =
  // 0x1338 (IER.THRI on: THR-empty raises INTx); read; ram store; lifecycle toggle serial#1
  // (close). Found: with every device closed the backend still held an INTx line: a function
  // reset deasserted the line but never released it. Fixed in PciFunction.reset, which now
  // releases the line as dispose() does (it is made again on the next assertion).
  it('lifecycle: closing a device that raised INTx releases its line', async () => {
    const { mediator, backend } = await mediatorWith(serialDevice as DeviceDefinition<never>);
    const uart = mediator.create('serial', { slot: 4 });
    uart.open();
    configWrite(mediator, uart, 0x04, 2, 0x7);
    mediator.dispatcher.write('pio', bar0(uart), 8, 0x1338n); // THR, then IER = 0x13: THRI
    expect(backend.resources().lineIrqs).toBe(1);
    uart.close();
    expect(backend.resources().lineIrqs).toBe(0);
    uart.open();
    configWrite(mediator, uart, 0x04, 2, 0x7);
    mediator.dispatcher.write('pio', bar0(uart) + 1n, 1, 0x02n);
    expect(backend.resources().lineIrqs).toBe(1);
  });

  // edu and serial, shrunk to: (MSI enabled by a config write) … an interrupt raised … MSI
  // disabled again … migration save edu#0. Found: the device restored from the saved stream
  // differed from its source — config byte 6 (status) 0x10 on the source, 0x18 on the restored
  // twin, and the twin re-saved different bytes — because the model's loadState re-drove INTx
  // from its own interrupt status while the source, having raised under MSI, held INTx low.
  // Fixed in DeviceMigration.load: the config section is loaded again after the model's, so the
  // saved function state decides the INTx request.
  it('migration: a condition raised under MSI does not assert INTx on the restored device', async () => {
    const source = await mediatorWith(eduDevice as DeviceDefinition<never>);
    const edu = source.mediator.create('edu', { slot: 3 });
    edu.open();
    configWrite(source.mediator, edu, 0x04, 2, 0x7);
    const msi = edu.function.configRead(0x34, 1); // edu's only capability is MSI
    configWrite(source.mediator, edu, msi + 2, 2, 0x1); // MSI enable
    source.mediator.dispatcher.write('mmio', bar0(edu) + 0x60n, 4, 0x1n); // raise: one MSI
    configWrite(source.mediator, edu, msi + 2, 2, 0x0); // back to INTx; the source does not re-assert
    expect(edu.function.configRead(0x06, 2) & 0x8).toBe(0);
    await edu.migration.setState('STOP_COPY');
    const stream = edu.migration.read(1 << 20) as Uint8Array;
    await edu.migration.setState('RUNNING');

    const target = await mediatorWith(eduDevice as DeviceDefinition<never>);
    const twin = target.mediator.create('edu', { slot: 3 });
    twin.open();
    await twin.migration.setState('RESUMING');
    twin.migration.write(stream);
    await twin.migration.setState('RUNNING');
    expect(twin.function.dumpConfig()).toEqual(edu.function.dumpConfig());
    expect(twin.migration.save()).toEqual(stream);
    expect(twin.function.configRead(0x06, 2) & 0x8).toBe(0); // Interrupt Status clear, as on the source
  });
});
