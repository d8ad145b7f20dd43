/* The guest arguments every KVM subcommand takes first: IMAGE LOAD ENTRY FOOTPRINT_END. */
#ifndef VMED_BENCH_GUEST_ARGS_H
#define VMED_BENCH_GUEST_ARGS_H
#include "bench.h"

static inline void guest_from_args(struct guest *g, char **argv) {
  memset(g, 0, sizeof *g);
  g->image = read_file(argv[0], &g->image_size);
  g->load = (uint32_t)arg_u64(argv[1], "load address");
  g->entry = (uint32_t)arg_u64(argv[2], "entry");
  g->footprint_end = (uint32_t)arg_u64(argv[3], "footprint end");
}
#endif
