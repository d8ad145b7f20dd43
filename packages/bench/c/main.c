/* vmed-bench-c SUBCOMMAND ARGS…: see bench.h and each subcommand's file. */
#include "bench.h"

int main(int argc, char **argv) {
  if (argc < 2) die("usage: vmed-bench-c exits|doorbell|irq|dma|lifecycle ARGS…");
  const char *name = argv[1];
  if (strcmp(name, "exits") == 0) return cmd_exits(argc - 1, argv + 1);
  if (strcmp(name, "doorbell") == 0) return cmd_doorbell(argc - 1, argv + 1);
  if (strcmp(name, "irq") == 0) return cmd_irq(argc - 1, argv + 1);
  if (strcmp(name, "dma") == 0) return cmd_dma(argc - 1, argv + 1);
  if (strcmp(name, "lifecycle") == 0) return cmd_lifecycle(argc - 1, argv + 1);
  die("unknown subcommand %s", name);
}
