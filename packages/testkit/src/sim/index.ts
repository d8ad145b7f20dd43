/**
 * `@vmed/testkit/sim`: the in-process reference backend, loadable like any backend module
 * (`createBackend`) and as a conformance target (`createConformanceTarget`).
 */
export { SimBackend, createBackend, createSimBackend } from './backend.js';
export type { SimResources } from './backend.js';
export { SimGuest } from './guest.js';
export type { SimFaults, PinFaultCode } from './faults.js';
export type { SimHandleKind } from './handle.js';
export { RELEASE_ORDER } from './handle.js';
export { LINE_VECTOR_BASE } from './interrupt-controller.js';
export type { StrayInterrupt } from './interrupt-controller.js';
export { DEFAULT_SIM_RAM, DEFAULT_SIM_SCRATCH, parseSimOptions } from './options.js';
export type { SimBackendOptions, SimCapabilityOverrides, SimRamRegionOption } from './options.js';
export { SIM_FREE_LINE, SIM_MMIO_WINDOW, SIM_PIO_WINDOW, createConformanceTarget } from './conformance-target.js';
export type { SimConformanceOptions, SimConformanceSession } from './conformance-target.js';
