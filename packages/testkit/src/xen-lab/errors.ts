import { VmedError } from '@vmed/core';
import type { VmedErrorCode, VmedErrorDetails } from '@vmed/core';

/**
 * Where a lab run stopped: `setup` (host packages, paths), `build` (kernel, xen, initramfs),
 * `boot` (Xen or dom0 did not come up), `timeout`, `aborted` (a signal), `toolstack` (an `xl`
 * call in dom0 failed), `guest` (a domU went away — crashed or powered off — before printing
 * what was waited for).
 */
export type XenLabStage = 'setup' | 'build' | 'boot' | 'timeout' | 'aborted' | 'toolstack' | 'guest';

const CODES: Record<XenLabStage, VmedErrorCode> = {
  setup: 'Unsupported',
  build: 'Io',
  boot: 'Io',
  timeout: 'Io',
  aborted: 'State',
  toolstack: 'Io',
  guest: 'Io',
};

/** A lab run that could not produce the command's own exit status. */
export class XenLabError extends VmedError {
  override readonly name = 'XenLabError';
  readonly stage: XenLabStage;

  constructor(stage: XenLabStage, message: string, details?: VmedErrorDetails) {
    super(CODES[stage], `xenLab.${stage}`, message, details);
    this.stage = stage;
  }
}
