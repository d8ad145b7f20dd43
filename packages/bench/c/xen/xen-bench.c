/*
 * The C side of the Xen benchmarks (`packages/bench/src/xen`): a secondary IOREQ server for one
 * paused PVH guest, made from the same Xen libraries the vmed backend calls
 * (libxendevicemodel, libxenforeignmemory, libxenevtchn), serving the project's bench guests.
 * Compiled in dom0 at run time; not part of the C program of the KVM benchmarks.
 *
 *   xen-bench ioreq DOMID TARGET DONE_PORT WARMUP COUNT
 *       bench-mmio writes TARGET WARMUP + COUNT + 1 times; every write is an ioreq answered
 *       here. Timed: from write WARMUP + 1 to the last (COUNT round trips).
 *   xen-bench msi DOMID DOORBELL DONE_PORT VECTOR WARMUP COUNT
 *       bench-irq rings DOORBELL once when ready and once per interrupt; each ring is answered
 *       with xendevicemodel_inject_msi of VECTOR, WARMUP + COUNT times. Timed: from ring
 *       WARMUP + 1 to the last (COUNT round trips).
 *
 * Protocol with the host: once the server is up and claims its ranges this prints "ready" on
 * a line of its own; the host then unpauses the guest. When the guest writes the done port the
 * server is destroyed and one JSON line follows: {"ops":…,"timedOps":…,"ns":…,"medianNs":…}
 * (`ns` from the first timed operation to the last; `medianNs` the median gap between
 * consecutive ones, the figure reported: the lab's emulator stalls now and then, which moves
 * the mean and not the median).
 *
 * Each request is served as vmed serves it: wait on the event-channel descriptor, unmask the
 * port, read the vCPU's slot, handle, store the answer, mark it IORESP_READY, notify.
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1 /* the tools-only DM-op and ioreq definitions */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xen/hvm/dm_op.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/ioreq.h>
#include <xen/memory.h>

