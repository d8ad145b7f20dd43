/**
 * The demo on Xen: the guest is a domain vmed does not own, so the demo serves it until the
 * guest reports an exit code on the done port (0x501, as the project's guests do before they
 * ask Xen to shut them down), the domain goes away (powered off, crashed, destroyed), the
 * operator stops it (Ctrl-C, SIGTERM), or a time limit passes. With `unpause` the domain is
 * expected to have been created paused (`xl create -p`) and is let run once the devices are
 * served, so its first PCI scan already finds them.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { addressRange, type Mediator } from '@vmed/core';
import type { XenBackend } from '@vmed/backend-xen';
import { DONE_PORT, demoExitMessage } from '@vmed/testkit';

/**
 * Where BARs go on a Xen PVH guest: libxl's MMIO hole starts at 0xF000_0000 whatever the
 * guest's size (RAM above it is relocated past 4 GiB) and the guest's ACPI tables sit at
 * 0xFC00_0000; Linux in a PVH domU reports `[mem 0x10000000-0xfbffffff] available` for a
 * 256 MiB guest. Nothing else of a PVH guest lives in between.
 */
export const XEN_PVH_MMIO_WINDOW = Object.freeze({ base: 0xf000_0000n, length: 0x0c00_0000n });

/** How often to look whether the domain still exists. */
const DOMAIN_POLL_MS = 500;

export interface XenDemoOptions {
  readonly domid: number;
  readonly unpause: boolean;
  readonly timeoutMs?: number;
  readonly onInfo: (line: string) => void;
}

type Ending = { kind: 'reported'; code: number } | { kind: 'gone' } | { kind: 'signal'; signal: NodeJS.Signals } | { kind: 'timeout' };

/**
 * Serves the domain until one of the endings of the module doc; returns the guest's exit code
 * (255 when the domain went away or time ran out without one, 0 when the operator stopped a
 * guest that reports none).
 */
export async function serveXenDomain(mediator: Mediator, options: XenDemoOptions): Promise<number> {
  const backend = mediator.backend as XenBackend;
  const cleanups: Array<() => void> = [];
  try {
    const reported = listenOnDonePort(mediator, cleanups);
    const endings: Array<Promise<Ending>> = [reported.then((code) => ({ kind: 'reported', code }) as const)];
    endings.push(
      new Promise<Ending>((resolve) => {
        const timer = setInterval(() => {
          // A session torn down by a signal handler is closed: the signal ending follows.
          if (backend.closed) return;
          try {
            if (!backend.domainExists()) resolve({ kind: 'gone' });
          } catch (error) {
            clearInterval(timer);
            options.onInfo(`vmed demo: cannot tell whether domain ${options.domid} still exists: ${(error as Error).message}`);
          }
        }, DOMAIN_POLL_MS);
        cleanups.push(() => clearInterval(timer));
      }),
      new Promise<Ending>((resolve) => {
        const stop = (signal: NodeJS.Signals) => resolve({ kind: 'signal', signal });
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        cleanups.push(() => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        });
      }),
    );
    if (options.timeoutMs !== undefined) {
      const limit = options.timeoutMs;
      endings.push(
        new Promise<Ending>((resolve) => {
          const timer = setTimeout(() => resolve({ kind: 'timeout' }), limit);
          cleanups.push(() => clearTimeout(timer));
        }),
      );
    }
    if (options.unpause) {
      await unpause(options.domid);
      options.onInfo(`vmed demo: domain ${options.domid} unpaused`);
    }
    options.onInfo(`vmed demo: serving domain ${options.domid} until the guest reports on port 0x${DONE_PORT.toString(16)}, the domain goes away, or Ctrl-C`);
    const ending = await Promise.race(endings);
    switch (ending.kind) {
      case 'reported':
        if (ending.code !== 0) options.onInfo(`vmed demo: the guest reported ${demoExitMessage(ending.code)}`);
        return ending.code;
      case 'gone':
        options.onInfo(`vmed demo: domain ${options.domid} went away without reporting an exit code`);
        return 255;
      case 'timeout':
        options.onInfo(`vmed demo: the guest reported nothing within ${((options.timeoutMs ?? 0) / 1000).toFixed(0)} s`);
        return 255;
      case 'signal':
        options.onInfo(`vmed demo: stopped by ${ending.signal}; the guest reported no exit code`);
        return 0;
    }
    return 255;
  } finally {
    for (const c of cleanups.reverse()) c();
  }
}

/**
 * Claims the done port and resolves with the first exit code written there. The guest writes
 * 4 bytes at 0x501; the dispatcher hands them over as aligned pieces in one call, so the value
 * is put together once the call is over.
 */
function listenOnDonePort(mediator: Mediator, cleanups: Array<() => void>): Promise<number> {
  const range = addressRange(DONE_PORT, 4);
  let report: (code: number) => void = () => {};
  const reported = new Promise<number>((resolve) => (report = resolve));
  const bytes = new Uint8Array(4);
  let pending = false;
  const registration = mediator.dispatcher.add(
    'pio',
    range,
    {
      read: (_offset, size) => (size === 4 ? 0xffff_ffff : (1 << (size * 8)) - 1),
      write: (offset, size, value) => {
        for (let i = 0; i < size && offset + i < 4; i++) bytes[offset + i] = (value >>> (8 * i)) & 0xff;
        if (pending) return;
        pending = true;
        queueMicrotask(() => {
          pending = false;
          report(new DataView(bytes.buffer).getUint32(0, true));
          bytes.fill(0);
        });
      },
    },
    'demo-done-port',
  );
  cleanups.push(() => registration.dispose());
  const claim = mediator.backend.claimIo('pio', range);
  cleanups.push(() => {
    if (!mediator.backend.closed) claim.dispose();
  });
  return reported;
}

async function unpause(domid: number): Promise<void> {
  try {
    await promisify(execFile)('xl', ['unpause', String(domid)]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() ?? '';
    throw new Error(`xl unpause ${domid} failed${stderr === '' ? `: ${(error as Error).message}` : `: ${stderr}`}`, { cause: error });
  }
}
