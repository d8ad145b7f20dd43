/**
 * Disposal: every method of a disposed object, and of a closed backend, throws `BadHandle`;
 * closing releases what was left alive; nothing leaks across many objects and sessions —
 * neither in the backend's own counts nor in the process (fds, mappings, threads).
 */
import assert from 'node:assert/strict';
import { PAGE_SIZE, type LineTrigger } from '@vmed/core';
import { quiesce, type OsResources } from '../os-resources.js';
import { RecordingSink } from '../recording-sink.js';
import { attachRecorder, expectCode, rawRange, scratchPages } from '../helpers.js';
import { scenario } from '../scenario.js';
import type { ConformanceSession } from '../target.js';

interface Held {
  readonly what: string;
  readonly handle: { readonly disposed: boolean; dispose(): void };
  /** Every method (and throwing getter) besides dispose, called with plausible arguments. */
  readonly methods: ReadonlyArray<readonly [string, () => unknown]>;
}

/** One of each object the backend can hand out, in creation order. */
function makeEverything(session: ConformanceSession): Held[] {
  const { backend, guest } = session;
  const caps = backend.capabilities;
  const w = session.mmioWindow.base;
  const [page] = scratchPages(guest, 1) as [bigint];
  const out: Held[] = [];
  const add = (what: string, handle: Held['handle'], methods: Held['methods'] = []) => out.push({ what, handle, methods });

  add('MMIO claim', backend.claimIo('mmio', rawRange(w, 0x100)));
  add('port claim', backend.claimIo('pio', rawRange(BigInt(session.pioWindow.base), 0x10)));
  add('doorbell', backend.registerIoEvent({ space: 'mmio', address: w + 0x200n, length: 4 }, () => {}));
  const route = backend.createMsiRoute();
  route.setMsi(guest.msiMessageFor(0x41));
  add('MSI route', route, [
    ['setMsi', () => route.setMsi(guest.msiMessageFor(0x42))],
    ['mask', () => route.mask()],
    ['unmask', () => route.unmask()],
    ['trigger', () => route.trigger()],
  ]);
  if (caps.lineIrq !== false && session.freeLine !== undefined) {
    const trigger: LineTrigger = caps.lineIrq.edge ? 'edge' : 'level';
    const line = backend.createLineIrq({ kind: 'gsi', line: session.freeLine }, trigger);
    add('line IRQ', line, [
      ['assert', () => line.assert()],
      ['deassert', () => line.deassert()],
    ]);
  }
  const view = backend.memory.view(page, 64, 'readwrite');
  add('view', view, [
    ['bytes', () => view.bytes],
    ['data', () => view.data],
  ]);
  if (caps.pinning) {
    const pin = backend.memory.pin(page, PAGE_SIZE);
    add('pin', pin, [['view', () => pin.view('read')]]);
    const pinView = pin.view('readwrite');
    add('view of a pin', pinView, [['bytes', () => pinView.bytes]]);
  }
  const shared = backend.allocateSharedMemory(PAGE_SIZE);
  add('shared memory', shared, [['bytes', () => shared.bytes]]);
  if (caps.directRegions) add('direct mapping', backend.mapDirect(rawRange(w + 0x1_0000n, PAGE_SIZE), shared));
  if (caps.pageTracking) add('page track', backend.trackWrites(rawRange(page, PAGE_SIZE), () => 'apply'));
  if (caps.eventChannels) {
    const channel = backend.createEventChannel();
    add('event channel', channel, [['trigger', () => channel.trigger()]]);
  }
  if (caps.dirtyTracking !== false) backend.dirty.start();
  return out;
}

function expectAllBadHandle(held: readonly Held[], when: string): void {
  for (const h of held) {
    assert.equal(h.handle.disposed, true, `${h.what} reports disposed ${when}`);
    for (const [name, call] of h.methods) expectCode(call, 'BadHandle', `${h.what}.${name} ${when}`);
    h.handle.dispose();
  }
}

