/*
 * The VM every KVM benchmark runs its guest in, built with the same ioctls, in the same
 * order, as vmed's standalone KVM backend (backend-kvm/src/backend.ts buildStandalone and
 * guest/entry.ts applyEntry). None of this is timed.
 */
#include "bench.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vmed-bench-c: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

uint64_t arg_u64(const char *text, const char *what) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0') die("%s: '%s' is not a number", what, text);
  return v;
}

uint8_t *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("%s: %s", path, strerror(errno));
  if (fseek(f, 0, SEEK_END) != 0) die("%s: seek failed", path);
  long n = ftell(f);
  if (n <= 0) die("%s: empty", path);
  rewind(f);
  uint8_t *bytes = malloc((size_t)n);
  if (bytes == NULL || fread(bytes, 1, (size_t)n, f) != (size_t)n) die("%s: read failed", path);
  fclose(f);
  *size = (size_t)n;
  return bytes;
}

void vm_create(struct vm *vm, uint64_t ram_mib, int memfd) {
  memset(vm, 0, sizeof *vm);
  vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm->kvm < 0) die("/dev/kvm: %s", strerror(errno));
  vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
  if (vm->fd < 0) die("KVM_CREATE_VM: %s", strerror(errno));
  vm->ram_size = ram_mib << 20;
  if (memfd < 0) {
    memfd = memfd_create("vmed-bench-ram", MFD_CLOEXEC);
    if (memfd < 0) die("memfd_create: %s", strerror(errno));
    if (ftruncate(memfd, (off_t)vm->ram_size) < 0) die("ftruncate: %s", strerror(errno));
  }
  vm->memfd = memfd;
  vm->ram = mmap(NULL, vm->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (vm->ram == MAP_FAILED) die("mmap RAM: %s", strerror(errno));
  if (ioctl(vm->fd, KVM_SET_TSS_ADDR, TSS_ADDRESS) < 0) die("KVM_SET_TSS_ADDR: %s", strerror(errno));
  uint64_t identity = IDENTITY_MAP_ADDRESS;
  if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) die("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
  if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP: %s", strerror(errno));
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = vm->ram_size, .userspace_addr = (uintptr_t)vm->ram};
  if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
  vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
  if (vm->vcpu < 0) die("KVM_CREATE_VCPU: %s", strerror(errno));
  int size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
  vm->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
  if (vm->run == MAP_FAILED) die("mmap kvm_run: %s", strerror(errno));
}

void vm_start_guest(struct vm *vm, const struct guest *g) {
  if (g->footprint_end > vm->ram_size || g->load + g->image_size > g->footprint_end) die("the guest does not fit in RAM");
  memset(vm->ram + g->load, 0, g->footprint_end - g->load);
  memcpy(vm->ram + g->load, g->image, g->image_size);

  struct kvm_sregs s;
  if (ioctl(vm->vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS: %s", strerror(errno));
  struct kvm_segment code = {
      .base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb, .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
  struct kvm_segment data = code;
  data.selector = 0x10;
  data.type = 0x3;
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.cr0 = (s.cr0 | 1) & ~(1ull << 31); /* PE on, PG off */
  s.cr4 = 0;
  s.efer = 0;
  if (ioctl(vm->vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS: %s", strerror(errno));

  struct kvm_regs r = {0};
  r.rip = g->entry;
  r.rflags = 2;
  r.rsi = 0; /* vCPU index */
  r.rbx = g->params[0];
  r.rcx = g->params[1];
  r.rdx = g->params[2];
  r.rdi = g->params[3];
  if (ioctl(vm->vcpu, KVM_SET_REGS, &r) < 0) die("KVM_SET_REGS: %s", strerror(errno));
}

void vm_run(struct vm *vm) {
  while (ioctl(vm->vcpu, KVM_RUN, 0) < 0) {
    if (errno != EINTR && errno != EAGAIN) die("KVM_RUN: %s", strerror(errno));
  }
}

void set_gsi_routing(int vm_fd, int msi_count, const uint32_t *gsi, const uint64_t *address, const uint32_t *data) {
  int max = IOAPIC_PINS + 16 + msi_count;
  struct kvm_irq_routing *table = calloc(1, sizeof *table + (size_t)max * sizeof(struct kvm_irq_routing_entry));
  if (table == NULL) die("out of memory");
  int n = 0;
  /* The routes KVM_CREATE_IRQCHIP installs: GSI 0-15 to the IOAPIC and a PIC pin, 16-23 to the IOAPIC. */
  for (int pin = 0; pin < IOAPIC_PINS; pin++) {
    struct kvm_irq_routing_entry *e = &table->entries[n++];
    e->gsi = (uint32_t)pin;
    e->type = KVM_IRQ_ROUTING_IRQCHIP;
    e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
    e->u.irqchip.pin = (uint32_t)pin;
    if (pin < 16) {
      e = &table->entries[n++];
      e->gsi = (uint32_t)pin;
      e->type = KVM_IRQ_ROUTING_IRQCHIP;
      e->u.irqchip.irqchip = pin < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
      e->u.irqchip.pin = (uint32_t)(pin % 8);
    }
  }
  for (int i = 0; i < msi_count; i++) {
    struct kvm_irq_routing_entry *e = &table->entries[n++];
    e->gsi = gsi[i];
    e->type = KVM_IRQ_ROUTING_MSI;
    e->u.msi.address_lo = (uint32_t)address[i];
    e->u.msi.address_hi = (uint32_t)(address[i] >> 32);
    e->u.msi.data = data[i];
  }
  table->nr = (uint32_t)n;
  if (ioctl(vm_fd, KVM_SET_GSI_ROUTING, table) < 0) die("KVM_SET_GSI_ROUTING: %s", strerror(errno));
  free(table);
}

void futex_wait(int *word, int expected) {
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

void futex_wake(int *word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
