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
import type { MigrationFeatures, MigrationState } from '../migration/state-machine.js';
import { MigrationStateMachine, migrationPath } from '../migration/state-machine.js';
import type { DeviceStreamContents } from '../migration/stream.js';
import { DeviceStreamSink, DeviceStreamSource, decodeDeviceStream, encodeDeviceStream } from '../migration/stream.js';
import type { MediatedDevice } from './mediated-device.js';

/** Largest device state stream accepted when resuming. */
export const MAX_DEVICE_STREAM = 16 * 1024 * 1024;

const RUNNING_STATES: ReadonlySet<MigrationState> = new Set(['RUNNING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P']);
const FEATURES: MigrationFeatures = { p2p: true, preCopy: true };

export class DeviceMigration {
  /** The state machine; listen to its `step`, `transitioned`, `failed` and `reset` events. */
  readonly machine: MigrationStateMachine;
  private source: DeviceStreamSource | undefined;
  private sink: DeviceStreamSink | undefined;
  /** Whether the resume stream was loaded, for the RESUMING → STOP arc to go ahead. */
  private loaded = false;

  constructor(
    private readonly device: MediatedDevice,
    readonly hypervisor: string,
  ) {
    this.machine = new MigrationStateMachine({ handler: (from, to) => this.arc(from, to), features: FEATURES });
  }

  get state(): MigrationState {
    return this.machine.state;
  }

  /** True in the states where the device runs and serves the guest. */
  get running(): boolean {
    return RUNNING_STATES.has(this.machine.state);
  }

  /**
   * Moves to `target` through the kernel's chain of arcs. Leaving `RESUMING` loads the written
   * stream first, atomically; a bad stream — malformed, or refused by the model — is refused
   * (`Invalid`) before any arc runs, so the device stays in `RESUMING`, unchanged.
   */
  async setState(target: MigrationState): Promise<void> {
    if (this.machine.state === 'RESUMING' && target !== 'RESUMING') {
      // A target the machine would refuse must not consume the stream.
      migrationPath(this.machine.state, target, FEATURES, 'migration.setState');
      const sink = this.requireSink('migration.setState');
      const bytes = sink.finish();
      try {
        // Loaded here rather than in the RESUMING arc: a stream the model refuses would
        // otherwise fail the arc and leave the device in ERROR.
        this.apply(this.decode(bytes));
        this.loaded = true;
      } catch (e) {
        this.loaded = false;
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
      this.loaded = false;
    }
    if (from === 'RESUMING') {
      const loaded = this.loaded;
      this.loaded = false;
      this.sink = undefined;
      if (!loaded) throw new StateError('migration.resume', 'no resume stream was loaded');
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
    const loadConfig = () => {
      const configReader = new StateReader(section('config'), 'migration.restore.config');
      this.device.function.loadState(configReader);
      configReader.end();
    };
    // Config first, so that a model re-driving its interrupt on load sees the restored mode.
    loadConfig();
    const modelReader = new StateReader(section('model'), 'migration.restore.model');
    this.device.model.loadState(modelReader, contents.modelVersion);
    modelReader.end();
    // Then config again: the saved function state is authoritative for the INTx request and
    // Interrupt Status. A model re-driving INTx from its own state would otherwise assert a line
    // the source held low (a condition raised under MSI before the guest switched to INTx).
    loadConfig();
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
    this.loaded = false;
  }
}

function isSaving(state: MigrationState): boolean {
  return state === 'STOP_COPY' || state === 'PRE_COPY' || state === 'PRE_COPY_P2P';
}
