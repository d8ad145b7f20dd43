/**
 * PCI configuration register offsets and bits, named as in the PCI Local Bus 3.0 and PCI
 * Express 4.0 specifications (and Linux `include/uapi/linux/pci_regs.h`, whose spellings we
 * keep so that the two can be read side by side). Capability registers are relative to the
 * capability's offset.
 */

/** Size of a conventional PCI function's configuration space. */
export const PCI_CONFIG_SPACE_SIZE = 0x100;
/** Size of a PCI Express function's configuration space (extended space from 0x100). */
export const PCIE_CONFIG_SPACE_SIZE = 0x1000;
/** First offset a capability may use: the type-0 header ends at 0x3f. */
export const PCI_CAP_START = 0x40;
/** Where the extended capability list starts in PCI Express config space. */
export const PCIE_EXT_CAP_START = 0x100;

// ---- Type-0 header -------------------------------------------------------------------------

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
/** Programming interface, subclass, base class: the 24-bit class code from 0x09. */
export const PCI_CLASS_PROG = 0x09;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BIST = 0x0f;
export const PCI_BASE_ADDRESS_0 = 0x10;
/** Six BARs of a type-0 header, 0x10..0x27. */
export const PCI_NUM_BARS = 6;
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_MIN_GNT = 0x3e;
export const PCI_MAX_LAT = 0x3f;

/** Header type 0 (endpoint); bit 7 marks a multi-function device. */
export const PCI_HEADER_TYPE_NORMAL = 0x00;
export const PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80;

/** Offset of BAR `index` (0..5). */
export function pciBarRegister(index: number): number {
  return PCI_BASE_ADDRESS_0 + 4 * index;
}

// ---- Command register -------------------------------------------------------------------------

export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_SPECIAL = 0x0008;
export const PCI_COMMAND_INVALIDATE = 0x0010;
export const PCI_COMMAND_VGA_PALETTE = 0x0020;
export const PCI_COMMAND_PARITY = 0x0040;
export const PCI_COMMAND_WAIT = 0x0080;
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_FAST_BACK = 0x0200;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;

/** The command bits a vmed function implements; the rest are hardwired to 0. */
export const PCI_COMMAND_WRITABLE =
  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

// ---- Status register --------------------------------------------------------------------------

/** Interrupt Status: the function's INTx is pending (asserted unless Interrupt Disable). */
export const PCI_STATUS_INTERRUPT = 0x0008;
export const PCI_STATUS_CAP_LIST = 0x0010;
export const PCI_STATUS_66MHZ = 0x0020;
export const PCI_STATUS_FAST_BACK = 0x0080;
/** Master Data Parity Error. */
export const PCI_STATUS_PARITY = 0x0100;
export const PCI_STATUS_DEVSEL_MASK = 0x0600;
export const PCI_STATUS_SIG_TARGET_ABORT = 0x0800;
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000;
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000;
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
export const PCI_STATUS_DETECTED_PARITY = 0x8000;

/** Error bits of the status register: set by the function, cleared by writing 1 (RW1C). */
export const PCI_STATUS_ERROR_BITS =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

// ---- BARs --------------------------------------------------------------------------------------

export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_MEM_TYPE_32 = 0x00;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
/** Flag bits of a memory BAR (space, type, prefetchable): read-only. */
export const PCI_BASE_ADDRESS_MEM_FLAGS = 0x0f;
/** Flag bits of an I/O BAR (space, reserved). */
export const PCI_BASE_ADDRESS_IO_FLAGS = 0x03;

// ---- Capability list -------------------------------------------------------------------------

export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_FLAGS = 2;

export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;

// ---- Power management capability (PCI PM 1.2) ------------------------------------------------

/** Power Management Capabilities (PMC), 16 bits. */
export const PCI_PM_PMC = 2;
/** PMC version field: 3 is PCI PM 1.2. */
export const PCI_PM_CAP_VER_MASK = 0x0007;
export const PCI_PM_CAP_VER_1_2 = 0x0003;
/** Power Management Control/Status (PMCSR), 16 bits. */
export const PCI_PM_CTRL = 4;
export const PCI_PM_CTRL_STATE_MASK = 0x0003;
/** The function keeps its state on D3hot → D0 (no internal reset). */
export const PCI_PM_CTRL_NO_SOFT_RESET = 0x0008;
export const PCI_PM_CTRL_PME_ENABLE = 0x0100;
export const PCI_PM_CTRL_PME_STATUS = 0x8000;
/** PMCSR bridge extensions and data, 8 bits each. */
export const PCI_PM_PPB_EXTENSIONS = 6;
export const PCI_PM_DATA_REGISTER = 7;
export const PCI_PM_SIZEOF = 8;
export const PCI_D0 = 0;
export const PCI_D3HOT = 3;

// ---- MSI capability ----------------------------------------------------------------------------

