/**
 * Fault injection into a device model: a wrapper whose next guest read or write throws when
 * armed, as a model with a bug would. The core must fence the device off (broken: all-ones,
 * writes dropped, `device-broken` emitted) without the throw reaching the backend, and `reset()`
 * must bring it back.
 */
import type { DeviceContext, DeviceDefinition, DeviceModel, PciFunctionDefinition, RegionAccessSize, StateReader, StateWriter } from '@vmed/core';

export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
}

/** A model that throws on its next guest access once {@link arm}ed. */
export class FaultableModel implements DeviceModel {
  /** Whether the next read or write throws. */
  armed = false;
  /** Set when an armed fault fired; the harness clears it once it has checked the device. */
  fired = false;

  constructor(readonly inner: DeviceModel) {}

  get definition(): PciFunctionDefinition {
    return this.inner.definition;
  }

  get stateVersion(): number {
    return this.inner.stateVersion;
  }

  read(bar: number, offset: number, size: RegionAccessSize): number {
    this.maybeFail('read', bar, offset);
    return this.inner.read(bar, offset, size);
  }

  write(bar: number, offset: number, size: RegionAccessSize, value: number): void {
    this.maybeFail('write', bar, offset);
    this.inner.write(bar, offset, size, value);
  }

  reset(): void {
    this.inner.reset();
  }

  saveState(out: StateWriter): void {
    this.inner.saveState(out);
  }

  loadState(input: StateReader, version: number): void {
    this.inner.loadState(input, version);
  }

  dispose(): void {
    this.inner.dispose?.();
  }

  private maybeFail(what: string, bar: number, offset: number): void {
    if (!this.armed) return;
    this.armed = false;
    this.fired = true;
    throw new InjectedFault(`injected fault on ${what} of BAR ${bar} + 0x${offset.toString(16)}`);
  }
}

/** `definition` with every model it creates wrapped in a {@link FaultableModel}. */
export function faultable<O>(definition: DeviceDefinition<O>): DeviceDefinition<O> {
  return {
    type: definition.type,
    description: definition.description,
    maxInstances: definition.maxInstances,
    create(context: DeviceContext, options: O): DeviceModel {
      return new FaultableModel(definition.create(context, options));
    },
  };
}
