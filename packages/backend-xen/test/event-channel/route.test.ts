/**
 * Event-channel routes with stand-ins for libxenevtchn and xenstore: what is published where,
 * with which permissions, and that every failure and close path gives the port back. The real
 * thing runs in the Xen lab (`event-channel.test.ts`).
 */
import { describe, expect, it } from 'vitest';
import { XS_PERM_NONE, XS_PERM_READ } from '../../src/abi/xen.js';
import type { XenstorePermission } from '../../src/libs/xenstore.js';
import { eventChannelNode, guestReadOnly, openEventChannel, type EventChannelPorts, type EventChannelStore } from '../../src/interrupts/event-channel.js';

const BASE = '/local/domain/7/data/vmed';

class FakePorts implements EventChannelPorts {
  next = 11;
  readonly bound = new Map<number, number>();
  readonly notified: number[] = [];
  failUnbind = false;
  bindUnboundPort(domid: number): number {
    const port = this.next++;
    this.bound.set(port, domid);
    return port;
  }
  notify(port: number): void {
    if (!this.bound.has(port)) throw new Error(`notify on unbound port ${port}`);
    this.notified.push(port);
  }
  unbind(port: number): void {
    if (this.failUnbind) throw new Error('EIO');
    this.bound.delete(port);
  }
}

class FakeStore implements EventChannelStore {
  readonly nodes = new Map<string, { value: string; perms: readonly XenstorePermission[] }>();
  failWrite = false;
  failPerms = false;
  write(path: string, value: string): void {
    if (this.failWrite) throw new Error('EACCES');
    this.nodes.set(path, { value, perms: [] });
  }
  setPermissions(path: string, perms: readonly XenstorePermission[]): void {
    const node = this.nodes.get(path);
    if (node === undefined || this.failPerms) throw new Error('ENOENT');
    node.perms = perms;
  }
  remove(path: string): void {
    this.nodes.delete(path);
  }
}

describe('event-channel routes', () => {
  it('allocate a port for the guest and publish it under the base path, read-only for the guest', () => {
    const ports = new FakePorts();
    const store = new FakeStore();
    const route = openEventChannel(7, BASE, ports, store, () => {});
    expect(route.port).toBe(11);
    expect(ports.bound.get(11)).toBe(7);
    expect(route.node).toBe(`${BASE}/evtchn/11`);
    expect(store.nodes.get(`${BASE}/evtchn/11`)).toEqual({
      value: '11',
      perms: [
        { domid: 0, perms: XS_PERM_NONE },
        { domid: 7, perms: XS_PERM_READ },
      ],
    });
    expect(guestReadOnly(7)).toEqual(store.nodes.get(eventChannelNode(BASE, 11))?.perms);
    route.trigger();
    expect(ports.notified).toEqual([11]);
  });

  it('dispose unbinds the port and removes the node once; trigger afterwards is BadHandle', () => {
    const ports = new FakePorts();
    const store = new FakeStore();
    const disposed: number[] = [];
    const route = openEventChannel(7, BASE, ports, store, (r) => disposed.push(r.port));
    route.dispose();
    route.dispose();
    expect(route.disposed).toBe(true);
    expect(ports.bound.size).toBe(0);
    expect(store.nodes.size).toBe(0);
    expect(disposed).toEqual([11]);
    expect(() => route.trigger()).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(ports.notified).toEqual([]);
  });

  it('a node the guest already deleted does not fail dispose', () => {
    const ports = new FakePorts();
    const store = new FakeStore();
    const route = openEventChannel(7, BASE, ports, store, () => {});
    store.nodes.clear();
    expect(() => route.dispose()).not.toThrow();
    expect(ports.bound.size).toBe(0);
  });

  it.each([
    ['the write', (s: FakeStore) => (s.failWrite = true)],
    ['setting permissions', (s: FakeStore) => (s.failPerms = true)],
  ])('when %s fails, the port is unbound again, no node is left and the error is thrown', (_what, breakIt) => {
    const ports = new FakePorts();
    const store = new FakeStore();
    breakIt(store);
    expect(() => openEventChannel(7, BASE, ports, store, () => {})).toThrow();
    expect(ports.bound.size).toBe(0);
    expect(store.nodes.size).toBe(0);
  });

  it('a failed unbind on dispose is thrown, and the node is removed and the route released all the same', () => {
    const ports = new FakePorts();
    const store = new FakeStore();
    const disposed: number[] = [];
    const route = openEventChannel(7, BASE, ports, store, (r) => disposed.push(r.port));
    ports.failUnbind = true;
    expect(() => route.dispose()).toThrow('EIO');
    expect(store.nodes.size).toBe(0);
    expect(disposed).toEqual([11]);
    expect(route.disposed).toBe(true);
    expect(() => route.dispose()).not.toThrow();
  });
});
