/*
 * kvm.doorbell: the bench-doorbell guest writes COUNT times to TARGET, which an ioeventfd
 * catches in the kernel (no exit to userspace); a device thread blocks in read() on the
 * eventfd and runs the handler with each coalesced count. Sustained rate: time from the
 * first handler call to the one that brings the total to COUNT, per doorbell.
 *
 *   doorbell IMAGE LOAD ENTRY FOOTPRINT TARGET COUNT WARMUP
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

/* Runs the guest to its done port; any other exit means the doorbell was not caught. */
static void *vcpu_thread(void *arg) {
  struct vcpu_run *r = arg;
  for (;;) {
    vm_run(r->vm);
    if (done_port_write(r->vm->run, &r->code)) return NULL;
    die("unexpected exit reason %u (the doorbell should not exit to userspace)", r->vm->run->exit_reason);
  }
}

int cmd_doorbell(int argc, char **argv) {
  if (argc != 8) die("usage: doorbell IMAGE LOAD ENTRY FOOTPRINT TARGET COUNT WARMUP");
  struct guest g;
  guest_from_args(&g, argv + 1);
  uint64_t target = arg_u64(argv[5], "target");
  uint64_t count = arg_u64(argv[6], "count");
  uint64_t warmup = arg_u64(argv[7], "warmup");
  if (count < 2 || count > 0xffffffffu || warmup > 0xffffffffu) die("count must be in [2, 2^32), warmup below 2^32");

  struct vm vm;
  vm_create(&vm, 4, -1);
  int efd = eventfd(0, EFD_CLOEXEC);
  if (efd < 0) die("eventfd: %s", strerror(errno));
  struct kvm_ioeventfd io = {.addr = target, .len = 4, .fd = efd, .flags = target < 0x10000 ? KVM_IOEVENTFD_FLAG_PIO : 0};
  if (ioctl(vm.fd, KVM_IOEVENTFD, &io) < 0) die("KVM_IOEVENTFD: %s", strerror(errno));

  uint64_t total = 0, calls = 0, first_count = 0, first_ns = 0, last_ns = 0;
  for (int pass = warmup > 0 ? 0 : 1; pass < 2; pass++) {
    uint64_t n = pass == 0 ? warmup : count;
    g.params[0] = (uint32_t)target;
    g.params[1] = (uint32_t)n;
    g.params[2] = 1;
    g.params[3] = 0;
    vm_start_guest(&vm, &g);
    struct vcpu_run r = {.vm = &vm};
    pthread_t thread;
    if (pthread_create(&thread, NULL, vcpu_thread, &r) != 0) die("pthread_create failed");
    total = calls = 0;
    while (total < n) {
      uint64_t rings;
      if (read(efd, &rings, sizeof rings) != (ssize_t)sizeof rings) die("read eventfd: %s", strerror(errno));
      /* The handler: counts rings, times the first and the last call. */
      calls++;
      if (total == 0) {
        first_ns = now_ns();
        first_count = rings;
      }
      total += rings;
      if (total >= n) last_ns = now_ns();
    }
    pthread_join(thread, NULL);
    if (r.code != 0) die("the guest ended with code 0x%x", r.code);
    if (total != n) die("%llu rings for %llu writes", (unsigned long long)total, (unsigned long long)n);
  }
  if (first_count >= count) die("every doorbell coalesced into the first read");
  printf("{\"ops\":%llu,\"timedOps\":%llu,\"ns\":%llu,\"handlerCalls\":%llu}\n", (unsigned long long)total,
         (unsigned long long)(count - first_count), (unsigned long long)(last_ns - first_ns), (unsigned long long)calls);
  return 0;
}
