/**
 * The Power Management capability (PCI PM 1.2, version field 3) with D0 and D3hot only: the
 * guest writes PowerState in PMCSR; a write naming D1 or D2, which the function does not
 * support, completes but leaves the state unchanged, as the PM spec requires. No_Soft_Reset
 * is set, so returning from D3hot keeps the configuration (no internal reset). In D3hot the
 * function answers configuration accesses only: its BARs stop decoding.
 */
import type { CapabilityListBuilder } from './capabilities.js';
import type { ConfigSpace } from './config-space.js';
import {
  PCI_CAP_ID_PM,
  PCI_D0,
  PCI_D3HOT,
  PCI_PM_CAP_VER_1_2,
  PCI_PM_CTRL,
  PCI_PM_CTRL_NO_SOFT_RESET,
  PCI_PM_CTRL_STATE_MASK,
  PCI_PM_PMC,
  PCI_PM_SIZEOF,
} from './registers.js';

/** One function's power management capability. */
export class PowerManagementCapability {
  readonly length = PCI_PM_SIZEOF;

  private constructor(
    private readonly space: ConfigSpace,
    readonly offset: number,
  ) {}

  static install(space: ConfigSpace, builder: CapabilityListBuilder): PowerManagementCapability {
    const offset = builder.add(PCI_CAP_ID_PM, PCI_PM_SIZEOF);
    space.set16(offset + PCI_PM_PMC, PCI_PM_CAP_VER_1_2);
    space.set16(offset + PCI_PM_CTRL, PCI_PM_CTRL_NO_SOFT_RESET | PCI_D0);
    space.setWritable(offset + PCI_PM_CTRL, 2, PCI_PM_CTRL_STATE_MASK);
    return new PowerManagementCapability(space, offset);
  }

  /** 0 (D0) or 3 (D3hot). */
  get powerState(): number {
    return this.space.get16(this.offset + PCI_PM_CTRL) & PCI_PM_CTRL_STATE_MASK;
  }

  /** After a guest write: puts back `previous` if the guest asked for an unsupported state. */
  refuseUnsupportedState(previous: number): void {
    const state = this.powerState;
    if (state === PCI_D0 || state === PCI_D3HOT) return;
    const control = this.space.get16(this.offset + PCI_PM_CTRL);
    this.space.set16(this.offset + PCI_PM_CTRL, (control & ~PCI_PM_CTRL_STATE_MASK) | previous);
  }

  /** Why a saved image is not a state this capability can be in, or `undefined`. */
  checkImage(image: Uint8Array): string | undefined {
    const state = ((image[this.offset + PCI_PM_CTRL] ?? 0) & PCI_PM_CTRL_STATE_MASK);
    return state === PCI_D0 || state === PCI_D3HOT ? undefined : `power state D${state} is not supported`;
  }
}
