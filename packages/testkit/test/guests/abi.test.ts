// The assembler constants (guests/**/*.inc) are the guests' truth; the TypeScript mirrors must
// say the same, name for name, in both directions.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import * as agentAbi from '../../src/guests/agent-abi.js';
import * as demoAbi from '../../src/guests/demo-abi.js';
import * as runtimeAbi from '../../src/guests/runtime-abi.js';

const guests = fileURLToPath(new URL('../../guests/', import.meta.url));

/** `.equ NAME, LITERAL` lines of an include file; anything else that defines a symbol fails. */
function parseInc(path: string): Map<string, number> {
  const constants = new Map<string, number>();
  for (const [i, raw] of readFileSync(path, 'utf8').split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const m = /^\.equ\s+([A-Z0-9_]+)\s*,\s*(0x[0-9a-fA-F]+|[0-9]+)$/.exec(line);
    if (m === null) throw new Error(`${path}:${i + 1}: not a plain .equ: ${raw}`);
    const [, name, literal] = m as unknown as [string, string, string];
    if (constants.has(name)) throw new Error(`${path}:${i + 1}: ${name} defined twice`);
    constants.set(name, Number(literal));
  }
  return constants;
}

/** The module's SCREAMING_CASE number exports. */
function numericExports(module: Record<string, unknown>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, value] of Object.entries(module)) {
    if (/^[A-Z][A-Z0-9_]*$/.test(name) && typeof value === 'number') out.set(name, value);
  }
  return out;
}

describe.each([
  ['common/runtime.inc', runtimeAbi],
  ['agent/abi.inc', agentAbi],
  ['demo/abi.inc', demoAbi],
] as const)('%s and its TypeScript mirror', (inc, module) => {
  const asm = parseInc(guests + inc);
  const ts = numericExports(module as unknown as Record<string, unknown>);

  it('define the same names', () => {
    expect(asm.size).toBeGreaterThan(0);
    expect([...ts.keys()].sort()).toEqual([...asm.keys()].sort());
  });

  it('give every name the same value', () => {
    for (const [name, value] of asm) expect({ name, value: ts.get(name) }).toEqual({ name, value });
  });
});

