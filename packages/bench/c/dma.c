/*
 * dma.read / dma.write: a device copies TOTAL MiB from (read) or to (write) guest RAM in
 * CHUNK KiB pieces, PASSES times, with memcpy on the RAM mapping. The RAM is the memfd vmed's
 * KVM backend made for its own guest when the caller passes it as fd 3 (so both sides copy
 * the very same pages), else a memfd of the same shape; either way it is mapped shared and
 * registered as a KVM memory slot, like vmed's.
 *
 *   dma read|write OFFSET_MIB TOTAL_MIB CHUNK_KIB PASSES WARMUP_PASSES [inherit]
 */
#include "bench.h"

#include <sys/mman.h>
#include <sys/stat.h>

/* Keeps the copies observable so the compiler cannot drop them. */
volatile uint8_t dma_sink;

int cmd_dma(int argc, char **argv) {
  if (argc != 7 && argc != 8) die("usage: dma read|write OFFSET_MIB TOTAL_MIB CHUNK_KIB PASSES WARMUP_PASSES [inherit]");
  bool write = strcmp(argv[1], "write") == 0;
  if (!write && strcmp(argv[1], "read") != 0) die("direction must be read or write");
  uint64_t offset = arg_u64(argv[2], "offset") << 20;
  uint64_t total = arg_u64(argv[3], "total") << 20;
  uint64_t chunk = arg_u64(argv[4], "chunk") << 10;
  uint64_t passes = arg_u64(argv[5], "passes");
  uint64_t warmup = arg_u64(argv[6], "warmup passes");
  bool inherit = argc == 8 && strcmp(argv[7], "inherit") == 0;
  if (chunk == 0 || total == 0 || total % chunk != 0 || passes == 0) die("total must be a positive multiple of chunk, passes positive");

  int memfd = -1;
  uint64_t ram_mib = (offset + total + (1 << 20) - 1) >> 20;
  if (inherit) {
    struct stat st;
    if (fstat(3, &st) < 0) die("fd 3: %s", strerror(errno));
    if ((uint64_t)st.st_size < offset + total) die("fd 3 holds %lld bytes, fewer than offset + total", (long long)st.st_size);
    memfd = 3;
    ram_mib = (uint64_t)st.st_size >> 20;
  }
  struct vm vm;
  vm_create(&vm, ram_mib, memfd);
  uint8_t *buffer = aligned_alloc(4096, total);
  if (buffer == NULL) die("out of memory");
  /* Touch every page of both sides once, so no pass pays for first-touch faults. */
  memset(buffer, 0x5a, total);
  if (!inherit) memset(vm.ram + offset, 0xa5, total);

  uint64_t ns = 0;
  for (uint64_t p = 0; p < warmup + passes; p++) {
    uint64_t start = now_ns();
    for (uint64_t at = 0; at < total; at += chunk) {
      if (write) memcpy(vm.ram + offset + at, buffer + at, chunk);
      else memcpy(buffer + at, vm.ram + offset + at, chunk);
    }
    uint64_t end = now_ns();
    dma_sink = write ? vm.ram[offset + total - 1] : buffer[total - 1];
    if (p >= warmup) ns += end - start;
  }
  uint64_t mib = passes * (total >> 20);
  printf("{\"ops\":%llu,\"timedOps\":%llu,\"ns\":%llu,\"sameMemory\":%s}\n", (unsigned long long)mib, (unsigned long long)mib,
         (unsigned long long)ns, inherit ? "true" : "false");
  return 0;
}
