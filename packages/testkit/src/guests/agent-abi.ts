/**
 * The guest agent's mailbox ABI: how a host drives `guests/agent` through guest RAM. The
 * source of truth is `guests/agent/abi.inc`; `test/guests/abi.test.ts` parses it and fails
 * when a value here disagrees.
 *
 * Protocol, per vCPU (each of at most 4 vCPUs polls its own mailbox):
 * 1. Wait until the runtime page says `RT_MAGIC == RT_READY` and the vCPU's bit is set in
 *    `RT_ONLINE_MASK` (see `runtime-abi.ts`). Boot zeroes the mailboxes, so a command posted
 *    earlier may be lost.
 * 2. Write `op`, `size`, `address`, `value`; then store `seq + 1` into `seq` as a release
 *    store (the fields must be visible before `seq`).
 * 3. Wait until `ack == seq` (the guest stores `ack` last), then read `status` and `result`.
 *
 * From JavaScript, make the `seq` store and the `ack` load `Atomics.store` / `Atomics.load`
 * on an `Int32Array` over the mapped RAM, so that neither the engine nor the CPU moves the
 * field accesses across them.
 *
 * The agent runs one command at a time per vCPU, with interrupts as the last STI/CLI left
 * them (enabled at boot). It reaches only the low 4 GiB (paging is off): an address whose
 * upper 32 bits are set is refused with {@link AGENT_STATUS_BAD_ADDRESS}. An 8-byte MMIO
 * access is one access (MMX `movq`), which KVM's emulator and Xen's both forward as a single
 * 8-byte request.
 * @module
 */
import { InvalidError, type PciAddress } from '@vmed/core';
import { checkGuestVcpu } from './runtime-abi.js';

export const AGENT_MAILBOX_ADDR = 0x0002_3000;
export const AGENT_MAILBOX_STRIDE = 0x40;
/** u32: the host increments it to post a command. */
export const AGENT_MB_SEQ = 0x00;
/** u32: the guest copies `seq` here when the command is done. */
export const AGENT_MB_ACK = 0x04;
export const AGENT_MB_OP = 0x08;
export const AGENT_MB_SIZE = 0x0c;
/** u64. */
export const AGENT_MB_ADDRESS = 0x10;
/** u64. */
export const AGENT_MB_VALUE = 0x18;
/** u64, written by the guest. */
export const AGENT_MB_RESULT = 0x20;
/** u32, written by the guest: `AGENT_STATUS_*`. */
export const AGENT_MB_STATUS = 0x28;
/** u32: how many commands this mailbox has completed. */
export const AGENT_MB_COUNT = 0x2c;

/** RAM the host may let commands scribble on (outside the agent's own footprint). */
export const AGENT_SCRATCH_ADDR = 0x0010_0000;
export const AGENT_SCRATCH_SIZE = 0x0010_0000;

export const AGENT_OP_NOP = 0;
/** size 1/2/4/8 at address → result (zero-extended). */
export const AGENT_OP_MMIO_READ = 1;
export const AGENT_OP_MMIO_WRITE = 2;
/** size 1/2/4 from port = address → result. */
export const AGENT_OP_PIO_READ = 3;
export const AGENT_OP_PIO_WRITE = 4;
/** address = {@link agentConfigAddress}; register aligned to size 1/2/4. */
export const AGENT_OP_CFG_READ = 5;
export const AGENT_OP_CFG_WRITE = 6;
export const AGENT_OP_STI = 7;
export const AGENT_OP_CLI = 8;
/**
 * pin = address, value = {@link ioapicRouteValue}; where an IOAPIC answers (KVM, Xen HVM):
 * on Xen PVH, which has none, {@link AGENT_STATUS_UNSUPPORTED}.
 */
