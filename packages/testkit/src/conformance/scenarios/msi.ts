/**
 * MSI routes: delivery to the vector the message names, masking that never loses an
 * interrupt and never doubles one, and a routing table that runs out with `NoSpace`.
 *
 * Vectors 0x41..0x43 are the suite's MSI vectors: every guest agent counts them.
 */
import assert from 'node:assert/strict';
import type { MsiRoute } from '@vmed/core';
import { expectCode, expectInterrupts, expectNoMoreInterrupts, expectUnsupported } from '../helpers.js';
import { scenario } from '../scenario.js';

export const MSI_VECTORS = [0x41, 0x42, 0x43] as const;
const [V1, V2, V3] = MSI_VECTORS;

export const msiScenarios = [
  scenario('msi.deliver', 'a programmed, unmasked route delivers each trigger to its vector; reprogramming moves it', async ({ backend, guest }) => {
    const r = backend.createMsiRoute();
    assert.equal(r.masked, true, 'a new route is masked');
    assert.equal(r.pending, false);
    assert.equal(r.message, undefined, 'a new route has no message');
    assert.equal(r.disposed, false);
    r.setMsi(guest.msiMessageFor(V1));
    assert.deepEqual(r.message, guest.msiMessageFor(V1));
    r.unmask();
    assert.equal(r.masked, false);

    const v1 = await guest.interruptCount(V1);
    r.trigger();
    await expectInterrupts(guest, V1, v1 + 1, 'first trigger');
    r.trigger();
    await expectInterrupts(guest, V1, v1 + 2, 'second trigger');

    const r2 = backend.createMsiRoute();
    assert.notEqual(r2.id, r.id, 'routes have distinct ids');
    r2.setMsi(guest.msiMessageFor(V2));
    r2.unmask();
    const v2 = await guest.interruptCount(V2);
    r2.trigger();
    await expectInterrupts(guest, V2, v2 + 1, 'the second route');
    await expectNoMoreInterrupts(guest, V1, v1 + 2, 'the first route while the second fires');

    const v3 = await guest.interruptCount(V3);
    r.setMsi(guest.msiMessageFor(V3));
    r.trigger();
    await expectInterrupts(guest, V3, v3 + 1, 'a reprogrammed route');
    await expectNoMoreInterrupts(guest, V1, v1 + 2, 'the old vector of a reprogrammed route');

    if (backend.capabilities.signalMsi) {
      backend.signalMsi(guest.msiMessageFor(V2));
      await expectInterrupts(guest, V2, v2 + 2, 'signalMsi');
    } else {
      expectUnsupported(() => backend.signalMsi(guest.msiMessageFor(V2)), 'signalMsi without the capability');
    }
    r.dispose();
    r2.dispose();
    expectCode(() => r.trigger(), 'BadHandle', 'trigger on a disposed route');
  }),

  scenario('msi.mask-pending-unmask-once', 'triggers while masked set pending; unmask delivers exactly once', async ({ backend, guest }) => {
    const r = backend.createMsiRoute();
    r.setMsi(guest.msiMessageFor(V1));
    r.unmask();
    r.mask();
    assert.equal(r.masked, true);
    const base = await guest.interruptCount(V1);
    r.trigger();
    r.trigger();
    assert.equal(r.pending, true, 'a trigger while masked is pending');
    await expectNoMoreInterrupts(guest, V1, base, 'a masked route');
    r.unmask();
    assert.equal(r.pending, false, 'unmask clears pending');
    await expectInterrupts(guest, V1, base + 1, 'the pending interrupt on unmask');
    await expectNoMoreInterrupts(guest, V1, base + 1, 'two masked triggers deliver once, not twice');
    r.unmask();
    r.mask();
    r.unmask();
    await expectNoMoreInterrupts(guest, V1, base + 1, 'unmask without anything pending');
    r.trigger();
    await expectInterrupts(guest, V1, base + 2, 'a trigger after the replay');
    r.dispose();
  }),

  scenario('msi.unprogrammed-behaves-masked', 'a trigger before any message is kept pending and delivered once the message is set', async ({ backend, guest }) => {
    const r = backend.createMsiRoute();
    r.unmask();
    r.trigger();
    assert.equal(r.pending, true, 'a route without a message behaves as masked');
    const base = await guest.interruptCount(V2);
    r.setMsi(guest.msiMessageFor(V2));
    await expectInterrupts(guest, V2, base + 1, 'the pending interrupt once the route can deliver');
    assert.equal(r.pending, false);
    await expectNoMoreInterrupts(guest, V2, base + 1, 'the pending interrupt is delivered once');
    r.dispose();
  }),

  scenario('msi.route-exhaustion-nospace', 'routes beyond maxMsiRoutes are NoSpace; a disposed route frees its slot', async ({ backend }) => {
    const max = backend.capabilities.maxMsiRoutes;
    const held = backend.resources().msiRoutes;
    const routes: MsiRoute[] = [];
    try {
      for (let i = held; i < max; i++) routes.push(backend.createMsiRoute());
      expectCode(() => backend.createMsiRoute(), 'NoSpace', `route ${max + 1}`);
      assert.equal(backend.resources().msiRoutes, max);
      assert.equal(new Set(routes.map((r) => r.id)).size, routes.length, 'route ids are unique');
      (routes.shift() as MsiRoute).dispose();
      routes.push(backend.createMsiRoute());
      expectCode(() => backend.createMsiRoute(), 'NoSpace', 'a route after the freed slot was taken again');
    } finally {
      for (const r of routes) r.dispose();
    }
    assert.equal(backend.resources().msiRoutes, held, 'every route released');
  }),
];
