/**
 * Kernel modules for the dom0 initramfs, with their dependencies, in load order. Dependencies
 * come from the kernel's own `modules.dep`, so a kernel update that moves or splits a module
 * still builds a bootable dom0.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { XenLabError } from './errors.js';

/**
 * What dom0 loads: virtio PCI and 9p for the host's root and the results folder, overlayfs, and
 * the Xen drivers the toolstack opens (`/dev/xen/privcmd`, `evtchn`, `gntdev`, `gntalloc`, xenfs).
 */
export const DOM0_MODULES: readonly string[] = [
  'virtio_pci',
  '9pnet_virtio',
  '9p',
  'overlay',
  'xen-privcmd',
  'xenfs',
  'xen-evtchn',
  'xen-gntdev',
  'xen-gntalloc',
];

/** `modules.dep` names modules by path; the kernel treats `-` and `_` alike in names. */
function moduleName(path: string): string {
  return basename(path).replace(/\.ko(\.[a-z]+)?$/, '').replace(/-/g, '_');
}

export interface ResolvedModule {
  /** Name as `insmod` is given it (file name without `.ko`). */
  readonly name: string;
  /** Absolute path of the `.ko` file. */
  readonly file: string;
}

/**
 * The `wanted` modules of kernel `release` and everything they depend on, each after its
 * dependencies.
 * @throws XenLabError('build') when a module is missing or compressed (busybox insmod takes
 *   plain `.ko` files only).
 */
export function resolveModules(modulesRoot: string, release: string, wanted: readonly string[]): ResolvedModule[] {
  const dir = join(modulesRoot, release);
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of readFileSync(join(dir, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon);
    deps.set(moduleName(path), { path, deps: line.slice(colon + 1).trim().split(/\s+/).filter(Boolean).map(moduleName) });
  }
  const ordered: ResolvedModule[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: readonly string[]): void => {
    const key = name.replace(/-/g, '_');
    if (seen.has(key)) return;
    const entry = deps.get(key);
    if (entry === undefined) throw new XenLabError('build', `kernel ${release} has no module ${name}${chain.length ? ` (needed by ${chain.join(' <- ')})` : ''}`);
    if (!entry.path.endsWith('.ko')) throw new XenLabError('build', `module ${entry.path} is compressed; the dom0 initramfs loads plain .ko files`);
    seen.add(key);
    for (const d of entry.deps) visit(d, [name, ...chain]);
    ordered.push({ name: basename(entry.path, '.ko'), file: join(dir, entry.path) });
  };
  for (const w of wanted) visit(w, []);
  return ordered;
}
