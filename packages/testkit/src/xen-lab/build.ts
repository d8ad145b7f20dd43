/**
 * Builds what the lab boots, into the cache folder, each artifact only when its inputs changed:
 * the Xen ELF (from the hypervisor package's gzipped image), the dom0 initramfs (busybox, the
 * Xen/9p/virtio modules, dom0-init.sh as /init), and the domU assets (kernel, busybox initramfs,
 * sample xl configs). An input is fingerprinted by path, size and mtime (host files from
 * packages) or by content (the lab's own scripts).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ASSET_FILES, labAssetsIn } from './assets.js';
import type { LabAssets } from './assets.js';
import { gzippedCpio } from './cpio.js';
import type { CpioEntry } from './cpio.js';
import { xlConfig } from './domains.js';
import { XenLabError } from './errors.js';
import type { LabLayout } from './layout.js';
import { DOM0_MODULES, resolveModules } from './modules.js';

/** Bump when the shape of an artifact changes without any input changing. */
const BUILD_FORMAT = 1;

export interface HostInputs {
  readonly kernelRelease: string;
  /** `/boot/vmlinuz-<release>`: dom0's kernel and the domUs'. */
  readonly kernel: string;
  /** `/lib/modules`. */
  readonly modulesRoot: string;
  /** The hypervisor package's gzipped Xen image. */
  readonly xenGz: string;
  /** busybox-static's binary. */
  readonly busybox: string;
}

export interface LabArtifacts {
  readonly xen: string;
  readonly kernel: string;
  readonly dom0Initrd: string;
  readonly session: string;
  readonly assets: LabAssets;
  readonly kernelRelease: string;
  /** Artifacts rebuilt by this call (empty when all were fresh). */
  readonly rebuilt: readonly string[];
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Finds the newest installed kernel that has modules, the Xen image and busybox. */
export function findHostInputs(boot = '/boot', modulesRoot = '/lib/modules'): HostInputs {
  const releases = readdirSync(boot)
    .filter((f) => f.startsWith('vmlinuz-'))
    .map((f) => f.slice('vmlinuz-'.length))
    .filter((r) => existsSync(join(modulesRoot, r, 'modules.dep')))
    .sort(compareVersions);
  const kernelRelease = releases.at(-1);
  if (kernelRelease === undefined) throw new XenLabError('build', `no kernel in ${boot} with modules in ${modulesRoot} (package linux-image-amd64)`);
  const xenGz = readdirSync(boot)
    .filter((f) => /^xen-4\.17[\w.-]*\.gz$/.test(f))
    .sort(compareVersions)
    .at(-1);
  if (xenGz === undefined) throw new XenLabError('build', `no xen-4.17*.gz in ${boot} (package xen-hypervisor-4.17-amd64)`);
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (busybox === undefined) throw new XenLabError('build', 'no busybox (package busybox-static)');
  return { kernelRelease, kernel: join(boot, `vmlinuz-${kernelRelease}`), modulesRoot, xenGz: join(boot, xenGz), busybox };
}

function fileInput(path: string): string {
  const s = statSync(path);
  return `${path}:${s.size}:${s.mtimeMs}`;
}

function contentInput(path: string): string {
  return `${path}#${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
}

/**
 * Makes `target` unless its stamp says it was made from the same inputs. Written beside the
 * target and renamed into place, so a crash or a concurrent build never leaves half a file.
 */
function buildIfStale(target: string, inputs: readonly string[], make: () => Buffer, rebuilt: string[]): void {
  const stamp = createHash('sha256').update(JSON.stringify([BUILD_FORMAT, ...inputs])).digest('hex');
  const stampFile = `${target}.stamp`;
  if (existsSync(target) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return;
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, make());
  } catch (e) {
    throw new XenLabError('build', `building ${target}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  renameSync(tmp, target);
  writeFileSync(stampFile, stamp);
  rebuilt.push(target);
}

/** Folders every initramfs has; /dev/console so init has stdio before devtmpfs is mounted. */
function baseEntries(busybox: string, init: string): CpioEntry[] {
  return [
    ...['bin', 'dev', 'proc', 'sys'].map((path): CpioEntry => ({ kind: 'dir', path })),
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: readFileSync(busybox), mode: 0o755 },
    { kind: 'file', path: 'init', data: readFileSync(init), mode: 0o755 },
  ];
}

