/**
 * Event channels end to end on real Xen 4.17, in the project's Xen lab: the backend leaves a
 * port unbound for the guest and publishes it; the project's guest agent (PVH) binds it the
 * way a Xen-aware driver would (`EVTCHNOP_bind_interdomain` through its hypercall page, with
 * shared_info mapped by `XENMEM_add_to_physmap` and a per-vCPU upcall vector from
 * `HVMOP_set_evtchn_upcall_vector`), and its upcall handler counts each notification per port
 * in guest RAM, which the test reads back.
 *
 *   pnpm xen-lab test -- event-channel
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { addressRange } from '@vmed/core';
import { AGENT_EVTCHN_VECTOR, AGENT_OP_IOAPIC_ROUTE, RecordingSink, ioapicRouteValue, type GuestEventChannel } from '@vmed/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import type { XenBackend } from '../../src/backend.js';
import { XEN_MMIO_WINDOW, createConformanceTarget, type XenAgentDriver } from '../../src/conformance.js';
import type { XenEventChannelRoute } from '../../src/interrupts/event-channel.js';

const run = promisify(execFile);
const inLab = process.env.VMED_XEN_LAB === '1' && existsSync('/dev/xen/privcmd');
const why = 'needs the Xen lab (VMED_XEN_LAB=1 and /dev/xen/privcmd): run `pnpm xen-lab test -- event-channel`';
const LAB_TIMEOUT = 600_000;
/** Triggers, each waited for: a second notification while one is pending would coalesce. */
const TRIGGERS = 20;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, predicate: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

/** `xenstore-ls -p` of one node: its value and its permission list, e.g. `n0,r5`. */
async function xenstoreNode(path: string): Promise<{ value: string; perms: string } | undefined> {
  const parent = path.slice(0, path.lastIndexOf('/'));
  const name = path.slice(path.lastIndexOf('/') + 1);
  const { stdout } = await run('xenstore-ls', ['-p', parent]).catch(() => ({ stdout: '' }));
  for (const line of stdout.split('\n')) {
    const m = /^\s*(\S+) = "([^"]*)".*\(([^)]*)\)\s*$/.exec(line);
    if (m !== null && m[1] === name) return { value: m[2] as string, perms: m[3] as string };
  }
  return undefined;
}

describe.skipIf(!inLab)(`event channels on a PVH domU running the guest agent${inLab ? '' : ` (skipped: ${why})`}`, () => {
  const target = createConformanceTarget({ name: 'xen-event-channel' });
  afterAll(async () => {
    await target.dispose?.();
  }, LAB_TIMEOUT);

  it(
    `publishes the port read-only for the guest; the bound guest counts ${TRIGGERS} triggers, and dispose disconnects it`,
    async () => {
      const session = await target.open();
      const backend = session.backend as XenBackend;
      const guest = session.guest as XenAgentDriver;
      let channel: GuestEventChannel | undefined;
      let open = false;
      try {
        const route = backend.createEventChannel() as XenEventChannelRoute;
        expect(route.node).toBe(`/local/domain/${backend.domid}/data/vmed/evtchn/${route.port}`);
        // dom0 owns the node (no access for others), the guest may read it: it cannot forge it.
        expect(await xenstoreNode(route.node as string)).toEqual({ value: String(route.port), perms: `n0,r${backend.domid}` });

        channel = await guest.bindEventChannel(route.port);
        open = true;
        expect(await channel.status()).toEqual({ state: 'interdomain', remote: route.port });
        const base = await channel.notifications();
        const upcalls = await guest.interruptCount(AGENT_EVTCHN_VECTOR);
        for (let i = 1; i <= TRIGGERS; i++) {
          route.trigger();
          const c = channel;
          await waitFor(`notification ${i}`, async () => (await c.notifications()) >= base + i);
        }
        await sleep(200);
        expect(await channel.notifications()).toBe(base + TRIGGERS);
        // Each notification came through the upcall vector's handler (which EOIs the LAPIC).
        expect((await guest.interruptCount(AGENT_EVTCHN_VECTOR)) - upcalls).toBeGreaterThanOrEqual(TRIGGERS);

        // Back to back, triggers may coalesce into one pending bit, never into none.
        const before = await channel.notifications();
        for (let i = 0; i < 10; i++) route.trigger();
        const c = channel;
        await waitFor('a burst', async () => (await c.notifications()) > before);
        await sleep(200);
        const burst = (await channel.notifications()) - before;
        expect(burst).toBeGreaterThanOrEqual(1);
        expect(burst).toBeLessThanOrEqual(10);

        // The guest notifying dom0 lands on the session's event-channel descriptor: the ioreq
        // path must keep serving.
        await channel.send();
        const sink = new RecordingSink();
        backend.attach(sink);
        const claim = backend.claimIo('mmio', addressRange(XEN_MMIO_WINDOW.base, 0x100));
        sink.serve('mmio', XEN_MMIO_WINDOW.base, 0x100n, () => 0x5151n);
        expect(await guest.mmioRead(XEN_MMIO_WINDOW.base + 8n, 4)).toBe(0x5151n);
        claim.dispose();

        const settled = await channel.notifications();
        route.dispose();
        expect(await channel.status()).toEqual({ state: 'unbound', remote: 0 });
        expect(await xenstoreNode(route.node as string)).toBeUndefined();
        expect(() => route.trigger()).toThrow(expect.objectContaining({ code: 'BadHandle' }));
        // dom0's port is gone: the guest cannot connect to it again.
        await expect(guest.bindEventChannel(route.port)).rejects.toThrow(/hypercall refused/);
        await sleep(200);
        expect(await channel.notifications()).toBe(settled);
        expect(backend.stats().faults).toBe(0);

        await channel.close();
        open = false;
        expect(await channel.status()).toEqual({ state: 'closed', remote: 0 });
      } finally {
        if (open) await channel?.close();
        await session.close();
      }
    },
    LAB_TIMEOUT,
  );

  it(
    'closing the session closes the channels it still holds: the guest sees them disconnected',
    async () => {
      const session = await target.open();
      const guest = session.guest as XenAgentDriver;
      const routes = [session.backend.createEventChannel(), session.backend.createEventChannel()];
      const channels = [await guest.bindEventChannel((routes[0] as XenEventChannelRoute).port), await guest.bindEventChannel((routes[1] as XenEventChannelRoute).port)];
      try {
        for (const [i, ch] of channels.entries()) expect(await ch.status()).toEqual({ state: 'interdomain', remote: routes[i]?.port });
        await session.backend.close();
        expect(routes.every((r) => r.disposed)).toBe(true);
        for (const ch of channels) expect(await ch.status()).toEqual({ state: 'unbound', remote: 0 });
      } finally {
        for (const ch of channels) await ch.close();
        await session.close();
      }
    },
    LAB_TIMEOUT,
  );

  it(
    'the agent finds no IOAPIC on PVH (event channels and MSIs are what such a guest has)',
    async () => {
      const session = await target.open();
      try {
        const guest = session.guest as XenAgentDriver;
        await expect(guest.command(AGENT_OP_IOAPIC_ROUTE, 0, 4n, ioapicRouteValue(0x62))).rejects.toThrow(/unsupported/);
      } finally {
        await session.close();
      }
    },
    LAB_TIMEOUT,
  );
});
