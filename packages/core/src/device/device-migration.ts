/**
 * A device's migration, as VFIO migration v2 exposes it: a state (`RUNNING`, `STOP`,
 * `STOP_COPY`, `RESUMING`, …), a save stream read in chunks in `STOP_COPY`/`PRE_COPY`, and a
 * resume stream written in chunks in `RESUMING`.
 *
 * The stream carries the sections `config` (the PCI function: config space, MSI-X table and
 * pending bits), `model` (the device model's own state) and one `bar<N>` per direct BAR (its
 * memory, e.g. a framebuffer), in the versioned, length-checked, checksummed envelope of
 * `migration/stream.ts`.
 *
 * A refused stream changes nothing: leaving `RESUMING` first decodes and checks the whole
 * stream; a bad one is refused with an `Invalid` error, the device keeps its state, stays in
 * `RESUMING` and accepts a new stream. Loading is atomic: if the model rejects a section, the
 * state saved just before is put back.
 *
 * Guest accesses reach the model only in the running states (`RUNNING`, `RUNNING_P2P`,
 * `PRE_COPY`, `PRE_COPY_P2P`); while stopped they read all-ones and writes are dropped (the VMM
 * is expected to have stopped its vCPUs, as with VFIO).
 */
import { InvalidError, StateError } from '../errors.js';
import { StateReader, StateWriter } from '../migration/state-codec.js';
import type { MigrationState } from '../migration/state-machine.js';
import { MigrationStateMachine } from '../migration/state-machine.js';
import type { DeviceStreamContents } from '../migration/stream.js';
import { DeviceStreamSink, DeviceStreamSource, decodeDeviceStream, encodeDeviceStream } from '../migration/stream.js';
import type { MediatedDevice } from './mediated-device.js';

/** Largest device state stream accepted when resuming. */
export const MAX_DEVICE_STREAM = 16 * 1024 * 1024;

const RUNNING_STATES: ReadonlySet<MigrationState> = new Set(['RUNNING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P']);

export class DeviceMigration {
  /** The state machine; listen to its `step`, `transitioned`, `failed` and `reset` events. */
  readonly machine: MigrationStateMachine;
  private source: DeviceStreamSource | undefined;
  private sink: DeviceStreamSink | undefined;
  /** A resume stream already decoded and checked, waiting for the RESUMING → STOP arc. */
  private checked: DeviceStreamContents | undefined;

  constructor(
    private readonly device: MediatedDevice,
    readonly hypervisor: string,
  ) {
    this.machine = new MigrationStateMachine({ handler: (from, to) => this.arc(from, to), features: { p2p: true, preCopy: true } });
  }

  get state(): MigrationState {
    return this.machine.state;
  }

  /** True in the states where the device runs and serves the guest. */
  get running(): boolean {
    return RUNNING_STATES.has(this.machine.state);
  }

  /**
   * Moves to `target` through the kernel's chain of arcs. Leaving `RESUMING` checks the
   * written stream first; a bad stream is refused (`Invalid`) without changing state.
   */
  async setState(target: MigrationState): Promise<void> {
    if (this.machine.state === 'RESUMING' && target !== 'RESUMING') {
      const sink = this.requireSink('migration.setState');
      const bytes = sink.finish();
      try {
        this.checked = this.decode(bytes);
        this.checkLoadable(this.checked);
      } catch (e) {
        this.checked = undefined;
        // Stay in RESUMING with an empty stream: the VMM may write a correct one.
        this.sink = new DeviceStreamSink({ maxSize: MAX_DEVICE_STREAM });
        throw e;
      }
    }
    await this.machine.transition(target);
  }

  /** The next chunk of the save stream (`STOP_COPY`, `PRE_COPY`…), `null` at its end. */
  read(maxBytes?: number): Uint8Array | null {
    if (this.source === undefined) throw new StateError('migration.read', `no save stream in state ${this.state}`);
    return this.source.read(maxBytes);
  }

  /** Appends a chunk to the resume stream (`RESUMING`). */
  write(chunk: Uint8Array): number {
    return this.requireSink('migration.write').write(chunk);
  }

