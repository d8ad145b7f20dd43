// The agent on this machine's real KVM, driven by guests/tools/kvm-run.c: every reply below
// comes from guest instructions the KVM emulator executed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AGENT_STATUS_BAD_ADDRESS,
  AGENT_STATUS_BAD_OP,
  AGENT_STATUS_BAD_SIZE,
  AGENT_STATUS_INVALID,
  AGENT_STATUS_OK,
  AGENT_STATUS_UNSUPPORTED,
  DONE_EXCEPTION_BASE,
  PLATFORM_PVH,
  VCPU_STATE_FAULT,
  fnv1a32,
  loadGuestSync,
  ramFillPattern,
  type GuestImage,
} from '../../src/guests/index.js';
import { KvmRunner, agentReplies, doneCode, field, kvmSkipReason, unclaimedPattern, type KvmRun } from './kvm-run.js';

describe.skipIf(kvmSkipReason !== undefined)(`agent on KVM${kvmSkipReason ? ` (skipped: ${kvmSkipReason})` : ''}`, () => {
  let kvm: KvmRunner;
  let agent: GuestImage;
  beforeAll(() => {
    kvm = new KvmRunner();
    agent = loadGuestSync('agent', 'flat');
  });
  afterAll(() => kvm?.dispose());

  function runAgent(script: string, args: string[] = []): KvmRun {
    const run = kvm.run(agent, args, script);
    expect(run.status, run.lines.join('\n') + run.stderr).toBe(0);
    return run;
  }

  it('does MMIO reads and writes of 1, 2, 4 and 8 bytes, each as one access', () => {
    const run = runAgent(
      [
        'mmio-read 0xfebf0000 4',
        'mmio-read 0xfebf0011 1',
        'mmio-read 0xfebf0022 2',
        'mmio-read 0xfebf0038 8',
        'mmio-write 0xfebf0100 4 0x12345678',
        'mmio-write 0xfebf0103 1 0xab',
        'mmio-write 0xfebf0104 2 0xbeef',
        'mmio-write 0xfebf0108 8 0x1122334455667788',
      ].join('\n'),
      ['-x'],
    );
    const replies = agentReplies(run);
    expect(replies.map((r) => r.status)).toEqual(Array(8).fill(AGENT_STATUS_OK));
    expect(replies.slice(0, 4).map((r) => r.result)).toEqual([
      unclaimedPattern(0xfebf0000, 4),
      unclaimedPattern(0xfebf0011, 1),
      unclaimedPattern(0xfebf0022, 2),
      unclaimedPattern(0xfebf0038, 8),
    ]);
    const traced = run.lines.filter((l) => l.startsWith('trace mmio-'));
    expect(traced).toEqual([
      `trace mmio-read 0xfebf0000 4 0x${unclaimedPattern(0xfebf0000, 4).toString(16)}`,
      `trace mmio-read 0xfebf0011 1 0x${unclaimedPattern(0xfebf0011, 1).toString(16)}`,
      `trace mmio-read 0xfebf0022 2 0x${unclaimedPattern(0xfebf0022, 2).toString(16)}`,
      `trace mmio-read 0xfebf0038 8 0x${unclaimedPattern(0xfebf0038, 8).toString(16)}`,
      'trace mmio-write 0xfebf0100 4 0x12345678',
      'trace mmio-write 0xfebf0103 1 0xab',
      'trace mmio-write 0xfebf0104 2 0xbeef',
      'trace mmio-write 0xfebf0108 8 0x1122334455667788',
    ]);
  });

  it('does port reads and writes of 1, 2 and 4 bytes', () => {
    const run = runAgent(
      ['pio-read 0x1234 1', 'pio-read 0x1236 2', 'pio-read 0x1238 4', 'pio-write 0x2000 4 0xcafef00d', 'pio-write 0x2004 1 0x7f'].join('\n'),
      ['-x'],
    );
    const replies = agentReplies(run);
    expect(replies.map((r) => r.result).slice(0, 3)).toEqual([
      unclaimedPattern(0x1234, 1),
      unclaimedPattern(0x1236, 2),
      unclaimedPattern(0x1238, 4),
    ]);
    expect(run.lines).toContain('trace pio-write 0x2000 4 0xcafef00d');
    expect(run.lines).toContain('trace pio-write 0x2004 1 0x7f');
  });

  it('does PCI config cycles through 0xcf8/0xcfc', () => {
    const run = runAgent(
      [
        'cfg-read 00:00.0 0 4', // host bridge 8086:1237
        'cfg-read 00:03.0 2 2', // edu's device id
        'cfg-read 00:05.0 0 4', // nothing there
        'cfg-write 00:03.0 0x3c 1 0x0b',
        'cfg-read 00:03.0 0x3c 1',
        'cfg-read 00:03.0 0x3e 2',
      ].join('\n'),
    );
    expect(agentReplies(run).map((r) => r.result)).toEqual([0x12378086n, 0x11e8n, 0xffffffffn, 0n, 0x0bn, 0n]);
  });

  it('refuses malformed commands with a status and keeps serving', () => {
    const run = runAgent(
      [
        'raw 99 4 0 0', // unknown op
        'mmio-read 0x100000000 4', // above 4 GiB
        'mmio-read 0xfffffffe 4', // wraps past 4 GiB
        'mmio-read 0xfebf0000 3', // odd size
        'pio-read 0xffff 2', // runs past port 0xffff
        'pio-read 0x80 8', // no 8-byte port access
        'cfg-read 00:00.0 1 2', // misaligned config register
        'ram-fill 0x10000 16 0', // over the agent itself
        'ram-fill 0x100000 0x1000001 0', // longer than AGENT_RAM_FILL_MAX
        'ioapic-route 24 0x61', // no such pin
        'ioapic-route 3 0x10', // an exception vector
        'ioapic-route 3 0xff', // the spurious vector
        'raw 9 0 3 0x100061', // a redirection-entry bit the agent does not allow
        'raw 15 0 5 0', // EVTCHN_BIND: no Xen under KVM
        'raw 16 0 5 0', // EVTCHN_CLOSE
        'raw 17 0 5 0', // EVTCHN_STATUS
        'raw 18 0 5 0', // EVTCHN_SEND
        'cli',
        'hlt', // would never wake
        'sti',
        'nop',
      ].join('\n'),
    );
    expect(agentReplies(run).map((r) => r.status)).toEqual([
      AGENT_STATUS_BAD_OP,
      AGENT_STATUS_BAD_ADDRESS,
      AGENT_STATUS_BAD_ADDRESS,
      AGENT_STATUS_BAD_SIZE,
      AGENT_STATUS_BAD_ADDRESS,
      AGENT_STATUS_BAD_SIZE,
      AGENT_STATUS_BAD_ADDRESS,
      AGENT_STATUS_BAD_ADDRESS,
      AGENT_STATUS_BAD_SIZE,
      AGENT_STATUS_BAD_ADDRESS,
      AGENT_STATUS_INVALID,
      AGENT_STATUS_INVALID,
      AGENT_STATUS_INVALID,
      AGENT_STATUS_UNSUPPORTED,
      AGENT_STATUS_UNSUPPORTED,
      AGENT_STATUS_UNSUPPORTED,
      AGENT_STATUS_UNSUPPORTED,
      AGENT_STATUS_OK,
      AGENT_STATUS_INVALID,
      AGENT_STATUS_OK,
      AGENT_STATUS_OK,
    ]);
  });

  it('counts an MSI on the vector it was sent to, and only there', () => {
    const run = runAgent(['msi 0x41', 'wait-irq 0x41 1', 'msi 0x41', 'wait-irq 0x41 2', 'irq-count 0x42'].join('\n'));
    expect(field(run, 'wait-irq', 'count')).toBe(1);
    expect(run.lines).toContain('wait-irq vector=0x41 count=2');
    expect(run.lines).toContain('irq-count vector=0x42 count=0');
  });

  it('holds an MSI while interrupts are off and takes it at STI', () => {
    const run = runAgent(['cli', 'msi 0x43', 'sleep 30', 'irq-count 0x43', 'nop', 'sti', 'wait-irq 0x43 1'].join('\n'));
    expect(run.lines).toContain('irq-count vector=0x43 count=0');
    expect(run.lines).toContain('wait-irq vector=0x43 count=1');
  });

  it('wakes from HLT on an MSI and only then acknowledges', () => {
    const run = runAgent(['async hlt', 'sleep 30', 'irq-count 0x44', 'msi 0x44', 'wait-ack', 'irq-count 0x44'].join('\n'));
    const counts = run.lines.filter((l) => l.startsWith('irq-count'));
    expect(counts).toEqual(['irq-count vector=0x44 count=0', 'irq-count vector=0x44 count=1']);
    expect(run.lines.indexOf('msi vector=0x44 apic=0')).toBeLessThan(run.lines.findIndex((l) => l.startsWith('wait-ack')));
    expect(run.lines.find((l) => l.startsWith('wait-ack'))).toMatch(/status=0 /);
  });

  it('routes IOAPIC pins edge- and level-triggered, and survives a level storm', () => {
    const run = runAgent(
      [
        'ioapic-route 4 0x62',
        'irq-line 4 1',
        'irq-line 4 0',
        'wait-irq 0x62 1',
        'sleep 20',
        'irq-count 0x62',
        'ioapic-route 3 0x63 masked',
        'irq-line 3 1',
        'irq-line 3 0',
        'sleep 20',
        'irq-count 0x63',
        // A level line held high: each EOI re-delivers. The handler must not nest.
        'ioapic-route 5 0x61 level',
        'irq-line 5 1',
        'wait-irq 0x61 20',
        'sleep 200',
        'irq-line 5 0',
        'sleep 20',
        'irq-count 0x61',
        'sleep 50',
        'irq-count 0x61',
        'mmio-read 0xfebf0000 4',
        'rt',
      ].join('\n'),
    );
    expect(run.lines).toContain('irq-count vector=0x62 count=1');
    expect(run.lines).toContain('irq-count vector=0x63 count=0');
    const storm = run.lines.filter((l) => l.startsWith('irq-count vector=0x61'));
    expect(storm).toHaveLength(2);
    expect(storm[0]).toBe(storm[1]); // the line is low: no more deliveries
    expect(Number(/count=(\d+)/.exec(storm[0] ?? '')?.[1])).toBeGreaterThanOrEqual(20);
    expect(agentReplies(run).at(-1)).toEqual({
      command: 'mmio-read',
      vcpu: 0,
      status: AGENT_STATUS_OK,
      result: unclaimedPattern(0xfebf0000, 4),
    });
    expect(field(run, 'rt vcpu=0', 'state')).toBe(2);
  });

  it('fills RAM and checksums it as the host does', () => {
    const seed = 0x37;
    const length = 4096;
    const run = runAgent([`ram-fill 0x100000 ${length} ${seed}`, `ram-checksum 0x100000 ${length}`, `host-checksum 0x100000 ${length}`].join('\n'));
    const expected = BigInt(fnv1a32(ramFillPattern(seed, length)));
    expect(agentReplies(run)[1]?.result).toBe(expected);
    expect(BigInt(field(run, 'host-checksum', 'result') ?? -1)).toBe(expected);
  });

  it('reports its APIC id and keeps its heartbeat going while idle', () => {
    const run = runAgent(['apic-id', 'heartbeat', 'sleep 50', 'heartbeat'].join('\n'));
    expect(agentReplies(run)[0]?.result).toBe(0n);
    const beats = run.lines.filter((l) => l.startsWith('heartbeat')).map((l) => Number(/value=(\d+)/.exec(l)?.[1]));
    expect(beats).toHaveLength(2);
    expect(beats[1]).toBeGreaterThan(beats[0] ?? Infinity);
  });

  it('serves four vCPUs, each through its own mailbox and with its own APIC id', () => {
    const script = [0, 1, 2, 3].flatMap((v) => [`vcpu ${v}`, 'apic-id', `mmio-read ${0xfebf0000 + v * 16} 4`, `msi ${0x50 + v} ${v}`, `wait-irq ${0x50 + v} 1`]);
    const run = runAgent(script.concat('rt').join('\n'), ['-c', '4']);
    const replies = agentReplies(run);
    for (const v of [0, 1, 2, 3]) {
      const mine = replies.filter((r) => r.vcpu === v);
      expect(mine.map((r) => r.result)).toEqual([BigInt(v), unclaimedPattern(0xfebf0000 + v * 16, 4)]);
    }
    expect(field(run, 'rt magic', 'online')).toBe(0xf);
  });

  it('boots through the PVH entry; IOAPIC routes work there when an IOAPIC answers (KVM has one; Xen PVH, tested in the lab, has none)', () => {
    const pvh = loadGuestSync('agent', 'pvh');
    const run = runAgent(['rt', 'ioapic-route 4 0x62', 'msi 0x41', 'wait-irq 0x41 1', 'done 0'].join('\n'), ['-p', String(pvh.entry)]);
    expect(field(run, 'rt magic', 'platform')).toBe(PLATFORM_PVH);
    expect(agentReplies(run)[0]?.status).toBe(AGENT_STATUS_OK);
    expect(run.lines).toContain('wait-irq vector=0x41 count=1');
    expect(doneCode(run)).toBe(0);
  });

  it('stops with DONE_EXCEPTION_BASE + vector when an exception vector fires', () => {
    const run = runAgent(['msi 0x14', 'nop'].join('\n'));
    expect(doneCode(run)).toBe(DONE_EXCEPTION_BASE + 0x14);
    expect(field(run, 'rt vcpu=0', 'state')).toBe(VCPU_STATE_FAULT);
    expect(field(run, 'rt vcpu=0', 'fault_vector')).toBe(0x14);
  });

  it('ends the run with the code the DONE command carries', () => {
    const run = runAgent(['nop', 'done 7'].join('\n'));
    expect(doneCode(run)).toBe(7);
  });
});
