/**
 * `@vmed/backend-kvm`: the vmed backend contract on Linux KVM, through koffi.
 *
 * `createBackend(options)` is what the core's `createMediator` loads for `backend: 'kvm'`.
 * Options: `{ mode: 'standalone', memoryMiB, vcpus, ramLayout?, irqchip?, quantumMs? }` (vmed
 * creates and runs the VM; see `backend.guest`) or `{ mode: 'adopt', vmFd, memory: [...] }`
 * (an embedding VMM's VM).
 */
export { KvmBackend, createBackend } from './backend.js';
export type {
  AdoptOptions,
  AdoptedMemory,
  KvmBackendOptions,
  RamLayoutEntry,
  StandaloneOptions,
} from './options.js';
export type { GuestController, GuestRunOptions, GuestRunResult, ExecutionMode } from './guest/controller.js';
export type { GuestEntry, TableSpec } from './guest/entry.js';
export type { VcpuFinish, VcpuFinishReason } from './vcpu/exits.js';
export type { Regs, Sregs, Segment, DescriptorTable } from './ioctls/vcpu.js';
export type { GsiRoute } from './ioctls/vm.js';
