/**
 * closeOnExit: signals and fatal errors close the target once, then exit with 128 + signal or
 * 1; a second signal forces the exit; a hung close is abandoned after its timeout; several
 * targets close newest first with one exit; the returned function removes every handler.
 * Events come from a private emitter here; the real process is exercised by a child below and
 * on KVM by backend-kvm's hostile/teardown tests.
 */
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { closeOnExit, signalExitCode, type CloseOnExitOptions } from '../../src/lifecycle/teardown.js';
import { RangeSet } from '../../src/address.js';
import type { Backend } from '../../src/backend/contract.js';
import { isVmedError } from '../../src/errors.js';
import { Mediator } from '../../src/mediator.js';

/** Just enough of a backend for a mediator with no devices: it counts its closes. */
function fakeBackend(): Backend & { closes: number } {
  const backend = {
    closes: 0,
    closed: false,
    capabilities: {
      hypervisor: 'fake',
      pciConfig: 'hypervisor',
      directRegions: false,
      maxMsiRoutes: 0,
      signalMsi: false,
      lineIrq: false,
      doorbells: 'userspace',
      doorbellDatamatch: false,
      dirtyTracking: false,
      pageTracking: false,
      pinning: false,
      eventChannels: false,
    },
    memory: { ram: new RangeSet([]) },
    attach: () => undefined,
    close: async () => {
      backend.closes++;
      backend.closed = true;
    },
  };
  return backend as unknown as Backend & { closes: number };
}

/** A target whose close the test settles by hand. */
function deferredTarget(name: string, order: string[]) {
  let settle: (error?: Error) => void = () => undefined;
  const target = {
    calls: 0,
    close: vi.fn(
      () =>
        new Promise<void>((resolve, reject) => {
          target.calls++;
          order.push(`close ${name}`);
          settle = (error?: Error) => (error === undefined ? resolve() : reject(error));
        }),
    ),
    settle: (error?: Error) => settle(error),
  };
  return target;
}

