/**
 * `@vmed/backend-xen`: the vmed backend contract on Xen, from a dom0 process, as a secondary
 * IOREQ server (like DEMU and XenGT). Loaded by the core with `import()` only when the
 * configuration names Xen; nothing here touches a Xen library until {@link createBackend}.
 */
export { createBackend, XenBackend, XEN_MAX_MSI_ROUTES, isXenAbsent, type XenBackendStats } from './backend.js';
export type { XenBackendOptions } from './options.js';
export type { XenGuestType } from './guest.js';
export type { WaitMode } from './ioreq/waiter.js';
export type { RamRegionOption } from './memory/ram-map.js';
