export { serialDevice, SerialDevice, SERIAL_PCI_FUNCTION } from './serial.js';
export type { SerialDeviceDefinition, SerialOptions, SerialStats, SerialLineSettings, ModemLines } from './serial.js';
export * as uart from './registers.js';
