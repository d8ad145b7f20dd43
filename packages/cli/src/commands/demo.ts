/**
 * `vmed demo [--hypervisor auto|sim|kvm|xen] [--domid N [--unpause] [--timeout S]] [--json]`: a
 * guest that writes text through the serial device, has edu compute a factorial and DMA a
 * buffer, and takes the interrupts — on the best hypervisor available (KVM when /dev/kvm is
 * usable, `sim` otherwise). Prints the guest's serial output as it comes, then a summary.
 *
 * Xen serves an existing domain: create it paused, run this with `--unpause`, and the demo
 * ends when the guest reports on port 0x501 (the project's demo guest does), when the domain
 * goes away, after `--timeout` seconds, or on Ctrl-C. `pnpm xen-lab demo` does all of it in
 * the Xen lab with the demo guest as a PVH domain.
 */
import { flag, parseArgs, stringOption } from '../args.js';
import { chooseHypervisor, runDemo, type DemoSummary } from '../demo/run-demo.js';

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const requested = stringOption(args, 'hypervisor', 'auto') as string;
  const domidText = stringOption(args, 'domid');
  const timeoutText = stringOption(args, 'timeout');
  const timeout = timeoutText === undefined ? undefined : Number(timeoutText);
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) throw new Error('--timeout takes a number of seconds');
  const hypervisor = await chooseHypervisor(requested);
  const summary = await runDemo({
    hypervisor,
    ...(domidText === undefined ? {} : { domid: Number(domidText) }),
    unpause: flag(args, 'unpause'),
    ...(timeout === undefined ? {} : { timeoutMs: timeout * 1000 }),
    onSerial: (text) => process.stdout.write(text),
    onInfo: (line) => process.stderr.write(`${line}\n`),
  });
  printSummary(summary);
  if (flag(args, 'json')) console.log(JSON.stringify(summary));
  return summary.exitCode === 0 ? 0 : 1;
}

function printSummary(s: DemoSummary): void {
  console.log('');
  console.log(`--- demo summary (${s.hypervisor}) ---`);
  console.log(`guest exit code   ${s.exitCode}${s.exitCode === 0 ? ' (success)' : ''}`);
  console.log(`guest accesses    ${s.accesses} (${s.reads} reads, ${s.writes} writes, ${s.unclaimed} unclaimed)`);
  console.log(`interrupts        ${s.interrupts}`);
  console.log(`DMA bytes         ${s.dmaBytes}`);
  console.log(`serial bytes      ${s.serialBytes}`);
  console.log(`time              ${s.milliseconds.toFixed(1)} ms`);
}
