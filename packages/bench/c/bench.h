/*
 * The C side of `vmed bench`: the same guest programs and the same ioctls as the vmed side,
 * written the way a lean C VMM would, so the ratio vmed/C measures what vmed adds.
 *
 * One binary, one subcommand per benchmark (main.c). Each prints one JSON line on stdout:
 *   {"ops":N,"timedOps":M,"ns":T, ...}
 * where T is the time M operations took (measured between the first and the last operation,
 * exactly where the vmed side measures) and N is how many operations the handler saw.
 * Errors go to stderr with exit status 1.
 */
#ifndef VMED_BENCH_H
#define VMED_BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/kvm.h>

/* guests/common/runtime.inc */
#define DONE_PORT 0x501
#define IRQ_COUNTS_ADDR 0x21000u

/* What the vmed KVM backend installs in a standalone VM (backend-kvm/src/backend.ts). */
#define TSS_ADDRESS 0xfffbd000u
#define IDENTITY_MAP_ADDRESS 0xfffbc000ull
/* GSIs of MSI routes start above the IOAPIC pins, as in backend-kvm's GsiRoutingTable. */
#define FIRST_MSI_GSI 24
#define IOAPIC_PINS 24

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A standalone VM shaped like vmed's: in-kernel irqchip, one memfd RAM slot at 0, vCPU 0. */
struct vm {
  int kvm;
  int fd;
  int memfd;
  uint8_t *ram;
  uint64_t ram_size;
  int vcpu;
  struct kvm_run *run;
};

/* Where a flat guest image goes and how it starts (GuestImage in @vmed/testkit). */
struct guest {
  const uint8_t *image;
  size_t image_size;
  uint32_t load;
  uint32_t entry;
  uint32_t footprint_end;
  /* ebx, ecx, edx, edi */
  uint32_t params[4];
};

/* Creates the VM. `memfd` < 0: a fresh memfd of ram_mib MiB; otherwise that fd is mapped. */
void vm_create(struct vm *vm, uint64_t ram_mib, int memfd);
/* Zeroes the guest's footprint, copies the image and sets vCPU 0's entry registers. */
void vm_start_guest(struct vm *vm, const struct guest *g);
/* KVM_RUN once, retried on EINTR. */
void vm_run(struct vm *vm);
/* Reads a whole file; dies on error. */
uint8_t *read_file(const char *path, size_t *size);
/* Parses a u64 (decimal or 0x…) or dies naming `what`. */
uint64_t arg_u64(const char *text, const char *what);
/* The in-kernel irqchip's default routes plus one MSI entry per (gsi, address, data) given. */
void set_gsi_routing(int vm_fd, int msi_count, const uint32_t *gsi, const uint64_t *address, const uint32_t *data);

/* The done port write that ends a guest run: 1 with *code set, 0 otherwise. */
static inline bool done_port_write(const struct kvm_run *run, uint32_t *code) {
  if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT || run->io.port != DONE_PORT) return false;
  uint32_t v = 0;
  memcpy(&v, (const uint8_t *)run + run->io.data_offset, run->io.size < 4 ? run->io.size : 4);
  *code = v;
  return true;
}

/* Linux futex on a 32-bit word shared between two threads of this process. */
void futex_wait(int *word, int expected);
void futex_wake(int *word);

int cmd_exits(int argc, char **argv);
int cmd_doorbell(int argc, char **argv);
int cmd_irq(int argc, char **argv);
int cmd_dma(int argc, char **argv);
int cmd_lifecycle(int argc, char **argv);

#endif
