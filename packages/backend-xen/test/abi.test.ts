/**
 * Checks src/abi/xen.ts against the Xen headers installed on this machine (libxen-dev): a C
 * program includes them, prints every layout and constant we mirror, and _Static_asserts that
 * each koffi prototype we declare has the type of the real function. Runs on any host with
 * gcc and the headers; needs no Xen.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as abi from '../src/abi/xen.js';

const probeSource = new URL('./abi-probe.c', import.meta.url);
const haveToolchain = existsSync('/usr/include/xen/hvm/ioreq.h') && existsSync('/usr/include/xendevicemodel.h') && hasGcc();

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Handle parameters our prototypes pass as `void *`, by library prefix. */
const HANDLE_TYPES: Array<[prefix: string, ctype: string]> = [
  ['xendevicemodel_', 'xendevicemodel_handle *'],
  ['xenforeignmemory_', 'xenforeignmemory_handle *'],
  ['xenevtchn_', 'xenevtchn_handle *'],
  ['xs_', 'struct xs_handle *'],
];

/**
 * Where koffi is given a different spelling of the C type: same size and passing convention,
 * checked below by comparing sizeof on both sides. Index is the parameter position.
 */
const OVERRIDES: Record<string, Record<string, string>> = {
  xendevicemodel_open: { 0: 'struct xentoollog_logger *', ret: 'xendevicemodel_handle *' },
  xenforeignmemory_open: { 0: 'struct xentoollog_logger *', ret: 'xenforeignmemory_handle *' },
  xenevtchn_open: { 0: 'struct xentoollog_logger *', ret: 'xenevtchn_handle *' },
  xs_open: { ret: 'struct xs_handle *' },
  xenforeignmemory_map_resource: { ret: 'xenforeignmemory_resource_handle *', 6: 'void **' },
  xenforeignmemory_unmap_resource: { 1: 'xenforeignmemory_resource_handle *' },
  xendevicemodel_set_mem_type: { 2: 'hvmmem_type_t' },
  xs_set_permissions: { 3: 'struct xs_permissions *' },
  poll: { 0: 'struct pollfd *' },
};

interface Prototype {
  name: string;
  ret: string;
  params: string[];
}

function parsePrototype(decl: string): Prototype {
  const clean = decl.replace(/_(Out|Inout)_\s+/g, '');
  const m = /^(.*?)\s*\b(\w+)\((.*)\)$/.exec(clean);
  if (m === null) throw new Error(`cannot parse ${decl}`);
  const params = (m[3] as string).split(',').map((p) => p.trim().replace(/\s*\b\w+$/, '').trim());
  return { name: m[2] as string, ret: (m[1] as string).trim(), params };
}

function cTypes(p: Prototype): { ret: string; params: string[] } {
  const over = OVERRIDES[p.name] ?? {};
  const handle = HANDLE_TYPES.find(([prefix]) => p.name.startsWith(prefix))?.[1];
  const params = p.params.map((t, i) => over[String(i)] ?? (i === 0 && handle !== undefined && t === 'void *' ? handle : t));
  return { ret: over['ret'] ?? p.ret, params };
}

const ALL_PROTOTYPES = [abi.DEVICEMODEL_PROTOTYPES, abi.FOREIGNMEMORY_PROTOTYPES, abi.EVTCHN_PROTOTYPES, abi.XENSTORE_PROTOTYPES, abi.LIBC_PROTOTYPES].flatMap((t) =>
  Object.values(t).map(parsePrototype),
);

function generatedHeader(): string {
  const lines: string[] = [];
  const sizes: string[] = [];
  for (const p of ALL_PROTOTYPES) {
    const c = cTypes(p);
    lines.push(`typedef ${c.ret} (vmed_${p.name}_t)(${c.params.join(', ') || 'void'});`);
    lines.push(`_Static_assert(__builtin_types_compatible_p(__typeof__(${p.name}), vmed_${p.name}_t), "koffi prototype of ${p.name} does not match the header");`);
    for (const [key, ctype] of Object.entries(OVERRIDES[p.name] ?? {})) {
      sizes.push(`printf("  \\"override ${p.name} ${key}\\": %zu,\\n", sizeof(${ctype}));`);
    }
  }
  return `${lines.join('\n')}\nstatic void print_override_sizes(void) {\n${sizes.join('\n')}\n}\n`;
}

let dir = '';
let probe: Record<string, number> = {};

