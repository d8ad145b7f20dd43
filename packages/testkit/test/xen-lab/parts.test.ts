/**
 * The lab's pieces that need no emulated machine: the initramfs writer, module ordering,
 * console reading, xl configs and the parsers of what dom0 tools and guests print.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { cpioArchive, gzippedCpio } from '../../src/xen-lab/cpio.js';
import { classifyConsoleLine, LineSplitter } from '../../src/xen-lab/console.js';
import { consoleLogPath, parseGuestPciReport, parseXlInfo, parseXlList, xlConfig } from '../../src/xen-lab/domains.js';
import type { DomainSpec } from '../../src/xen-lab/domains.js';
import { XenLabError } from '../../src/xen-lab/errors.js';
import { assertPlainPath, hiddenInDom0 } from '../../src/xen-lab/layout.js';
import { resolveModules } from '../../src/xen-lab/modules.js';
import { qemuArgs } from '../../src/xen-lab/qemu.js';
import { buildLab } from '../../src/xen-lab/build.js';
import type { HostInputs, LabArtifacts } from '../../src/xen-lab/build.js';
import type { LabLayout } from '../../src/xen-lab/layout.js';
import { DOM0_MODULES } from '../../src/xen-lab/modules.js';

const scratch = mkdtempSync(join(tmpdir(), 'xen-lab-parts-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const hasCpio = spawnSync('cpio', ['--version']).status === 0;

describe('cpio newc writer', () => {
  const entries = [
    { kind: 'dir', path: 'bin' },
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/hello', data: Buffer.from('hi\n'), mode: 0o755 },
    { kind: 'file', path: 'init', data: Buffer.from('#!/bin/sh\necho five\n') },
  ] as const;

  it('pads every header+name and every body to 4 bytes and ends with the trailer', () => {
    const a = cpioArchive([...entries]);
    expect(a.length % 4).toBe(0);
    expect(a.subarray(0, 6).toString()).toBe('070701');
    expect(a.includes(Buffer.from('TRAILER!!!\0'))).toBe(true);
    // The mode field of bin/hello: regular file, rwxr-xr-x.
    const at = a.indexOf(Buffer.from('bin/hello\0')) - 110;
    expect(a.subarray(at + 14, at + 22).toString()).toBe((0o100755).toString(16).padStart(8, '0'));
  });

  it('is deterministic, so unchanged inputs need no rebuild', () => {
    expect(gzippedCpio([...entries]).equals(gzippedCpio([...entries]))).toBe(true);
  });

  it.skipIf(!hasCpio)('is read back by GNU cpio with the same names, types and contents (needs cpio)', () => {
    const dir = join(scratch, 'unpack');
    mkdirSync(dir);
    const archive = gunzipSync(gzippedCpio([...entries]));
    const list = spawnSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' });
    expect(list.status).toBe(0);
    const lines = list.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/).at(-1))).toEqual(['bin', 'dev/console', 'bin/hello', 'init']);
    expect(lines[1]).toMatch(/^crw-------/);
    expect(lines[2]).toMatch(/^-rwxr-xr-x/);
    const body = spawnSync('cpio', ['-i', '--quiet', '--to-stdout', 'init'], { input: archive, encoding: 'utf8' });
    expect(body.stdout).toBe('#!/bin/sh\necho five\n');
  });

  it('refuses paths that escape the archive', () => {
    expect(() => cpioArchive([{ kind: 'dir', path: '../etc' }])).toThrow(/bad member path/);
    expect(() => cpioArchive([{ kind: 'dir', path: '' }])).toThrow(/bad member path/);
  });
});

describe('kernel module resolution', () => {
  const root = join(scratch, 'modules');
  mkdirSync(join(root, '9.9.9'), { recursive: true });
  writeFileSync(
    join(root, '9.9.9', 'modules.dep'),
    [
      'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko',
      'kernel/net/9p/9pnet.ko:',
      'kernel/fs/netfs/netfs.ko:',
      'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko',
      'kernel/drivers/virtio/virtio_ring.ko:',
      'kernel/drivers/xen/xen-privcmd.ko:',
      'kernel/fs/zz/zz.ko.xz:',
      '',
    ].join('\n'),
  );

  it('puts each module after its dependencies, once, with - and _ alike', () => {
    const names = resolveModules(root, '9.9.9', ['9pnet_virtio', '9p', 'xen_privcmd']).map((m) => m.name);
    expect(names).toEqual(['9pnet', 'virtio_ring', '9pnet_virtio', 'netfs', '9p', 'xen-privcmd']);
  });

  it('names the missing module and who needed it', () => {
    expect(() => resolveModules(root, '9.9.9', ['nope'])).toThrow(/no module nope/);
  });

  it('refuses compressed modules, which busybox insmod cannot load', () => {
    expect(() => resolveModules(root, '9.9.9', ['zz'])).toThrow(/compressed/);
  });
});

describe('console', () => {
  it('splits chunks into lines, holding back the unfinished one and dropping CR and escapes', () => {
    const s = new LineSplitter();
    expect(s.push('(XEN) a\r\nVMED-LA')).toEqual(['(XEN) a']);
    expect(s.push('B: ready\n\x1b[0mtail')).toEqual(['VMED-LAB: ready']);
    expect(s.flush()).toEqual(['tail']);
    expect(s.flush()).toEqual([]);
  });

  it('recognises boot progress, markers and fatal lines', () => {
    expect(classifyConsoleLine('(XEN) Xen version 4.17.7 (Debian 4.17.7)')).toEqual({ kind: 'xen-booting' });
    expect(classifyConsoleLine('(XEN) *** Building a PV Dom0 ***')).toEqual({ kind: 'xen-up' });
    expect(classifyConsoleLine('VMED-LAB: exit 3')).toEqual({ kind: 'marker', name: 'exit', arg: '3' });
    expect(classifyConsoleLine('VMED-LAB: fail mount devpts')).toMatchObject({ kind: 'fatal', reason: expect.stringContaining('mount devpts') });
    expect(classifyConsoleLine('(XEN) Panic on CPU 0:')).toMatchObject({ kind: 'fatal' });
    expect(classifyConsoleLine('(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.')).toMatchObject({ kind: 'fatal' });
    expect(classifyConsoleLine('[    1.0] Kernel panic - not syncing: VFS')).toMatchObject({ kind: 'fatal' });
    // A guest's panic is the guest's problem, not the lab's.
    expect(classifyConsoleLine('(d1) Kernel panic - not syncing: VFS')).toBeUndefined();
    expect(classifyConsoleLine('(XEN) PCI add device 0000:00:01.0')).toBeUndefined();
  });
});

describe('xl configs', () => {
  const spec: DomainSpec = { name: 'g1', type: 'pvh', kernel: '/k', ramdisk: '/r', memoryMiB: 128, vcpus: 1, paused: true };

  it('writes a PVH guest that goes away when it stops', () => {
    const cfg = xlConfig(spec);
    expect(cfg).toContain('type="pvh"');
    expect(cfg).toContain('kernel="/k"');
    expect(cfg).toContain('ramdisk="/r"');
    expect(cfg).toContain('cmdline="console=hvc0"');
    expect(cfg).toContain('memory=128');
    expect(cfg).toContain('on_poweroff="destroy"');
    expect(cfg).not.toContain('serial=');
  });

  it('sends an HVM guest\'s serial port to a log file and boots it on ttyS0', () => {
    const cfg = xlConfig({ ...spec, type: 'hvm' });
    expect(cfg).toContain('type="hvm"');
    expect(cfg).toContain(`serial="file:${consoleLogPath('g1', 'hvm')}"`);
    expect(cfg).toContain('cmdline="console=ttyS0"');
  });

  it.each([
    [{ name: 'bad name' }, /domain name/],
    [{ name: 'x"; kernel="/evil' }, /domain name/],
    [{ kernel: 'relative' }, /absolute/],
    [{ cmdline: 'a" extra="b' }, /quotes/],
    [{ memoryMiB: 1.5 }, /memoryMiB/],
    [{ vcpus: 0 }, /vcpus/],
    [{ type: 'pv' as never }, /type/],
    [{ extraConfig: ['x'] }, /key=value/],
  ])('refuses %j', (override, message) => {
    expect(() => xlConfig({ ...spec, ...override })).toThrow(message);
    expect(() => xlConfig({ ...spec, ...override })).toThrow(XenLabError);
  });
});

describe('parsers', () => {
  it('reads xl list', () => {
    const text = ['Name                                        ID   Mem VCPUs\tState\tTime(s)', 'Domain-0                                     0  1024     2     r-----      12.3', 'g1                                           3   256     1     --p---       0.0', ''].join('\n');
    expect(parseXlList(text)).toEqual([
      { name: 'Domain-0', id: 0, memoryMiB: 1024, vcpus: 2, state: 'r-----' },
      { name: 'g1', id: 3, memoryMiB: 256, vcpus: 1, state: '--p---' },
    ]);
  });

  it('reads xl info', () => {
    const info = parseXlInfo('xen_major              : 4\nvirt_caps              : pv hvm hap\nxen_extra              : .7\n');
    expect(info).toEqual({ xen_major: '4', virt_caps: 'pv hvm hap', xen_extra: '.7' });
  });

  it('reads the guest PCI report and sizes BARs from sysfs resource ranges', () => {
    const report = parseGuestPciReport(
      [
        '[ 1.0] booting',
        'VMED-DOMU: begin',
        'VMED-DOMU: pci 0000:00:05.0 vendor=0x1234 device=0x11e8 class=0x00ff00',
        'VMED-DOMU: resource 0000:00:05.0 0 0x00000000fea00000 0x00000000feafffff 0x0000000000040200',
        'VMED-DOMU: resource 0000:00:05.0 2 0x000000000000c000 0x000000000000c007 0x0000000000040101',
        'VMED-DOMU: end 1',
      ].join('\r\n'),
    );
    expect(report.complete).toBe(true);
    expect(report.functions).toHaveLength(1);
    const f = report.functions[0];
    expect(f).toMatchObject({ bdf: '0000:00:05.0', vendor: 0x1234, device: 0x11e8, classCode: 0xff00 });
    expect(f?.resources.map((r) => [r.index, r.size])).toEqual([
      [0, 0x100000n],
      [2, 8n],
    ]);
  });

  it('treats a report without its end marker, or with a wrong count, as incomplete', () => {
    expect(parseGuestPciReport('VMED-DOMU: begin\nVMED-DOMU: pci 0000:00:05.0 vendor=0x1 device=0x2 class=0x3\n').complete).toBe(false);
    expect(parseGuestPciReport('VMED-DOMU: end 2\n').complete).toBe(false);
  });

  it('skips malformed guest lines instead of trusting or throwing on them', () => {
    const report = parseGuestPciReport(
      [
        'VMED-DOMU: pci 0000:00:05.0 vendor=zz device=0x2 class=0x3',
        'VMED-DOMU: pci 0000:00:06.0 vendor=0x1 device=0x2 class=0x3',
        'VMED-DOMU: resource 0000:00:06.0 0 0xnothex 0x1 0x0',
        'VMED-DOMU: resource 0000:00:07.0 0 0x1 0x2 0x0',
        'VMED-DOMU: end 1',
      ].join('\n'),
    );
    expect(report.functions.map((f) => [f.bdf, f.resources.length])).toEqual([['0000:00:06.0', 0]]);
    expect(report.complete).toBe(true);
  });
});

describe('machine and paths', () => {
  const artifacts = { xen: '/c/xen', kernel: '/c/assets/vmlinuz', dom0Initrd: '/c/dom0-initrd.gz', session: '/repo/s.sh' } as LabArtifacts;

  it('boots Xen multiboot-style on the CPU model and accelerator known to work', () => {
    const args = qemuArgs({ artifacts, repoRoot: '/repo', runDir: '/c/runs/1' });
    const after = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    expect(after('-accel')).toBe('tcg');
    expect(after('-cpu')).toBe('qemu64,+svm,+npt');
    expect(after('-smp')).toBe('2');
    expect(after('-m')).toBe('3072');
    expect(after('-kernel')).toBe('/c/xen');
    expect(after('-append')).toContain('dom0_mem=1024M,max:1024M');
    expect(after('-initrd')).toBe('/c/assets/vmlinuz console=hvc0 quiet panic=-1 vmedlab.session=/repo/s.sh vmedlab.checkout=/repo,/c/dom0-initrd.gz');
    const shares = args.filter((_, i) => args[i - 1] === '-virtfs');
    expect(shares).toEqual([
      'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
      'local,path=/c/runs/1,mount_tag=vmedresults,security_model=none,multidevs=remap',
    ]);
  });

  it('knows which host paths dom0 hides under its own tmpfs', () => {
    expect(hiddenInDom0('/tmp/x')).toBe(true);
    expect(hiddenInDom0('/run')).toBe(true);
    expect(hiddenInDom0('/var/lib/xen/x')).toBe(true);
    expect(hiddenInDom0('/tmpfoo')).toBe(false);
    expect(hiddenInDom0('/work/main')).toBe(false);
  });

  it('refuses paths that would break the kernel command line or the -initrd list', () => {
    expect(() => assertPlainPath('/a b', 'x')).toThrow(XenLabError);
    expect(() => assertPlainPath('/a,b', 'x')).toThrow(/commas/);
    expect(() => assertPlainPath('rel', 'x')).toThrow(/absolute/);
    expect(() => assertPlainPath('/work/main/.vmed/xen-lab', 'x')).not.toThrow();
  });
});

describe('artifact builds', () => {
  const root = join(scratch, 'build');
  const scripts = join(root, 'scripts');
  mkdirSync(scripts, { recursive: true });
  for (const f of ['dom0-init.sh', 'domu-init.sh', 'dom0-session.sh']) copyFileSync(new URL(`../../xen-lab/${f}`, import.meta.url), join(scripts, f));
  const release = '9.9.9-test';
  mkdirSync(join(root, 'lib', release, 'kernel'), { recursive: true });
  writeFileSync(join(root, 'lib', release, 'modules.dep'), DOM0_MODULES.map((m) => `kernel/${m}.ko:`).join('\n'));
  for (const m of DOM0_MODULES) writeFileSync(join(root, 'lib', release, 'kernel', `${m}.ko`), `module ${m}`);
  const host: HostInputs = { kernelRelease: release, kernel: join(root, 'vmlinuz'), modulesRoot: join(root, 'lib'), xenGz: join(root, 'xen.gz'), busybox: join(root, 'busybox') };
  writeFileSync(host.kernel, 'kernel');
  writeFileSync(host.xenGz, gzipSync(Buffer.from('ELF xen')));
  writeFileSync(host.busybox, 'busybox');
  const cache = join(root, 'cache');
  const layout: LabLayout = { repoRoot: root, scriptsDir: scripts, cacheDir: cache, assetsDir: join(cache, 'assets'), runsDir: join(cache, 'runs') };

  it('builds everything once, then nothing until an input changes, then only what depends on it', () => {
    const first = buildLab(layout, host);
    expect(first.rebuilt).toHaveLength(6);
    expect(readFileSync(first.xen, 'utf8')).toBe('ELF xen');
    const listing = spawnSync('cpio', ['-it', '--quiet'], { input: gunzipSync(readFileSync(first.dom0Initrd)), encoding: 'utf8' });
    if (hasCpio) expect(listing.stdout).toContain('mod/xen-privcmd.ko');

    expect(buildLab(layout, host).rebuilt).toEqual([]);

    writeFileSync(join(scripts, 'domu-init.sh'), `${readFileSync(join(scripts, 'domu-init.sh'), 'utf8')}\n# changed\n`);
    expect(buildLab(layout, host).rebuilt).toEqual([first.assets.ramdisk]);

    const later = new Date(Date.now() + 5000);
    utimesSync(host.busybox, later, later);
    expect([...buildLab(layout, host).rebuilt].sort()).toEqual([first.dom0Initrd, first.assets.ramdisk].sort());
  });
});
