/**
 * The Xen lab: real Xen 4.17 with a PV dom0 under QEMU emulation, for testing the Xen backend
 * on machines without Xen. Host side: {@link runInXenLab}. Dom0 side (inside a lab command):
 * {@link createDomain} and friends, {@link labAssets}.
 */
export { runInXenLab, DEFAULT_TIMEOUT_MS, DOM0_RESULTS_DIR } from './run.js';
export type { XenLabRunOptions, XenLabResult, XenLabTimings } from './run.js';
export { XenLabError } from './errors.js';
export { dom0Node, dom0TsCommand } from './dom0-node.js';
export type { Dom0NodeMode } from './dom0-node.js';
export type { XenLabStage } from './errors.js';
export { buildLab, findHostInputs } from './build.js';
export type { LabArtifacts, HostInputs } from './build.js';
export { labLayout } from './layout.js';
export type { LabLayout } from './layout.js';
export { LAB_PACKAGES, ensureLabPackages, missingPackages } from './host-packages.js';
export { labAssets, inXenLab, ASSET_FILES } from './assets.js';
export type { LabAssets } from './assets.js';
export {
  createDomain,
  destroyDomain,
  listDomains,
  xlInfo,
  xlConfig,
  LabDomain,
  consoleLogPath,
  parseXlInfo,
  parseXlList,
  parseGuestPciReport,
} from './domains.js';
export type { DomainSpec, DomainType, DomainListEntry, GuestPciFunction, GuestPciReport } from './domains.js';
