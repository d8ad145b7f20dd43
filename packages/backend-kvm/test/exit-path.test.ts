/**
 * The exit path without a VM: `serveExit` (inline mode) and `decodeExit` + `ExitServer.serve`
 * + `completeExit` (worker mode) over a `struct kvm_run` laid out in an ordinary buffer, with
 * a recording sink. What the guest controls is checked (malformed port exits end the run), the
 * 64-bit address survives being carried as two halves, the bigints the server reuses never
 * leak a stale address or value, reads are answered in place without touching neighbouring
 * bytes, and page tracking is asked only while something is tracked.
 */
import { describe, expect, it } from 'vitest';
import { KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO, KVM_RUN_OFFSETS as R } from '../src/abi/kvm.js';
import type { VcpuRunner } from '../src/ioctls/vcpu-runner.js';
import { ExitServer, type TrackedWriteSink } from '../src/vcpu/exit-server.js';
import { EXIT_CONTINUE, EXIT_DONE, EXIT_FINISH, EXIT_IO, completeExit, decodeExit, serveExit } from '../src/vcpu/exits.js';
import { ACTION_CONTINUE, ACTION_FINISH, Mailbox } from '../src/vcpu/mailbox.js';
import { RecordingSink } from './helpers/kvm.js';

/** A fake vCPU whose kvm_run is a plain page. */
function fakeRun(): VcpuRunner {
  const buffer = new ArrayBuffer(4096);
  return { index: 0, runBytes: new Uint8Array(buffer), runView: new DataView(buffer) } as unknown as VcpuRunner;
}

function mmioExit(run: VcpuRunner, address: bigint, len: number, isWrite: boolean, data: readonly number[] = []): void {
  const v = run.runView;
  v.setUint32(R.exitReason, KVM_EXIT_MMIO, true);
  v.setBigUint64(R.mmioPhysAddr, address, true);
  v.setUint32(R.mmioLen, len, true);
  v.setUint8(R.mmioIsWrite, isWrite ? 1 : 0);
  for (let i = 0; i < 8; i++) v.setUint8(R.mmioData + i, data[i] ?? 0xee);
}

const PIO_DATA = 0x800;

function pioExit(run: VcpuRunner, port: number, size: number, count: number, isWrite: boolean, data: readonly number[] = [], offset = BigInt(PIO_DATA)): void {
  const v = run.runView;
  v.setUint32(R.exitReason, KVM_EXIT_IO, true);
  v.setUint8(R.ioDirection, isWrite ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN);
  v.setUint8(R.ioSize, size);
  v.setUint16(R.ioPort, port, true);
  v.setUint32(R.ioCount, count, true);
  v.setBigUint64(R.ioDataOffset, offset, true);
  for (let i = 0; i < data.length; i++) v.setUint8(PIO_DATA + i, data[i] as number);
}

function bytes(run: VcpuRunner, at: number, length: number): number[] {
  return [...run.runBytes.subarray(at, at + length)];
}

/** Serves the exit in `run` inline, or through a mailbox as worker mode does. */
function serveBoth(mode: 'inline' | 'mailbox', run: VcpuRunner, server: ExitServer): number {
  if (mode === 'inline') return serveExit(run, server);
  const mailbox = Mailbox.local();
  const decoded = decodeExit(run, mailbox);
  if (decoded !== EXIT_IO) return decoded;
  server.serve(mailbox, run.index);
  completeExit(run, mailbox);
  return mailbox.action === ACTION_FINISH ? EXIT_DONE : EXIT_IO;
}

function server(sink: RecordingSink, tracker?: TrackedWriteSink, errors: unknown[] = []): ExitServer {
  const s = new ExitServer({ ...(tracker === undefined ? {} : { tracker }), onError: (e) => errors.push(e) });
  s.sink = sink;
  return s;
}

