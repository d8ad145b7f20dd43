import { describe, expect, it } from 'vitest';
import { flag, stringOption } from '../src/args.js';
import { SUBCOMMANDS, splitLabArgs } from '../src/commands/xen-lab.js';

describe('vmed xen-lab arguments', () => {
  it('hands every word but the lab’s own options to the command when there is no --', () => {
    const { lab, rest } = splitLabArgs(['--backend', 'xen', '--timeout', '900', '--json', '--verbose']);
    expect(rest).toEqual(['--backend', 'xen', '--json']);
    expect(stringOption(lab, 'timeout')).toBe('900');
    expect(flag(lab, 'verbose')).toBe(true);
  });

  it('splits at -- when there is one: lab options before, the command’s after', () => {
    const { lab, rest } = splitLabArgs(['--timeout=60', '--', '--backend', 'xen', '--timeout', '5']);
    expect(rest).toEqual(['--backend', 'xen', '--timeout', '5']);
    expect(stringOption(lab, 'timeout')).toBe('60');
  });
});

describe('vmed xen-lab commands in dom0', () => {
  it('runs the CLI and the demo --jitless, the benchmark and vitest with the JIT single-threaded', () => {
    expect(SUBCOMMANDS['conformance']!.command(['--backend', 'xen', '--json'])).toBe(
      'node --jitless --conditions=source --import tsx packages/cli/src/main.ts conformance --backend xen --json',
    );
    expect(SUBCOMMANDS['demo']!.command([])).toBe('node --jitless --conditions=source --import tsx packages/cli/src/demo/lab-demo.ts');
    expect(SUBCOMMANDS['bench']!.command(['--json'])).toBe('node --single-threaded --conditions=source --import tsx packages/cli/src/main.ts bench --json');
    expect(SUBCOMMANDS['test']!.command(['watchdog'])).toBe('node --single-threaded node_modules/vitest/vitest.mjs run packages/backend-xen watchdog');
  });
});