/** Message Control, 16 bits. */
export const PCI_MSI_FLAGS = 2;
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
/** Multiple Message Capable: log2 of the vectors requested, bits 3:1. */
export const PCI_MSI_FLAGS_QMASK = 0x000e;
/** Multiple Message Enable: log2 of the vectors allocated, bits 6:4. */
export const PCI_MSI_FLAGS_QSIZE = 0x0070;
export const PCI_MSI_FLAGS_64BIT = 0x0080;
/** Per-vector masking capable. */
export const PCI_MSI_FLAGS_MASKBIT = 0x0100;
export const PCI_MSI_ADDRESS_LO = 4;
/** Only with a 64-bit address. */
export const PCI_MSI_ADDRESS_HI = 8;
export const PCI_MSI_DATA_32 = 8;
export const PCI_MSI_DATA_64 = 12;
export const PCI_MSI_MASK_32 = 12;
export const PCI_MSI_MASK_64 = 16;
export const PCI_MSI_PENDING_32 = 16;
export const PCI_MSI_PENDING_64 = 20;
/** Capability lengths: 32/64-bit address, without/with per-vector masking. */
export const PCI_MSI_SIZEOF_32 = 0x0a;
export const PCI_MSI_SIZEOF_64 = 0x0e;
export const PCI_MSI_SIZEOF_32_MASK = 0x14;
export const PCI_MSI_SIZEOF_64_MASK = 0x18;

// ---- MSI-X capability --------------------------------------------------------------------------

/** Message Control, 16 bits. */
export const PCI_MSIX_FLAGS = 2;
/** Table Size field: vectors − 1. */
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
/** Function Mask. */
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
/** Table Offset/BIR, 32 bits: BAR indicator in bits 2:0, QWORD-aligned offset above. */
export const PCI_MSIX_TABLE = 4;
/** PBA Offset/BIR, 32 bits. */
export const PCI_MSIX_PBA = 8;
export const PCI_MSIX_BIR_MASK = 0x7;
export const PCI_MSIX_SIZEOF = 12;
/** Most vectors a table may hold. */
export const PCI_MSIX_MAX_VECTORS = 2048;

/** MSI-X table entry: 16 bytes. */
export const PCI_MSIX_ENTRY_SIZE = 16;
export const PCI_MSIX_ENTRY_LOWER_ADDR = 0;
export const PCI_MSIX_ENTRY_UPPER_ADDR = 4;
export const PCI_MSIX_ENTRY_DATA = 8;
export const PCI_MSIX_ENTRY_VECTOR_CTRL = 12;
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;

// ---- PCI Express capability ------------------------------------------------------------------

/** PCI Express Capabilities register, 16 bits: version in 3:0, device/port type in 7:4. */
export const PCI_EXP_FLAGS = 2;
export const PCI_EXP_FLAGS_VERS_2 = 0x0002;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_DEVCAP = 4;
/** Role-based error reporting: every PCIe 1.1+ function sets it. */
export const PCI_EXP_DEVCAP_RBER = 0x00008000;
export const PCI_EXP_DEVCAP_FLR = 0x10000000;
export const PCI_EXP_DEVCTL = 8;
export const PCI_EXP_DEVCTL_CERE = 0x0001;
export const PCI_EXP_DEVCTL_NFERE = 0x0002;
export const PCI_EXP_DEVCTL_FERE = 0x0004;
export const PCI_EXP_DEVCTL_URRE = 0x0008;
export const PCI_EXP_DEVCTL_RELAX_EN = 0x0010;
export const PCI_EXP_DEVCTL_PAYLOAD = 0x00e0;
export const PCI_EXP_DEVCTL_NOSNOOP_EN = 0x0800;
export const PCI_EXP_DEVCTL_READRQ = 0x7000;
export const PCI_EXP_DEVCTL_READRQ_512B = 0x2000;
export const PCI_EXP_DEVSTA = 10;
/** Correctable, non-fatal, fatal, unsupported-request detected: RW1C. */
export const PCI_EXP_DEVSTA_ERRORS = 0x000f;
export const PCI_EXP_LNKCAP = 12;
export const PCI_EXP_LNKCAP_SLS_2_5GB = 0x00000001;
export const PCI_EXP_LNKCAP_MLW_X1 = 0x00000010;
export const PCI_EXP_LNKCTL = 16;
/** Read Completion Boundary. */
export const PCI_EXP_LNKCTL_RCB = 0x0008;
export const PCI_EXP_LNKCTL_CCC = 0x0040;
export const PCI_EXP_LNKCTL_ES = 0x0080;
export const PCI_EXP_LNKSTA = 18;
export const PCI_EXP_LNKSTA_CLS_2_5GB = 0x0001;
export const PCI_EXP_LNKSTA_NLW_X1 = 0x0010;
export const PCI_EXP_DEVCAP2 = 36;
export const PCI_EXP_DEVCTL2 = 40;
export const PCI_EXP_DEVSTA2 = 42;
export const PCI_EXP_LNKCAP2 = 44;
/** Supported Link Speeds Vector: bit 1 is 2.5 GT/s. */
export const PCI_EXP_LNKCAP2_SLS_2_5GB = 0x00000002;
export const PCI_EXP_LNKCTL2 = 48;
/** Target Link Speed, bits 3:0. */
export const PCI_EXP_LNKCTL2_TLS = 0x000f;
export const PCI_EXP_LNKSTA2 = 50;
/** Length of a version-2 PCI Express capability, slot registers 2 included (as QEMU). */
export const PCI_EXP_VER2_SIZEOF = 0x3c;

// ---- Class codes -------------------------------------------------------------------------------

/** Bridge device, host bridge. */
export const PCI_CLASS_BRIDGE_HOST = 0x060000;
