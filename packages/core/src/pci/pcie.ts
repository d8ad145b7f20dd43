/**
 * The PCI Express capability of an endpoint (capability version 2): a 2.5 GT/s x1 link that
 * is always up, device control with the usual enables, and RW1C error status. Function Level
 * Reset is not advertised: a guest resets the function through the core, not through
 * Device Control. The extended capability list at 0x100 is empty (its header reads 0).
 */
import type { CapabilityListBuilder } from './capabilities.js';
import type { ConfigSpace } from './config-space.js';
import {
  PCI_CAP_ID_EXP,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_RBER,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_CERE,
  PCI_EXP_DEVCTL_FERE,
  PCI_EXP_DEVCTL_NFERE,
  PCI_EXP_DEVCTL_NOSNOOP_EN,
  PCI_EXP_DEVCTL_PAYLOAD,
  PCI_EXP_DEVCTL_READRQ,
  PCI_EXP_DEVCTL_READRQ_512B,
  PCI_EXP_DEVCTL_RELAX_EN,
  PCI_EXP_DEVCTL_URRE,
  PCI_EXP_DEVSTA,
  PCI_EXP_DEVSTA_ERRORS,
  PCI_EXP_FLAGS,
  PCI_EXP_FLAGS_VERS_2,
  PCI_EXP_LNKCAP,
  PCI_EXP_LNKCAP2,
  PCI_EXP_LNKCAP2_SLS_2_5GB,
  PCI_EXP_LNKCAP_MLW_X1,
  PCI_EXP_LNKCAP_SLS_2_5GB,
  PCI_EXP_LNKCTL,
  PCI_EXP_LNKCTL2,
  PCI_EXP_LNKCTL2_TLS,
  PCI_EXP_LNKCTL_CCC,
  PCI_EXP_LNKCTL_ES,
  PCI_EXP_LNKCTL_RCB,
  PCI_EXP_LNKSTA,
  PCI_EXP_LNKSTA_CLS_2_5GB,
  PCI_EXP_LNKSTA_NLW_X1,
  PCI_EXP_TYPE_ENDPOINT,
  PCI_EXP_VER2_SIZEOF,
} from './registers.js';

const DEVCTL_WRITABLE =
  PCI_EXP_DEVCTL_CERE |
  PCI_EXP_DEVCTL_NFERE |
  PCI_EXP_DEVCTL_FERE |
  PCI_EXP_DEVCTL_URRE |
  PCI_EXP_DEVCTL_RELAX_EN |
  PCI_EXP_DEVCTL_PAYLOAD |
  PCI_EXP_DEVCTL_NOSNOOP_EN |
  PCI_EXP_DEVCTL_READRQ;

/** Places the PCI Express capability; returns its offset. */
export function installPcieCapability(space: ConfigSpace, builder: CapabilityListBuilder): number {
  const offset = builder.add(PCI_CAP_ID_EXP, PCI_EXP_VER2_SIZEOF);
  space.set16(offset + PCI_EXP_FLAGS, PCI_EXP_FLAGS_VERS_2 | (PCI_EXP_TYPE_ENDPOINT << 4));
  // 128-byte max payload (field 0), no extended tags, no FLR.
  space.set32(offset + PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_RBER);
  // The spec's reset values: relaxed ordering and no snoop enabled, 512-byte read requests.
  space.set16(offset + PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ_512B);
  space.setWritable(offset + PCI_EXP_DEVCTL, 2, DEVCTL_WRITABLE);
  space.setClearable(offset + PCI_EXP_DEVSTA, 2, PCI_EXP_DEVSTA_ERRORS);
  space.set32(offset + PCI_EXP_LNKCAP, PCI_EXP_LNKCAP_SLS_2_5GB | PCI_EXP_LNKCAP_MLW_X1);
  space.setWritable(offset + PCI_EXP_LNKCTL, 2, PCI_EXP_LNKCTL_RCB | PCI_EXP_LNKCTL_CCC | PCI_EXP_LNKCTL_ES);
  space.set16(offset + PCI_EXP_LNKSTA, PCI_EXP_LNKSTA_CLS_2_5GB | PCI_EXP_LNKSTA_NLW_X1);
  space.set32(offset + PCI_EXP_LNKCAP2, PCI_EXP_LNKCAP2_SLS_2_5GB);
  space.set16(offset + PCI_EXP_LNKCTL2, PCI_EXP_LNKSTA_CLS_2_5GB);
  space.setWritable(offset + PCI_EXP_LNKCTL2, 2, PCI_EXP_LNKCTL2_TLS);
  return offset;
}
