/*
 * kvm-run: a small KVM runner for the test guests, used by the tests in test/guests/ to check
 * the guest programs on the real KVM of this machine before (and independently of) the
 * project's own KVM backend. A test tool, not product code.
 *
 * It creates a VM with the in-kernel irqchip (LAPIC, IOAPIC, PIC), RAM at 0, starts every
 * vCPU directly in 32-bit protected mode (flat segments and CR0.PE through KVM_SET_SREGS,
 * esi = vCPU index) at the image's entry, and emulates just enough around it:
 *   - PCI bus 0 through 0xcf8/0xcfc: a host bridge, a 16550 serial function with an I/O
 *     BAR and an edu function (QEMU docs/specs/edu.rst) with a 1 MiB MMIO BAR and MSI, their
 *     BARs assigned as firmware would; the UART prints lines to stdout, edu computes
 *     factorials and DMAs with bounds-checked copies and raises MSIs with KVM_SIGNAL_MSI;
 *   - every other port or MMIO address: reads return a pattern derived from the address,
 *     writes are counted (and traced with -x);
 *   - the done port 0x501 ends the run;
 *   - an agent driver: posts commands from a script into the agent's mailboxes, waits for
 *     the acknowledgement and prints results; sends MSIs and line interrupts and reads the
 *     guest's interrupt counters.
 * Constants mirror guests/common/runtime.inc and guests/agent/abi.inc.
 *
 * Output: one line per event or command, easy to match in tests. Exit status: 0 when the
 * guest wrote the done port or the agent script ran to its end, 1 usage or setup error,
 * 2 unexpected KVM exit, 3 timeout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* guests/common/runtime.inc */
#define GUEST_LOAD_ADDR 0x10000u
#define GUEST_MAX_VCPUS 4
#define DONE_PORT 0x501
#define RT_INFO_ADDR 0x20000u
#define RT_MAGIC 0x00
#define RT_READY 0x59445252u
#define RT_PLATFORM 0x08
#define RT_ONLINE_MASK 0x0c
#define RT_VCPU_BASE 0x40
#define RT_VCPU_STRIDE 0x20
#define RT_VCPU_HEARTBEAT 0x00
#define RT_VCPU_APIC_ID 0x04
#define RT_VCPU_STATE 0x08
#define RT_VCPU_FAULT_VECTOR 0x0c
#define RT_VCPU_FAULT_ERROR 0x10
#define RT_VCPU_FAULT_EIP 0x14
#define IRQ_COUNTS_ADDR 0x21000u
/* guests/agent/abi.inc */
#define AGENT_MAILBOX_ADDR 0x23000u
#define AGENT_MAILBOX_STRIDE 0x40
#define MB_SEQ 0x00
#define MB_ACK 0x04
#define MB_OP 0x08
#define MB_SIZE 0x0c
#define MB_ADDRESS 0x10
#define MB_VALUE 0x18
#define MB_RESULT 0x20
#define MB_STATUS 0x28

#define PVH_START_INFO_ADDR 0x9000u
#define XEN_HVM_START_MAGIC 0x336ec578u

#define SERIAL_IO_BASE 0xc000u
#define SERIAL_IO_SIZE 8u
#define EDU_MMIO_BASE 0xfea00000u
#define EDU_MMIO_SIZE 0x100000u
#define EDU_MSI_CAP 0x40
#define EDU_DMA_BUFFER 0x40000u
#define EDU_DMA_BUFFER_SIZE 4096u

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kvm-run: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* ---------------------------------------------------------------- output ------------ */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&out_lock);
  vprintf(fmt, ap);
  putchar('\n');
  fflush(stdout);
  pthread_mutex_unlock(&out_lock);
  va_end(ap);
}

/* ---------------------------------------------------------------- the VM ------------ */

struct vcpu {
  int index;
  int fd;
  struct kvm_run *run;
  pthread_t thread;
};

static struct {
  int kvm, vm;
  uint8_t *ram;
  uint64_t ram_size;
  int nvcpus;
  struct vcpu vcpus[GUEST_MAX_VCPUS];
  bool trace;
} vm;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int state; /* 0 running, 1 done port written, 2 KVM error */
  uint32_t done_code;
  int done_vcpu;
} finish = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, -1};

static void finish_with(int state, uint32_t code, int vcpu) {
  pthread_mutex_lock(&finish.lock);
  if (finish.state == 0) {
    finish.state = state;
    finish.done_code = code;
    finish.done_vcpu = vcpu;
  }
  pthread_cond_broadcast(&finish.cond);
  pthread_mutex_unlock(&finish.lock);
}

static volatile uint32_t *guest_u32(uint64_t gpa) {
  if (gpa + 4 > vm.ram_size) die("guest address 0x%" PRIx64 " outside RAM", gpa);
  return (volatile uint32_t *)(vm.ram + gpa);
}

static uint32_t load_acquire(uint64_t gpa) { return __atomic_load_n(guest_u32(gpa), __ATOMIC_ACQUIRE); }

/* Address-derived pattern for reads nobody claims: byte i of an access at a is (a+i)^0xa5. */
static uint64_t pattern(uint64_t address, unsigned size) {
  uint64_t v = 0;
  for (unsigned i = 0; i < size; i++) v |= (uint64_t)(((address + i) ^ 0xa5) & 0xff) << (8 * i);
  return v;
}

static struct {
  uint64_t mmio_reads, mmio_writes, pio_reads, pio_writes, msis, exits;
} stats;