  /** The device's whole state as a stream, now (what `STOP_COPY` hands out). */
  save(): Uint8Array {
    const config = new StateWriter();
    this.device.function.saveState(config);
    const model = new StateWriter();
    this.device.model.saveState(model);
    return encodeDeviceStream({
      deviceType: this.device.type,
      modelVersion: this.device.model.stateVersion,
      sections: [
        { id: 'config', bytes: config.finish() },
        { id: 'model', bytes: model.finish() },
        ...this.device.directMemories().map(([bar, bytes]) => ({ id: `bar${bar}`, bytes: bytes.slice() })),
      ],
    });
  }

  /**
   * Loads a whole stream, atomically: a stream that is malformed, of another device type, of a
   * newer model version, or that the model refuses leaves the device exactly as it was.
   */
  restore(stream: Uint8Array): void {
    this.apply(this.decode(stream));
  }

  /** Abandons any stream in flight and returns to RUNNING (part of device reset). */
  resetState(): void {
    this.closeStreams();
    this.machine.reset();
  }

  dispose(): void {
    this.closeStreams();
  }

  // ---- Arcs ---------------------------------------------------------------------------------

  private arc(from: MigrationState, to: MigrationState): void {
    if (to === 'STOP_COPY' || ((to === 'PRE_COPY' || to === 'PRE_COPY_P2P') && this.source === undefined)) {
      // Entering the saving group: hand out the state as it is now. In STOP_COPY it is final.
      this.source?.close();
      this.source = new DeviceStreamSource(this.save());
    } else if ((from === 'STOP_COPY' || from === 'PRE_COPY' || from === 'PRE_COPY_P2P') && !isSaving(to)) {
      this.source?.close();
      this.source = undefined;
    }
    if (to === 'RESUMING') {
      this.sink = new DeviceStreamSink({ maxSize: MAX_DEVICE_STREAM });
      this.checked = undefined;
    }
    if (from === 'RESUMING') {
      const contents = this.checked;
      this.checked = undefined;
      this.sink = undefined;
      if (contents === undefined) throw new StateError('migration.resume', 'no checked resume stream');
      this.apply(contents);
    }
  }

  // ---- Streams ------------------------------------------------------------------------------

  private decode(stream: Uint8Array): DeviceStreamContents {
    return decodeDeviceStream(stream, {
      deviceType: this.device.type,
      maxModelVersion: this.device.model.stateVersion,
      maxSize: MAX_DEVICE_STREAM,
    });
  }

  private checkLoadable(contents: DeviceStreamContents): void {
    const direct = this.device.directMemories();
    const expected = ['config', 'model', ...direct.map(([bar]) => `bar${bar}`)].sort();
    const ids = contents.sections.map((s) => s.id).sort();
    if (ids.join() !== expected.join()) {
      throw new InvalidError('migration.restore', `expected sections ${JSON.stringify(expected)}, found ${JSON.stringify(ids)}`);
    }
    for (const [bar, bytes] of direct) {
      const got = contents.sections.find((s) => s.id === `bar${bar}`)?.bytes.length;
      if (got !== bytes.length) throw new InvalidError('migration.restore', `section "bar${bar}" holds ${got} bytes, the BAR ${bytes.length}`);
    }
  }

  private apply(contents: DeviceStreamContents): void {
    this.checkLoadable(contents);
    const before = this.save();
    try {
      this.load(contents);
    } catch (e) {
      this.load(this.decode(before));
      throw new InvalidError('migration.restore', `the ${this.device.type} device refused the stream: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Loads checked contents; sections were matched against the device by `checkLoadable`. */
  private load(contents: DeviceStreamContents): void {
    const section = (id: string) => contents.sections.find((s) => s.id === id)?.bytes as Uint8Array;
    const configReader = new StateReader(section('config'), 'migration.restore.config');
    this.device.function.loadState(configReader);
    configReader.end();
    const modelReader = new StateReader(section('model'), 'migration.restore.model');
    this.device.model.loadState(modelReader, contents.modelVersion);
    modelReader.end();
    for (const [bar, bytes] of this.device.directMemories()) bytes.set(section(`bar${bar}`));
  }

  private requireSink(operation: string): DeviceStreamSink {
    if (this.sink === undefined) throw new StateError(operation, `no resume stream in state ${this.state}`);
    return this.sink;
  }

  private closeStreams(): void {
    this.source?.close();
    this.source = undefined;
    this.sink?.close();
    this.sink = undefined;
    this.checked = undefined;
  }
}

function isSaving(state: MigrationState): boolean {
  return state === 'STOP_COPY' || state === 'PRE_COPY' || state === 'PRE_COPY_P2P';
}
