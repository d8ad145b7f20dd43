/*
 * kvm.mmio_exit, kvm.pio_exit, kvm.mmio_exit_forwarded: the bench-mmio / bench-pio guest
 * writes COUNT times to TARGET; each write exits to userspace, reaches the device's write
 * handler (which stores the value in its register) and the vCPU resumes.
 *
 *   exits mmio|pio inline|forwarded IMAGE LOAD ENTRY FOOTPRINT TARGET COUNT VALUE WARMUP
 *
 * inline: KVM_RUN and the handler on one thread. forwarded: a vCPU thread runs KVM_RUN and
 * hands each exit to the device thread through a mailbox and a futex, waiting for the answer
 * (what vmed's worker execution does with a SharedArrayBuffer and Atomics).
 */
#include "bench.h"
#include "guest-args.h"

#include <pthread.h>
#include <stddef.h>

/* The device: one register; writes to it are counted and the first and last timed. */
struct device {
  uint64_t target;
  volatile uint32_t reg;
  uint64_t writes;
  uint64_t expected;
  uint64_t first_ns, last_ns;
};

static void device_write(struct device *d, uint64_t address, uint32_t value) {
  if (address != d->target) return;
  d->reg = value;
  uint64_t n = ++d->writes;
  if (n == 1) d->first_ns = now_ns();
  else if (n == d->expected) d->last_ns = now_ns();
}

/* Serves one MMIO or port exit for the device; returns true (code set) at the done port. */
static bool serve_exit(struct kvm_run *run, struct device *d, uint32_t *code) {
  if (done_port_write(run, code)) return true;
  switch (run->exit_reason) {
  case KVM_EXIT_MMIO: {
    if (!run->mmio.is_write) {
      memset(run->mmio.data, 0xff, sizeof run->mmio.data);
      return false;
    }
    uint32_t v = 0;
    memcpy(&v, run->mmio.data, run->mmio.len < 4 ? run->mmio.len : 4);
    device_write(d, run->mmio.phys_addr, v);
    return false;
  }
  case KVM_EXIT_IO: {
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
      if (run->io.direction == KVM_EXIT_IO_OUT) {
        uint32_t v = 0;
        memcpy(&v, data, run->io.size);
        device_write(d, run->io.port, v);
      } else {
        memset(data, 0xff, run->io.size);
      }
    }
    return false;
  }
  default:
    die("unexpected exit reason %u", run->exit_reason);
  }
}

static uint32_t run_inline(struct vm *vm, struct device *d) {
  uint32_t code = 0;
  for (;;) {
    vm_run(vm);
    if (serve_exit(vm->run, d, &code)) return code;
  }
}

/* ---- forwarded: the vCPU thread and the device thread share a mailbox ---- */

struct mailbox {
  int req_seq;
  int resp_seq;
  /* The request: the exit's reason and its mmio or io part (what vmed's decodeExit copies). */
  struct kvm_run request;
  uint8_t io_data[4096];
  bool finish;
  uint32_t code;
};

struct forwarded {
  struct vm *vm;
  struct device *device;
  struct mailbox box;
};

static void *vcpu_thread(void *arg) {
  struct forwarded *f = arg;
  struct mailbox *box = &f->box;
  struct kvm_run *run = f->vm->run;
  for (;;) {
    vm_run(f->vm);
    if (run->exit_reason != KVM_EXIT_MMIO && run->exit_reason != KVM_EXIT_IO) die("unexpected exit reason %u", run->exit_reason);
    /* Only what the device needs crosses (as in vmed's mailbox), not the whole kvm_run. */
    box->request.exit_reason = run->exit_reason;
    if (run->exit_reason == KVM_EXIT_MMIO) box->request.mmio = run->mmio;
    else box->request.io = run->io;
    if (run->exit_reason == KVM_EXIT_IO) {
      size_t bytes = (size_t)run->io.size * run->io.count;
      if (bytes > sizeof box->io_data) die("port exit of %zu bytes", bytes);
      memcpy(box->io_data, (uint8_t *)run + run->io.data_offset, bytes);
    }
    int seq = __atomic_load_n(&box->req_seq, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&box->req_seq, seq, __ATOMIC_RELEASE);
    futex_wake(&box->req_seq);
    for (;;) {
      int answered = __atomic_load_n(&box->resp_seq, __ATOMIC_ACQUIRE);
      if (answered == seq) break;
      futex_wait(&box->resp_seq, answered);
    }
    if (run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write) memcpy(run->mmio.data, box->request.mmio.data, sizeof run->mmio.data);
    if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN) {
      memcpy((uint8_t *)run + run->io.data_offset, box->io_data, (size_t)run->io.size * run->io.count);
    }
    if (box->finish) return NULL;
  }
}

