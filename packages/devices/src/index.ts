/**
 * Reference device models for vmed, each a `DeviceDefinition` to register with the mediator,
 * written once and served on every backend:
 *
 * - `serial`: a PCI 16550A UART (like Linux's mtty sample), the demo's console.
 * - `edu`: QEMU's educational device: ID, liveness, factorial, interrupts, DMA.
 * - `framebuffer`: a display like Linux's mdpy sample, read out by the host as an image.
 */
import type { DeviceDefinition } from '@vmed/core';
import { eduDevice } from './edu/index.js';
import { framebufferDevice } from './framebuffer/index.js';
import { serialDevice } from './serial/index.js';

export * from './serial/index.js';
export * from './edu/index.js';
export * from './framebuffer/index.js';

/** Every device type in this package, for the mediator's `deviceModules: ["@vmed/devices"]`. */
export const deviceTypes: ReadonlyArray<DeviceDefinition<never>> = [serialDevice, eduDevice, framebufferDevice];
