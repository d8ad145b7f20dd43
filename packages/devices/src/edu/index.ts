export { eduDevice, EduDevice, EDU_PCI_FUNCTION, factorial32 } from './edu.js';
export type { EduDeviceDefinition, EduOptions, EduStats } from './edu.js';
export * as edu from './registers.js';
