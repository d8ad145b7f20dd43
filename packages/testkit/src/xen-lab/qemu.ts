/**
 * The emulated machine that hosts Xen. Each choice below was found necessary on this machine
 * kind (see shared/xen-lab/README.md): TCG because the host's KVM hangs a full kernel;
 * `qemu64,+svm,+npt` because `-cpu max` crashes a PV dom0 and Xen needs NPT (HAP) for PVH/HVM
 * guests; Xen loaded multiboot-style with dom0's kernel and initramfs as modules.
 */
import type { LabArtifacts } from './build.js';

export interface MachineSpec {
  readonly artifacts: LabArtifacts;
  /** Checkout path that dom0 must see even when it lies under one of dom0's tmpfs folders. */
  readonly repoRoot: string;
  /** Host folder exported writable to dom0 as the run's results. */
  readonly runDir: string;
  readonly memoryMiB?: number;
  readonly cpus?: number;
}

export const QEMU = 'qemu-system-x86_64';

const XEN_CMDLINE = 'console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M noreboot loglvl=all guest_loglvl=all';

/** Arguments of `qemu-system-x86_64` for one lab run. */
export function qemuArgs(spec: MachineSpec): string[] {
  const { artifacts } = spec;
  const dom0Cmdline = [
    'console=hvc0',
    'quiet',
    // Reboot at once on a panic: Xen then reports "Hardware Dom0 crashed", which the host catches.
    'panic=-1',
    `vmedlab.session=${artifacts.session}`,
    `vmedlab.checkout=${spec.repoRoot}`,
  ].join(' ');
  return [
    ...['-accel', 'tcg', '-cpu', 'qemu64,+svm,+npt'],
    ...['-smp', String(spec.cpus ?? 2), '-m', String(spec.memoryMiB ?? 3072)],
    ...['-nodefaults', '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot'],
    ...['-virtfs', 'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap'],
    ...['-virtfs', `local,path=${spec.runDir},mount_tag=vmedresults,security_model=none,multidevs=remap`],
    ...['-kernel', artifacts.xen, '-append', XEN_CMDLINE],
    // Multiboot modules: "file args" each, comma-separated; paths were checked to hold neither.
    ...['-initrd', `${artifacts.kernel} ${dom0Cmdline},${artifacts.dom0Initrd}`],
  ];
}