/* ---------------------------------------------------------------- PCI --------------- */

/* -F: faults injected into the fake devices, to reach the guests' error paths. */
static struct {
  bool edu_no_msi, edu_dma_corrupt, uart_stuck;
} faults;

struct pci_function {
  bool present;
  uint8_t cfg[256];
  uint8_t wmask[256];
};

static pthread_mutex_t dev_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t cf8;
static struct pci_function pci[32]; /* bus 0, function 0 of each device */
enum { DEV_HOST = 0, DEV_SERIAL = 2, DEV_EDU = 3 };

static void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static uint16_t get16(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void pci_init_function(struct pci_function *f, uint16_t vendor, uint16_t device, uint32_t class_rev) {
  memset(f, 0, sizeof *f);
  f->present = true;
  put16(f->cfg + 0x00, vendor);
  put16(f->cfg + 0x02, device);
  put32(f->cfg + 0x08, class_rev);
  put16(f->wmask + 0x04, 0x0407); /* I/O, memory, bus master, INTx disable */
  f->wmask[0x3c] = 0xff;          /* interrupt line */
}

static void pci_init(uint16_t serial_vendor, uint16_t serial_device, bool with_serial, bool with_edu) {
  pci_init_function(&pci[DEV_HOST], 0x8086, 0x1237, 0x06000002);

  if (with_serial) {
    struct pci_function *s = &pci[DEV_SERIAL];
    pci_init_function(s, serial_vendor, serial_device, 0x07000200);
    put32(s->cfg + 0x10, SERIAL_IO_BASE | 1);
    put32(s->wmask + 0x10, ~(SERIAL_IO_SIZE - 1) & ~3u);
    s->cfg[0x3d] = 1; /* INTA */
  }

  if (with_edu) {
    struct pci_function *e = &pci[DEV_EDU];
    pci_init_function(e, 0x1234, 0x11e8, 0x00ff0010);
    put32(e->cfg + 0x10, EDU_MMIO_BASE);
    put32(e->wmask + 0x10, ~(EDU_MMIO_SIZE - 1));
    if (!faults.edu_no_msi) put16(e->cfg + 0x06, 0x0010); /* capability list */
    e->cfg[0x34] = EDU_MSI_CAP;
    e->cfg[0x3d] = 1;
    /* MSI: 64-bit capable, one vector, no masking (like QEMU's edu). */
    e->cfg[EDU_MSI_CAP + 0] = 0x05;
    e->cfg[EDU_MSI_CAP + 1] = 0x00;
    put16(e->cfg + EDU_MSI_CAP + 2, 0x0080);
    put16(e->wmask + EDU_MSI_CAP + 2, 0x0071);
    put32(e->wmask + EDU_MSI_CAP + 4, 0xfffffffc);
    put32(e->wmask + EDU_MSI_CAP + 8, 0xffffffff);
    put16(e->wmask + EDU_MSI_CAP + 12, 0xffff);
  }
}

static struct pci_function *pci_selected(void) {
  if (!(cf8 & 0x80000000u)) return NULL;
  unsigned bus = (cf8 >> 16) & 0xff, dev = (cf8 >> 11) & 0x1f, fn = (cf8 >> 8) & 7;
  if (bus != 0 || fn != 0 || !pci[dev].present) return NULL;
  return &pci[dev];
}

static uint32_t pci_data_read(unsigned offset, unsigned size) {
  struct pci_function *f = pci_selected();
  if (f == NULL) return 0xffffffffu;
  unsigned reg = (cf8 & 0xfc) + offset;
  uint32_t v = 0;
  for (unsigned i = 0; i < size && reg + i < 256; i++) v |= (uint32_t)f->cfg[reg + i] << (8 * i);
  return v;
}

static void pci_data_write(unsigned offset, unsigned size, uint32_t value) {
  struct pci_function *f = pci_selected();
  if (f == NULL) return;
  unsigned reg = (cf8 & 0xfc) + offset;
  for (unsigned i = 0; i < size && reg + i < 256; i++) {
    uint8_t b = value >> (8 * i);
    f->cfg[reg + i] = (f->cfg[reg + i] & ~f->wmask[reg + i]) | (b & f->wmask[reg + i]);
  }
}

static uint16_t pci_command(int dev) { return get16(pci[dev].cfg + 0x04); }

/* ---------------------------------------------------------------- serial ------------ */

static struct {
  uint8_t regs[8];
  char line[256];
  size_t len;
  uint64_t bytes;
} uart;

static bool serial_decodes(uint16_t port) {
  if (!pci[DEV_SERIAL].present || !(pci_command(DEV_SERIAL) & 1)) return false;
  uint32_t base = get32(pci[DEV_SERIAL].cfg + 0x10) & ~3u;
  return port >= base && port < base + SERIAL_IO_SIZE;
}

static void serial_flush(void) {
  if (uart.len == 0) return;
  uart.line[uart.len] = 0;
  say("serial: %s", uart.line);
  uart.len = 0;
}

static uint8_t serial_read(unsigned reg) {
  if (reg == 5) return faults.uart_stuck ? 0x00 : 0x60; /* LSR: THR empty, transmitter empty */
  return uart.regs[reg];
}

static void serial_write(unsigned reg, uint8_t value) {
  if (reg == 0 && !(uart.regs[3] & 0x80)) {
    uart.bytes++;
    if (value == '\n') {
      serial_flush();
    } else if (value >= 0x20 && value < 0x7f) {
      if (uart.len < sizeof uart.line - 1) uart.line[uart.len++] = value;
    } else {
      say("serial: <unexpected byte 0x%02x>", value);
    }
    return;
  }
  uart.regs[reg] = value;
}

/* ---------------------------------------------------------------- edu --------------- */

static struct {
  uint32_t liveness, factorial, status, irq_status;
  uint64_t dma_src, dma_dst, dma_count, dma_cmd;
  uint8_t buffer[EDU_DMA_BUFFER_SIZE];
} edu;

static bool edu_decodes(uint64_t gpa) {
  if (!pci[DEV_EDU].present || !(pci_command(DEV_EDU) & 2)) return false;
  uint32_t base = get32(pci[DEV_EDU].cfg + 0x10) & ~0xfu;
  return gpa >= base && gpa < (uint64_t)base + EDU_MMIO_SIZE;
}

static void send_msi(uint64_t address, uint32_t data) {
  struct kvm_msi msi = {.address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32), .data = data};
  int r = ioctl(vm.vm, KVM_SIGNAL_MSI, &msi);
  if (r < 0) say("error: KVM_SIGNAL_MSI: %s", strerror(errno));
  __atomic_add_fetch(&stats.msis, 1, __ATOMIC_RELAXED);
}

