/**
 * The last-resort teardown: while a session is open, SIGTERM, SIGINT, an uncaught exception
 * and exit run every session's synchronous teardown, and the process still ends as it would
 * have. Run in child processes with a stand-in session (the real teardown is exercised in the
 * lab); what is tested is that the handlers fire, in each case, and go away when sessions close.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { registerTeardown, teardownHandlersInstalled } from '../src/teardown.js';

const child = fileURLToPath(new URL('./fixtures/teardown-child.ts', import.meta.url));
const packageDir = fileURLToPath(new URL('..', import.meta.url));

function runChild(mode: string): { stdout: string; status: number | null; signal: NodeJS.Signals | null } {
  const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', child, mode], { cwd: packageDir, encoding: 'utf8', timeout: 30_000 });
  return { stdout: r.stdout, status: r.status, signal: r.signal };
}

describe('teardown handlers', () => {
  it('are installed while a session is registered and removed after the last one', () => {
    const listeners = () => process.listenerCount('SIGTERM');
    const before = listeners();
    const a = registerTeardown({ teardownSync: () => {} });
    const b = registerTeardown({ teardownSync: () => {} });
    expect(teardownHandlersInstalled()).toBe(true);
    expect(listeners()).toBe(before + 1);
    a();
    expect(teardownHandlersInstalled()).toBe(true);
    b();
    expect(teardownHandlersInstalled()).toBe(false);
    expect(listeners()).toBe(before);
  });

  it.each([
    ['SIGTERM', { signal: 'SIGTERM' }],
    ['SIGINT', { signal: 'SIGINT' }],
    ['throw', { status: 1 }],
    ['exit', { status: 3 }],
  ] as const)('%s: every open session is torn down and the process ends as it would have', (mode, expected) => {
    const r = runChild(mode);
    expect(r.stdout).toContain('ready');
    expect(r.stdout).toMatch(/torn down: a \(/);
    expect(r.stdout).toMatch(/torn down: b \(/);
    expect(r.stdout).not.toContain('still alive');
    if ('signal' in expected) expect(r.signal).toBe(expected.signal);
    else expect(r.status).toBe(expected.status);
  });

  it('a session closed before the signal is not torn down again', () => {
    const r = runChild('closed-then-SIGTERM');
    expect(r.stdout).toContain('torn down: b (SIGTERM)');
    expect(r.stdout).not.toContain('torn down: a');
    expect(r.signal).toBe('SIGTERM');
  });
});