/* The device thread: serves requests until the guest writes the done port. */
static uint32_t run_forwarded(struct vm *vm, struct device *d) {
  struct forwarded f = {.vm = vm, .device = d};
  pthread_t thread;
  if (pthread_create(&thread, NULL, vcpu_thread, &f) != 0) die("pthread_create failed");
  struct mailbox *box = &f.box;
  int served = 0;
  for (;;) {
    int seq;
    while ((seq = __atomic_load_n(&box->req_seq, __ATOMIC_ACQUIRE)) == served) futex_wait(&box->req_seq, served);
    /* Serve the copy: the exit data lives in the mailbox, as in vmed. */
    struct kvm_run *req = &box->request;
    uint32_t code = 0;
    bool finish;
    if (req->exit_reason == KVM_EXIT_IO) {
      /* Port data sits in io_data; point a scratch kvm_run at it for serve_exit. */
      static struct {
        struct kvm_run run;
        uint8_t data[4096];
      } scratch;
      size_t bytes = (size_t)req->io.size * req->io.count;
      scratch.run.exit_reason = req->exit_reason;
      scratch.run.io = req->io;
      scratch.run.io.data_offset = offsetof(__typeof__(scratch), data);
      memcpy(scratch.data, box->io_data, bytes);
      finish = serve_exit(&scratch.run, d, &code);
      memcpy(box->io_data, scratch.data, bytes);
    } else {
      finish = serve_exit(req, d, &code);
    }
    box->finish = finish;
    box->code = code;
    served = seq;
    __atomic_store_n(&box->resp_seq, seq, __ATOMIC_RELEASE);
    futex_wake(&box->resp_seq);
    if (finish) break;
  }
  pthread_join(thread, NULL);
  return box->code;
}

int cmd_exits(int argc, char **argv) {
  if (argc != 11) die("usage: exits mmio|pio inline|forwarded IMAGE LOAD ENTRY FOOTPRINT TARGET COUNT VALUE WARMUP");
  bool pio = strcmp(argv[1], "pio") == 0;
  if (!pio && strcmp(argv[1], "mmio") != 0) die("space must be mmio or pio");
  bool forwarded = strcmp(argv[2], "forwarded") == 0;
  if (!forwarded && strcmp(argv[2], "inline") != 0) die("threading must be inline or forwarded");
  struct guest g;
  guest_from_args(&g, argv + 3);
  uint64_t target = arg_u64(argv[7], "target");
  uint64_t count = arg_u64(argv[8], "count");
  uint32_t value = (uint32_t)arg_u64(argv[9], "value");
  uint64_t warmup = arg_u64(argv[10], "warmup");
  if (count < 2 || count > 0xffffffffu || warmup > 0xffffffffu) die("count must be in [2, 2^32), warmup below 2^32");
  if (pio && target >= 0x10000) die("a port target must be below 0x10000");

  struct vm vm;
  vm_create(&vm, 4, -1);
  struct device d = {.target = target};
  uint32_t code = 0;
  for (int pass = warmup > 0 ? 0 : 1; pass < 2; pass++) {
    uint64_t n = pass == 0 ? warmup : count;
    d.writes = 0;
    d.expected = n;
    d.first_ns = d.last_ns = 0;
    g.params[0] = (uint32_t)target;
    g.params[1] = (uint32_t)n;
    g.params[2] = value;
    g.params[3] = 0;
    vm_start_guest(&vm, &g);
    code = forwarded ? run_forwarded(&vm, &d) : run_inline(&vm, &d);
    if (code != 0) die("the guest ended with code 0x%x", code);
  }
  printf("{\"ops\":%llu,\"timedOps\":%llu,\"ns\":%llu,\"register\":%u,\"code\":%u}\n", (unsigned long long)d.writes,
         (unsigned long long)(count - 1), (unsigned long long)(d.last_ns - d.first_ns), d.reg, code);
  return 0;
}