static void edu_raise(uint32_t bits) {
  edu.irq_status |= bits;
  const uint8_t *cap = pci[DEV_EDU].cfg + EDU_MSI_CAP;
  if (get16(cap + 2) & 1) {
    send_msi(get32(cap + 4) | (uint64_t)get32(cap + 8) << 32, get16(cap + 12));
  } else if (!(pci_command(DEV_EDU) & 0x400)) {
    say("edu: INTx is not wired in kvm-run");
  }
}

static void edu_dma(void) {
  bool to_ram = edu.dma_cmd & 2;
  uint64_t ram = to_ram ? edu.dma_dst : edu.dma_src;
  uint64_t dev = to_ram ? edu.dma_src : edu.dma_dst;
  uint64_t n = edu.dma_count;
  if (!(pci_command(DEV_EDU) & 4)) {
    say("edu: DMA refused: bus mastering is off");
  } else if (dev < EDU_DMA_BUFFER || dev - EDU_DMA_BUFFER > EDU_DMA_BUFFER_SIZE ||
             n > EDU_DMA_BUFFER_SIZE - (dev - EDU_DMA_BUFFER) || ram > vm.ram_size || n > vm.ram_size - ram) {
    say("edu: DMA refused: out of range (ram 0x%" PRIx64 ", device 0x%" PRIx64 ", count %" PRIu64 ")", ram, dev, n);
  } else if (to_ram) {
    memcpy(vm.ram + ram, edu.buffer + (dev - EDU_DMA_BUFFER), n);
    if (faults.edu_dma_corrupt && n > 0) vm.ram[ram + n / 2] ^= 0x40;
  } else {
    memcpy(edu.buffer + (dev - EDU_DMA_BUFFER), vm.ram + ram, n);
  }
  edu.dma_cmd &= ~1ull;
  if (edu.dma_cmd & 4) edu_raise(0x100);
}

static uint64_t edu_read(uint64_t offset, unsigned size) {
  if (size != 4 && !(offset >= 0x80 && size == 8)) return ~0ull;
  switch (offset) {
  case 0x00: return 0x010000ed;
  case 0x04: return edu.liveness;
  case 0x08: return edu.factorial;
  case 0x20: return edu.status;
  case 0x24: return edu.irq_status;
  case 0x80: return edu.dma_src;
  case 0x88: return edu.dma_dst;
  case 0x90: return edu.dma_count;
  case 0x98: return edu.dma_cmd;
  default: return ~0ull;
  }
}

static void edu_write(uint64_t offset, unsigned size, uint64_t value) {
  if (size != 4 && !(offset >= 0x80 && size == 8)) return;
  switch (offset) {
  case 0x04: edu.liveness = ~(uint32_t)value; break;
  case 0x08: {
    uint32_t f = 1;
    for (uint32_t i = 2; i <= (uint32_t)value; i++) f *= i;
    edu.factorial = f;
    if (edu.status & 0x80) edu_raise(0x01);
    break;
  }
  case 0x20: edu.status = (edu.status & 1) | ((uint32_t)value & 0x80); break;
  case 0x60: edu_raise((uint32_t)value); break;
  case 0x64: edu.irq_status &= ~(uint32_t)value; break;
  case 0x80: edu.dma_src = value; break;
  case 0x88: edu.dma_dst = value; break;
  case 0x90: edu.dma_count = value; break;
  case 0x98:
    if (!(edu.dma_cmd & 1)) {
      edu.dma_cmd = value;
      if (value & 1) edu_dma();
    }
    break;
  default: break;
  }
}

/* ---------------------------------------------------------------- echo / doorbell ---- */

/* -I TARGET:VECTOR:COUNT: each guest write to TARGET is answered with one MSI. */
static struct {
  bool on;
  uint64_t target;
  uint32_t vector, limit, sent;
} echo;

static void echo_write(uint64_t target) {
  if (!echo.on || target != echo.target || echo.sent >= echo.limit) return;
  echo.sent++;
  send_msi(0xfee00000u, echo.vector);
}

/* ---------------------------------------------------------------- exits ------------- */