#define MAX_VCPUS 16

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("xen-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static uint64_t arg_u64(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno != 0 || *s == '\0' || *end != '\0') die("bad %s: %s", what, s);
  return v;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Stamps of the timed operations, and the median gap between consecutive ones. */
struct stamps {
  uint64_t *at;
  uint64_t n, cap;
};

static void stamps_init(struct stamps *s, uint64_t cap) {
  s->at = calloc(cap, sizeof *s->at);
  if (s->at == NULL) die("out of memory");
  s->n = 0;
  s->cap = cap;
}

static void stamps_add(struct stamps *s, uint64_t t) {
  if (s->n < s->cap) s->at[s->n++] = t;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Median of the gaps (what one operation typically costs; a stall of the emulator moves the
 * mean, not this). 0 with fewer than two stamps. */
static uint64_t stamps_median_gap(const struct stamps *s) {
  if (s->n < 2) return 0;
  uint64_t n = s->n - 1;
  uint64_t *gaps = calloc(n, sizeof *gaps);
  if (gaps == NULL) die("out of memory");
  for (uint64_t i = 0; i < n; i++) gaps[i] = s->at[i + 1] - s->at[i];
  qsort(gaps, n, sizeof *gaps, cmp_u64);
  uint64_t m = n % 2 == 1 ? gaps[n / 2] : (gaps[n / 2 - 1] + gaps[n / 2]) / 2;
  free(gaps);
  return m;
}

struct server {
  uint32_t domid;
  xendevicemodel_handle *dm;
  xenforeignmemory_handle *fmem;
  xenevtchn_handle *xce;
  ioservid_t id;
  xenforeignmemory_resource_handle *resource;
  shared_iopage_t *page;
  unsigned int vcpus;
  evtchn_port_t ports[MAX_VCPUS];
};

/* What a benchmark does with one request; returns the value a read gets. */
typedef uint64_t (*handler_fn)(void *ctx, const ioreq_t *req, int *done);

static void server_open(struct server *s, uint32_t domid) {
  memset(s, 0, sizeof *s);
  s->domid = domid;
  s->dm = xendevicemodel_open(NULL, 0);
  s->fmem = xenforeignmemory_open(NULL, 0);
  s->xce = xenevtchn_open(NULL, 0);
  if (s->dm == NULL || s->fmem == NULL || s->xce == NULL) die("cannot open the Xen libraries: %s", strerror(errno));
  if (xendevicemodel_nr_vcpus(s->dm, domid, &s->vcpus) != 0) die("nr_vcpus: %s", strerror(errno));
  if (s->vcpus < 1 || s->vcpus > MAX_VCPUS) die("domain %u has %u vCPUs", domid, s->vcpus);
  /* Synchronous requests only: the bench guests' accesses never go to the buffered ring. */
  if (xendevicemodel_create_ioreq_server(s->dm, domid, HVM_IOREQSRV_BUFIOREQ_OFF, &s->id) != 0) die("create_ioreq_server: %s", strerror(errno));
  void *addr = NULL;
  s->resource = xenforeignmemory_map_resource(s->fmem, domid, XENMEM_resource_ioreq_server, s->id, XENMEM_resource_ioreq_server_frame_ioreq(0), 1, &addr,
                                              PROT_READ | PROT_WRITE, 0);
  if (s->resource == NULL) die("map_resource(ioreq page): %s", strerror(errno));
  s->page = addr;
  if (xendevicemodel_set_ioreq_server_state(s->dm, domid, s->id, 1) != 0) die("set_ioreq_server_state: %s", strerror(errno));
  /* Xen fills in each vCPU's port once the server is enabled. */
  for (unsigned int v = 0; v < s->vcpus; v++) {
    xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(s->xce, domid, s->page->vcpu_ioreq[v].vp_eport);
    if (p < 0) die("bind_interdomain(vCPU %u): %s", v, strerror(errno));
    s->ports[v] = (evtchn_port_t)p;
  }
}

static void server_claim(struct server *s, int is_mmio, uint64_t first, uint64_t last) {
  if (xendevicemodel_map_io_range_to_ioreq_server(s->dm, s->domid, s->id, is_mmio, first, last) != 0) die("map_io_range: %s", strerror(errno));
}

/* Serves requests until the handler says done. */
static void server_run(struct server *s, handler_fn handle, void *ctx) {
  int done = 0;
  while (!done) {
    xenevtchn_port_or_error_t port = xenevtchn_pending(s->xce);
    if (port < 0) die("xenevtchn_pending: %s", strerror(errno));
    if (xenevtchn_unmask(s->xce, (evtchn_port_t)port) != 0) die("xenevtchn_unmask: %s", strerror(errno));
    for (unsigned int v = 0; v < s->vcpus; v++) {
      if (s->ports[v] != (evtchn_port_t)port) continue;
      ioreq_t *req = &s->page->vcpu_ioreq[v];
      if (req->state != STATE_IOREQ_READY) continue;
      __atomic_thread_fence(__ATOMIC_ACQUIRE);
      uint64_t value = handle(ctx, req, &done);
      if (req->dir == IOREQ_READ && !req->data_is_ptr) req->data = value;
      __atomic_thread_fence(__ATOMIC_RELEASE);
      req->state = STATE_IORESP_READY;
      if (xenevtchn_notify(s->xce, s->ports[v]) != 0) die("xenevtchn_notify: %s", strerror(errno));
    }
  }
}

static void server_close(struct server *s) {
  xendevicemodel_set_ioreq_server_state(s->dm, s->domid, s->id, 0);
  for (unsigned int v = 0; v < s->vcpus; v++) xenevtchn_unbind(s->xce, s->ports[v]);
  xenforeignmemory_unmap_resource(s->fmem, s->resource);
  xendevicemodel_destroy_ioreq_server(s->dm, s->domid, s->id);
  xenevtchn_close(s->xce);
  xenforeignmemory_close(s->fmem);
  xendevicemodel_close(s->dm);
}

static void ready(void) {
  puts("ready");
  fflush(stdout);
}

static uint64_t all_ones(uint32_t size) {
  return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

/* --- ioreq ---------------------------------------------------------------------------------- */

struct ioreq_bench {
  uint64_t target, done_port, warmup, total;
  uint64_t writes, first_ns, last_ns, value;
  struct stamps stamps;
};

static uint64_t ioreq_handle(void *ctx, const ioreq_t *req, int *done) {
  struct ioreq_bench *b = ctx;
  if (req->type == IOREQ_TYPE_COPY && req->dir == IOREQ_WRITE && req->addr == b->target) {
    uint64_t t = now_ns();
    if (b->writes == b->warmup) b->first_ns = t;
    if (b->writes >= b->warmup) stamps_add(&b->stamps, t);
    b->last_ns = t;
    b->value = req->data;
    b->writes++;
    return 0;
  }
  if (req->type == IOREQ_TYPE_PIO && req->dir == IOREQ_WRITE && req->addr == b->done_port) {
    *done = 1;
    return 0;
  }
  return all_ones(req->size);
}

static int cmd_ioreq(int argc, char **argv) {
  if (argc != 7) die("usage: ioreq DOMID TARGET DONE_PORT WARMUP COUNT");
  struct ioreq_bench b = {0};
  uint32_t domid = (uint32_t)arg_u64(argv[2], "domid");
  b.target = arg_u64(argv[3], "target");
  b.done_port = arg_u64(argv[4], "done port");
  b.warmup = arg_u64(argv[5], "warmup");
  uint64_t count = arg_u64(argv[6], "count");
  if (count < 1) die("count must be at least 1");
  b.total = b.warmup + count + 1;
  stamps_init(&b.stamps, count + 1);
  struct server s;
  server_open(&s, domid);
  server_claim(&s, 1, b.target, b.target + 3);
  server_claim(&s, 0, b.done_port, b.done_port + 3);
  ready();
  server_run(&s, ioreq_handle, &b);
  server_close(&s);
  printf("{\"ops\":%" PRIu64 ",\"timedOps\":%" PRIu64 ",\"ns\":%" PRIu64 ",\"medianNs\":%" PRIu64 ",\"value\":%" PRIu64 "}\n", b.writes, count,
         b.last_ns - b.first_ns, stamps_median_gap(&b.stamps), b.value);
  free(b.stamps.at);
  return b.writes == b.total ? 0 : 1;
}

/* --- msi ------------------------------------------------------------------------------------ */

struct msi_bench {
  struct server *s;
  uint64_t doorbell, done_port, warmup, interrupts;
  uint32_t vector;
  uint64_t rings, raised, first_ns, last_ns;
  struct stamps stamps;
};

static uint64_t msi_handle(void *ctx, const ioreq_t *req, int *done) {
  struct msi_bench *b = ctx;
  if (req->type == IOREQ_TYPE_COPY && req->dir == IOREQ_WRITE && req->addr == b->doorbell) {
    uint64_t t = now_ns();
    b->rings++;
    if (b->rings == b->warmup + 1) b->first_ns = t;
    if (b->rings >= b->warmup + 1) stamps_add(&b->stamps, t);
    b->last_ns = t;
    if (b->raised < b->interrupts) {
      /* Fixed delivery to the LAPIC of vCPU 0 (APIC id 0), edge. */
      if (xendevicemodel_inject_msi(b->s->dm, b->s->domid, 0xfee00000ull, b->vector) != 0) die("inject_msi: %s", strerror(errno));
      b->raised++;
    }
    return 0;
  }
  if (req->type == IOREQ_TYPE_PIO && req->dir == IOREQ_WRITE && req->addr == b->done_port) {
    *done = 1;
    return 0;
  }
  return all_ones(req->size);
}

static int cmd_msi(int argc, char **argv) {
  if (argc != 8) die("usage: msi DOMID DOORBELL DONE_PORT VECTOR WARMUP COUNT");
  struct server s;
  struct msi_bench b = {.s = &s};
  uint32_t domid = (uint32_t)arg_u64(argv[2], "domid");
  b.doorbell = arg_u64(argv[3], "doorbell");
  b.done_port = arg_u64(argv[4], "done port");
  b.vector = (uint32_t)arg_u64(argv[5], "vector");
  b.warmup = arg_u64(argv[6], "warmup");
  uint64_t count = arg_u64(argv[7], "count");
  if (count < 1 || b.vector < 32 || b.vector > 0xfd) die("count must be at least 1 and the vector 32..253");
  b.interrupts = b.warmup + count;
  stamps_init(&b.stamps, count + 1);
  server_open(&s, domid);
  server_claim(&s, 1, b.doorbell, b.doorbell + 3);
  server_claim(&s, 0, b.done_port, b.done_port + 3);
  ready();
  server_run(&s, msi_handle, &b);
  server_close(&s);
  printf("{\"ops\":%" PRIu64 ",\"timedOps\":%" PRIu64 ",\"ns\":%" PRIu64 ",\"medianNs\":%" PRIu64 ",\"rings\":%" PRIu64 "}\n", b.raised, count,
         b.last_ns - b.first_ns, stamps_median_gap(&b.stamps), b.rings);
  free(b.stamps.at);
  return b.raised == b.interrupts && b.rings == b.interrupts + 1 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "ioreq") == 0) return cmd_ioreq(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "msi") == 0) return cmd_msi(argc, argv);
  die("usage: xen-bench ioreq|msi …");
  return 2;
}