export const AGENT_OP_IOAPIC_ROUTE = 9;
/** size bytes at address: byte i = (value + i) & 0xff ({@link ramFillPattern}). */
export const AGENT_OP_RAM_FILL = 10;
/** size bytes at address → result = FNV-1a 32 ({@link fnv1a32}). */
export const AGENT_OP_RAM_CHECKSUM = 11;
/** result = the vCPU's LAPIC ID. */
export const AGENT_OP_APIC_ID = 12;
/** One `hlt` with interrupts enabled: acknowledged after the next interrupt. */
export const AGENT_OP_HLT = 13;
/** Ends the run: the done port gets value (PVH: then SCHEDOP_shutdown). Acknowledged first. */
export const AGENT_OP_DONE = 14;
/**
 * Xen only: address = a port of domain `value` (dom0: 0) left unbound for this guest →
 * result = the local port (`EVTCHNOP_bind_interdomain`), bound to this vCPU and unmasked. The
 * first event-channel op of a vCPU maps shared_info at {@link AGENT_SHARED_INFO_ADDR} and sets
 * its upcall vector ({@link AGENT_EVTCHN_VECTOR}); the handler counts notifications per port
 * ({@link agentEvtchnCounterAddress}). A local port ≥ {@link AGENT_EVTCHN_PORTS} is closed
 * again and refused as unsupported. Elsewhere (KVM): {@link AGENT_STATUS_UNSUPPORTED}.
 */
export const AGENT_OP_EVTCHN_BIND = 15;
/** Xen only: address = local port → `EVTCHNOP_close`. */
export const AGENT_OP_EVTCHN_CLOSE = 16;
/** Xen only: address = local port → result = `EVTCHNOP_status` ({@link decodeAgentEvtchnStatus}). */
export const AGENT_OP_EVTCHN_STATUS = 17;
/** Xen only: address = local port → `EVTCHNOP_send` (notifies the remote end). */
export const AGENT_OP_EVTCHN_SEND = 18;
export const AGENT_OP_COUNT = 19;

export const AGENT_STATUS_OK = 0;
export const AGENT_STATUS_BAD_OP = 1;
export const AGENT_STATUS_BAD_SIZE = 2;
export const AGENT_STATUS_BAD_ADDRESS = 3;
/** The platform lacks it, e.g. IOAPIC_ROUTE on Xen PVH. */
export const AGENT_STATUS_UNSUPPORTED = 4;
/** Another argument is out of range. */
export const AGENT_STATUS_INVALID = 5;
/** Xen refused the hypercall: result = its return value, a negative errno. */
export const AGENT_STATUS_HYPERCALL = 6;

export const AGENT_IOAPIC_ACTIVE_LOW = 0x2000;
export const AGENT_IOAPIC_LEVEL = 0x8000;
export const AGENT_IOAPIC_MASKED = 0x1_0000;

/** At most this many bytes per RAM_FILL or RAM_CHECKSUM. */
export const AGENT_RAM_FILL_MAX = 0x0100_0000;

/** The IDT vector of the agent's event-channel upcall; `IRQ_COUNTS` counts its runs. */
export const AGENT_EVTCHN_VECTOR = 0xf0;
/** Ports 0..AGENT_EVTCHN_PORTS-1 have a notification counter. */
export const AGENT_EVTCHN_PORTS = 512;
/** u32 per port: notifications the upcall handler took (in the program page). */
export const AGENT_EVTCHN_COUNTS_ADDR = 0x0002_3800;
/** Where the agent maps Xen's shared_info (a free page of its own footprint). */
export const AGENT_SHARED_INFO_ADDR = 0x0002_4000;
/** Xen's `EVTCHNSTAT_closed`. */
export const AGENT_EVTCHN_STAT_CLOSED = 0;
/** Xen's `EVTCHNSTAT_unbound`: waiting for a domain to bind it (also what a port becomes when its remote end closes). */
export const AGENT_EVTCHN_STAT_UNBOUND = 1;
/** Xen's `EVTCHNSTAT_interdomain`: connected to a port of another domain. */
export const AGENT_EVTCHN_STAT_INTERDOMAIN = 2;

/**
 * Guest address of the notification counter of local `port`.
 * @throws InvalidError unless `port` is 0..AGENT_EVTCHN_PORTS-1.
 */
export function agentEvtchnCounterAddress(port: number): number {
  checkField('agent.evtchnCounterAddress', 'port', port, AGENT_EVTCHN_PORTS - 1);
  return AGENT_EVTCHN_COUNTS_ADDR + 4 * port;
}

/** An event channel's state as EVTCHN_STATUS reports it. */
export interface AgentEvtchnStatus {
  readonly state: 'closed' | 'unbound' | 'interdomain' | 'other';
  /** The raw `EVTCHNSTAT_*` value. */
  readonly status: number;
  /** Interdomain: the remote port. Unbound: the domain allowed to bind it. Otherwise 0. */
  readonly remote: number;
}