static uint64_t io_in(uint16_t port, unsigned size) {
  if (port >= 0xcf8 && port < 0xcfc && size == 4 && port == 0xcf8) return cf8;
  if (port >= 0xcfc && port < 0xd00) return pci_data_read(port - 0xcfc, size);
  if (serial_decodes(port)) {
    uint32_t base = get32(pci[DEV_SERIAL].cfg + 0x10) & ~3u;
    return serial_read(port - base);
  }
  stats.pio_reads++;
  uint64_t v = pattern(port, size);
  if (vm.trace) say("trace pio-read 0x%x %u 0x%" PRIx64, port, size, v);
  return v;
}

static void io_out(struct vcpu *c, uint16_t port, unsigned size, uint32_t value) {
  if (port == 0xcf8 && size == 4) {
    cf8 = value;
    return;
  }
  if (port >= 0xcfc && port < 0xd00) {
    pci_data_write(port - 0xcfc, size, value);
    return;
  }
  if (port == DONE_PORT && size == 4) {
    serial_flush();
    say("done code=0x%x vcpu=%d", value, c->index);
    finish_with(1, value, c->index);
    return;
  }
  if (serial_decodes(port)) {
    uint32_t base = get32(pci[DEV_SERIAL].cfg + 0x10) & ~3u;
    serial_write(port - base, value);
    return;
  }
  stats.pio_writes++;
  if (vm.trace) say("trace pio-write 0x%x %u 0x%x", port, size, value);
  echo_write(port);
}

static void handle_io(struct vcpu *c) {
  struct kvm_run *run = c->run;
  uint8_t *data = (uint8_t *)run + run->io.data_offset;
  for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
    if (run->io.direction == KVM_EXIT_IO_OUT) {
      uint32_t v = 0;
      memcpy(&v, data, run->io.size);
      io_out(c, run->io.port, run->io.size, v);
    } else {
      uint64_t v = io_in(run->io.port, run->io.size);
      memcpy(data, &v, run->io.size);
    }
  }
}

static void handle_mmio(struct kvm_run *run) {
  uint64_t gpa = run->mmio.phys_addr;
  unsigned len = run->mmio.len;
  uint64_t v = 0;
  if (run->mmio.is_write) {
    memcpy(&v, run->mmio.data, len);
    if (edu_decodes(gpa)) {
      uint32_t base = get32(pci[DEV_EDU].cfg + 0x10) & ~0xfu;
      edu_write(gpa - base, len, v);
      return;
    }
    stats.mmio_writes++;
    if (vm.trace) say("trace mmio-write 0x%" PRIx64 " %u 0x%" PRIx64, gpa, len, v);
    echo_write(gpa);
  } else {
    if (edu_decodes(gpa)) {
      uint32_t base = get32(pci[DEV_EDU].cfg + 0x10) & ~0xfu;
      v = edu_read(gpa - base, len);
    } else {
      stats.mmio_reads++;
      v = pattern(gpa, len);
      if (vm.trace) say("trace mmio-read 0x%" PRIx64 " %u 0x%" PRIx64, gpa, len, v);
    }
    memcpy(run->mmio.data, &v, len);
  }
}

static void dump_regs(struct vcpu *c) {
  struct kvm_regs r;
  struct kvm_sregs s;
  if (ioctl(c->fd, KVM_GET_REGS, &r) < 0 || ioctl(c->fd, KVM_GET_SREGS, &s) < 0) return;
  say("regs vcpu=%d eip=0x%llx esp=0x%llx eax=0x%llx ebx=0x%llx ecx=0x%llx edx=0x%llx esi=0x%llx edi=0x%llx "
      "eflags=0x%llx cr0=0x%llx",
      c->index, r.rip, r.rsp, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rflags, s.cr0);
}