beforeAll(() => {
  if (!haveToolchain) return;
  dir = mkdtempSync(join(tmpdir(), 'vmed-xen-abi-'));
  writeFileSync(join(dir, 'prototypes.h'), generatedHeader());
  writeFileSync(join(dir, 'probe.c'), readFileSync(probeSource));
  execFileSync('gcc', ['-std=gnu11', '-Wall', '-Werror', '-I', dir, '-o', join(dir, 'probe'), join(dir, 'probe.c')], { stdio: 'pipe' });
  probe = JSON.parse(execFileSync(join(dir, 'probe'), { encoding: 'utf8' })) as Record<string, number>;
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveToolchain)('Xen ABI (src/abi/xen.ts) against the installed headers', () => {
  it('ioreq_t: size, field offsets and the flags byte', () => {
    expect(probe['sizeof_ioreq']).toBe(abi.IOREQ_SIZE);
    expect(probe['off_addr']).toBe(abi.IOREQ_OFF_ADDR);
    expect(probe['off_data']).toBe(abi.IOREQ_OFF_DATA);
    expect(probe['off_count']).toBe(abi.IOREQ_OFF_COUNT);
    expect(probe['off_size']).toBe(abi.IOREQ_OFF_SIZE);
    expect(probe['off_vp_eport']).toBe(abi.IOREQ_OFF_VP_EPORT);
    expect(probe['off_type']).toBe(abi.IOREQ_OFF_TYPE);
    expect(probe['sizeof_shared_iopage']).toBe(abi.IOREQ_SIZE);
    const bits = probe as unknown as Record<string, { byte: number; mask: number }>;
    expect(bits['state']).toEqual({ byte: abi.IOREQ_OFF_FLAGS, mask: abi.IOREQ_FLAG_STATE_MASK });
    expect(bits['data_is_ptr']).toEqual({ byte: abi.IOREQ_OFF_FLAGS, mask: abi.IOREQ_FLAG_DATA_IS_PTR });
    expect(bits['dir']).toEqual({ byte: abi.IOREQ_OFF_FLAGS, mask: abi.IOREQ_FLAG_DIR_READ });
    expect(bits['df']).toEqual({ byte: abi.IOREQ_OFF_FLAGS, mask: abi.IOREQ_FLAG_DF });
  });

  it('buf_ioreq_t and buffered_iopage_t', () => {
    expect(probe['sizeof_buf_ioreq']).toBe(abi.BUF_IOREQ_SIZE);
    expect(probe['buf_off_data']).toBe(abi.BUF_IOREQ_OFF_DATA);
    expect(probe['buf_type_word']).toBe(abi.BUF_IOREQ_TYPE_MASK);
    expect(probe['buf_dir_word']).toBe(1 << abi.BUF_IOREQ_DIR_SHIFT);
    expect(probe['buf_size_word']).toBe(3 << abi.BUF_IOREQ_SIZE_SHIFT);
    expect(probe['buf_addr_word']).toBe((0xfffff << abi.BUF_IOREQ_ADDR_SHIFT) >>> 0);
    expect(probe['off_read_pointer']).toBe(abi.BUFIOREQ_OFF_READ_POINTER);
    expect(probe['off_write_pointer']).toBe(abi.BUFIOREQ_OFF_WRITE_POINTER);
    expect(probe['off_buf_ioreq']).toBe(abi.BUFIOREQ_OFF_SLOTS);
    expect(probe['sizeof_buffered_iopage']).toBe(abi.BUFIOREQ_OFF_SLOTS + abi.IOREQ_BUFFER_SLOT_NUM * abi.BUF_IOREQ_SIZE);
    expect(probe['sizeof_buffered_iopage']).toBeLessThanOrEqual(abi.XEN_PAGE_SIZE);
  });

  it('constants', () => {
    const names = [
      'IOREQ_READ',
      'IOREQ_WRITE',
      'STATE_IOREQ_NONE',
      'STATE_IOREQ_READY',
      'STATE_IOREQ_INPROCESS',
      'STATE_IORESP_READY',
      'IOREQ_TYPE_PIO',
      'IOREQ_TYPE_COPY',
      'IOREQ_TYPE_PCI_CONFIG',
      'IOREQ_TYPE_TIMEOFFSET',
      'IOREQ_TYPE_INVALIDATE',
      'IOREQ_BUFFER_SLOT_NUM',
      'HVM_IOREQSRV_BUFIOREQ_OFF',
      'HVM_IOREQSRV_BUFIOREQ_LEGACY',
      'HVM_IOREQSRV_BUFIOREQ_ATOMIC',
      'XEN_DMOP_IO_RANGE_PORT',
      'XEN_DMOP_IO_RANGE_MEMORY',
      'XEN_DMOP_IO_RANGE_PCI',
      'XEN_DMOP_IOREQ_MEM_ACCESS_READ',
      'XEN_DMOP_IOREQ_MEM_ACCESS_WRITE',
      'HVMMEM_ram_rw',
      'HVMMEM_ioreq_server',
      'XENMEM_resource_ioreq_server',
      'XENMEM_resource_ioreq_server_frame_bufioreq',
      'DOMID_FIRST_RESERVED',
      'XEN_PAGE_SIZE',
      'XS_PERM_NONE',
      'XS_PERM_READ',
      'XS_PERM_WRITE',
      'XBT_NULL',
      'PROT_READ',
      'PROT_WRITE',
      'POLLIN',
      'POLLERR',
      'POLLHUP',
      'POLLNVAL',
      'EFD_CLOEXEC',
    ] as const;
    for (const name of names) expect({ name, value: (abi as Record<string, unknown>)[name] }).toEqual({ name, value: probe[name] });
    expect(abi.XENMEM_resource_ioreq_server_frame_ioreq(0)).toBe(probe['XENMEM_resource_ioreq_server_frame_ioreq_0']);
    expect(abi.XENMEM_resource_ioreq_server_frame_ioreq(3)).toBe(probe['XENMEM_resource_ioreq_server_frame_ioreq_3']);
    expect(abi.IOREQ_MAX_VCPUS).toBe((probe['XEN_PAGE_SIZE'] as number) / (probe['sizeof_ioreq'] as number));
  });

  it('scalar and struct sizes the prototypes rely on', () => {
    expect(probe['sizeof_xen_pfn_t']).toBe(8); // passed as uint64_t
    expect(probe['sizeof_domid_t']).toBe(2); // uint16_t
    expect(probe['sizeof_ioservid_t']).toBe(2); // uint16_t
    expect(probe['sizeof_evtchn_port_t']).toBe(4); // uint32_t
    expect(probe['sizeof_xs_permissions']).toBe(abi.XS_PERMISSIONS_SIZE);
    expect(probe['sizeof_pollfd']).toBe(abi.POLLFD_SIZE);
    expect(probe['off_pollfd_revents']).toBe(6); // the waiter reads revents as int16 index 3
  });

  it('every koffi prototype has the type of the header declaration (compile-time asserts) and overridden types have the same size', () => {
    // The probe compiled, so every _Static_assert held; make sure they were all there.
    expect(ALL_PROTOTYPES.length).toBe(
      Object.keys(abi.DEVICEMODEL_PROTOTYPES).length +
        Object.keys(abi.FOREIGNMEMORY_PROTOTYPES).length +
        Object.keys(abi.EVTCHN_PROTOTYPES).length +
        Object.keys(abi.XENSTORE_PROTOTYPES).length +
        Object.keys(abi.LIBC_PROTOTYPES).length,
    );
    expect(generatedHeader().match(/_Static_assert/g)?.length).toBe(ALL_PROTOTYPES.length);
    for (const p of ALL_PROTOTYPES) {
      for (const key of Object.keys(OVERRIDES[p.name] ?? {})) {
        const koffiType = key === 'ret' ? p.ret : (p.params[Number(key)] as string);
        expect({ fn: p.name, key, size: koffi.sizeof(koffiType) }).toEqual({ fn: p.name, key, size: probe[`override ${p.name} ${key}`] });
      }
    }
  });

  it('a prototype that disagrees with the header fails to compile (the check can fail)', () => {
    const wrong = `typedef int (vmed_bad_t)(xendevicemodel_handle *, domid_t, uint32_t);\n_Static_assert(__builtin_types_compatible_p(__typeof__(xendevicemodel_set_isa_irq_level), vmed_bad_t), "bad");\nstatic void print_override_sizes(void) {}\n`;
    const bad = mkdtempSync(join(tmpdir(), 'vmed-xen-abi-bad-'));
    try {
      writeFileSync(join(bad, 'prototypes.h'), wrong);
      writeFileSync(join(bad, 'probe.c'), readFileSync(probeSource));
      expect(() => execFileSync('gcc', ['-std=gnu11', '-fsyntax-only', '-I', bad, join(bad, 'probe.c')], { stdio: 'pipe' })).toThrow();
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});

it.skipIf(haveToolchain)('Xen ABI check skipped: needs gcc and the libxen-dev headers in /usr/include', () => {});
