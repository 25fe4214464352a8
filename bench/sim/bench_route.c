/*
 * bench_route.c - one pl_route (the engines' routing, dropless, per-GPU sums
 * without the G x G matrix) at issue 19's scale: a trace's counts rescaled
 * to G GPUs (8 per node) the way `flexmoe sim` draws them (seed 1, each
 * rank's own slot total), routed on three layouts of E experts:
 *   static  pl_placement_static (expert-data-parallel: G / E replicas each,
 *           on G / E / 8 nodes; most sources have no replica on their node)
 *   random  one replica per expert plus 3 G more on random GPUs (4 slots)
 *   mixed   static plus 2 G random replicas (local and remote splits mixed)
 * Prints microseconds of thread CPU per routing (the best of REPS passes
 * over ITERS x L layers of counts, so the counts come from memory as in a
 * run) and a checksum of every routing's load, gpu_load and hose: the same
 * checksum from two builds means the same routings bit for bit.
 *
 *   bench_sim_route TRACE [GPUS] [ITERS] [REPS]     (defaults 1024 3 5)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement/pl_cluster.h"
#include "placement/pl_placement.h"
#include "placement/pl_route.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* FNV-1a over n bytes, continuing h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ c[i]) * 1099511628211ULL;
  return h;
}

/* The three layouts into ps, pr, pm (initialised here); 0 or -1. rand()
 * with a fixed seed: the same layouts in every build. */
static int layouts(int E, int G, pl_placement *ps, pl_placement *pr, pl_placement *pm) {
  if (pl_placement_init(ps, E, G, E) || pl_placement_static(ps) ||
      pl_placement_init(pr, E, G, 4) || pl_placement_init(pm, E, G, E) ||
      pl_placement_copy(pm, ps))
    return -1;
  srand(7);
  for (int e = 0; e < E; e++)
    if (pl_placement_add(pr, e, rand() % G))
      return -1;
  /* full GPUs and duplicates are refused: fewer replicas, same in every build */
  for (int k = 0; k < 3 * G; k++)
    (void)pl_placement_add(pr, rand() % E, rand() % G);
  for (int k = 0; k < 2 * G; k++)
    (void)pl_placement_add(pm, rand() % E, rand() % G);
  return pl_placement_check(ps) || pl_placement_check(pr) || pl_placement_check(pm) ? -1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) {
    fprintf(stderr, "usage: bench_sim_route TRACE [GPUS] [ITERS] [REPS]\n");
    return 2;
  }
  int G = argc > 2 ? atoi(argv[2]) : 1024, iters = argc > 3 ? atoi(argv[3]) : 3,
      reps = argc > 4 ? atoi(argv[4]) : 5;
  if (G < 8 || G % 8 || iters < 1 || reps < 1) {
    fprintf(stderr, "bench_sim_route: GPUS a multiple of 8, ITERS and REPS >= 1\n");
    return 2;
  }
  tr_trace t;
  tr_error err;
  if (tr_open(&t, argv[1], &err)) {
    fprintf(stderr, "bench_sim_route: %s\n", err.msg);
    return 1;
  }
  int E = t.experts, L = t.layers, rc = 1;
  if (iters > t.iterations)
    iters = (int)t.iterations;
  size_t GE = (size_t)G * E, n = (size_t)iters * L;
  int64_t *c = malloc(sizeof(int64_t) * GE * n);
  pl_placement pl[3] = {{0}};
  pl_routing r = {0};
  if (!c || layouts(E, G, &pl[0], &pl[1], &pl[2]) || pl_routing_init(&r, G, E, 0)) {
    fprintf(stderr, "bench_sim_route: out of memory or no layout\n");
    goto done;
  }
  for (int i = 0; i < iters; i++)
    for (int l = 0; l < L; l++)
      if (tr_rescale_slice(&t, i, l, G, 0, 1, c + ((size_t)i * L + l) * GE)) {
        fprintf(stderr, "bench_sim_route: cannot draw iteration %d layer %d\n", i, l);
        goto done;
      }
  pl_cluster cl = {G, 8, E, 450e9, 2e-6, 50e9, 5e-6, 1.0};
  const char *names[3] = {"static", "random", "mixed"};
  printf("# bench_sim_route: %d GPUs (8 per node) x %d experts, %zu routings of %s per pass, "
         "best of %d passes, thread CPU\n", G, E, n, argv[1], reps);
  printf("%-8s %10s %18s\n", "layout", "us_route", "checksum");
  for (int k = 0; k < 3; k++) {
    uint64_t h = 1469598103934665603ULL;
    double best = 0;
    for (int rep = 0; rep < reps; rep++) {
      double t0 = cpu_s();
      for (size_t i = 0; i < n; i++) {
        if (pl_route(&pl[k], &cl, c + i * GE, -1, &r)) {
          fprintf(stderr, "bench_sim_route: pl_route failed\n");
          goto done;
        }
        if (rep == 0) {
          h = fnv(h, r.load, sizeof(int64_t) * GE);
          h = fnv(h, r.gpu_load, sizeof(int64_t) * (size_t)G);
          h = fnv(h, r.hose, sizeof(int64_t) * 4 * (size_t)G);
        }
      }
      double d = cpu_s() - t0;
      if (rep == 0 || d < best)
        best = d;
    }
    printf("%-8s %10.1f %016llx\n", names[k], best * 1e6 / (double)n, (unsigned long long)h);
  }
  rc = 0;
done:
  pl_routing_fini(&r);
  for (int k = 0; k < 3; k++)
    pl_placement_fini(&pl[k]);
  free(c);
  tr_close(&t);
  return rc;
}
