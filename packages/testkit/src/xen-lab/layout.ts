/**
 * Where the lab's inputs and outputs live on the host. Dom0 sees the host's root read-only and
 * has its own tmpfs on /tmp, /run, /var/log and /var/lib/xen, so everything a guest config
 * names lives in the cache folder under the checkout (or `VMED_XEN_LAB_CACHE`), never in /tmp
 * unless the checkout itself is there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { XenLabError } from './errors.js';

export interface LabLayout {
  /** The monorepo checkout: dom0's working directory. */
  readonly repoRoot: string;
  /** `packages/testkit/xen-lab`: the init and session scripts. */
  readonly scriptsDir: string;
  /** Built artifacts (xen, initramfs images) and per-run folders. */
  readonly cacheDir: string;
  /** What commands in dom0 get as `VMED_XEN_LAB_ASSETS`: domU kernel, initramfs, configs. */
  readonly assetsDir: string;
  /** One folder per run, exported writable to dom0. */
  readonly runsDir: string;
}

/** Paths under these are hidden in dom0 by its own tmpfs mounts. */
const DOM0_SCRATCH = ['/tmp', '/run', '/var/run', '/var/log', '/var/lib/xen'];

function findUp(start: string, found: (dir: string) => boolean): string | undefined {
  for (let dir = start; ; dir = dirname(dir)) {
    if (found(dir)) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

function isTestkitPackage(dir: string): boolean {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === '@vmed/testkit';
}

/** True when dom0 cannot see `path` on the host root as it is. */
export function hiddenInDom0(path: string): boolean {
  return DOM0_SCRATCH.some((d) => path === d || path.startsWith(`${d}/`));
}

/**
 * Paths go on the kernel command line and into QEMU's `-initrd` list, which split on blanks
 * and commas, and into xl configs, which quote with `"`.
 */
export function assertPlainPath(path: string, what: string): void {
  if (!/^\/[\w./+@=:-]*$/.test(path)) throw new XenLabError('setup', `${what} ${JSON.stringify(path)} must be an absolute path without blanks, commas or quotes`);
}

export function labLayout(env: NodeJS.ProcessEnv = process.env): LabLayout {
  const here = dirname(fileURLToPath(import.meta.url));
  // Found from this file, or, when bundled into another package's dist, from the workspace.
  const workspace = findUp(here, (d) => existsSync(join(d, 'pnpm-workspace.yaml')));
  const testkit = findUp(here, isTestkitPackage) ?? [workspace && join(workspace, 'packages', 'testkit')].find((d) => d && isTestkitPackage(d));
  if (testkit === undefined) throw new XenLabError('setup', `cannot find the @vmed/testkit package above ${here}`);
  const repoRoot = findUp(testkit, (d) => existsSync(join(d, 'pnpm-workspace.yaml'))) ?? dirname(dirname(testkit));
  const cacheDir = resolve(env.VMED_XEN_LAB_CACHE ?? join(repoRoot, '.vmed', 'xen-lab'));
  // Dom0 mounts the checkout back over its scratch tmpfs (vmedlab.checkout=), so a checkout in /tmp works.
  if (hiddenInDom0(cacheDir) && !cacheDir.startsWith(`${repoRoot}/`)) throw new XenLabError('setup', `the lab cache ${cacheDir} must not be under ${DOM0_SCRATCH.join(', ')}: dom0 mounts its own tmpfs there`);
  assertPlainPath(repoRoot, 'the checkout');
  assertPlainPath(cacheDir, 'the lab cache');
  return {
    repoRoot,
    scriptsDir: join(testkit, 'xen-lab'),
    cacheDir,
    assetsDir: join(cacheDir, 'assets'),
    runsDir: join(cacheDir, 'runs'),
  };
}
