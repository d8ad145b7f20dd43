export { framebufferDevice, FramebufferDevice } from './framebuffer.js';
export type { FramebufferDeviceDefinition, FramebufferMode, FramebufferOptions } from './framebuffer.js';
export * as framebuffer from './registers.js';
