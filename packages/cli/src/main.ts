#!/usr/bin/env node
/**
 * The `vmed` command. Each subcommand lives in `commands/<name>.ts` and is loaded only when
 * named, so `vmed demo` on a KVM host never loads the Xen bindings.
 */
const commands: Record<string, { summary: string; load: () => Promise<{ run(argv: string[]): Promise<number> }> }> = {
  demo: { summary: 'run a guest using the serial and edu devices on the best hypervisor', load: () => import('./commands/demo.js') },
  conformance: { summary: 'run the backend conformance suite: --backend <name> [--json]', load: () => import('./commands/conformance.js') },
  bench: { summary: 'benchmarks against C programs doing the same work: [--json] [--profile]', load: () => import('./commands/bench.js') },
  fuzz: { summary: 'fuzz the device models, config space and dispatcher: [--accesses N] [--json]', load: () => import('./commands/fuzz.js') },
  'xen-lab': { summary: 'boot Xen under QEMU and run a command in dom0: <command> [args]', load: () => import('./commands/xen-lab.js') },
  lspci: { summary: 'dump the config space of the demo devices, like lspci -vv', load: () => import('./commands/lspci.js') },
};

async function main(argv: string[]): Promise<number> {
  // pnpm passes a literal "--" through when invoked as `pnpm demo -- --flag`.
  const args = argv.filter((a, i) => !(a === '--' && i <= 1));
  const name = args[0];
  const command = name === undefined ? undefined : commands[name];
  if (command === undefined) {
    console.log('usage: vmed <command> [options]\n');
    for (const [n, c] of Object.entries(commands)) console.log(`  ${n.padEnd(12)} ${c.summary}`);
    return name === undefined || name === '--help' ? 0 : 2;
  }
  const module = await command.load();
  return module.run(args.slice(1));
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? `vmed: ${e.message}` : e);
    process.exitCode = 1;
  },
);
