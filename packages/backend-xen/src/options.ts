/**
 * The Xen backend's section of the mediator config (`config.xen`), validated once.
 */
import { InvalidError, type RamRegion, type RangeSet } from '@vmed/core';
import { DOMID_FIRST_RESERVED } from './abi/xen.js';
import type { XenGuestType } from './guest.js';
import type { WaitMode } from './ioreq/waiter.js';
import { ramMapFromOption, type RamRegionOption } from './memory/ram-map.js';

/** Options of {@link createBackend}. */
export interface XenBackendOptions {
  /** The guest's domain id (1..0x7fef). The guest should be paused until the device is ready. */
  readonly domid: number;
  /**
   * `hvm` or `pvh`. Read from xenstore (`/libxl/<domid>/type`) when absent. Decides whether
   * line interrupts exist: never on PVH (no emulated PIC/IOAPIC; Xen 4.17 panics).
   */
  readonly guestType?: XenGuestType;
  /**
   * Deprivilege after setup: `xendevicemodel_restrict` and `xenforeignmemory_restrict` to the
   * domid, so a compromised device model can touch no other domain. Default true.
   */
  readonly restrict?: boolean;
  /** Ask Xen for a buffered ioreq ring (`HVM_IOREQSRV_BUFIOREQ_ATOMIC`). Default true. */
  readonly bufferedIoreqs?: boolean;
  /** The guest's RAM map. Default: from xenstore `memory/static-max` in libxl's layout. */
  readonly ram?: readonly RamRegionOption[];
  /**
   * How the I/O thread waits for event channels (see `ioreq/waiter.ts`): `inline` (default,
   * fastest: polls on the I/O thread, holding the event loop up to `idlePollMs` per turn) or
   * `worker` (a poller thread; the event loop is never held, each request costs a thread hop).
   */
  readonly wait?: WaitMode;
  /** `inline` waiting: longest sleep in poll(2) per event-loop turn, ms. Default 1. */
  readonly idlePollMs?: number;
  /** Idle 1 MiB guest-memory mappings kept cached. Default 64. */
  readonly mapCacheBuckets?: number;
  /**
   * Where event channels for the guest are published: `<path>/evtchn/<n>` = port. Default
   * `/local/domain/<domid>/data/vmed` (readable by the guest).
   */
  readonly xenstorePath?: string;
  /** Tear the session down on SIGINT/SIGTERM, uncaught exceptions and exit. Default true. */
  readonly teardownOnExit?: boolean;
  /**
   * Watch this process from a helper process (`watchdog/`), which destroys the IOREQ server if
   * the process dies without closing the session — SIGKILL, the OOM killer — so the guest is
   * not left waiting on a dead server. One helper serves every session of the process. Default true.
   */
  readonly watchdog?: boolean;
  /** Map the ioreq pages the legacy way (gfns) even where resource mapping works. Default false. */
  readonly legacyPageMapping?: boolean;
  /** Told about bad guest requests (answered all-ones/dropped) and handler failures. */
  readonly onFault?: (error: Error) => void;
}

/** Options after validation, defaults applied. */
export interface ResolvedXenOptions {
  readonly domid: number;
  readonly guestType: XenGuestType | undefined;
  readonly restrict: boolean;
  readonly bufferedIoreqs: boolean;
  readonly ram: RangeSet<RamRegion> | undefined;
  readonly wait: WaitMode;
  readonly idlePollMs: number;
  readonly mapCacheBuckets: number;
  readonly xenstorePath: string;
  readonly teardownOnExit: boolean;
  readonly watchdog: boolean;
  readonly legacyPageMapping: boolean;
  readonly onFault: ((error: Error) => void) | undefined;
}

const OP = 'xen.options';
const KNOWN = new Set([
  'domid',
  'guestType',
  'restrict',
  'bufferedIoreqs',
  'ram',
  'wait',
  'idlePollMs',
  'mapCacheBuckets',
  'xenstorePath',
  'teardownOnExit',
  'watchdog',
  'legacyPageMapping',
  'onFault',
]);

function bool(raw: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = raw[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new InvalidError(OP, `${key} must be a boolean`);
  return v;
}

function int(raw: Record<string, unknown>, key: string, fallback: number, min: number, max: number): number {
  const v = raw[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidError(OP, `${key} must be an integer in ${min}..${max}`);
  return v;
}

/** Validates the raw config section; unknown keys are refused (a typo must not go unnoticed). */
export function resolveXenOptions(raw: Record<string, unknown>): ResolvedXenOptions {
  if (raw === null || typeof raw !== 'object') throw new InvalidError(OP, 'options must be an object');
  for (const key of Object.keys(raw)) if (!KNOWN.has(key)) throw new InvalidError(OP, `unknown option ${key}`);
  const domid = raw['domid'];
  if (typeof domid !== 'number' || !Number.isInteger(domid) || domid < 1 || domid >= DOMID_FIRST_RESERVED) {
    throw new InvalidError(OP, `domid must be a guest domain id (1..${DOMID_FIRST_RESERVED - 1}), got ${String(domid)}`);
  }
  const guestType = raw['guestType'];
  if (guestType !== undefined && guestType !== 'hvm' && guestType !== 'pvh') throw new InvalidError(OP, "guestType must be 'hvm' or 'pvh'");
  const wait = raw['wait'];
  if (wait !== undefined && wait !== 'worker' && wait !== 'inline') throw new InvalidError(OP, "wait must be 'worker' or 'inline'");
  const ram = raw['ram'];
  if (ram !== undefined && !Array.isArray(ram)) throw new InvalidError(OP, 'ram must be an array of { base, length }');
  const xenstorePath = raw['xenstorePath'] ?? `/local/domain/${domid}/data/vmed`;
  if (typeof xenstorePath !== 'string' || !xenstorePath.startsWith('/') || xenstorePath.endsWith('/')) {
    throw new InvalidError(OP, 'xenstorePath must be an absolute xenstore path without a trailing slash');
  }
  const onFault = raw['onFault'];
  if (onFault !== undefined && typeof onFault !== 'function') throw new InvalidError(OP, 'onFault must be a function');
  return {
    domid,
    guestType,
    restrict: bool(raw, 'restrict', true),
    bufferedIoreqs: bool(raw, 'bufferedIoreqs', true),
    ram: ram === undefined ? undefined : ramMapFromOption(ram as RamRegionOption[]),
    wait: wait ?? 'inline',
    idlePollMs: int(raw, 'idlePollMs', 1, 0, 100),
    mapCacheBuckets: int(raw, 'mapCacheBuckets', 64, 0, 4096),
    xenstorePath,
    teardownOnExit: bool(raw, 'teardownOnExit', true),
    watchdog: bool(raw, 'watchdog', true),
    legacyPageMapping: bool(raw, 'legacyPageMapping', false),
    onFault: onFault as ((error: Error) => void) | undefined,
  };
}
