/*
 * kvm.irq_inject: the bench-irq guest rings DOORBELL (an ioeventfd) when ready and then once
 * from each run of its handler for VECTOR; the device thread answers each ring with the next
 * MSI through an irqfd on an MSI-routed GSI, COUNT times. One operation is one round trip:
 * eventfd → device handler → irqfd → guest handler → EOI → doorbell.
 *
 *   irq IMAGE LOAD ENTRY FOOTPRINT DOORBELL VECTOR COUNT WARMUP
 */
#include "bench.h"
#include "guest-args.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct vcpu_run {
  struct vm *vm;
  uint32_t code;
};

static void *vcpu_thread(void *arg) {
  struct vcpu_run *r = arg;
  for (;;) {
    vm_run(r->vm);
    if (done_port_write(r->vm->run, &r->code)) return NULL;
    die("unexpected exit reason %u", r->vm->run->exit_reason);
  }
}

int cmd_irq(int argc, char **argv) {
  if (argc != 9) die("usage: irq IMAGE LOAD ENTRY FOOTPRINT DOORBELL VECTOR COUNT WARMUP");
  struct guest g;
  guest_from_args(&g, argv + 1);
  uint64_t doorbell = arg_u64(argv[5], "doorbell");
  uint32_t vector = (uint32_t)arg_u64(argv[6], "vector");
  uint64_t count = arg_u64(argv[7], "count");
  uint64_t warmup = arg_u64(argv[8], "warmup");
  if (count < 1 || count > 0xfffffffeu || warmup > 0xfffffffeu) die("count must be in [1, 2^32-1)");

  struct vm vm;
  vm_create(&vm, 4, -1);
  int ring_fd = eventfd(0, EFD_CLOEXEC);
  int irq_fd = eventfd(0, EFD_CLOEXEC);
  if (ring_fd < 0 || irq_fd < 0) die("eventfd: %s", strerror(errno));
  struct kvm_ioeventfd io = {.addr = doorbell, .len = 4, .fd = ring_fd, .flags = doorbell < 0x10000 ? KVM_IOEVENTFD_FLAG_PIO : 0};
  if (ioctl(vm.fd, KVM_IOEVENTFD, &io) < 0) die("KVM_IOEVENTFD: %s", strerror(errno));
  uint32_t gsi = FIRST_MSI_GSI;
  uint64_t address = 0xfee00000ull;
  set_gsi_routing(vm.fd, 1, &gsi, &address, &vector);
  struct kvm_irqfd irqfd = {.fd = (uint32_t)irq_fd, .gsi = gsi};
  if (ioctl(vm.fd, KVM_IRQFD, &irqfd) < 0) die("KVM_IRQFD: %s", strerror(errno));

  uint64_t rings = 0, sent = 0, first_ns = 0, last_ns = 0;
  const uint64_t one = 1;
  for (int pass = warmup > 0 ? 0 : 1; pass < 2; pass++) {
    uint64_t n = pass == 0 ? warmup : count;
    g.params[0] = (uint32_t)doorbell;
    g.params[1] = (uint32_t)n;
    g.params[2] = vector;
    g.params[3] = 0;
    vm_start_guest(&vm, &g);
    struct vcpu_run r = {.vm = &vm};
    pthread_t thread;
    if (pthread_create(&thread, NULL, vcpu_thread, &r) != 0) die("pthread_create failed");
    rings = sent = 0;
    /* The guest rings once when ready and once per interrupt: n + 1 rings. */
    while (rings < n + 1) {
      uint64_t c;
      if (read(ring_fd, &c, sizeof c) != (ssize_t)sizeof c) die("read eventfd: %s", strerror(errno));
      for (uint64_t k = 0; k < c; k++) {
        rings++;
        if (rings == 1) first_ns = now_ns();
        if (rings == n + 1) last_ns = now_ns();
        if (sent < n) {
          if (write(irq_fd, &one, sizeof one) != (ssize_t)sizeof one) die("write irqfd: %s", strerror(errno));
          sent++;
        }
      }
    }
    pthread_join(thread, NULL);
    if (r.code != 0) die("the guest ended with code 0x%x", r.code);
  }
  /* The guest's own count of interrupts on the vector (runtime.inc IRQ_COUNTS). */
  uint32_t handled;
  memcpy(&handled, vm.ram + IRQ_COUNTS_ADDR + 4 * (vector & 0xff), sizeof handled);
  printf("{\"ops\":%llu,\"timedOps\":%llu,\"ns\":%llu,\"rings\":%llu,\"guestInterrupts\":%u}\n", (unsigned long long)sent,
         (unsigned long long)count, (unsigned long long)(last_ns - first_ns), (unsigned long long)rings, handled);
  return 0;
}
