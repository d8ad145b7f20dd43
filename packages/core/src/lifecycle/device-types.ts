/**
 * Device types, like the VFIO mdev sysfs `mdev_supported_types`: each has a name, a
 * description, and how many more instances may be created (`available_instances`).
 */
import type { DeviceDefinition } from '../device/model.js';
import { ExistsError, InvalidError, NoSpaceError, NotFoundError } from '../errors.js';

/** What `mediator.types()` reports for one type. */
export interface DeviceTypeInfo {
  readonly type: string;
  readonly description: string;
  readonly maxInstances: number;
  readonly availableInstances: number;
}

// The registry stores definitions of any option type; options are checked by each model.
type AnyDefinition = DeviceDefinition<never>;

export class DeviceTypeRegistry {
  private readonly definitions = new Map<string, AnyDefinition>();
  private readonly counts = new Map<string, number>();

  /** Registers a type; a second type with the same name is `Exists`. */
  register(definition: DeviceDefinition<never>): void {
    const operation = 'types.register';
    if (typeof definition.type !== 'string' || !/^[a-z][a-z0-9-]*$/.test(definition.type)) {
      throw new InvalidError(operation, `type name ${JSON.stringify(definition.type)} must be lower-case letters, digits and dashes`);
    }
    if (!Number.isInteger(definition.maxInstances) || definition.maxInstances < 1) {
      throw new InvalidError(operation, `${definition.type}: maxInstances must be a positive integer`);
    }
    if (this.definitions.has(definition.type)) throw new ExistsError(operation, `device type "${definition.type}" is already registered`);
    this.definitions.set(definition.type, definition);
    this.counts.set(definition.type, 0);
  }

  get(type: string): AnyDefinition {
    const d = this.definitions.get(type);
    if (d === undefined) {
      const known = [...this.definitions.keys()].join(', ') || 'none';
      throw new NotFoundError('types.get', `no device type "${type}" (registered: ${known})`);
    }
    return d;
  }

  /** Takes one instance slot of `type`; `NoSpace` when none is left. */
  reserve(type: string): AnyDefinition {
    const d = this.get(type);
    const used = this.counts.get(type) ?? 0;
    if (used >= d.maxInstances) {
      throw new NoSpaceError('device.create', `device type "${type}" has no available instances (max ${d.maxInstances})`);
    }
    this.counts.set(type, used + 1);
    return d;
  }

  /** Gives an instance slot back. */
  release(type: string): void {
    const used = this.counts.get(type) ?? 0;
    if (used > 0) this.counts.set(type, used - 1);
  }

  list(): DeviceTypeInfo[] {
    return [...this.definitions.values()].map((d) => ({
      type: d.type,
      description: d.description,
      maxInstances: d.maxInstances,
      availableInstances: d.maxInstances - (this.counts.get(d.type) ?? 0),
    }));
  }
}