describe('agent ABI helpers', () => {
  it('keeps the mailbox inside the program page, one line per vCPU', () => {
    expect(agentAbi.AGENT_MAILBOX_ADDR).toBe(runtimeAbi.PROGRAM_PAGE_ADDR);
    expect(agentAbi.agentMailboxAddress(3) + agentAbi.AGENT_MAILBOX_STRIDE).toBeLessThanOrEqual(
      runtimeAbi.PROGRAM_PAGE_ADDR + runtimeAbi.PROGRAM_PAGE_SIZE,
    );
    expect(agentAbi.AGENT_MB_COUNT + 4).toBeLessThanOrEqual(agentAbi.AGENT_MAILBOX_STRIDE);
    expect(() => agentAbi.agentMailboxAddress(4)).toThrow(/vCPU 4/);
    expect(() => agentAbi.agentMailboxAddress(-1)).toThrow();
  });

  it('keeps the scratch area outside the guest footprint', () => {
    expect(agentAbi.AGENT_SCRATCH_ADDR).toBeGreaterThanOrEqual(runtimeAbi.GUEST_FOOTPRINT_END);
  });

  it('encodes config addresses the way 0xcf8 does, and refuses what 0xcf8 cannot reach', () => {
    expect(agentAbi.agentConfigAddress({ bus: 0, device: 3, function: 0 }, 0x10)).toBe(0x1810n);
    expect(agentAbi.agentConfigAddress({ bus: 0xff, device: 0x1f, function: 7 }, 0xfc)).toBe(0xffff_fcn);
    for (const [device, register] of [
      [{ bus: 0, device: 32, function: 0 }, 0],
      [{ bus: 0, device: 0, function: 8 }, 0],
      [{ bus: 256, device: 0, function: 0 }, 0],
      [{ bus: 0, device: 0, function: 0 }, 0x100],
      [{ segment: 1, bus: 0, device: 0, function: 0 }, 0],
    ] as const) {
      let caught: unknown;
      try {
        agentAbi.agentConfigAddress(device, register);
      } catch (e) {
        caught = e;
      }
      expect(isVmedError(caught, 'Invalid')).toBe(true);
    }
  });

  it('builds IOAPIC route values with the redirection-entry bits', () => {
    expect(agentAbi.ioapicRouteValue(0x61)).toBe(0x61n);
    expect(agentAbi.ioapicRouteValue(0x61, { trigger: 'level', activeLow: true, masked: true })).toBe(0x1_a061n);
    expect(() => agentAbi.ioapicRouteValue(0x1f)).toThrow(/vector 31/);
    expect(() => agentAbi.ioapicRouteValue(0xff)).toThrow(/vector 255/);
  });

  it('computes FNV-1a 32 as the guest does (published test vectors)', () => {
    const ascii = (s: string) => new TextEncoder().encode(s);
    expect(agentAbi.fnv1a32(new Uint8Array(0))).toBe(0x811c9dc5);
    expect(agentAbi.fnv1a32(ascii('a'))).toBe(0xe40c292c);
    expect(agentAbi.fnv1a32(ascii('foobar'))).toBe(0xbf9cf968);
  });

  it('describes the fill pattern RAM_FILL writes', () => {
    expect([...agentAbi.ramFillPattern(0xfe, 4)]).toEqual([0xfe, 0xff, 0x00, 0x01]);
  });

  it('names statuses, including unknown ones', () => {
    expect(agentAbi.agentStatusName(agentAbi.AGENT_STATUS_BAD_ADDRESS)).toBe('bad address');
    expect(agentAbi.agentStatusName(99)).toBe('unknown status 0x63');
  });
});

describe('runtime ABI helpers', () => {
  it('addresses MSIs to an APIC id and refuses impossible ones', () => {
    expect(runtimeAbi.msiMessage(3, 0x41)).toEqual({ address: 0xfee0_3000n, data: 0x41 });
    expect(() => runtimeAbi.msiMessage(256, 0x41)).toThrow(/APIC id 256/);
    expect(() => runtimeAbi.msiMessage(0, 0x10)).toThrow(/vector 16/);
  });

  it('finds per-vCPU records and counters inside their pages', () => {
    expect(runtimeAbi.runtimeVcpuRecord(1)).toBe(0x20060);
    expect(runtimeAbi.irqCounterAddress(0xff)).toBe(0x213fc);
    expect(() => runtimeAbi.irqCounterAddress(256)).toThrow(/vector 256/);
    expect(() => runtimeAbi.runtimeVcpuRecord(4)).toThrow(/vCPU 4/);
    expect(runtimeAbi.runtimeVcpuRecord(runtimeAbi.GUEST_MAX_VCPUS - 1) + runtimeAbi.RT_VCPU_STRIDE).toBeLessThanOrEqual(
      runtimeAbi.IRQ_COUNTS_ADDR,
    );
  });

  it('has one stack per vCPU between the fixed pages and the end of the footprint', () => {
    const stacksEnd = runtimeAbi.STACKS_ADDR + (runtimeAbi.GUEST_MAX_VCPUS << runtimeAbi.STACK_SIZE_SHIFT);
    expect(stacksEnd).toBe(runtimeAbi.GUEST_FOOTPRINT_END);
  });
});

describe('demo ABI', () => {
  it('has a message for every exit code', () => {
    const codes = [...numericExports(demoAbi as unknown as Record<string, unknown>)].filter(([n]) => /^DEMO_(OK|ERR_)/.test(n));
    for (const [, code] of codes) expect(demoAbi.demoExitMessage(code)).not.toMatch(/^unknown/);
    expect(demoAbi.demoExitMessage(12)).toBe('unknown exit code 0xc');
  });
});
