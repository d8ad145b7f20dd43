/**
 * Event channels (Xen): a port the backend leaves unbound for the guest, which a Xen-aware
 * guest driver binds; each `trigger` reaches the guest's upcall handler, and disposing the
 * route closes the backend's end so the guest sees its channel disconnected. Backends without
 * event channels refuse `createEventChannel` with `Unsupported`.
 *
 * Event-channel notifications coalesce while one is pending (one bit per port), so the
 * scenario waits for each to be taken before the next trigger.
 */
import assert from 'node:assert/strict';
import { expectCode, expectUnsupported, sleep, waitUntil, QUIET_MS } from '../helpers.js';
import { scenario } from '../scenario.js';

/** Triggers in the delivery scenario. */
const TRIGGERS = 3;

export const eventChannelScenarios = [
  scenario(
    'event-channel.deliver-and-close',
    'a bound channel delivers each trigger once; dispose closes the backend end, which the guest sees',
    async ({ backend, guest }) => {
      if (!backend.capabilities.eventChannels) {
        expectUnsupported(() => backend.createEventChannel(), 'createEventChannel without event channels');
        return;
      }
      assert.ok(guest.bindEventChannel !== undefined, 'the target offers event channels but its guest driver cannot bind one');
      const route = backend.createEventChannel();
      const channel = await guest.bindEventChannel(route.port);
      try {
        assert.deepEqual(await channel.status(), { state: 'interdomain', remote: route.port }, 'the guest end is connected to the route');
        const base = await channel.notifications();
        for (let i = 1; i <= TRIGGERS; i++) {
          route.trigger();
          await waitUntil(async () => (await channel.notifications()) >= base + i, `notification ${i} on guest port ${channel.localPort}`);
        }
        await sleep(QUIET_MS);
        assert.equal(await channel.notifications(), base + TRIGGERS, `${TRIGGERS} triggers are ${TRIGGERS} notifications, no more`);

        // The guest talking back must not disturb the backend (it only unmasks such ports).
        await channel.send();

        route.dispose();
        assert.equal(route.disposed, true);
        const after = await channel.status();
        assert.equal(after.state, 'unbound', 'once the backend end is closed the guest port is no longer connected');
        expectCode(() => route.trigger(), 'BadHandle', 'trigger on a disposed event channel');
        route.dispose();
        await sleep(QUIET_MS);
        assert.equal(await channel.notifications(), base + TRIGGERS, 'nothing arrives after dispose');
      } finally {
        route.dispose();
        await channel.close();
      }
      assert.equal((await channel.status()).state, 'closed', 'the guest closed its end');
    },
  ),
];
