// Test helper: builds guests/tools/kvm-run.c and runs guest images on this machine's KVM.
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GuestImage } from '../../src/guests/index.js';

const source = fileURLToPath(new URL('../../guests/tools/kvm-run.c', import.meta.url));

function kvmUsable(): string | undefined {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'no usable /dev/kvm';
  }
  if (spawnSync('gcc', ['--version']).status !== 0) return 'gcc is not installed';
  return undefined;
}

/** Why the KVM guest tests cannot run here, or undefined when they can. */
export const kvmSkipReason = kvmUsable();

export interface KvmRun {
  /** kvm-run's exit status: 0 done or script finished, 2 KVM error, 3 timeout. */
  readonly status: number | null;
  readonly lines: readonly string[];
  readonly stderr: string;
}

export interface AgentReply {
  readonly command: string;
  readonly vcpu: number;
  readonly status: number;
  readonly result: bigint;
}

export class KvmRunner {
  private readonly dir = mkdtempSync(join(tmpdir(), 'vmed-kvm-run-'));
  private readonly binary = join(this.dir, 'kvm-run');
  private images = 0;

  constructor() {
    const cc = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', this.binary, source, '-lpthread'], {
      encoding: 'utf8',
    });
    if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
  }

  /** Runs `image` (a flat image) with kvm-run's `args`; `script` drives the agent if given. */
  run(image: GuestImage, args: readonly string[] = [], script?: string): KvmRun {
    const file = join(this.dir, `image-${this.images++}.bin`);
    writeFileSync(file, image.bytes);
    const argv = ['-t', '20', '-l', String(image.loadAddress), ...args];
    if (script !== undefined) argv.push('-a', '-');
    argv.push(file);
    const r = spawnSync(this.binary, argv, { input: script ?? '', encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, lines: r.stdout.split('\n').filter((l) => l !== ''), stderr: r.stderr };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The agent command replies of a run, in order. */
export function agentReplies(run: KvmRun): AgentReply[] {
  const out: AgentReply[] = [];
  for (const line of run.lines) {
    const m = /^(\S+) vcpu=(\d+) status=(\d+) result=0x([0-9a-f]+)$/.exec(line);
    if (m === null) continue;
    const [, command, vcpu, status, result] = m as unknown as [string, string, string, string, string];
    out.push({ command, vcpu: Number(vcpu), status: Number(status), result: BigInt(`0x${result}`) });
  }
  return out;
}

/** The value of `key=` in the first line starting with `prefix`, as a number. */
export function field(run: KvmRun, prefix: string, key: string): number | undefined {
  for (const line of run.lines) {
    if (!line.startsWith(prefix)) continue;
    const m = new RegExp(`(?:^| )${key}=(0x[0-9a-f]+|\\d+)`).exec(line);
    if (m?.[1] !== undefined) return Number(m[1]);
  }
  return undefined;
}

/** The exit code the guest wrote to the done port, if it did. */
export function doneCode(run: KvmRun): number | undefined {
  return field(run, 'done ', 'code');
}

/** kvm-run's fake reads: byte i of an access at `address` is `(address + i) ^ 0xa5`. */
export function unclaimedPattern(address: number, size: number): bigint {
  let v = 0n;
  for (let i = 0; i < size; i++) v |= BigInt(((address + i) ^ 0xa5) & 0xff) << BigInt(8 * i);
  return v;
}
