/**
 * The watchdog's process plumbing, with real processes and a stand-in helper whose Xen calls
 * are recorded (`fixtures/fake-helper.ts` runs the real loop): a serving process that is
 * SIGKILLed gets the servers it had not released rescued, and only those; one that exits
 * cleanly gets nothing done; a helper that dies is reported and replaced. The real helper's
 * Xen side is tested in the lab (`watchdog.lab.test.ts`).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { watchdogHelperCommand, watchdogShell, type HelperCommand } from '../../src/watchdog/client.js';

const packageDir = fileURLToPath(new URL('../..', import.meta.url));
const parentScript = fileURLToPath(new URL('./fixtures/watched-parent.ts', import.meta.url));
const TIMEOUT = 60_000;

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function records(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until<T>(what: string, probe: () => T | undefined, ms = TIMEOUT): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startParent(mode: string): { child: ChildProcessWithoutNullStreams; out: string; lines: () => string[]; exited: Promise<NodeJS.Signals | number | null> } {
  dir = mkdtempSync(join(tmpdir(), 'vmed-watchdog-'));
  const out = join(dir, 'helper.jsonl');
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', parentScript, mode, out], { cwd: packageDir });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  return { child, out, lines: () => text.split('\n'), exited };
}

/** Whether `pid` has exited (a zombie nobody reaped yet counts: it runs nothing). */
function ended(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

const rescues = (file: string) => records(file).flatMap((r) => (typeof r.rescue === 'string' ? [r.rescue] : []));
const done = (file: string) => records(file).find((r) => r.done !== undefined);

describe('the watchdog helper process', () => {
  it(
    'rescues exactly the servers a SIGKILLed process had not released',
    async () => {
      const p = startParent('hang');
      await until('ready', () => (p.lines().includes('ready') ? true : undefined));
      p.child.kill('SIGKILL');
      expect(await p.exited).toBe('SIGKILL');
      await until('the helper to finish', () => done(p.out));
      expect(rescues(p.out).sort()).toEqual(['5/2', '6/1']);
      const prepared = records(p.out).flatMap((r) => (typeof r.prepare === 'number' ? [r.prepare] : []));
      // Only what was still watched reaches the second stage.
      expect(prepared).toEqual([5, 6]);
      expect(records(p.out).some((r) => r.forget !== undefined)).toBe(false);
    },
    TIMEOUT,
  );

  it(
    'does nothing when the process released everything and exited: the second stage never starts',
    async () => {
      const p = startParent('clean');
      expect(await p.exited).toBe(0);
      const pid = Number(p.lines().find((l) => l.startsWith('helper '))?.slice(7));
      expect(pid).toBeGreaterThan(0);
      await until('the helper to exit', () => (ended(pid) ? true : undefined));
      expect(records(p.out)).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    'reports a helper that died, and the next watch starts one that knows every watched server',
    async () => {
      const p = startParent('kill-helper');
      await until('the second ready', () => (p.lines().filter((l) => l === 'ready').length === 2 ? true : undefined));
      const fault = p.lines().find((l) => l.startsWith('fault '));
      expect(fault).toMatch(/watchdog helper .*exited with SIGKILL/);
      const pids = p.lines().flatMap((l) => (l.startsWith('helper ') ? [l.slice(7)] : []));
      expect(pids).toHaveLength(2);
      expect(pids[0]).not.toBe(pids[1]);
      p.child.kill('SIGKILL');
      await p.exited;
      await until('the helper to finish', () => done(p.out));
      expect(rescues(p.out).sort()).toEqual(['5/2', '6/1', '7/4']);
      // The killed helper never got to its second stage.
      expect(records(p.out).filter((r) => r.started !== undefined)).toHaveLength(1);
    },
    TIMEOUT,
  );
});

describe('the first stage (the shell)', () => {
  function runShell(input: string, stage2: HelperCommand): Promise<{ code: number | null; stdout: string }> {
    const { file, args } = watchdogShell(stage2);
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stdin.end(input);
    return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout })));
  }
  const cat: HelperCommand = { execPath: '/bin/cat', args: [], cwd: '/' };

  it('hands the second stage what is still watched, once each, and nothing that is not digits', async () => {
    const input = 'watch 1 2\nwatch 3 4\nwatch 3 4\nwatch 12 2\nrelease 1 2\nrelease 9 9\nwatch 5 x\nwatch  6\nwatch 6 7 8\nwatch * 1\nbogus 1 1\nwatch 1 22\n';
    expect(await runShell(input, cat)).toEqual({ code: 0, stdout: 'watch 3 4\nwatch 12 2\nwatch 1 22\n' });
  });

  it('releases from the front, the middle and the end of the set', async () => {
    const input = 'watch 1 1\nwatch 2 2\nwatch 3 3\nwatch 4 4\nrelease 1 1\nrelease 3 3\nrelease 4 4\n';
    expect((await runShell(input, cat)).stdout).toBe('watch 2 2\n');
  });

  it('does not start the second stage when nothing is left', async () => {
    const marker: HelperCommand = { execPath: '/bin/echo', args: ['STARTED'], cwd: '/' };
    expect(await runShell('watch 1 2\nrelease 1 2\n', marker)).toEqual({ code: 0, stdout: '' });
    expect(await runShell('', marker)).toEqual({ code: 0, stdout: '' });
    expect(await runShell('watch 1 2\n', marker)).toEqual({ code: 0, stdout: 'STARTED\n' });
  });
});

describe('the real helper entry (no Xen needed for these)', () => {
  function runHelper(input: string): Promise<{ code: number | null; stderr: string }> {
    const { execPath, args, cwd } = watchdogHelperCommand(4242);
    const child = spawn(execPath, [...args], { cwd, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(input);
    return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  }

  it(
    'starts from src/ and exits quietly when the pipe closes with nothing watched',
    async () => {
      expect(await runHelper('watch 3 1\nrelease 3 1\nnonsense\n')).toEqual({ code: 0, stderr: expect.stringContaining('ignoring a line that is not a message') });
      expect(await runHelper('')).toEqual({ code: 0, stderr: '' });
    },
    TIMEOUT,
  );

  it.skipIf(existsSync('/dev/xen/privcmd'))(
    'says so, and exits non-zero, when it cannot rescue (no Xen here)',
    async () => {
      const { code, stderr } = await runHelper('watch 3 1\n');
      expect(code).toBe(1);
      expect(stderr).toMatch(/vmed watchdog\[\d+\] for process 4242: .*IOREQ server 1 of domain 3: answered 0 waiting vCPU\(s\), could NOT destroy the server/);
    },
    TIMEOUT,
  );
});
