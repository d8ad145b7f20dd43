/**
 * Wired lines on a Xen **HVM** guest (PVH has no emulated PIC or IOAPIC): the project's guest
 * agent booted as an HVM domU (QEMU direct kernel boot: SeaBIOS runs QEMU's `pvh.bin`, which
 * enters the agent's PVH entry), its IOAPIC pins routed by the agent, and the backend driving
 * `set_isa_irq_level` / `set_pci_intx_level`.
 *
 * Minutes of emulated firmware before the agent runs, so not part of the default runs: it is
 * skipped unless `VMED_HVM_LINES=1` (host variables named `VMED_*` reach dom0):
 *
 *   pnpm xen-lab exec --timeout 3000 -- 'VMED_HVM_LINES=1 node node_modules/vitest/vitest.mjs run packages/backend-xen/test/hvm-lines'
 *
 * See `packages/testkit/xen-lab/NOTES.md` for what happened when it was tried.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { AGENT_OP_IOAPIC_ROUTE, ioapicRouteValue, loadGuest } from '@vmed/testkit';
import * as guests from '@vmed/testkit';
import { createDomain, destroyDomain, type LabDomain } from '@vmed/testkit/xen-lab';
import { createBackend, type XenBackend } from '../../src/backend.js';
import { AgentMemory, XenAgentDriver } from '../../src/conformance.js';

const run = promisify(execFile);
const inLab = process.env.VMED_XEN_LAB === '1' && existsSync('/dev/xen/privcmd');
const wanted = process.env.VMED_HVM_LINES === '1';
const why = !inLab ? 'needs the Xen lab (VMED_XEN_LAB=1 and /dev/xen/privcmd)' : 'takes minutes of emulated firmware: set VMED_HVM_LINES=1 to run it';
/** SeaBIOS and the option ROM under the lab's emulation; 369 s for a Linux guest once. */
const BOOT_TIMEOUT_MS = 30 * 60_000;
const TEST_TIMEOUT_MS = 40 * 60_000;
/** An ISA IRQ nothing in Xen's HVM platform uses (hvmloader gives PCI links 5, 10 and 11). */
const ISA_IRQ = 7;
const ISA_VECTOR = 0x57;
/** INTA# of device 3 on bus 0: Xen routes it to GSI 16 + ((3 << 2) + 0) % 32 = 28. */
const INTX_DEVICE = 3;
const INTX_GSI = 28;
const INTX_VECTOR = 0x5c;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe.skipIf(!inLab || !wanted)(`line interrupts on an HVM domU running the guest agent${inLab && wanted ? '' : ` (skipped: ${why})`}`, () => {
  let domain: LabDomain | undefined;
  let memory: AgentMemory | undefined;
  afterAll(async () => {
    memory?.close();
    await domain?.destroy();
  }, 300_000);

  it(
    'an edge ISA line runs the handler once per assert; a held level line (ISA and INTx) is re-raised at each EOI until deasserted',
    async () => {
      const image = await loadGuest('agent', 'pvh');
      const name = `vmed-hvm-lines-${process.pid}`;
      await destroyDomain(name);
      const t0 = Date.now();
      const log = (what: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
      domain = await createDomain({ name, type: 'hvm', kernel: image.path, cmdline: 'vmed-agent', memoryMiB: 64, vcpus: 1, paused: true });
      log(`created HVM domain ${domain.domid}`);
      const backend = (await createBackend({ domid: domain.domid })) as XenBackend;
      try {
        expect(backend.guestType).toBe('hvm');
        expect(backend.capabilities.lineIrq).toEqual({ edge: true, level: true, resample: false });
        memory = new AgentMemory(domain.domid, guests);
        await domain.unpause();
        log('unpaused; waiting for the agent (SeaBIOS, pvh.bin, agent boot)');
        try {
          await memory.waitReady(BOOT_TIMEOUT_MS);
        } catch (error) {
          // What the firmware got to: its serial output and the hypervisor's log.
          log(`agent not up; serial log:\n${await domain.consoleOutput()}`);
          const dmesg = await run('xl', ['dmesg']).then((r) => r.stdout, (e: unknown) => String(e));
          log(`xl dmesg (last 40 lines):\n${dmesg.split('\n').slice(-40).join('\n')}`);
          throw error;
        }
        log('agent ready');
        const agent = new XenAgentDriver(memory);
        await agent.init();
        await agent.command(AGENT_OP_IOAPIC_ROUTE, 0, BigInt(ISA_IRQ), ioapicRouteValue(ISA_VECTOR, { trigger: 'edge' }));

        const edge = backend.createLineIrq({ kind: 'gsi', line: ISA_IRQ }, 'edge');
        const e0 = await agent.interruptCount(ISA_VECTOR);
        edge.assert();
        expect(await agent.waitForInterrupts(ISA_VECTOR, e0 + 1, 120_000)).toBe(true);
        edge.assert();
        expect(await agent.waitForInterrupts(ISA_VECTOR, e0 + 2, 120_000)).toBe(true);
        await sleep(1000);
        expect(await agent.interruptCount(ISA_VECTOR)).toBe(e0 + 2);
        edge.dispose();
        log('edge ISA line: one handler run per assert');

        // Level: the same pin, now level-triggered in the IOAPIC.
        await agent.command(AGENT_OP_IOAPIC_ROUTE, 0, BigInt(ISA_IRQ), ioapicRouteValue(ISA_VECTOR, { trigger: 'level' }));
        const level = backend.createLineIrq({ kind: 'gsi', line: ISA_IRQ }, 'level');
        await expectHeldLevel(agent, ISA_VECTOR, () => level.assert(), () => level.deassert(), log, 'level ISA line');
        level.dispose();

        await agent.command(AGENT_OP_IOAPIC_ROUTE, 0, BigInt(INTX_GSI), ioapicRouteValue(INTX_VECTOR, { trigger: 'level', activeLow: true }));
        const intx = backend.createLineIrq({ kind: 'intx', device: { bus: 0, device: INTX_DEVICE, function: 0 }, pin: 1, line: INTX_GSI }, 'level');
        await expectHeldLevel(agent, INTX_VECTOR, () => intx.assert(), () => intx.deassert(), log, 'INTx');
        intx.dispose();
        expect(backend.stats().faults).toBe(0);
      } finally {
        await backend.close();
      }
    },
    TEST_TIMEOUT_MS,
  );
});

/** While held, each EOI re-raises the line: the handler keeps running; once lowered it stops. */
async function expectHeldLevel(agent: XenAgentDriver, vector: number, raise: () => void, lower: () => void, log: (s: string) => void, what: string): Promise<void> {
  const before = await agent.interruptCount(vector);
  raise();
  expect(await agent.waitForInterrupts(vector, before + 3, 120_000)).toBe(true);
  lower();
  await sleep(1000);
  const settled = await agent.interruptCount(vector);
  await sleep(2000);
  expect(await agent.interruptCount(vector)).toBe(settled);
  log(`${what}: ${settled - before} handler runs while held, none after deassert`);
}
