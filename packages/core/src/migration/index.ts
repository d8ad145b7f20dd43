/**
 * Device migration: the VFIO-v2 state machine and the device state stream. The state codec
 * (`StateWriter`/`StateReader`) is exported by the package root on its own.
 */
export * from './state-machine.js';
export * from './stream.js';
