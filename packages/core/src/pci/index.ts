/**
 * The PCI device kit: configuration space, BARs, capabilities, MSI/MSI-X/INTx and the host
 * bridge that decodes a guest's configuration cycles.
 */
export * from './registers.js';
export { ConfigSpace, configAllOnes, isConfigAccessSize, type ConfigAccessSize } from './config-space.js';
export { decodeBar, sameBarLocation, validateBars, type BarDecode, type BarLocation, type BarSlot } from './bars.js';
export { CapabilityListBuilder, walkCapabilities, type PlacedCapability } from './capabilities.js';
export { PciFunction, type InterruptMode, type PciFunctionHooks } from './function.js';
export { PciBus, PCI_DEVICES_PER_BUS, PCI_FUNCTIONS_PER_DEVICE, type PciBusOptions } from './bus.js';
export {
  ECAM_BUS_SIZE,
  PCI_CONFIG_ADDRESS_ENABLE,
  PCI_CONFIG_ADDRESS_MASK,
  PCI_CONFIG_ADDRESS_PORT,
  PCI_CONFIG_DATA_PORT,
  PCI_CONFIG_PORTS_LENGTH,
  PciHostBridge,
  type PciHostBridgeOptions,
} from './host-bridge.js';
