/**
 * The eventfd poller in both deliveries: `loop` (libuv poll handles on Node's main loop) and
 * `thread` (the poller thread and `Atomics.waitAsync`). Each hears an eventfd on the I/O
 * context, survives a handler that throws or unwatches itself, and closes without leaving a
 * handle; a session whose I/O context is a worker thread falls back to `thread` delivery and
 * still serves doorbells and forwarded exits; and close() finishes even when it is the only
 * work a process has left.
 */
import { execFileSync } from 'node:child_process';
import { threadId } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DONE_OK } from '@vmed/testkit';
import { EventFd } from '../src/host/eventfd.js';
import { EventfdPoller, type PollerDelivery } from '../src/poller/eventfd-poller.js';
import { uvHandleCounts, uvLoopAvailable } from '../src/poller/uv-loop.js';
import { kickSignal } from '../src/threads/kick-signal.js';
import { firstMessage, startTsWorker } from './helpers/ts-worker.js';
import { HAS_KVM, KVM_SKIP, until } from './helpers/kvm.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));

describe('eventfd poller', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const undo of cleanup.splice(0).reverse()) await undo();
  });

  function start(delivery: PollerDelivery): { poller: EventfdPoller; errors: unknown[] } {
    const poller = EventfdPoller.start(kickSignal(), delivery);
    cleanup.push(() => poller.close());
    const errors: unknown[] = [];
    poller.addErrorListener((e) => errors.push(e));
    return { poller, errors };
  }

  function eventfd(): EventFd {
    const fd = EventFd.create('test');
    cleanup.push(() => fd.close());
    return fd;
  }

  it('defaults to loop delivery on the main thread', () => {
    expect(uvLoopAvailable()).toBe(true);
    const poller = EventfdPoller.start(kickSignal());
    cleanup.push(() => poller.close());
    expect(poller.delivery).toBe('loop');
  });

  for (const delivery of ['loop', 'thread'] as const) {
    it(`hears an eventfd on this thread, coalesced, until unwatched (${delivery})`, async () => {
      const { poller, errors } = start(delivery);
      const fd = eventfd();
      const seen: Array<{ count: bigint; thread: number }> = [];
      const token = poller.watch(fd.fd, () => {
        const count = fd.drain('test');
        if (count > 0n) seen.push({ count, thread: threadId });
      });
      expect(poller.hasLoopHandle(token)).toBe(delivery === 'loop');
      fd.signal('test');
      await until(() => seen.length === 1);
      // Three writes before the handler can run arrive as one call with the sum.
      fd.signal('test', 3n);
      await until(() => seen.length === 2);
      expect(seen).toEqual([
        { count: 1n, thread: threadId },
        { count: 3n, thread: threadId },
      ]);
      poller.unwatch(token, fd.fd);
      expect(poller.hasLoopHandle(token)).toBe(false);
      fd.signal('test');
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(seen).toHaveLength(2);
      expect(fd.drain('test')).toBe(1n);
      expect(errors).toEqual([]);
    });

    it(`reports a throwing handler and keeps delivering; a handler may unwatch itself (${delivery})`, async () => {
      const { poller, errors } = start(delivery);
      const a = eventfd();
      const b = eventfd();
      let aCalls = 0;
      poller.watch(a.fd, () => {
        a.drain('test');
        aCalls++;
        throw new Error('model bug');
      });
      let bCalls = 0;
      const bToken = poller.watch(b.fd, () => {
        b.drain('test');
        bCalls++;
        poller.unwatch(bToken, b.fd);
      });
      a.signal('test');
      b.signal('test');
      await until(() => aCalls === 1 && bCalls === 1);
      a.signal('test');
      b.signal('test');
      await until(() => aCalls === 2);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(bCalls).toBe(1);
      expect(errors.map(String)).toEqual(['Error: model bug', 'Error: model bug']);
    });
  }

  it('loop delivery: close stops every handle and libuv frees them', async () => {
    const before = uvHandleCounts();
    const poller = EventfdPoller.start(kickSignal(), 'loop');
    const fds = [eventfd(), eventfd(), eventfd()];
    for (const fd of fds) poller.watch(fd.fd, () => fd.drain('test'));
    expect(uvHandleCounts().open).toBe(before.open + 3);
    expect(poller.fds).toBe(2);
    await poller.close();
    expect(poller.fds).toBe(0);
    expect(uvHandleCounts().open).toBe(before.open);
    await until(() => uvHandleCounts().closing === 0);
    expect(() => poller.watch(fds[0]?.fd ?? -1, () => {})).toThrowError(expect.objectContaining({ code: 'BadHandle' }) as Error);
  });

  it('close() finishes when it is all a process has left to do', { timeout: 60_000 }, (ctx) => {
    ctx.skip(!HAS_KVM, '/dev/kvm is absent or not accessible');
    const script = fileURLToPath(new URL('./fixtures/close-only.ts', import.meta.url));
    for (const what of ['loop', 'thread', 'backend']) {
      // execFileSync throws on a non-zero status (13: the close never finished).
      const out = execFileSync(process.execPath, ['--import', 'tsx', '--conditions=source', script, what], { encoding: 'utf8', cwd: REPO });
      expect(out).toBe(`closed ${what}`);
    }
  });
});

describe('a session whose I/O context is a worker thread', () => {
  it('serves doorbells through the poller thread and exits through Atomics.waitAsync', { timeout: 120_000 }, async (ctx) => {
    ctx.skip(KVM_SKIP !== undefined, KVM_SKIP);
    const rounds = 5_000;
    const exits = 2_000;
    const worker = startTsWorker(new URL('./fixtures/worker-io-context.ts', import.meta.url), { rounds, exits });
    try {
      const report = await firstMessage<{
        echo: { finish: object; handled: number; raised: number; rings: number; pollHandles: number };
        forwarded: { writes: number; finish: object };
        open: Record<string, number>;
        closed: Record<string, number>;
        errors: string[];
      }>(worker);
      expect(report.errors).toEqual([]);
      expect(report.echo).toMatchObject({ finish: { reason: 'done', value: String(DONE_OK) }, handled: rounds, raised: rounds, rings: rounds + 1 });
      // No libuv handle off the main thread: the poller thread watched the doorbell.
      expect(report.echo.pollHandles).toBe(0);
      expect(report.forwarded).toEqual({ writes: exits, finish: { vcpu: 0, reason: 'done', value: String(exits * 0x5a) } });
      expect(report.open['pollHandles']).toBe(0);
      expect(Object.values(report.closed).every((n) => n === 0)).toBe(true);
    } finally {
      await worker.terminate();
    }
  });
});