export const disposeScenarios = [
  scenario('dispose.bad-handle', 'every method of a disposed object and of a closed backend throws BadHandle', async (session) => {
    const { backend, guest } = session;
    attachRecorder(session);

    // Disposed one by one, newest first as a DisposableStack would.
    const first = makeEverything(session);
    for (const h of [...first].reverse()) h.handle.dispose();
    expectAllBadHandle(first, 'after dispose');
    if (backend.capabilities.dirtyTracking !== false) backend.dirty.stop();

    // Left alive and released by close.
    const second = makeEverything(session);
    const shared = second.find((h) => h.what === 'shared memory');
    await backend.close();
    assert.equal(backend.closed, true);
    expectAllBadHandle(second, 'after the backend closed');

    const w = session.mmioWindow.base;
    const [page] = scratchPages(guest, 1) as [bigint];
    const message = guest.msiMessageFor(0x41);
    const calls: Array<[string, () => unknown]> = [
      ['attach', () => backend.attach(new RecordingSink())],
      ['claimIo', () => backend.claimIo('mmio', rawRange(w, 0x10))],
      ['claimPciFunction', () => backend.claimPciFunction({ bus: 0, device: 0x1e, function: 0 })],
      ['allocateSharedMemory', () => backend.allocateSharedMemory(PAGE_SIZE)],
      ['mapDirect', () => backend.mapDirect(rawRange(w, PAGE_SIZE), shared?.handle as never)],
      ['createMsiRoute', () => backend.createMsiRoute()],
      ['signalMsi', () => backend.signalMsi(message)],
      ['createLineIrq', () => backend.createLineIrq({ kind: 'gsi', line: session.freeLine ?? 0 }, 'edge')],
      ['createEventChannel', () => backend.createEventChannel()],
      ['registerIoEvent', () => backend.registerIoEvent({ space: 'mmio', address: w, length: 4 }, () => {})],
      ['trackWrites', () => backend.trackWrites(rawRange(page, PAGE_SIZE), () => 'apply')],
      ['memory.read', () => backend.memory.read(page, new Uint8Array(4))],
      ['memory.write', () => backend.memory.write(page, new Uint8Array(4))],
      ['memory.view', () => backend.memory.view(page, 4, 'read')],
      ['memory.pin', () => backend.memory.pin(page, PAGE_SIZE)],
      ['dirty.start', () => backend.dirty.start()],
      ['dirty.stop', () => backend.dirty.stop()],
      ['dirty.pull', () => backend.dirty.pull()],
      ['dirty.push', () => backend.dirty.push(rawRange(page, PAGE_SIZE))],
    ];
    for (const [name, call] of calls) expectCode(call, 'BadHandle', `backend.${name} after close`);
    // resources() stays callable so that a leak check can see a closed session holds nothing.
    const held = backend.resources();
    for (const [kind, count] of Object.entries(held)) assert.equal(count, 0, `resources().${kind} after close`);
    await backend.close();
  }),

  scenario('dispose.no-leaks', "objects and sessions come and go without leaking: resources() returns to its baseline, and so do the process's fds, mappings and threads", async (session, context) => {
    const { backend } = session;
    attachRecorder(session);
    const baseline = backend.resources();
    for (let round = 0; round < 8; round++) {
      const held = makeEverything(session);
      const during = backend.resources();
      assert.equal(during.claims, baseline.claims + 2, 'two claims are counted');
      assert.equal(during.doorbells, baseline.doorbells + 1, 'the doorbell is counted');
      assert.equal(during.msiRoutes, baseline.msiRoutes + 1, 'the route is counted');
      for (const h of [...held].reverse()) h.handle.dispose();
      if (backend.capabilities.dirtyTracking !== false) backend.dirty.stop();
      assert.deepEqual(backend.resources(), baseline, `round ${round}: resources() back to its baseline`);
    }

    // Sessions: warm up (lazy one-time allocations), then churn in batches. A leak grows
    // every batch; the JS heap only grows now and then, so one quiet batch clears it.
    await churn(context, 2);
    const growth: OsResources[] = [];
    let last = await quiesce(() => session.osResources());
    for (let batch = 0; batch < BATCHES; batch++) {
      await churn(context, SESSIONS);
      const now = await quiesce(() => session.osResources());
      growth.push({ fds: now.fds - last.fds, mappings: now.mappings - last.mappings, threads: now.threads - last.threads });
      last = now;
    }
    const least = (k: keyof OsResources) => Math.min(...growth.map((g) => g[k]));
    const shown = JSON.stringify(growth);
    assert.ok(least('fds') <= 0, `open fds grew in every batch of ${SESSIONS} sessions: ${shown}`);
    assert.ok(least('threads') <= 0, `threads grew in every batch of ${SESSIONS} sessions: ${shown}`);
    assert.ok(least('mappings') <= MAPPING_SLACK, `mappings grew by more than ${MAPPING_SLACK} in every batch of ${SESSIONS} sessions: ${shown}`);
  }),
];

/** Batches of sessions opened and closed to look for leaks. */
const BATCHES = 3;
/** Sessions per batch: more than MAPPING_SLACK, so one leaked mapping per session shows. */
const SESSIONS = 12;
/** The JS heap maps and unmaps on its own; a leak of one mapping per session still exceeds this. */
const MAPPING_SLACK = 8;

async function churn(context: { openSession(): Promise<ConformanceSession> }, sessions: number): Promise<void> {
  for (let i = 0; i < sessions; i++) {
    const s = await context.openSession();
    attachRecorder(s);
    makeEverything(s);
    await s.close();
  }
}
