/**
 * Boots the real lab: Xen 4.17 and a PV dom0 under QEMU TCG, then a PVH Linux domU from dom0.
 * Slow (about a minute on an idle 2-core machine); skipped with VMED_SKIP_XEN_LAB=1.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { dom0TsCommand, runInXenLab, XenLabError } from '../../src/xen-lab/index.js';
import { QEMU } from '../../src/xen-lab/qemu.js';

function skipReason(): string | undefined {
  if (process.env.VMED_SKIP_XEN_LAB === '1') return 'VMED_SKIP_XEN_LAB=1';
  if (process.env.VMED_XEN_LAB === '1') return 'already inside the lab\'s dom0';
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'the lab needs an x86-64 Linux host';
  const accels = spawnSync(QEMU, ['-accel', 'help'], { encoding: 'utf8' });
  // As root the harness installs QEMU itself; otherwise it must be there already.
  if (accels.error !== undefined) return process.getuid?.() === 0 ? undefined : `${QEMU} is not installed and this is not root`;
  if (!/\btcg\b/.test(accels.stdout)) return `${QEMU} has no TCG accelerator`;
  return undefined;
}
const skip = skipReason();

/** QEMU processes whose command line names `runDir`: none may survive a run. */
function qemuProcessesFor(runDir: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(runDir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** True while `pid` exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const PROBE = `${dom0TsCommand('jit', 'packages/testkit/test/xen-lab/dom0-probe.ts')} pvh`;

describe.skipIf(skip !== undefined)(`Xen lab${skip === undefined ? '' : ` (skipped: ${skip})`}`, () => {
  it('runs a command in dom0 that creates a PVH domU, and brings back its output and status', { timeout: 15 * 60_000 }, async () => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const progress: string[] = [];
    const result = await runInXenLab({
      // Exit 42 only when the probe succeeded, so the status proves both.
      command: `echo to-stderr >&2; ${PROBE} && exit 42`,
      timeoutMs: 12 * 60_000,
      stdout: (c) => stdout.push(c),
      stderr: (c) => stderr.push(c),
      progress: (line) => {
        progress.push(line);
        process.stderr.write(`${line}\n`);
      },
    });
    const out = Buffer.concat(stdout).toString();
    const t = result.timings;
    console.log(
      `xen-lab timings: boot (QEMU start to dom0 ready) ${((t.dom0Ready ?? NaN) - t.qemuStarted) / 1000} s, ` +
        `command ${((t.commandEnded ?? NaN) - (t.commandStarted ?? NaN)) / 1000} s, whole exec round trip ${t.total / 1000} s`,
    );
    expect(result.exitCode, out).toBe(42);
    expect(readFileSync(join(result.runDir, 'status'), 'utf8').trim()).toBe('42');
    expect(Buffer.concat(stderr).toString()).toContain('to-stderr');
    expect(out).toMatch(/^xl-info xen_version=4\.17/m);

    const last = JSON.parse(out.trimEnd().split('\n').at(-1) ?? '') as Record<string, unknown>;
    expect(last.xenVersion).toBe('4.17');
    expect(String(last.virtCaps).split(' ')).toEqual(expect.arrayContaining(['pv', 'hvm', 'hap']));
    expect(last.type).toBe('pvh');
    expect(last.domid).toBeGreaterThan(0);
    expect(last.pausedState).toMatch(/p/); // created paused, for a device model to attach
    expect(last.pciComplete).toBe(true); // the guest ran its init to the end marker
    expect(Array.isArray(last.pci)).toBe(true);
    expect(last.destroyed).toBe(true);

    const order = ['Xen booting', 'dom0 up', 'xenstored up', 'dom0 ready', 'command started', 'command exited with status 42', 'QEMU stopped'];
    const at = order.map((p) => progress.findIndex((l) => l.includes(p)));
    expect(at.every((i) => i >= 0), progress.join('\n')).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(t.qemuStarted).toBeLessThanOrEqual(t.dom0Ready ?? -1);
    expect(t.commandStarted).toBeLessThanOrEqual(t.commandEnded ?? -1);
    expect(qemuProcessesFor(result.runDir)).toEqual([]);
  });

  it('takes QEMU down with it when the host process is killed outright', { timeout: 120_000 }, async () => {
    const entry = fileURLToPath(new URL('../../src/xen-lab/index.ts', import.meta.url));
    const script = `const m = await import(${JSON.stringify(entry)}); await m.runInXenLab({ command: 'sleep 600', progress: (l) => console.log(l) });`;
    const host = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const qemuPid = await new Promise<number>((resolve, reject) => {
      let seen = '';
      host.stdout.on('data', (c: Buffer) => {
        seen += c.toString();
        const m = /QEMU started \(pid (\d+)\)/.exec(seen);
        if (m !== null) resolve(Number(m[1]));
      });
      host.once('exit', () => reject(new Error(`the host process ended first:\n${seen}`)));
    });
    expect(running(qemuPid)).toBe(true);
    host.kill('SIGKILL');
    const deadline = Date.now() + 10_000;
    while (running(qemuPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(running(qemuPid)).toBe(false);
  });

  it('stops the machine and says where it was when the run times out', { timeout: 120_000 }, async () => {
    const error = await runInXenLab({ command: 'true', timeoutMs: 2000, progress: () => {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(XenLabError);
    expect((error as XenLabError).stage).toBe('timeout');
    expect((error as XenLabError).message).toMatch(/timed out after 2 s while booting/);
    const runDir = /all in (\S+)\/console\.log/.exec((error as XenLabError).message)?.[1];
    expect(runDir).toBeDefined();
    expect(qemuProcessesFor(runDir as string)).toEqual([]);
  });
});
