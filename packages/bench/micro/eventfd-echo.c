/*
 * The C half of eventfd-hop.mjs: N round trips of "write fd 3, read fd 4" against the Node
 * process that echoes (fds inherited), or with "self" against a thread of this program (the
 * C floor). Prints µs per round trip.
 *
 *   gcc -O2 -pthread -o /tmp/eventfd-echo eventfd-echo.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int ping = 3, pong = 4;
static long n;

static uint64_t now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void *echo(void *arg) {
  (void)arg;
  uint64_t v;
  for (long i = 0; i < n; i++) {
    if (read(ping, &v, 8) != 8) exit(1);
    v = 1;
    if (write(pong, &v, 8) != 8) exit(1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 1;
  n = atol(argv[1]);
  pthread_t thread;
  if (argc > 2 && strcmp(argv[2], "self") == 0) {
    ping = eventfd(0, 0);
    pong = eventfd(0, 0);
    pthread_create(&thread, NULL, echo, NULL);
  }
  uint64_t v, start = now();
  for (long i = 0; i < n; i++) {
    v = 1;
    if (write(ping, &v, 8) != 8) return 1;
    if (read(pong, &v, 8) != 8) return 1;
  }
  printf("%.2f\n", (double)(now() - start) / 1000.0 / (double)n);
  return 0;
}
