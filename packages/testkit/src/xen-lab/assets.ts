/**
 * The lab's asset folder, as commands in dom0 see it through `VMED_XEN_LAB_ASSETS`: a stock
 * Linux kernel and a busybox initramfs for domUs, and ready xl configs that boot them.
 */
import { join } from 'node:path';
import { XenLabError } from './errors.js';

/** File names inside the asset folder (written by build.ts). */
export const ASSET_FILES = {
  kernel: 'vmlinuz',
  ramdisk: 'domu-initrd.gz',
  pvhConfig: 'linux-pvh.cfg',
  hvmConfig: 'linux-hvm.cfg',
} as const;

export interface LabAssets {
  readonly dir: string;
  /** The Debian kernel dom0 runs, usable as a PVH or HVM domU kernel. */
  readonly kernel: string;
  /** Busybox initramfs whose init prints the guest's PCI functions, then powers off. */
  readonly ramdisk: string;
  /** xl config booting that pair as a PVH guest named `linux-pvh`. */
  readonly pvhConfig: string;
  /** xl config booting it as an HVM guest (direct kernel boot) named `linux-hvm`. */
  readonly hvmConfig: string;
}

export function labAssetsIn(dir: string): LabAssets {
  return {
    dir,
    kernel: join(dir, ASSET_FILES.kernel),
    ramdisk: join(dir, ASSET_FILES.ramdisk),
    pvhConfig: join(dir, ASSET_FILES.pvhConfig),
    hvmConfig: join(dir, ASSET_FILES.hvmConfig),
  };
}

/**
 * The assets of the lab this process runs in.
 * @throws XenLabError('setup') outside the lab (no `VMED_XEN_LAB_ASSETS`).
 */
export function labAssets(env: NodeJS.ProcessEnv = process.env): LabAssets {
  const dir = env.VMED_XEN_LAB_ASSETS;
  if (dir === undefined || dir === '') throw new XenLabError('setup', 'VMED_XEN_LAB_ASSETS is not set: this runs only inside the Xen lab\'s dom0');
  return labAssetsIn(dir);
}

/** True inside the lab's dom0 (`VMED_XEN_LAB=1`). */
export function inXenLab(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.VMED_XEN_LAB === '1';
}
