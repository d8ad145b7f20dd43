/**
 * One vCPU's control words and exit mailbox, in a SharedArrayBuffer (worker mode) or a plain
 * ArrayBuffer (inline mode, same code path without a thread hop).
 *
 * Control: the I/O context writes CTRL (run/pause/stop) and kicks; the vCPU thread reports
 * STATE, keeps IN_RUN set while it may be inside `KVM_RUN` (set before it re-reads CTRL, so a
 * command written before the kick is never missed) and publishes its TID.
 *
 * Exits: the vCPU thread writes one request (an MMIO or port access, string I/O included),
 * bumps REQ_SEQ and waits until RESP_SEQ equals it; the I/O context serves the request
 * (answering reads in DATA, setting ACTION) and stores RESP_SEQ.
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
} as const;

/** BigInt64 index of the access address (guest-physical address or port). */
export const M_ADDRESS = 8;
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
  readonly big: BigInt64Array;
  readonly data: Uint8Array;
  readonly dataView: DataView;

  constructor(buffer: SharedArrayBuffer | ArrayBuffer) {
    this.buffer = buffer;
    this.words = new Int32Array(buffer, 0, M_DATA / 4);
    this.big = new BigInt64Array(buffer, 0, M_DATA / 8);
    this.data = new Uint8Array(buffer, M_DATA, M_DATA_BYTES);
    this.dataView = new DataView(buffer, M_DATA, M_DATA_BYTES);
  }

  /** The little-endian value of an access of `size` (1, 2, 4 or 8) bytes at data offset `at`. */
  value(at: number, size: 1 | 2 | 4 | 8): bigint {
    const v = this.dataView;
    switch (size) {
      case 1:
        return BigInt(v.getUint8(at));
      case 2:
        return BigInt(v.getUint16(at, true));
      case 4:
        return BigInt(v.getUint32(at, true));
      default:
        return v.getBigUint64(at, true);
    }
  }

  /** Stores the low `size` bytes of `value` little-endian at data offset `at`. */
  setValue(at: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    const v = this.dataView;
    switch (size) {
      case 1:
        v.setUint8(at, Number(value & 0xffn));
        break;
      case 2:
        v.setUint16(at, Number(value & 0xffffn), true);
        break;
      case 4:
        v.setUint32(at, Number(value & 0xffff_ffffn), true);
        break;
      default:
        v.setBigUint64(at, BigInt.asUintN(64, value), true);
    }
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
    return BigInt.asUintN(64, this.big[M_ADDRESS] as bigint);
  }
  get action(): number {
    return this.words[M.ACTION] as number;
  }
  set action(value: number) {
    this.words[M.ACTION] = value;
  }

  /** Fills in a request (the vCPU side); data is copied by the caller into {@link data}. */
  setRequest(kind: number, address: bigint, size: number, isWrite: boolean, count: number): void {
    this.words[M.KIND] = kind;
    this.big[M_ADDRESS] = BigInt.asIntN(64, address);
    this.words[M.SIZE] = size;
    this.words[M.WRITE] = isWrite ? 1 : 0;
    this.words[M.COUNT] = count;
    this.words[M.ACTION] = ACTION_CONTINUE;
  }
}
