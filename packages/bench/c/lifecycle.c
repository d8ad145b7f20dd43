/*
 * lifecycle.create_destroy: per cycle, the kernel objects a mediated serial device with one
 * doorbell and one MSI route holds while open, made and released with the syscalls vmed's
 * KVM backend issues, in its order (checked with strace):
 *
 *   open:  eventfd2 → KVM_IOEVENTFD (port, 1 byte) → epoll_ctl ADD (the poller's set)
 *          eventfd2 → KVM_SET_GSI_ROUTING (+1 MSI entry) → KVM_IRQFD
 *   close: epoll_ctl DEL → KVM_IOEVENTFD deassign → close
 *          KVM_IRQFD deassign → KVM_SET_GSI_ROUTING (without it) → close
 *
 *   lifecycle COUNT WARMUP DOORBELL_PORT MSI_VECTOR
 */
#include "bench.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void cycle(struct vm *vm, int epoll_fd, uint16_t port, uint32_t vector) {
  /* The doorbell. */
  int ring_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ring_fd < 0) die("eventfd: %s", strerror(errno));
  struct kvm_ioeventfd io = {.addr = port, .len = 1, .fd = ring_fd, .flags = KVM_IOEVENTFD_FLAG_PIO};
  if (ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0) die("KVM_IOEVENTFD: %s", strerror(errno));
  struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data.u64 = 1};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, ring_fd, &event) < 0) die("epoll_ctl ADD: %s", strerror(errno));
  /* The MSI route. */
  int irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (irq_fd < 0) die("eventfd: %s", strerror(errno));
  uint32_t gsi = FIRST_MSI_GSI, data = vector;
  uint64_t address = 0xfee00000ull;
  set_gsi_routing(vm->fd, 1, &gsi, &address, &data);
  struct kvm_irqfd irqfd = {.fd = (uint32_t)irq_fd, .gsi = gsi};
  if (ioctl(vm->fd, KVM_IRQFD, &irqfd) < 0) die("KVM_IRQFD: %s", strerror(errno));

  /* Close: the doorbell, then the route. */
  if (epoll_ctl(epoll_fd, EPOLL_CTL_DEL, ring_fd, NULL) < 0) die("epoll_ctl DEL: %s", strerror(errno));
  io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0) die("KVM_IOEVENTFD deassign: %s", strerror(errno));
  close(ring_fd);
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (ioctl(vm->fd, KVM_IRQFD, &irqfd) < 0) die("KVM_IRQFD deassign: %s", strerror(errno));
  set_gsi_routing(vm->fd, 0, NULL, NULL, NULL);
  close(irq_fd);
}

int cmd_lifecycle(int argc, char **argv) {
  if (argc != 5) die("usage: lifecycle COUNT WARMUP DOORBELL_PORT MSI_VECTOR");
  uint64_t count = arg_u64(argv[1], "count");
  uint64_t warmup = arg_u64(argv[2], "warmup");
  uint64_t port = arg_u64(argv[3], "doorbell port");
  uint64_t vector = arg_u64(argv[4], "MSI vector");
  if (count == 0 || port > 0xffff || vector > 0xff) die("count must be positive, the port below 0x10000, the vector below 0x100");
  struct vm vm;
  vm_create(&vm, 4, -1);
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) die("epoll_create1: %s", strerror(errno));
  for (uint64_t i = 0; i < warmup; i++) cycle(&vm, epoll_fd, (uint16_t)port, (uint32_t)vector);
  uint64_t start = now_ns();
  for (uint64_t i = 0; i < count; i++) cycle(&vm, epoll_fd, (uint16_t)port, (uint32_t)vector);
  uint64_t ns = now_ns() - start;
  printf("{\"ops\":%llu,\"timedOps\":%llu,\"ns\":%llu}\n", (unsigned long long)count, (unsigned long long)count, (unsigned long long)ns);
  return 0;
}
