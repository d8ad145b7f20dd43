import { describe, expect, it } from 'vitest';
import { flag, stringOption } from '../src/args.js';
import { splitLabArgs } from '../src/commands/xen-lab.js';

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