static void *vcpu_loop(void *arg) {
  struct vcpu *c = arg;
  for (;;) {
    if (ioctl(c->fd, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      say("error: KVM_RUN vcpu=%d: %s", c->index, strerror(errno));
      finish_with(2, 0, c->index);
      return NULL;
    }
    __atomic_add_fetch(&stats.exits, 1, __ATOMIC_RELAXED);
    switch (c->run->exit_reason) {
    case KVM_EXIT_IO:
      pthread_mutex_lock(&dev_lock);
      handle_io(c);
      pthread_mutex_unlock(&dev_lock);
      break;
    case KVM_EXIT_MMIO:
      pthread_mutex_lock(&dev_lock);
      handle_mmio(c->run);
      pthread_mutex_unlock(&dev_lock);
      break;
    case KVM_EXIT_INTERNAL_ERROR:
      say("kvm-exit vcpu=%d reason=internal-error suberror=%u", c->index, c->run->internal.suberror);
      dump_regs(c);
      finish_with(2, 0, c->index);
      return NULL;
    default:
      say("kvm-exit vcpu=%d reason=%u", c->index, c->run->exit_reason);
      dump_regs(c);
      finish_with(2, 0, c->index);
      return NULL;
    }
  }
}

/* ---------------------------------------------------------------- setup ------------- */

static void setup_vm(uint64_t ram_mb) {
  vm.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm.kvm < 0) die("/dev/kvm: %s", strerror(errno));
  vm.vm = ioctl(vm.kvm, KVM_CREATE_VM, 0);
  if (vm.vm < 0) die("KVM_CREATE_VM: %s", strerror(errno));
  if (ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP: %s", strerror(errno));
  vm.ram_size = ram_mb << 20;
  vm.ram = mmap(NULL, vm.ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (vm.ram == MAP_FAILED) die("mmap RAM: %s", strerror(errno));
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = vm.ram_size, .userspace_addr = (uintptr_t)vm.ram};
  if (ioctl(vm.vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
}

static struct kvm_cpuid2 *supported_cpuid(void) {
  int n = 256;
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
  cpuid->nent = n;
  if (ioctl(vm.kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
  return cpuid;
}

struct entry_regs {
  uint32_t ebx, ecx, edx, edi;
};

static void setup_vcpu(struct vcpu *c, int index, uint32_t entry, const struct entry_regs *params, bool pvh,
                       struct kvm_cpuid2 *cpuid) {
  c->index = index;
  c->fd = ioctl(vm.vm, KVM_CREATE_VCPU, index);
  if (c->fd < 0) die("KVM_CREATE_VCPU: %s", strerror(errno));
  int size = ioctl(vm.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  c->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
  if (c->run == MAP_FAILED) die("mmap kvm_run: %s", strerror(errno));

  for (uint32_t i = 0; i < cpuid->nent; i++) {
    if (cpuid->entries[i].function == 1) {
      cpuid->entries[i].ebx = (cpuid->entries[i].ebx & 0x00ffffff) | (uint32_t)index << 24;
    }
  }
  if (ioctl(c->fd, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2: %s", strerror(errno));

  struct kvm_sregs s;
  if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS: %s", strerror(errno));
  struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 11, .present = 1, .dpl = 0,
                             .db = 1, .s = 1, .l = 0, .g = 1};
  struct kvm_segment data = code;
  data.selector = 0x10;
  data.type = 3;
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.cr0 = (s.cr0 | 1) & ~0x80000000ull; /* PE on, paging off */
  if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS: %s", strerror(errno));

  struct kvm_regs r = {0};
  r.rip = entry;
  r.rflags = 2;
  r.rsi = index;
  r.rbx = params->ebx;
  r.rcx = params->ecx;
  r.rdx = params->edx;
  r.rdi = params->edi;
  if (pvh) r.rbx = PVH_START_INFO_ADDR;
  if (ioctl(c->fd, KVM_SET_REGS, &r) < 0) die("KVM_SET_REGS: %s", strerror(errno));

  if (index > 0) {
    /* With the in-kernel irqchip an AP waits for INIT/SIPI; start it directly instead. */
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    if (ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0) die("KVM_SET_MP_STATE: %s", strerror(errno));
  }
}

/* ---------------------------------------------------------------- agent driver ------ */

static double deadline;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void print_runtime(void) {
  say("rt magic=0x%x platform=%u online=0x%x", *guest_u32(RT_INFO_ADDR + RT_MAGIC),
      *guest_u32(RT_INFO_ADDR + RT_PLATFORM), *guest_u32(RT_INFO_ADDR + RT_ONLINE_MASK));
  for (int i = 0; i < vm.nvcpus; i++) {
    uint64_t rec = RT_INFO_ADDR + RT_VCPU_BASE + i * RT_VCPU_STRIDE;
    say("rt vcpu=%d state=%u apic=%u heartbeat=%u fault_vector=0x%x fault_error=0x%x fault_eip=0x%x", i,
        *guest_u32(rec + RT_VCPU_STATE), *guest_u32(rec + RT_VCPU_APIC_ID), *guest_u32(rec + RT_VCPU_HEARTBEAT),
        *guest_u32(rec + RT_VCPU_FAULT_VECTOR), *guest_u32(rec + RT_VCPU_FAULT_ERROR),
        *guest_u32(rec + RT_VCPU_FAULT_EIP));
  }
}

static void timeout_exit(const char *what) {
  serial_flush();
  say("timeout %s", what);
  print_runtime();
  fflush(stdout);
  _exit(3);
}

/* Fails the run if the guest stopped (done port or KVM error) while the driver waits. */
static void check_guest_alive(void) {
  pthread_mutex_lock(&finish.lock);
  int state = finish.state;
  pthread_mutex_unlock(&finish.lock);
  if (state != 0) {
    print_runtime();
    fflush(stdout);
    _exit(state == 1 ? 0 : 2);
  }
}

static void wait_ready(int vcpu) {
  while (load_acquire(RT_INFO_ADDR + RT_MAGIC) != RT_READY ||
         !(load_acquire(RT_INFO_ADDR + RT_ONLINE_MASK) & (1u << vcpu))) {
    check_guest_alive();
    if (now() > deadline) timeout_exit("waiting for the agent to come up");
    usleep(200);
  }
}

struct mailbox_result {
  uint32_t status;
  uint64_t result;
};

static uint64_t mailbox(int vcpu) { return AGENT_MAILBOX_ADDR + (uint64_t)vcpu * AGENT_MAILBOX_STRIDE; }

static uint32_t post(int vcpu, uint32_t op, uint32_t size, uint64_t address, uint64_t value) {
  uint64_t mb = mailbox(vcpu);
  *guest_u32(mb + MB_OP) = op;
  *guest_u32(mb + MB_SIZE) = size;
  *guest_u32(mb + MB_ADDRESS) = (uint32_t)address;
  *guest_u32(mb + MB_ADDRESS + 4) = (uint32_t)(address >> 32);
  *guest_u32(mb + MB_VALUE) = (uint32_t)value;
  *guest_u32(mb + MB_VALUE + 4) = (uint32_t)(value >> 32);
  uint32_t seq = *guest_u32(mb + MB_SEQ) + 1;
  __atomic_store_n(guest_u32(mb + MB_SEQ), seq, __ATOMIC_RELEASE);
  return seq;
}

static struct mailbox_result wait_ack(int vcpu, uint32_t seq) {
  uint64_t mb = mailbox(vcpu);
  while (load_acquire(mb + MB_ACK) != seq) {
    check_guest_alive();
    if (now() > deadline) timeout_exit("waiting for the agent's acknowledgement");
    usleep(50);
  }
  struct mailbox_result r;
  r.status = *guest_u32(mb + MB_STATUS);
  r.result = *guest_u32(mb + MB_RESULT) | (uint64_t)*guest_u32(mb + MB_RESULT + 4) << 32;
  return r;
}

static uint32_t irq_count(uint32_t vector) { return load_acquire(IRQ_COUNTS_ADDR + (uint64_t)(vector & 0xff) * 4); }

static uint64_t num(const char *s) {
  if (s == NULL) die("missing number in the agent script");
  char *end;
  errno = 0;
  uint64_t v = strtoull(s, &end, 0);
  if (errno != 0 || *end != 0) die("bad number '%s' in the agent script", s);
  return v;
}

static uint32_t bdf_config_address(const char *s, const char *reg) {
  unsigned bus, dev, fn;
  if (s == NULL || sscanf(s, "%x:%x.%x", &bus, &dev, &fn) != 3) die("bad bus:device.function '%s'", s ? s : "");
  return bus << 16 | dev << 11 | fn << 8 | (uint32_t)num(reg);
}

static uint32_t fnv1a(uint64_t address, uint64_t length) {
  if (address > vm.ram_size || length > vm.ram_size - address) die("host-checksum outside RAM");
  uint32_t h = 0x811c9dc5u;
  for (uint64_t i = 0; i < length; i++) h = (h ^ vm.ram[address + i]) * 0x01000193u;
  return h;
}

static const struct {
  const char *name;
  uint32_t op;
  int nargs; /* address, size, value in the order the command line gives them */
} agent_ops[] = {
    {"nop", 0, 0},         {"mmio-read", 1, 2},  {"mmio-write", 2, 3},   {"pio-read", 3, 2},
    {"pio-write", 4, 3},   {"sti", 7, 0},        {"cli", 8, 0},          {"ram-fill", 10, 3},
    {"ram-checksum", 11, 2}, {"apic-id", 12, 0}, {"hlt", 13, 0},         {"done", 14, -1},
};

static void run_script(FILE *in) {
  char line[512];
  int vcpu = 0;
  uint32_t pending_seq = 0;
  bool pending = false;
  wait_ready(0);
  while (fgets(line, sizeof line, in) != NULL) {
    line[strcspn(line, "\r\n#")] = 0;
    char *argv[8] = {0};
    int argc = 0;
    for (char *tok = strtok(line, " \t"); tok != NULL && argc < 8; tok = strtok(NULL, " \t")) argv[argc++] = tok;
    if (argc == 0) continue;
    const char *cmd = argv[0];
    bool async = false;
    if (strcmp(cmd, "async") == 0) {
      async = true;
      cmd = argv[1];
      memmove(argv, argv + 1, sizeof argv - sizeof argv[0]);
      argc--;
      if (cmd == NULL) die("async needs a command");
    }

    uint32_t op = 0, size = 0;
    uint64_t address = 0, value = 0;
    bool is_agent = false;
    for (size_t i = 0; i < sizeof agent_ops / sizeof agent_ops[0]; i++) {
      if (strcmp(cmd, agent_ops[i].name) != 0) continue;
      is_agent = true;
      op = agent_ops[i].op;
      if (agent_ops[i].nargs >= 2) {
        address = num(argv[1]);
        size = (uint32_t)num(argv[2]);
      }
      if (agent_ops[i].nargs == 3) value = num(argv[3]);
      if (agent_ops[i].nargs == -1) value = num(argv[1]);
    }
    if (strcmp(cmd, "cfg-read") == 0 || strcmp(cmd, "cfg-write") == 0) {
      is_agent = true;
      op = cmd[4] == 'r' ? 5 : 6;
      address = bdf_config_address(argv[1], argv[2]);
      size = (uint32_t)num(argv[3]);
      if (op == 6) value = num(argv[4]);
    } else if (strcmp(cmd, "ioapic-route") == 0) {
      is_agent = true;
      op = 9;
      address = num(argv[1]);
      value = num(argv[2]);
      for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "level") == 0) value |= 0x8000;
        else if (strcmp(argv[i], "low") == 0) value |= 0x2000;
        else if (strcmp(argv[i], "masked") == 0) value |= 0x10000;
        else die("unknown ioapic-route flag '%s'", argv[i]);
      }
    } else if (strcmp(cmd, "raw") == 0) {
      is_agent = true;
      op = (uint32_t)num(argv[1]);
      size = (uint32_t)num(argv[2]);
      address = num(argv[3]);
      value = num(argv[4]);
    }

    if (is_agent) {
      if (pending) die("'%s' posted while an async command is pending (use wait-ack)", cmd);
      uint32_t seq = post(vcpu, op, size, address, value);
      if (async) {
        pending = true;
        pending_seq = seq;
        say("%s posted vcpu=%d", cmd, vcpu);
        continue;
      }
      if (op == 14) { /* done: the guest ends the run; report what it said */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 10;
        pthread_mutex_lock(&finish.lock);
        while (finish.state == 0) {
          if (pthread_cond_timedwait(&finish.cond, &finish.lock, &ts) == ETIMEDOUT) break;
        }
        pthread_mutex_unlock(&finish.lock);
        if (finish.state != 1) timeout_exit("waiting for the done port after the done command");
        continue;
      }
      struct mailbox_result r = wait_ack(vcpu, seq);
      say("%s vcpu=%d status=%u result=0x%" PRIx64, cmd, vcpu, r.status, r.result);
    } else if (strcmp(cmd, "wait-ack") == 0) {
      if (!pending) die("wait-ack without an async command");
      struct mailbox_result r = wait_ack(vcpu, pending_seq);
      pending = false;
      say("wait-ack vcpu=%d status=%u result=0x%" PRIx64, vcpu, r.status, r.result);
    } else if (strcmp(cmd, "vcpu") == 0) {
      vcpu = (int)num(argv[1]);
      if (vcpu >= vm.nvcpus) die("no vCPU %d", vcpu);
      wait_ready(vcpu);
      say("vcpu %d", vcpu);
    } else if (strcmp(cmd, "msi") == 0) {
      uint32_t vector = (uint32_t)num(argv[1]);
      uint32_t apic = argc > 2 ? (uint32_t)num(argv[2]) : 0;
      send_msi(0xfee00000u | apic << 12, vector);
      say("msi vector=0x%x apic=%u", vector, apic);
    } else if (strcmp(cmd, "irq-line") == 0) {
      struct kvm_irq_level level = {.irq = (uint32_t)num(argv[1]), .level = (uint32_t)num(argv[2])};
      if (ioctl(vm.vm, KVM_IRQ_LINE, &level) < 0) die("KVM_IRQ_LINE: %s", strerror(errno));
      say("irq-line gsi=%u level=%u", level.irq, level.level);
    } else if (strcmp(cmd, "wait-irq") == 0) {
      uint32_t vector = (uint32_t)num(argv[1]), want = (uint32_t)num(argv[2]);
      while (irq_count(vector) < want) {
        check_guest_alive();
        if (now() > deadline) timeout_exit("waiting for interrupts");
        usleep(100);
      }
      say("wait-irq vector=0x%x count=%u", vector, irq_count(vector));
    } else if (strcmp(cmd, "irq-count") == 0) {
      uint32_t vector = (uint32_t)num(argv[1]);
      say("irq-count vector=0x%x count=%u", vector, irq_count(vector));
    } else if (strcmp(cmd, "sleep") == 0) {
      usleep((useconds_t)num(argv[1]) * 1000);
    } else if (strcmp(cmd, "host-checksum") == 0) {
      say("host-checksum result=0x%x", fnv1a(num(argv[1]), num(argv[2])));
    } else if (strcmp(cmd, "host-read") == 0) {
      uint64_t a = num(argv[1]);
      say("host-read 0x%" PRIx64 " value=0x%x", a, *guest_u32(a));
    } else if (strcmp(cmd, "heartbeat") == 0) {
      say("heartbeat vcpu=%d value=%u", vcpu,
          load_acquire(RT_INFO_ADDR + RT_VCPU_BASE + vcpu * RT_VCPU_STRIDE + RT_VCPU_HEARTBEAT));
    } else if (strcmp(cmd, "rt") == 0) {
      print_runtime();
    } else if (strcmp(cmd, "stats") == 0) {
      say("stats mmio_writes=%" PRIu64 " mmio_reads=%" PRIu64 " pio_writes=%" PRIu64 " pio_reads=%" PRIu64,
          stats.mmio_writes, stats.mmio_reads, stats.pio_writes, stats.pio_reads);
    } else {
      die("unknown agent script command '%s'", cmd);
    }
  }
}

/* ---------------------------------------------------------------- main -------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: kvm-run [options] IMAGE.bin\n"
          "  -m MIB          guest RAM at address 0 (default 16)\n"
          "  -c N            vCPUs, started together (default 1, at most 4)\n"
          "  -l ADDR         load address (default 0x10000)\n"
          "  -e ADDR         entry point (default: the load address)\n"
          "  -p ADDR         enter vCPU 0 at ADDR as Xen enters a PVH guest (ebx = start_info)\n"
          "  -R REG=VALUE    entry register ebx, ecx, edx or edi (all vCPUs)\n"
          "  -a FILE         drive the agent with the script in FILE ('-' = stdin)\n"
          "  -t SECONDS      give up after this long (default 30)\n"
          "  -s VVVV:DDDD    PCI ids of the serial function (default 1b36:0002)\n"
          "  -N serial|edu   leave that function off the PCI bus\n"
          "  -F FAULT        edu-no-msi, edu-dma-corrupt or uart-stuck\n"
          "  -I T:V:N        answer each write to port/address T with MSI vector V, N times\n"
          "  -D T            register an ioeventfd (4 bytes, any value) at port/address T\n"
          "  -x              trace unclaimed MMIO and port accesses\n");
  exit(1);
}

int main(int argc, char **argv) {
  uint64_t ram_mb = 16, load = GUEST_LOAD_ADDR, entry = UINT64_MAX, pvh_entry = UINT64_MAX;
  int nvcpus = 1;
  double timeout = 30;
  const char *script = NULL;
  unsigned serial_vendor = 0x1b36, serial_device = 0x0002;
  bool with_serial = true, with_edu = true;
  struct entry_regs params = {0};
  int64_t doorbell = -1;
  int opt;
  while ((opt = getopt(argc, argv, "m:c:l:e:p:R:a:t:s:N:F:I:D:x")) != -1) {
    switch (opt) {
    case 'm': ram_mb = strtoull(optarg, NULL, 0); break;
    case 'c': nvcpus = atoi(optarg); break;
    case 'l': load = strtoull(optarg, NULL, 0); break;
    case 'e': entry = strtoull(optarg, NULL, 0); break;
    case 'p': pvh_entry = strtoull(optarg, NULL, 0); break;
    case 'R': {
      char reg[8];
      unsigned long long v;
      if (sscanf(optarg, "%3[a-z]=%lli", reg, &v) != 2) usage();
      if (strcmp(reg, "ebx") == 0) params.ebx = (uint32_t)v;
      else if (strcmp(reg, "ecx") == 0) params.ecx = (uint32_t)v;
      else if (strcmp(reg, "edx") == 0) params.edx = (uint32_t)v;
      else if (strcmp(reg, "edi") == 0) params.edi = (uint32_t)v;
      else usage();
      break;
    }
    case 'a': script = optarg; break;
    case 't': timeout = atof(optarg); break;
    case 's':
      if (sscanf(optarg, "%x:%x", &serial_vendor, &serial_device) != 2) usage();
      break;
    case 'N':
      if (strcmp(optarg, "serial") == 0) with_serial = false;
      else if (strcmp(optarg, "edu") == 0) with_edu = false;
      else usage();
      break;
    case 'F':
      if (strcmp(optarg, "edu-no-msi") == 0) faults.edu_no_msi = true;
      else if (strcmp(optarg, "edu-dma-corrupt") == 0) faults.edu_dma_corrupt = true;
      else if (strcmp(optarg, "uart-stuck") == 0) faults.uart_stuck = true;
      else usage();
      break;
    case 'I': {
      unsigned long long t;
      unsigned v, n;
      if (sscanf(optarg, "%lli:%i:%u", &t, &v, &n) != 3) usage();
      echo.on = true;
      echo.target = t;
      echo.vector = v;
      echo.limit = n;
      break;
    }
    case 'D': doorbell = strtoll(optarg, NULL, 0); break;
    case 'x': vm.trace = true; break;
    default: usage();
    }
  }
  if (optind != argc - 1 || nvcpus < 1 || nvcpus > GUEST_MAX_VCPUS || ram_mb < 2 || ram_mb > 3072) usage();
  if (entry == UINT64_MAX) entry = load;

  setup_vm(ram_mb);
  vm.nvcpus = nvcpus;
  pci_init((uint16_t)serial_vendor, (uint16_t)serial_device, with_serial, with_edu);

  FILE *image = fopen(argv[optind], "rb");
  if (image == NULL) die("%s: %s", argv[optind], strerror(errno));
  size_t n = fread(vm.ram + load, 1, vm.ram_size - load, image);
  if (ferror(image)) die("%s: read error", argv[optind]);
  fclose(image);
  say("loaded %zu bytes at 0x%" PRIx64, n, load);

  if (pvh_entry != UINT64_MAX) {
    *guest_u32(PVH_START_INFO_ADDR) = XEN_HVM_START_MAGIC;
    *guest_u32(PVH_START_INFO_ADDR + 4) = 1; /* version */
  }

  int efd = -1;
  if (doorbell >= 0) {
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct kvm_ioeventfd io = {.addr = (uint64_t)doorbell, .len = 4, .fd = efd};
    if (doorbell < 0x10000) io.flags = KVM_IOEVENTFD_FLAG_PIO;
    if (ioctl(vm.vm, KVM_IOEVENTFD, &io) < 0) die("KVM_IOEVENTFD: %s", strerror(errno));
  }

  struct kvm_cpuid2 *cpuid = supported_cpuid();
  for (int i = 0; i < nvcpus; i++) {
    bool pvh = i == 0 && pvh_entry != UINT64_MAX;
    setup_vcpu(&vm.vcpus[i], i, (uint32_t)(pvh ? pvh_entry : entry), &params, pvh, cpuid);
  }
  for (int i = 0; i < nvcpus; i++) pthread_create(&vm.vcpus[i].thread, NULL, vcpu_loop, &vm.vcpus[i]);

  deadline = now() + timeout;
  int status = 0;
  if (script != NULL) {
    FILE *in = strcmp(script, "-") == 0 ? stdin : fopen(script, "r");
    if (in == NULL) die("%s: %s", script, strerror(errno));
    run_script(in);
    pthread_mutex_lock(&finish.lock);
    if (finish.state == 2) status = 2;
    pthread_mutex_unlock(&finish.lock);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout;
    pthread_mutex_lock(&finish.lock);
    while (finish.state == 0) {
      if (pthread_cond_timedwait(&finish.cond, &finish.lock, &ts) == ETIMEDOUT) break;
    }
    int state = finish.state;
    pthread_mutex_unlock(&finish.lock);
    if (state == 0) timeout_exit("waiting for the done port");
    status = state == 1 ? 0 : 2;
  }

  if (echo.on) say("irq-echo sent=%u", echo.sent);
  if (efd >= 0) {
    uint64_t count = 0;
    if (read(efd, &count, sizeof count) < 0 && errno != EAGAIN) die("read eventfd: %s", strerror(errno));
    say("ioeventfd count=%" PRIu64, count);
  }
  say("stats mmio_writes=%" PRIu64 " mmio_reads=%" PRIu64 " pio_writes=%" PRIu64 " pio_reads=%" PRIu64
      " msis=%" PRIu64 " serial_bytes=%" PRIu64,
      stats.mmio_writes, stats.mmio_reads, stats.pio_writes, stats.pio_reads, stats.msis, uart.bytes);
  if (status != 0) print_runtime();
  fflush(stdout);
  _exit(status);
}