/** Decodes an EVTCHN_STATUS result: status in bits 0..31, the remote port or domain above. */
export function decodeAgentEvtchnStatus(result: bigint): AgentEvtchnStatus {
  const status = Number(result & 0xffff_ffffn);
  const remote = Number((result >> 32n) & 0xffff_ffffn);
  const state =
    status === AGENT_EVTCHN_STAT_CLOSED ? 'closed' : status === AGENT_EVTCHN_STAT_UNBOUND ? 'unbound' : status === AGENT_EVTCHN_STAT_INTERDOMAIN ? 'interdomain' : 'other';
  return { state, status, remote: state === 'closed' ? 0 : remote };
}

/** One command as the host writes it into a mailbox. */
export interface AgentCommand {
  readonly op: number;
  readonly size: number;
  readonly address: bigint;
  readonly value: bigint;
}

const STATUS_NAMES: Readonly<Record<number, string>> = {
  [AGENT_STATUS_OK]: 'ok',
  [AGENT_STATUS_BAD_OP]: 'bad op',
  [AGENT_STATUS_BAD_SIZE]: 'bad size',
  [AGENT_STATUS_BAD_ADDRESS]: 'bad address',
  [AGENT_STATUS_UNSUPPORTED]: 'unsupported',
  [AGENT_STATUS_INVALID]: 'invalid argument',
  [AGENT_STATUS_HYPERCALL]: 'hypercall refused',
};

/** A readable name for an `AGENT_STATUS_*` value (unknown values are shown in hex). */
export function agentStatusName(status: number): string {
  return STATUS_NAMES[status] ?? `unknown status 0x${status.toString(16)}`;
}

/**
 * Guest address of vCPU `vcpu`'s mailbox.
 * @throws InvalidError unless `vcpu` is 0..3.
 */
export function agentMailboxAddress(vcpu: number): number {
  checkGuestVcpu(vcpu, 'agent.mailboxAddress');
  return AGENT_MAILBOX_ADDR + vcpu * AGENT_MAILBOX_STRIDE;
}

/**
 * The mailbox `address` of a config command: `bus << 16 | device << 11 | function << 8 |
 * register`, the 0xCF8 layout without its enable bit (segment 0 only: mechanism #1 has no
 * segments, and it reaches registers 0..255 only).
 * @throws InvalidError for a non-zero segment or an out-of-range field.
 */
export function agentConfigAddress(device: PciAddress, register: number): bigint {
  const op = 'agent.configAddress';
  if ((device.segment ?? 0) !== 0) throw new InvalidError(op, `segment ${device.segment} is not reachable through 0xcf8`);
  checkField(op, 'bus', device.bus, 0xff);
  checkField(op, 'device', device.device, 0x1f);
  checkField(op, 'function', device.function, 7);
  checkField(op, 'register', register, 0xff);
  return BigInt((device.bus << 16) | (device.device << 11) | (device.function << 8) | register);
}

/** Options of an IOAPIC_ROUTE command; the defaults are edge-triggered, active-high, unmasked. */
export interface IoapicRouteOptions {
  readonly trigger?: 'edge' | 'level';
  readonly activeLow?: boolean;
  readonly masked?: boolean;
}

/**
 * The mailbox `value` of an IOAPIC_ROUTE command.
 * @throws InvalidError unless `vector` is 32..254.
 */
export function ioapicRouteValue(vector: number, options: IoapicRouteOptions = {}): bigint {
  if (!Number.isInteger(vector) || vector < 32 || vector > 0xfe) {
    throw new InvalidError('agent.ioapicRouteValue', `vector ${vector} is not 32..254`);
  }
  let v = vector;
  if (options.trigger === 'level') v |= AGENT_IOAPIC_LEVEL;
  if (options.activeLow === true) v |= AGENT_IOAPIC_ACTIVE_LOW;
  if (options.masked === true) v |= AGENT_IOAPIC_MASKED;
  return BigInt(v);
}

/** The bytes RAM_FILL with `seed` writes: byte i is `(seed + i) & 0xff`. */
export function ramFillPattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed + i) & 0xff;
  return out;
}

/** FNV-1a, 32 bits: what RAM_CHECKSUM returns for the same bytes. */
export function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

function checkField(operation: string, name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new InvalidError(operation, `${name} ${value} is not 0..${max}`);
  }
}