function dom0Initramfs(host: HostInputs, init: string): Buffer {
  const modules = resolveModules(host.modulesRoot, host.kernelRelease, DOM0_MODULES);
  return gzippedCpio([
    ...baseEntries(host.busybox, init),
    { kind: 'dir', path: 'host' },
    { kind: 'dir', path: 'mod' },
    ...modules.map((m): CpioEntry => ({ kind: 'file', path: `mod/${m.name}.ko`, data: readFileSync(m.file) })),
    { kind: 'file', path: 'mod/order', data: Buffer.from(`${modules.map((m) => m.name).join('\n')}\n`) },
  ]);
}

/** pci=conf1: a PVH guest has no host bridge for Linux's type-1 sanity check (see NOTES.md). */
function sampleConfigs(assets: LabAssets): Record<string, string> {
  const common = { kernel: assets.kernel, ramdisk: assets.ramdisk, memoryMiB: 256, vcpus: 1 } as const;
  return {
    [assets.pvhConfig]: xlConfig({ ...common, name: 'linux-pvh', type: 'pvh', cmdline: 'console=hvc0 quiet pci=conf1' }),
    [assets.hvmConfig]: xlConfig({ ...common, name: 'linux-hvm', type: 'hvm', cmdline: 'console=ttyS0 quiet' }),
  };
}

/**
 * Brings every artifact up to date.
 * @throws XenLabError('build') naming the missing package or file.
 */
export function buildLab(layout: LabLayout, host: HostInputs = findHostInputs()): LabArtifacts {
  const rebuilt: string[] = [];
  const assets = labAssetsIn(layout.assetsDir);
  mkdirSync(assets.dir, { recursive: true });
  mkdirSync(layout.runsDir, { recursive: true });

  const xen = join(layout.cacheDir, 'xen');
  // QEMU's multiboot loader takes the plain 32-bit ELF, not the gzipped image GRUB boots.
  buildIfStale(xen, [fileInput(host.xenGz)], () => gunzipSync(readFileSync(host.xenGz)), rebuilt);

  const kernel = join(assets.dir, ASSET_FILES.kernel);
  buildIfStale(kernel, [fileInput(host.kernel)], () => readFileSync(host.kernel), rebuilt);

  const dom0Init = join(layout.scriptsDir, 'dom0-init.sh');
  const dom0Initrd = join(layout.cacheDir, 'dom0-initrd.gz');
  buildIfStale(
    dom0Initrd,
    [fileInput(host.busybox), fileInput(join(host.modulesRoot, host.kernelRelease, 'modules.dep')), contentInput(dom0Init), ...DOM0_MODULES],
    () => dom0Initramfs(host, dom0Init),
    rebuilt,
  );

  const domuInit = join(layout.scriptsDir, 'domu-init.sh');
  buildIfStale(assets.ramdisk, [fileInput(host.busybox), contentInput(domuInit)], () => gzippedCpio(baseEntries(host.busybox, domuInit)), rebuilt);

  for (const [file, text] of Object.entries(sampleConfigs(assets))) {
    buildIfStale(file, [text], () => Buffer.from(text), rebuilt);
  }

  const session = join(layout.scriptsDir, 'dom0-session.sh');
  if (!existsSync(session)) throw new XenLabError('build', `missing ${session}`);
  return { xen, kernel, dom0Initrd, session, assets, kernelRelease: host.kernelRelease, rebuilt };
}

