/**
 * Teardown of a whole KVM session when the process is stopped: a child process
 * (`fixtures/teardown-child.ts`) runs a guest on two worker vCPUs with serial, edu and
 * fragile, MSI routes, a doorbell and a pin, busy computing on edu, and has called
 * `mediator.closeOnExit()`. SIGINT, SIGTERM, an uncaught exception or an unhandled rejection
 * must release everything (the child reports `resources()` all zero and its fd and thread
 * counts back to what they were before the session) and exit 130, 143 or 1.
 *
 * SIGKILL runs no handler: the kernel must release what the child held. The parent checks
 * that nothing holds the child's guest RAM any more and that a new VM and session work.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, expect, it } from 'vitest';
import { edu, eduDevice } from '@vmed/devices';
import { KVM_SKIP } from '../helpers/kvm.js';
import { AgentGuest, kvmMediator } from './helpers/agent-guest.js';

const REPO = fileURLToPath(new URL('../../../..', import.meta.url));
const SCRIPT = fileURLToPath(new URL('./fixtures/teardown-child.ts', import.meta.url));
const ZERO = { fds: 0, mappings: 0, msiRoutes: 0, lineIrqs: 0, doorbells: 0, claims: 0, pins: 0, pageTracks: 0, workers: 0 };

type Line = Record<string, unknown> & { kind: string };

interface Child {
  readonly pid: number;
  /** The first line of `kind` the child prints. */
  line(kind: string): Promise<Line>;
  kill(signal: NodeJS.Signals): void;
  /** Resolves when the child has exited and its output is complete. */
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; lines: Line[] }>;
}

function startChild(mode: string): Child {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', SCRIPT, mode], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  const waiters: Array<{ kind: string; resolve: (l: Line) => void }> = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  createInterface({ input: child.stdout }).on('line', (text) => {
    let parsed: Line;
    try {
      parsed = JSON.parse(text) as Line;
    } catch {
      parsed = { kind: 'text', text };
    }
    lines.push(parsed);
    for (const w of waiters.splice(0)) {
      if (w.kind === parsed.kind) w.resolve(parsed);
      else waiters.push(w);
    }
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; lines: Line[] }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stderr, lines }));
  });
  return {
    pid: child.pid ?? -1,
    line: (kind) =>
      new Promise<Line>((resolve, reject) => {
        const seen = lines.find((l) => l.kind === kind);
        if (seen !== undefined) return resolve(seen);
        waiters.push({ kind, resolve });
        void done.then((d) => reject(new Error(`child exited (${d.code ?? d.signal}) before "${kind}": ${d.stderr}`)));
      }),
    kill: (signal) => child.kill(signal),
    done,
  };
}

/** What a clean close must leave: nothing held by the session, the process back to its counts. */
function expectReleased(report: Line): void {
  expect(report['closed']).toBe(true);
  expect(report['resources']).toEqual(ZERO);
  const before = report['before'] as { fds: number; threads: number; lockedKiB: number };
  const after = report['after'] as { fds: number; threads: number; lockedKiB: number };
  expect(after).toEqual(before);
  expect(report['errors']).toEqual([]);
}

/** What the session held while it ran (so a release is not vacuous). */
function expectHeld(ready: Line): void {
  const r = ready['resources'] as Record<string, number>;
  expect(r['msiRoutes']).toBeGreaterThanOrEqual(2);
  expect(r['doorbells']).toBe(1);
  expect(r['pins']).toBe(1);
  expect(r['workers']).toBe(3); // two vCPU threads and the poller
  expect(r['claims']).toBeGreaterThanOrEqual(5); // 0xcf8 ports, ECAM, three BARs
  expect((ready['held'] as { lockedKiB: number }).lockedKiB).toBeGreaterThanOrEqual(64);
}

/** Host objects whose inode is `ino`, held by any process (an fd or a mapping). */
function holdersOf(dev: number, ino: number): string[] {
  const holders: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          const s = statSync(`/proc/${pid}/fd/${fd}`);
          if (s.dev === dev && s.ino === ino) holders.push(`${pid} fd ${fd}`);
        } catch {
          // closed meanwhile
        }
      }
      for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
        if (line.includes('memfd:vmed-ram') && line.split(/\s+/)[4] === String(ino)) holders.push(`${pid} maps`);
      }
    } catch {
      // the process exited meanwhile
    }
  }
  return holders;
}

