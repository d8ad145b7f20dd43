/**
 * The event-channel waiter, with a pipe standing in for `/dev/xen/evtchn`: both deliver 4-byte
 * port numbers on a readable descriptor, which is all the waiter relies on. The worker really
 * starts (from src/ under tsx), really blocks in poll(2), and really stops.
 */
import koffi from 'koffi';
import { afterEach, describe, expect, it } from 'vitest';
import { createPortSource, evtchnWorkerEntry, type PortSource } from '../src/ioreq/waiter.js';

const libc = koffi.load('libc.so.6');
const pipe = libc.func('int pipe(_Out_ int *fds)');
const write = libc.func('long write(int fd, const void *buf, unsigned long count)');
const close = libc.func('int close(int fd)');

function makePipe(): { read: number; write: number } {
  const fds = new Int32Array(2);
  expect(pipe(fds)).toBe(0);
  return { read: fds[0] as number, write: fds[1] as number };
}

function send(fd: number, ports: number[]): void {
  const buf = new Uint32Array(ports);
  expect(write(fd, buf, buf.byteLength)).toBe(buf.byteLength);
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void> | void)();
});

function collect(source: PortSource): { ports: number[]; errors: unknown[]; next(n: number): Promise<void> } {
  const ports: number[] = [];
  const errors: unknown[] = [];
  let waiting: { n: number; resolve: () => void } | undefined;
  source.start(
    (p) => {
      ports.push(...p);
      if (waiting !== undefined && ports.length >= waiting.n) waiting.resolve();
    },
    (e) => errors.push(e),
  );
  return {
    ports,
    errors,
    next: (n) =>
      new Promise<void>((resolve) => {
        if (ports.length >= n) resolve();
        else waiting = { n, resolve };
      }),
  };
}

describe.each(['worker', 'inline'] as const)('port source (%s), a pipe standing in for the evtchn descriptor', (mode) => {
  it('delivers the ports written on the descriptor, in order, on the I/O thread', async () => {
    const p = makePipe();
    cleanups.push(() => void close(p.read), () => void close(p.write));
    const source = createPortSource(mode, p.read, { idlePollMs: 1 });
    cleanups.push(() => source.stop());
    const got = collect(source);
    expect(source.workers).toBe(mode === 'worker' ? 1 : 0);
    expect(source.fds).toBe(mode === 'worker' ? 1 : 0);
    send(p.write, [3, 5]);
    await got.next(2);
    send(p.write, [7]);
    await got.next(3);
    expect(got.ports).toEqual([3, 5, 7]);
    expect(got.errors).toEqual([]);
  });

  it('stop ends the worker and releases its eventfd; nothing is delivered afterwards', async () => {
    const p = makePipe();
    cleanups.push(() => void close(p.read), () => void close(p.write));
    const source = createPortSource(mode, p.read);
    const got = collect(source);
    send(p.write, [1]);
    await got.next(1);
    await source.stop();
    expect(source.workers).toBe(0);
    expect(source.fds).toBe(0);
    send(p.write, [2]);
    await new Promise((r) => setTimeout(r, 50));
    expect(got.ports).toEqual([1]);
    await source.stop(); // idempotent
  });
});

describe.each(['worker', 'inline'] as const)('port source (%s) robustness', (mode) => {
  it('a throwing handler is reported and later ports are still delivered (a guest must not hang)', async () => {
    const p = makePipe();
    cleanups.push(() => void close(p.read), () => void close(p.write));
    const source = createPortSource(mode, p.read);
    cleanups.push(() => source.stop());
    const ports: number[] = [];
    const errors: unknown[] = [];
    let second: () => void = () => {};
    const gotSecond = new Promise<void>((r) => (second = r));
    source.start(
      (batch) => {
        ports.push(...batch);
        if (batch.includes(2)) second();
        if (batch.includes(1)) throw new Error('handler bug');
      },
      (e) => errors.push(e),
    );
    send(p.write, [1]);
    // Let the first port be delivered on its own where the source is quick enough; if both
    // arrive in one batch the handler still throws for the batch and the test still holds.
    await new Promise((r) => setTimeout(r, 100));
    send(p.write, [2]);
    await gotSecond;
    send(p.write, [3]);
    await new Promise<void>((resolve) => {
      const check = () => (ports.includes(3) ? resolve() : setTimeout(check, 5));
      check();
    });
    expect(ports).toEqual([1, 2, 3]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'Io', operation: 'xen.waiter' });
  });
});

describe('worker port source failure', () => {
  it('a descriptor that fails (closed write end: POLLHUP) is reported once as an error', async () => {
    const p = makePipe();
    cleanups.push(() => void close(p.read));
    const source = createPortSource('worker', p.read);
    cleanups.push(() => source.stop());
    const errors: unknown[] = [];
    const failed = new Promise<void>((resolve) =>
      source.start(
        () => {},
        (e) => {
          errors.push(e);
          resolve();
        },
      ),
    );
    close(p.write);
    await failed;
    expect(errors).toHaveLength(1);
    // From the worker's poll loop (POLLHUP → EIO), not a crash of the worker itself.
    expect(errors[0]).toMatchObject({ code: 'Io', errno: 'EIO' });
    expect(String((errors[0] as Error).message)).toMatch(/worker stopped/);
  });
});

describe('worker entry', () => {
  it('from src/ it boots the TypeScript file next to the waiter through tsx, with the source condition', () => {
    const entry = evtchnWorkerEntry();
    expect(entry.url.pathname.endsWith('/src/ioreq/evtchn-worker.ts')).toBe(true);
    expect(entry.eval).toBe(true);
    expect(entry.entry).toContain(entry.url.href);
    expect(entry.execArgv).toEqual(['--conditions=source']);
  });
});
