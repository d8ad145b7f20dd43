/**
 * DomU helpers for commands that run in the Xen lab's dom0 (`VMED_XEN_LAB=1`): create a guest
 * paused from an xl config, let a device model attach, unpause, read its console, destroy it.
 * They drive Xen through the `xl` toolstack of the host's Debian packages, which dom0 runs.
 *
 * Console output: a PVH guest's `hvc0` is logged by xenconsoled (the lab starts it with
 * `--log=guest`); an HVM guest's first serial port is written to a file by its QEMU device
 * model, because xenconsoled does not see emulated UARTs.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { XenLabError } from './errors.js';

const run = promisify(execFile);

export type DomainType = 'pvh' | 'hvm';

/** A domU to create. Paths name files dom0 can read (the host root, or dom0's own /tmp). */
export interface DomainSpec {
  /** xl domain name: letters, digits, `_.-`, at most 64. */
  readonly name: string;
  /**
   * `pvh`: entered at the kernel's PHYS32 ELF note, no emulated platform (no PIC, IOAPIC or
   * PCI host bridge from QEMU). `hvm`: a full emulated PC with a QEMU device model in dom0 and
   * direct kernel boot; slow under the lab's emulation.
   */
  readonly type: DomainType;
  readonly kernel: string;
  readonly ramdisk?: string;
  /** Kernel command line. Default: the console on `hvc0` (PVH) or `ttyS0` (HVM). */
  readonly cmdline?: string;
  readonly memoryMiB: number;
  readonly vcpus: number;
  /** Create the guest paused (`xl create -p`) so a device model can attach first. Default true. */
  readonly paused?: boolean;
  /** More xl config lines, `key=value` each, appended verbatim. */
  readonly extraConfig?: readonly string[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const CONSOLE_LOG_DIR = '/var/log/xen';

function invalid(message: string): XenLabError {
  return new XenLabError('toolstack', message);
}

/** xl config strings are double-quoted with no escapes we want to rely on. */
function quoted(value: string, what: string): string {
  if (/["\\\n\r]/.test(value)) throw invalid(`${what} must not contain quotes, backslashes or newlines: ${JSON.stringify(value)}`);
  return `"${value}"`;
}

function absolutePath(value: string, what: string): string {
  if (!value.startsWith('/')) throw invalid(`${what} must be an absolute path: ${JSON.stringify(value)}`);
  return quoted(value, what);
}

function boundedInt(value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max) throw invalid(`${what} must be an integer in [${min}, ${max}], got ${value}`);
  return value;
}

/** Where the guest's console ends up in dom0. */
export function consoleLogPath(name: string, type: DomainType): string {
  return type === 'pvh' ? join(CONSOLE_LOG_DIR, `guest-${name}.log`) : join(CONSOLE_LOG_DIR, `serial-${name}.log`);
}

/** The xl config for `spec`, validated: guests are named by tests, but configs are code. */
export function xlConfig(spec: DomainSpec): string {
  if (!NAME.test(spec.name)) throw invalid(`domain name ${JSON.stringify(spec.name)} must match ${NAME.source}`);
  if (spec.type !== 'pvh' && spec.type !== 'hvm') throw invalid(`domain type must be "pvh" or "hvm", got ${JSON.stringify(spec.type)}`);
  const lines = [
    `name=${quoted(spec.name, 'name')}`,
    `type=${quoted(spec.type, 'type')}`,
    `kernel=${absolutePath(spec.kernel, 'kernel')}`,
  ];
  if (spec.ramdisk !== undefined) lines.push(`ramdisk=${absolutePath(spec.ramdisk, 'ramdisk')}`);
  lines.push(
    `cmdline=${quoted(spec.cmdline ?? (spec.type === 'pvh' ? 'console=hvc0' : 'console=ttyS0'), 'cmdline')}`,
    `memory=${boundedInt(spec.memoryMiB, 16, 1 << 20, 'memoryMiB')}`,
    `vcpus=${boundedInt(spec.vcpus, 1, 128, 'vcpus')}`,
    // A guest that stops must not linger: the next test may reuse its name.
    'on_poweroff="destroy"',
    'on_reboot="destroy"',
    'on_crash="destroy"',
  );
  if (spec.type === 'hvm') {
    lines.push(`serial=${quoted(`file:${consoleLogPath(spec.name, 'hvm')}`, 'serial')}`, 'vga="none"', 'vnc=0', 'sdl=0', 'nographic=1');
  }
  for (const extra of spec.extraConfig ?? []) {
    if (!/^[a-z_]+\s*=/.test(extra) || /[\n\r]/.test(extra)) throw invalid(`extra config line must be key=value: ${JSON.stringify(extra)}`);
    lines.push(extra);
  }
  return `${lines.join('\n')}\n`;
}

async function xl(args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run('xl', args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim().split('\n').slice(-8).join('\n') ?? '';
    throw new XenLabError('toolstack', `xl ${args.join(' ')} failed${stderr ? `:\n${stderr}` : ''}`, { cause: e });
  }
}

/** A domU created by {@link createDomain}; `await using` destroys it. */
export class LabDomain {
  readonly name: string;
  readonly domid: number;
  readonly type: DomainType;
  /** The file the guest's console is written to in dom0. */
  readonly consoleLog: string;

  constructor(name: string, domid: number, type: DomainType) {
    this.name = name;
    this.domid = domid;
    this.type = type;
    this.consoleLog = consoleLogPath(name, type);
  }

  /** Lets a paused guest run (`xl unpause`). */
  async unpause(): Promise<void> {
    await xl(['unpause', String(this.domid)]);
  }

  /** Destroys the guest (`xl destroy`); a guest already gone is not an error. */
  async destroy(): Promise<void> {
    await destroyById(this.domid);
  }

  /** Everything the guest printed so far ('' before its first line). */
  async consoleOutput(): Promise<string> {
    return readFile(this.consoleLog, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return '';
      throw e;
    });
  }

  /**
   * Waits until the console output matches `pattern`, polling the log file xenconsoled or QEMU
   * appends to; returns the whole output so far.
   * @throws XenLabError('timeout') with the output's tail when `timeoutMs` passes first.
   * @throws XenLabError('guest') as soon as the domain is gone (crashed — the lab's domains are
   *   destroyed on crash — or powered off) without having printed a match: it never will.
   */
  async waitForConsole(pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (let turn = 0; ; turn++) {
      const out = await this.consoleOutput();
      if (pattern.test(out)) return out;
      // About once a second: is the domain still there to print it?
      if (turn % 4 === 3 && !(await exists(this.domid))) {
        const last = await this.consoleOutput();
        if (pattern.test(last)) return last;
        throw new XenLabError('guest', `${this.name} (domid ${this.domid}) is gone without printing ${pattern} (crashed or powered off; \`xl dmesg\` says which); last lines:\n${last.split('\n').slice(-20).join('\n')}`);
      }
      if (Date.now() > deadline) {
        throw new XenLabError('timeout', `${this.name} printed nothing matching ${pattern} in ${timeoutMs} ms; last lines:\n${out.split('\n').slice(-20).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

/**
 * Writes an xl config for `spec` into dom0's /tmp and runs `xl create` (`-p` unless
 * `paused: false`).
 * @returns the new domain, with its domid.
 * @throws XenLabError('toolstack') for an invalid spec or when xl fails (its stderr included).
 */
export async function createDomain(spec: DomainSpec): Promise<LabDomain> {
  const config = xlConfig(spec);
  const dir = join(tmpdir(), 'vmed-xl');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${spec.name}.cfg`);
  await writeFile(file, config);
  await xl(['create', ...(spec.paused === false ? [] : ['-p']), file]);
  const domid = Number.parseInt((await xl(['domid', spec.name])).trim(), 10);
  if (!Number.isInteger(domid) || domid <= 0) throw new XenLabError('toolstack', `xl domid ${spec.name} gave no domain id`);
  return new LabDomain(spec.name, domid, spec.type);
}

export interface DomainListEntry {
  readonly name: string;
  readonly id: number;
  readonly memoryMiB: number;
  readonly vcpus: number;
  /** xl's six state letters, e.g. `r-----` running, `--p---` paused. */
  readonly state: string;
}

/** Parses `xl list` output. */
export function parseXlList(text: string): DomainListEntry[] {
  const out: DomainListEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const [name, id, mem, vcpus, state] = f as [string, string, string, string, string];
    if (!/^\d+$/.test(id)) continue;
    out.push({ name, id: Number(id), memoryMiB: Number(mem), vcpus: Number(vcpus), state });
  }
  return out;
}

/** The domains Xen has now (`xl list`), dom0 included. */
export async function listDomains(): Promise<DomainListEntry[]> {
  return parseXlList(await xl(['list']));
}

async function exists(domid: number): Promise<boolean> {
  return (await listDomains()).some((d) => d.id === domid);
}

/** A guest that powers off between the check and `xl destroy` is gone all the same. */
async function destroyById(domid: number): Promise<boolean> {
  if (!(await exists(domid))) return false;
  try {
    await xl(['destroy', String(domid)]);
  } catch (e) {
    if (await exists(domid)) throw e;
  }
  return true;
}

/** Destroys a domain by name or id if it exists: cleanup after a test that failed halfway. */
export async function destroyDomain(nameOrId: string | number): Promise<boolean> {
  const d = (await listDomains()).find((e) => e.name === nameOrId || e.id === nameOrId);
  if (d === undefined || d.id === 0) return false;
  return destroyById(d.id);
}

/** Parses `xl info`: `key : value` lines. */
export function parseXlInfo(text: string): Record<string, string> {
  const info: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s*:\s?(.*)$/.exec(line);
    if (m !== null) info[m[1] as string] = (m[2] as string).trim();
  }
  return info;
}

/** The hypervisor's facts (`xl info`): `xen_version`, `virt_caps`, `free_memory`… */
export async function xlInfo(): Promise<Record<string, string>> {
  return parseXlInfo(await xl(['info']));
}

/** One PCI function as the lab's domU initramfs reports it. */
export interface GuestPciFunction {
  readonly bdf: string;
  readonly vendor: number;
  readonly device: number;
  readonly classCode: number;
  /** Non-empty entries of sysfs `resource`: index 0–5 are BARs, 6 the ROM. */
  readonly resources: readonly { readonly index: number; readonly start: bigint; readonly end: bigint; readonly flags: bigint; readonly size: bigint }[];
}

export interface GuestPciReport {
  /** The guest reached its end marker (the count it printed matches the functions seen). */
  readonly complete: boolean;
  readonly functions: readonly GuestPciFunction[];
}

const HEX = /^0x[0-9a-f]{1,16}$/i;

/**
 * Parses the `VMED-DOMU:` lines the domU initramfs prints (see xen-lab/domu-init.sh). The text
 * comes from a guest: malformed lines are skipped, never trusted.
 */
export function parseGuestPciReport(consoleText: string): GuestPciReport {
  type Fn = Omit<GuestPciFunction, 'resources'> & { resources: GuestPciFunction['resources'][number][] };
  const functions: Fn[] = [];
  let end: number | undefined;
  for (const line of consoleText.split(/\r?\n/)) {
    const at = line.indexOf('VMED-DOMU: ');
    if (at < 0) continue;
    const f = line.slice(at + 'VMED-DOMU: '.length).trim().split(/\s+/);
    if (f[0] === 'pci' && f.length === 5) {
      const ids = [f[2], f[3], f[4]].map((s, i) => (s ?? '').replace(['vendor=', 'device=', 'class='][i] as string, ''));
      if (!/^[\w:.]+$/.test(f[1] as string) || !ids.every((id) => HEX.test(id))) continue;
      const [vendor, device, classCode] = ids.map((id) => Number.parseInt(id, 16)) as [number, number, number];
      functions.push({ bdf: f[1] as string, vendor, device, classCode, resources: [] });
    } else if (f[0] === 'resource' && f.length === 6) {
      const fn = functions.find((x) => x.bdf === f[1]);
      const values = f.slice(3);
      if (fn === undefined || !/^\d{1,2}$/.test(f[2] as string) || !values.every((v) => HEX.test(v))) continue;
      const [start, endAddr, flags] = values.map((v) => BigInt(v)) as [bigint, bigint, bigint];
      fn.resources.push({ index: Number(f[2]), start, end: endAddr, flags, size: endAddr >= start ? endAddr - start + 1n : 0n });
    } else if (f[0] === 'end' && f.length === 2 && /^\d+$/.test(f[1] as string)) {
      end = Number(f[1]);
    }
  }
  return { complete: end !== undefined && end === functions.length, functions };
}
