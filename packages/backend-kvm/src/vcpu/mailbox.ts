/**
 * One vCPU's control words and exit mailbox, in a SharedArrayBuffer (worker mode) or a plain
 * ArrayBuffer (inline mode, same code path without a thread hop).
 *
 * Control: the I/O context writes CTRL (run/pause/stop) and kicks; the vCPU thread reports
 * STATE, keeps IN_RUN set while it may be inside `KVM_RUN` (set before it re-reads CTRL, so a
 * command written before the kick is never missed) and publishes its TID.
 *
 * Exits: the vCPU thread writes one request (an MMIO or port access, string I/O included;
 * the address as two 32-bit words, so neither side makes a bigint for it), bumps REQ_SEQ,
 * wakes the I/O context (see `worker-vcpu.ts`) and waits until RESP_SEQ equals it; the I/O
 * context serves the request (answering reads in DATA, setting ACTION) and stores RESP_SEQ.
 */

/** Int32 word indices. */
export const M = {
  CTRL: 0,
  STATE: 1,
  IN_RUN: 2,
  TID: 3,
  REQ_SEQ: 4,
  RESP_SEQ: 5,
  KIND: 6,
  SIZE: 7,
  WRITE: 8,
  COUNT: 9,
  ACTION: 10,
  /** The access address (guest-physical address or port), low and high 32 bits. */
  ADDR_LO: 16,
  ADDR_HI: 17,
} as const;
/** Byte offset of the data area. */
export const M_DATA = 128;
/** Data area size: one page, the most a string I/O exit carries (`count * size`). */
export const M_DATA_BYTES = 4096;
export const MAILBOX_BYTES = M_DATA + M_DATA_BYTES;

/** CTRL values. */
export const CTRL_RUN = 0;
export const CTRL_PAUSE = 1;
export const CTRL_STOP = 2;

/** STATE values. */
export const STATE_STARTING = 0;
export const STATE_RUNNING = 1;
export const STATE_PAUSED = 2;
export const STATE_FINISHED = 3;

/** KIND values. */
export const KIND_MMIO = 1;
export const KIND_PIO = 2;

/** ACTION values (the I/O context's answer). */
export const ACTION_CONTINUE = 0;
/** The guest wrote the "done" port: the vCPU stops after completing the access. */
export const ACTION_FINISH = 1;

/** Typed views over one mailbox. */
export class Mailbox {
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  readonly words: Int32Array;
  readonly data: Uint8Array;
  readonly dataView: DataView;

  constructor(buffer: SharedArrayBuffer | ArrayBuffer) {
    this.buffer = buffer;
    this.words = new Int32Array(buffer, 0, M_DATA / 4);
    this.data = new Uint8Array(buffer, M_DATA, M_DATA_BYTES);
    this.dataView = new DataView(buffer, M_DATA, M_DATA_BYTES);
  }

  static shared(): Mailbox {
    return new Mailbox(new SharedArrayBuffer(MAILBOX_BYTES));
  }

  static local(): Mailbox {
    return new Mailbox(new ArrayBuffer(MAILBOX_BYTES));
  }

  get kind(): number {
    return this.words[M.KIND] as number;
  }
  get size(): number {
    return this.words[M.SIZE] as number;
  }
  get isWrite(): boolean {
    return this.words[M.WRITE] === 1;
  }
  get count(): number {
    return this.words[M.COUNT] as number;
  }
  get address(): bigint {
    return (BigInt((this.words[M.ADDR_HI] as number) >>> 0) << 32n) | BigInt((this.words[M.ADDR_LO] as number) >>> 0);
  }
  get action(): number {
    return this.words[M.ACTION] as number;
  }
  set action(value: number) {
    this.words[M.ACTION] = value;
  }

  /**
   * Fills in a request (the vCPU side) for the address `high:low` (32-bit halves, no bigint on
   * the exit path); data is copied by the caller into {@link data}.
   */
  setRequest(kind: number, low: number, high: number, size: number, isWrite: boolean, count: number): void {
    const w = this.words;
    w[M.KIND] = kind;
    w[M.ADDR_LO] = low;
    w[M.ADDR_HI] = high;
    w[M.SIZE] = size;
    w[M.WRITE] = isWrite ? 1 : 0;
    w[M.COUNT] = count;
    w[M.ACTION] = ACTION_CONTINUE;
  }
}