describe('exit path', () => {
  for (const mode of ['inline', 'mailbox'] as const) {
    it(`carries addresses and values exactly, whatever came before (${mode})`, () => {
      const run = fakeRun();
      const sink = new RecordingSink();
      const s = server(sink);
      const high = 0xffff_fffe_dcba_9870n;
      const cases: Array<[bigint, number[]]> = [
        [0xfebf_0000n, [1, 0, 0, 0]],
        [0xfebf_0000n, [1, 0, 0, 0]],
        [0xfebf_0004n, [1, 0, 0, 0]],
        [0xfebf_0004n, [2, 0, 0, 0]],
        [high, [2, 0, 0, 0]],
        [0x1_febf_0004n, [0xff, 0xff, 0xff, 0xff]],
        [0xfebf_0004n, [0xff, 0xff, 0xff, 0xff]],
      ];
      for (const [address, data] of cases) {
        mmioExit(run, address, 4, true, data);
        expect(serveBoth(mode, run, s)).toBe(EXIT_IO);
      }
      mmioExit(run, high, 8, true, [1, 2, 3, 4, 5, 6, 7, 0x88]);
      serveBoth(mode, run, s);
      pioExit(run, 0xc000, 2, 1, true, [0x34, 0x12]);
      serveBoth(mode, run, s);
      pioExit(run, 0xc004, 1, 1, true, [0x34]);
      serveBoth(mode, run, s);
      expect(sink.accesses.map((a) => [a.space, a.address, a.size, a.value])).toEqual([
        ['mmio', 0xfebf_0000n, 4, 1n],
        ['mmio', 0xfebf_0000n, 4, 1n],
        ['mmio', 0xfebf_0004n, 4, 1n],
        ['mmio', 0xfebf_0004n, 4, 2n],
        ['mmio', high, 4, 2n],
        ['mmio', 0x1_febf_0004n, 4, 0xffff_ffffn],
        ['mmio', 0xfebf_0004n, 4, 0xffff_ffffn],
        ['mmio', high, 8, 0x8807_0605_0403_0201n],
        ['pio', 0xc000n, 2, 0x1234n],
        ['pio', 0xc004n, 1, 0x34n],
      ]);
    });

    it(`answers reads in place, each width, without touching other bytes (${mode})`, () => {
      const run = fakeRun();
      const sink = new RecordingSink();
      const s = server(sink);
      sink.reads.set('mmio:1000', 0x5an);
      sink.reads.set('mmio:1002', 0xbeefn);
      sink.reads.set('mmio:1004', 0xcafe_f00dn);
      sink.reads.set('mmio:1008', 0x0102_0304_0506_0708n);
      const expected: Array<[bigint, number, number[]]> = [
        [0x1000n, 1, [0x5a, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]],
        [0x1002n, 2, [0xef, 0xbe, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]],
        [0x1004n, 4, [0x0d, 0xf0, 0xfe, 0xca, 0xee, 0xee, 0xee, 0xee]],
        [0x1008n, 8, [8, 7, 6, 5, 4, 3, 2, 1]],
        // Nobody answers: all-ones of the width.
        [0x2000n, 2, [0xff, 0xff, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]],
      ];
      for (const [address, len, data] of expected) {
        mmioExit(run, address, len, false);
        expect(serveBoth(mode, run, s)).toBe(EXIT_IO);
        expect(bytes(run, R.mmioData, 8), `read of ${len} at ${address.toString(16)}`).toEqual(data);
      }
      // String port input: three 2-byte reads packed at the exit's data offset.
      let next = 0xa000n;
      const counting = { read: () => next++, write: () => {} };
      s.sink = counting;
      run.runBytes.fill(0xee, PIO_DATA, PIO_DATA + 8);
      pioExit(run, 0x5b2, 2, 3, false);
      expect(serveBoth(mode, run, s)).toBe(EXIT_IO);
      expect(bytes(run, PIO_DATA, 8)).toEqual([0x00, 0xa0, 0x01, 0xa0, 0x02, 0xa0, 0xee, 0xee]);
    });

    it(`splits widths the sink does not take into bytes (${mode})`, () => {
      const run = fakeRun();
      const sink = new RecordingSink();
      const s = server(sink);
      // KVM splits an access at a page boundary: 3 bytes at the end of one page.
      mmioExit(run, 0xfebf_0ffdn, 3, true, [0x11, 0x22, 0x33]);
      serveBoth(mode, run, s);
      sink.reads.set('mmio:febf2001', 0x42n);
      mmioExit(run, 0xfebf_2000n, 3, false);
      serveBoth(mode, run, s);
      expect(bytes(run, R.mmioData, 4)).toEqual([0xff, 0x42, 0xff, 0xee]);
      expect(sink.accesses.map((a) => [a.address, a.size, a.write, a.value])).toEqual([
        [0xfebf_0ffdn, 1, true, 0x11n],
        [0xfebf_0ffen, 1, true, 0x22n],
        [0xfebf_0fffn, 1, true, 0x33n],
        [0xfebf_2000n, 1, false, 0xffn],
        [0xfebf_2001n, 1, false, 0x42n],
        [0xfebf_2002n, 1, false, 0xffn],
      ]);
    });

    it(`ends the run at the done port, with the value written (${mode})`, () => {
      const run = fakeRun();
      const sink = new RecordingSink();
      const s = server(sink);
      s.donePort = 0x501;
      pioExit(run, 0x501, 4, 1, true, [7, 0, 0, 0x80]);
      expect(serveBoth(mode, run, s)).toBe(EXIT_DONE);
      expect(s.doneValues.get(0)).toBe(0x8000_0007n);
      expect(sink.accesses).toEqual([]);
      // A read of the done port is an ordinary access.
      pioExit(run, 0x501, 1, 1, false);
      expect(serveBoth(mode, run, s)).toBe(EXIT_IO);
      expect(sink.accesses).toHaveLength(1);
    });

    it(`ends the run on malformed exits and continues past interruptions (${mode})`, () => {
      const run = fakeRun();
      const sink = new RecordingSink();
      const s = server(sink);
      const malformed: Array<() => void> = [
        () => mmioExit(run, 0x1000n, 0, true),
        () => mmioExit(run, 0x1000n, 9, true),
        () => pioExit(run, 0x10, 3, 1, true),
        () => pioExit(run, 0x10, 1, 0, true),
        // data_offset past the page, or with a high half.
        () => pioExit(run, 0x10, 4, 1, true, [], 4094n),
        () => pioExit(run, 0x10, 1, 1, true, [], 1n << 32n),
        // More than the mailbox's page of data.
        () => pioExit(run, 0x10, 4, 1025, true, [], 0n),
        () => run.runView.setUint32(R.exitReason, KVM_EXIT_HLT, true),
      ];
      for (const make of malformed) {
        make();
        expect(serveBoth(mode, run, s)).toBe(EXIT_FINISH);
      }
      run.runView.setUint32(R.exitReason, KVM_EXIT_INTR, true);
      expect(serveBoth(mode, run, s)).toBe(EXIT_CONTINUE);
      expect(sink.accesses).toEqual([]);
    });

    it(`asks the page tracker only while something is tracked (${mode})`, () => {
      const run = fakeRun();
      const sink = new RecordingSink();
      const asked: Array<[bigint, number[]]> = [];
      const tracker = {
        tracking: false,
        handleWrite(address: bigint, data: DataView, at: number, size: number): boolean {
          const seen: number[] = [];
          for (let i = 0; i < size; i++) seen.push(data.getUint8(at + i));
          asked.push([address, seen]);
          return address === 0x2_0000n;
        },
      };
      const s = server(sink, tracker);
      mmioExit(run, 0x2_0000n, 4, true, [1, 2, 3, 4]);
      serveBoth(mode, run, s);
      expect(asked).toEqual([]);
      tracker.tracking = true;
      serveBoth(mode, run, s);
      mmioExit(run, 0xfebf_0000n, 2, true, [5, 6]);
      serveBoth(mode, run, s);
      // Reads are never tracked writes.
      mmioExit(run, 0x2_0000n, 4, false);
      serveBoth(mode, run, s);
      expect(asked).toEqual([
        [0x2_0000n, [1, 2, 3, 4]],
        [0xfebf_0000n, [5, 6]],
      ]);
      expect(sink.accesses.map((a) => [a.address, a.write, a.value])).toEqual([
        [0x2_0000n, true, 0x0403_0201n],
        [0xfebf_0000n, true, 0x0605n],
        [0x2_0000n, false, 0xffff_ffffn],
      ]);
    });
  }

  it('reports a sink that throws and completes the access as unclaimed', () => {
    const run = fakeRun();
    const errors: unknown[] = [];
    const s = new ExitServer({ onError: (e) => errors.push(e) });
    s.sink = {
      read: () => {
        throw new Error('read bug');
      },
      write: () => {
        throw new Error('write bug');
      },
    };
    mmioExit(run, 0x1000n, 4, false);
    expect(serveExit(run, s)).toBe(EXIT_IO);
    expect(bytes(run, R.mmioData, 4)).toEqual([0xff, 0xff, 0xff, 0xff]);
    mmioExit(run, 0x1000n, 4, true, [1, 0, 0, 0]);
    expect(serveExit(run, s)).toBe(EXIT_IO);
    expect(errors.map(String)).toEqual(['Error: read bug', 'Error: write bug']);
    // Without a sink (before attach) reads are all-ones and writes vanish.
    s.sink = undefined;
    mmioExit(run, 0x1000n, 2, false);
    serveExit(run, s);
    expect(bytes(run, R.mmioData, 4)).toEqual([0xff, 0xff, 0xee, 0xee]);
  });

  it('the mailbox carries the request and the answer of a forwarded exit', () => {
    const mailbox = Mailbox.local();
    mailbox.setRequest(1, 0x89ab_cdef, 0xffff_ffff, 8, false, 1);
    expect(mailbox.address).toBe(0xffff_ffff_89ab_cdefn);
    expect([mailbox.kind, mailbox.size, mailbox.isWrite, mailbox.count, mailbox.action]).toEqual([1, 8, false, 1, ACTION_CONTINUE]);
  });
});
