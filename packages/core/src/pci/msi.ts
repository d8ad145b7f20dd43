/**
 * The MSI capability (PCI Local Bus 3.0 §6.8.1): message control, a 32- or 64-bit message
 * address, 16-bit message data and, with per-vector masking, mask and pending registers.
 *
 * With several messages enabled, vector `v` is signalled with the programmed data whose low
 * log2(enabled) bits are replaced by `v`. A guest that writes a Multiple Message Enable above
 * Multiple Message Capable gets the capable value (the field is clamped, as QEMU does).
 * The pending register is read-only to the guest; the function fills it from its routes.
 */
import type { MsiMessage } from '../backend/interrupts.js';
import type { MsiDefinition } from '../device/model.js';
import { InvalidError } from '../errors.js';
import type { CapabilityListBuilder } from './capabilities.js';
import type { ConfigSpace } from './config-space.js';
import {
  PCI_CAP_ID_MSI,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_32,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_64BIT,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_MASKBIT,
  PCI_MSI_FLAGS_QMASK,
  PCI_MSI_FLAGS_QSIZE,
  PCI_MSI_MASK_32,
  PCI_MSI_MASK_64,
  PCI_MSI_PENDING_32,
  PCI_MSI_PENDING_64,
  PCI_MSI_SIZEOF_32,
  PCI_MSI_SIZEOF_32_MASK,
  PCI_MSI_SIZEOF_64,
  PCI_MSI_SIZEOF_64_MASK,
} from './registers.js';

const VALID_VECTOR_COUNTS = [1, 2, 4, 8, 16, 32];

/** One function's MSI capability, reading its state from the config space it lives in. */
export class MsiCapability {
  /** Vectors the function asks for (Multiple Message Capable). */
  readonly capable: number;
  readonly address64: boolean;
  readonly perVectorMask: boolean;
  readonly length: number;
  private readonly dataRegister: number;
  private readonly maskRegister: number | undefined;
  /** Offset of the pending register, when per-vector masking is implemented. */
  readonly pendingRegister: number | undefined;

  private constructor(
    private readonly space: ConfigSpace,
    readonly offset: number,
    definition: MsiDefinition,
  ) {
    this.capable = definition.vectors;
    this.address64 = definition.address64;
    this.perVectorMask = definition.perVectorMask;
    this.length = msiLength(definition);
    this.dataRegister = offset + (this.address64 ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32);
    this.maskRegister = this.perVectorMask ? offset + (this.address64 ? PCI_MSI_MASK_64 : PCI_MSI_MASK_32) : undefined;
    this.pendingRegister = this.perVectorMask ? offset + (this.address64 ? PCI_MSI_PENDING_64 : PCI_MSI_PENDING_32) : undefined;
  }

  /** Checks `definition`, places the capability and declares its writable bits. */
  static install(space: ConfigSpace, builder: CapabilityListBuilder, definition: MsiDefinition): MsiCapability {
    if (!VALID_VECTOR_COUNTS.includes(definition.vectors)) {
      throw new InvalidError('pci.msi', `MSI vectors ${String(definition.vectors)} is not 1, 2, 4, 8, 16 or 32`);
    }
    const offset = builder.add(PCI_CAP_ID_MSI, msiLength(definition));
    const cap = new MsiCapability(space, offset, definition);
    const flags =
      (Math.log2(cap.capable) << 1) |
      (cap.address64 ? PCI_MSI_FLAGS_64BIT : 0) |
      (cap.perVectorMask ? PCI_MSI_FLAGS_MASKBIT : 0);
    space.set16(offset + PCI_MSI_FLAGS, flags);
    space.setWritable(offset + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
    // Message address bits 1:0 are hardwired 0 (dword-aligned writes).
    space.setWritable(offset + PCI_MSI_ADDRESS_LO, 4, 0xfffffffc);
    if (cap.address64) space.setWritable(offset + PCI_MSI_ADDRESS_HI, 4, 0xffffffff);
    space.setWritable(cap.dataRegister, 2, 0xffff);
    if (cap.maskRegister !== undefined) space.setWritable(cap.maskRegister, 4, cap.vectorBits);
    return cap;
  }

  /** Bits of the mask/pending registers that name an implemented vector. */
  get vectorBits(): number {
    return this.capable === 32 ? 0xffffffff : (1 << this.capable) - 1;
  }

  private get flags(): number {
    return this.space.get16(this.offset + PCI_MSI_FLAGS);
  }

  get enabled(): boolean {
    return (this.flags & PCI_MSI_FLAGS_ENABLE) !== 0;
  }

  /** Vectors allocated by the guest (Multiple Message Enable). */
  get enabledVectors(): number {
    return 1 << ((this.flags & PCI_MSI_FLAGS_QSIZE) >>> 4);
  }

  /** The message of vector `vector` (< {@link enabledVectors}) as the guest programmed it. */
  message(vector: number): MsiMessage {
    const low = this.space.get32(this.offset + PCI_MSI_ADDRESS_LO);
    const high = this.address64 ? this.space.get32(this.offset + PCI_MSI_ADDRESS_HI) : 0;
    const span = this.enabledVectors;
    const data = this.space.get16(this.dataRegister);
    return {
      address: (BigInt(high) << 32n) | BigInt(low),
      data: (data & ~(span - 1)) | (vector & (span - 1)),
    };
  }

  /** The guest's per-vector mask bit (false without per-vector masking). */
  vectorMasked(vector: number): boolean {
    if (this.maskRegister === undefined) return false;
    return ((this.space.get32(this.maskRegister) >>> vector) & 1) === 1;
  }

  /** Writes the pending register (device side) before the guest reads it. */
  setPendingBits(bits: number): void {
    if (this.pendingRegister !== undefined) this.space.set32(this.pendingRegister, bits & this.vectorBits);
  }

  /** Clamps Multiple Message Enable to Multiple Message Capable after a guest write. */
  clampEnabledVectors(): void {
    const flags = this.flags;
    const capableLog = (flags & PCI_MSI_FLAGS_QMASK) >>> 1;
    if ((flags & PCI_MSI_FLAGS_QSIZE) >>> 4 > capableLog) {
      this.space.set16(this.offset + PCI_MSI_FLAGS, (flags & ~PCI_MSI_FLAGS_QSIZE) | (capableLog << 4));
    }
  }

  /** Why a saved config image is not a state this capability can be in, or `undefined`. */
  checkImage(image: Uint8Array): string | undefined {
    const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
    const flags = view.getUint16(this.offset + PCI_MSI_FLAGS, true);
    if ((flags & PCI_MSI_FLAGS_QSIZE) >>> 4 > Math.log2(this.capable)) return 'MSI Multiple Message Enable exceeds Capable';
    return undefined;
  }
}

function msiLength(definition: MsiDefinition): number {
  if (definition.perVectorMask) return definition.address64 ? PCI_MSI_SIZEOF_64_MASK : PCI_MSI_SIZEOF_32_MASK;
  return definition.address64 ? PCI_MSI_SIZEOF_64 : PCI_MSI_SIZEOF_32;
}
