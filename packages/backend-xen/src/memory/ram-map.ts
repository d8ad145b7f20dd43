/**
 * The guest's RAM map, which every guest-supplied address is checked against before a frame
 * is mapped. Given explicitly (option `ram`) or derived from the domain's maximum memory in
 * xenstore (`/local/domain/<domid>/memory/static-max`, KiB) with libxl's default layout for
 * HVM and PVH guests: RAM from 0 up to the 256 MiB MMIO hole below 4 GiB, the rest above 4 GiB.
 * The derived map may include frames the guest ballooned out or that are not populated;
 * mapping those fails cleanly (`Io`), and no host memory is ever reachable either way.
 */
import { InvalidError, RangeSet, guestAddress, type RamRegion } from '@vmed/core';

/** libxl's default start of the MMIO hole below 4 GiB (`HVM_BELOW_4G_MMIO_START`). */
export const LOW_MEMORY_END = 0xf000_0000n;
const FOUR_GIB = 1n << 32n;

/** A RAM region as an option gives it. */
export interface RamRegionOption {
  readonly base: bigint | number;
  readonly length: bigint | number;
  readonly name?: string;
}

/** The RAM map of a guest with `bytes` of memory in libxl's default layout. */
export function defaultRamMap(bytes: bigint): RangeSet<RamRegion> {
  if (bytes <= 0n) throw new InvalidError('xen.ramMap', `guest memory size ${bytes} is not positive`);
  const low = bytes < LOW_MEMORY_END ? bytes : LOW_MEMORY_END;
  const regions: RamRegion[] = [{ base: guestAddress(0), length: low, name: 'low' }];
  if (bytes > low) regions.push({ base: guestAddress(FOUR_GIB), length: bytes - low, name: 'high' });
  return new RangeSet(regions, 'xen.ramMap');
}

/** Validates an explicit RAM map (sorted, non-overlapping, non-empty regions). */
export function ramMapFromOption(regions: readonly RamRegionOption[]): RangeSet<RamRegion> {
  if (regions.length === 0) throw new InvalidError('xen.ramMap', 'the ram option lists no region');
  return new RangeSet(
    regions.map((r, i) => ({
      base: guestAddress(r.base, 'xen.ramMap'),
      length: typeof r.length === 'bigint' ? r.length : BigInt(r.length),
      name: r.name ?? `ram${i}`,
    })),
    'xen.ramMap',
  );
}

/** Parses a xenstore memory value (decimal KiB) into bytes; `undefined` for anything else. */
export function parseMemoryKib(value: string | undefined): bigint | undefined {
  if (value === undefined || !/^\d{1,15}$/.test(value.trim())) return undefined;
  const kib = BigInt(value.trim());
  return kib > 0n ? kib * 1024n : undefined;
}
