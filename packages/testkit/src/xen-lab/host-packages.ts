/**
 * The Debian packages the lab runs on, installed on demand. Dom0 runs the host's own root, so
 * everything dom0 needs (the toolstack, the Xen libraries, qemu-system-xen and SeaBIOS for HVM
 * guests) is installed on the host, not into an image.
 */
import { spawnSync } from 'node:child_process';
import { XenLabError } from './errors.js';

/** Every package the lab needs, host side and dom0 side. */
export const LAB_PACKAGES: readonly string[] = [
  'qemu-system-x86', // the emulated machine
  'xen-hypervisor-4.17-amd64', // /boot/xen-4.17-amd64.gz
  'xen-utils-4.17', // xl, xenstored, xenconsoled, xen-init-dom0 (run in dom0)
  'xenstore-utils',
  'libxen-dev', // the libraries the Xen backend binds with koffi, and their headers
  'busybox-static', // the initramfs userland
  'linux-image-amd64', // dom0 and domU kernel with its modules
  'qemu-system-xen', // device model of HVM guests (run in dom0)
  'seabios', // BIOS of HVM guests
];

/** The subset of `packages` dpkg does not report as installed. */
export function missingPackages(packages: readonly string[]): string[] {
  const r = spawnSync('dpkg-query', ['-W', '-f', '${Package} ${Status}\n', ...packages], { encoding: 'utf8' });
  if (r.error !== undefined) throw new XenLabError('setup', 'dpkg-query is not available: the Xen lab needs a Debian 12 host', { cause: r.error });
  const installed = new Set(
    r.stdout
      .split('\n')
      .filter((l) => l.endsWith(' install ok installed'))
      .map((l) => l.split(' ')[0]),
  );
  return packages.filter((p) => !installed.has(p));
}

function aptGet(args: readonly string[]): boolean {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = asRoot ? ['apt-get', args] : ['sudo', ['-n', 'apt-get', ...args]];
  const r = spawnSync(cmd, argv, {
    // apt's chatter goes to stderr: the lab's stdout carries only the command's output.
    stdio: ['ignore', process.stderr, process.stderr],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return r.status === 0;
}

/**
 * Installs whatever of {@link LAB_PACKAGES} is missing, as root or through `sudo -n`. A clean
 * machine may have no package lists yet: a failed install is retried once after `apt-get update`.
 * @throws XenLabError('setup') with the one command to run by hand when it cannot install.
 */
export function ensureLabPackages(progress: (line: string) => void): void {
  const missing = missingPackages(LAB_PACKAGES);
  if (missing.length === 0) return;
  progress(`installing Debian packages: ${missing.join(' ')}`);
  const install = ['install', '-y', '--no-install-recommends', ...missing];
  if (aptGet(install)) return;
  if (aptGet(['update']) && aptGet(install)) return;
  throw new XenLabError('setup', `cannot install the lab's packages; run as root: apt-get install -y --no-install-recommends ${missing.join(' ')}`);
}