describe('teardown of a running KVM session', () => {
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal} mid-run closes everything and exits ${code}`, { timeout: 90_000 }, async () => {
      const child = startChild(signal.toLowerCase());
      expectHeld(await child.line('ready'));
      await child.line('busy');
      child.kill(signal);
      const end = await child.done;
      expect({ code: end.code, signal: end.signal }, end.stderr).toEqual({ code, signal: null });
      const report = end.lines.find((l) => l.kind === 'report');
      expect(report?.['code']).toBe(code);
      expectReleased(report as Line);
      expect(end.stderr).toBe('');
    });
  }

  for (const [mode, origin, message] of [
    ['throw', 'uncaught exception', 'teardown-child: boom'],
    ['reject', 'unhandled rejection', 'teardown-child: rejected'],
  ] as const) {
    it(`an ${origin} mid-run is printed, closes everything and exits 1`, { timeout: 90_000 }, async () => {
      const child = startChild(mode);
      expectHeld(await child.line('ready'));
      const end = await child.done;
      expect({ code: end.code, signal: end.signal }, end.stderr).toEqual({ code: 1, signal: null });
      expect(end.stderr).toContain(`${origin}, closing: Error: ${message}`);
      const report = end.lines.find((l) => l.kind === 'report');
      expect(report?.['code']).toBe(1);
      expectReleased(report as Line);
    });
  }

  it('SIGKILL mid-run: the kernel releases the guest RAM, the locks and the VM; a new VM and session work', { timeout: 90_000 }, async () => {
    const child = startChild('hold');
    const ready = await child.line('ready');
    expectHeld(ready);
    await child.line('busy');
    // What the child holds, seen from outside: the RAM memfd, a VM fd, vCPU fds, locked pages.
    const fds = readdirSync(`/proc/${child.pid}/fd`).map((fd) => ({ fd, target: readlinkSync(`/proc/${child.pid}/fd/${fd}`) }));
    const ram = fds.find((f) => f.target.includes('memfd:vmed-ram'));
    expect(ram).toBeDefined();
    expect(fds.some((f) => f.target === 'anon_inode:kvm-vm')).toBe(true);
    expect(fds.filter((f) => f.target.startsWith('anon_inode:kvm-vcpu')).length).toBe(2);
    const ramStat = statSync(`/proc/${child.pid}/fd/${ram?.fd ?? ''}`);
    expect(holdersOf(ramStat.dev, ramStat.ino).length).toBeGreaterThan(0);
    expect(Number(/VmLck:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1])).toBeGreaterThanOrEqual(64);

    child.kill('SIGKILL');
    const end = await child.done;
    expect(end.signal).toBe('SIGKILL');
    expect(end.lines.some((l) => l.kind === 'report')).toBe(false); // no handler ran
    // The process is gone, and nothing anywhere holds its guest RAM (fd or mapping): the
    // pages, and the memlock charge on them, went with it.
    expect(existsSync(`/proc/${child.pid}`)).toBe(false);
    expect(holdersOf(ramStat.dev, ramStat.ino)).toEqual([]);

    // A new VM, a new session: the guest drives edu end to end.
    const kvm = await kvmMediator({ vcpus: 1, deviceTypes: [eduDevice] });
    try {
      kvm.mediator.create('edu', { slot: 4 }).open();
      const agent = await AgentGuest.start(kvm.backend);
      const at = { bus: 0, device: 4, function: 0 };
      await agent.cfgWrite(at, 0x04, 2, 0x6);
      const bar = await agent.barAddress(at, 0);
      await agent.mmioWrite(bar + BigInt(edu.EDU_FACTORIAL), 10);
      expect(await agent.mmioRead(bar + BigInt(edu.EDU_FACTORIAL))).toBe(3628800n);
      const pin = kvm.backend.memory.pin(0x10_0000n, 64 * 1024);
      pin.dispose();
      expect((await agent.finish()).vcpus.map((v) => v.reason)).toEqual(['done']);
    } finally {
      await kvm.mediator.close();
    }
    expect(kvm.backend.resources()).toEqual(ZERO);
  });
});