function harness(extra: Partial<CloseOnExitOptions> = {}) {
  const source = new EventEmitter();
  const order: string[] = [];
  const exits: number[] = [];
  const logs: string[] = [];
  const options: CloseOnExitOptions = {
    source,
    exit: (code) => {
      exits.push(code);
      order.push(`exit ${code}`);
    },
    log: (m) => logs.push(m),
    ...extra,
  };
  return { source, order, exits, logs, options };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('closeOnExit', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('knows the conventional statuses', () => {
    expect(signalExitCode('SIGINT')).toBe(130);
    expect(signalExitCode('SIGTERM')).toBe(143);
    expect(signalExitCode('SIGHUP')).toBe(129);
    expect(() => signalExitCode('SIGNOPE' as NodeJS.Signals)).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal} closes the target once, then exits ${code}`, async () => {
      const h = harness();
      const target = deferredTarget('a', h.order);
      closeOnExit(target, h.options);
      h.source.emit(signal);
      expect(target.calls).toBe(1);
      await flush();
      expect(h.exits).toEqual([]); // not before the close settles
      target.settle();
      await flush();
      expect(h.order).toEqual(['close a', `exit ${code}`]);
      expect(h.logs).toEqual([]);
    });
  }

  it('an uncaught exception is printed, closes the target and exits 1', async () => {
    const h = harness();
    const target = deferredTarget('a', h.order);
    closeOnExit(target, h.options);
    const error = new Error('model exploded');
    h.source.emit('uncaughtException', error);
    h.source.emit('uncaughtException', error); // the same error again is not printed twice
    target.settle();
    await flush();
    expect(h.order).toEqual(['close a', 'exit 1']);
    expect(h.logs).toHaveLength(1);
    expect(h.logs[0]).toMatch(/^uncaught exception, closing: Error: model exploded/);
    expect(target.calls).toBe(1);
  });

  it('an unhandled rejection of a non-Error is printed and exits 1', async () => {
    const h = harness();
    const target = deferredTarget('a', h.order);
    closeOnExit(target, h.options);
    h.source.emit('unhandledRejection', { reason: 'no' }, Promise.resolve());
    target.settle();
    await flush();
    expect(h.exits).toEqual([1]);
    expect(h.logs).toEqual(['unhandled rejection, closing: {"reason":"no"}']);
  });

  it('a failing close is printed, and the exit status stays the signal’s', async () => {
    const h = harness();
    const target = deferredTarget('a', h.order);
    closeOnExit(target, h.options);
    h.source.emit('SIGTERM');
    target.settle(new Error('ioreq server busy'));
    await flush();
    expect(h.exits).toEqual([143]);
    expect(h.logs[0]).toMatch(/^close failed: Error: ioreq server busy/);
  });

  it('a close that throws synchronously still exits', async () => {
    const h = harness();
    closeOnExit(
      {
        close: () => {
          throw new Error('sync');
        },
      },
      h.options,
    );
    h.source.emit('SIGINT');
    await flush();
    expect(h.exits).toEqual([130]);
    expect(h.logs[0]).toMatch(/close failed: Error: sync/);
  });

  it('a second signal while closing exits at once; an error while closing does not', async () => {
    const h = harness();
    const target = deferredTarget('a', h.order);
    closeOnExit(target, h.options);
    h.source.emit('SIGTERM');
    h.source.emit('uncaughtException', new Error('agent lost its session'));
    await flush();
    expect(h.exits).toEqual([]);
    expect(h.logs[0]).toMatch(/^uncaught exception while closing: Error: agent lost its session/);
    h.source.emit('SIGINT');
    expect(h.exits).toEqual([130]);
    expect(h.logs[1]).toBe('SIGINT again: exiting without waiting for the close');
    target.settle();
    await flush();
    expect(h.exits).toEqual([130]); // exits once
    expect(target.calls).toBe(1);
  });

  it('abandons a close that does not settle within timeoutMs', async () => {
    vi.useFakeTimers();
    const h = harness({ timeoutMs: 5000 });
    const target = deferredTarget('a', h.order);
    closeOnExit(target, h.options);
    h.source.emit('SIGINT');
    vi.advanceTimersByTime(4999);
    expect(h.exits).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.exits).toEqual([130]);
    expect(h.logs).toEqual(['close did not finish within 5000 ms: exiting anyway']);
  });

  it('closes every registered target, newest first, and exits once after the last', async () => {
    const h = harness();
    const a = deferredTarget('a', h.order);
    const b = deferredTarget('b', h.order);
    closeOnExit(a, h.options);
    closeOnExit(b, h.options);
    // One listener per event, however many targets.
    expect(h.source.listenerCount('SIGINT')).toBe(1);
    h.source.emit('SIGINT');
    expect(h.order).toEqual(['close b', 'close a']);
    b.settle();
    await flush();
    expect(h.exits).toEqual([]);
    a.settle();
    await flush();
    expect(h.order).toEqual(['close b', 'close a', 'exit 130']);
    expect([a.calls, b.calls]).toEqual([1, 1]);
  });

  it('the returned function removes the handlers; other targets keep theirs', async () => {
    const h = harness();
    const a = deferredTarget('a', h.order);
    const b = deferredTarget('b', h.order);
    const events = ['SIGINT', 'SIGTERM', 'uncaughtException', 'unhandledRejection'];
    const before = events.map((e) => h.source.listenerCount(e));
    const removeA = closeOnExit(a, h.options);
    const removeB = closeOnExit(b, { ...h.options, signals: ['SIGHUP'], errors: false });
    removeA();
    removeA(); // idempotent
    expect(events.map((e) => h.source.listenerCount(e))).toEqual(before);
    expect(h.source.listenerCount('SIGHUP')).toBe(1);
    h.source.emit('SIGHUP');
    b.settle();
    await flush();
    expect(a.calls).toBe(0);
    expect(h.exits).toEqual([129]);
    removeB();
    expect(h.source.listenerCount('SIGHUP')).toBe(0);
  });

  it('refuses a target without close(), an unknown signal and a bad timeout (Invalid)', () => {
    expect(() => closeOnExit({} as never)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => closeOnExit({ close: async () => {} }, { signals: ['SIGBOGUS' as NodeJS.Signals] })).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => closeOnExit({ close: async () => {} }, { timeoutMs: -1 })).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => closeOnExit({ close: async () => {} }, { timeoutMs: Number.NaN })).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });

  it('mediator.closeOnExit closes the mediator (and its backend) on a signal, and goes away when it closes', async () => {
    const h = harness();
    const backend = fakeBackend();
    const mediator = new Mediator({ hypervisor: 'fake' }, backend);
    mediator.closeOnExit(h.options);
    expect(h.source.listenerCount('SIGTERM')).toBe(1);
    h.source.emit('SIGTERM');
    await flush();
    expect(mediator.closed).toBe(true);
    expect(backend.closes).toBe(1);
    expect(h.exits).toEqual([143]);
    // Closing removed the handlers; a closed mediator refuses new ones.
    expect(['SIGINT', 'SIGTERM', 'uncaughtException', 'unhandledRejection'].map((e) => h.source.listenerCount(e))).toEqual([0, 0, 0, 0]);
    let refused: unknown;
    try {
      mediator.closeOnExit(h.options);
    } catch (e) {
      refused = e;
    }
    expect(isVmedError(refused, 'BadHandle')).toBe(true);

    const other = harness();
    const quiet = new Mediator({ hypervisor: 'fake' }, fakeBackend());
    const remove = quiet.closeOnExit(other.options);
    await quiet.close();
    expect(other.source.listenerCount('SIGINT')).toBe(0);
    remove(); // harmless after close
    expect(other.exits).toEqual([]);
  });

  it('in a real process: SIGTERM closes the target and the process exits 143', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmed-teardown-'));
    const script = join(dir, 'child.mjs');
    const teardown = fileURLToPath(new URL('../../src/lifecycle/teardown.ts', import.meta.url));
    writeFileSync(
      script,
      `import { closeOnExit } from ${JSON.stringify(teardown)};
closeOnExit({ close: async () => { await new Promise((r) => setTimeout(r, 10)); process.stdout.write('closed\\n'); } });
setInterval(() => {}, 1000);
process.kill(process.pid, 'SIGTERM');
`,
    );
    const run = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: run.status, signal: run.signal, stdout: run.stdout }).toEqual({ status: 143, signal: null, stdout: 'closed\n' });
  });
});
