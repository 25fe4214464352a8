/*
 * bench_quality.c - placement quality of every policy on the real routing
 * traces (../shared/traces/real/), 8 / 32 / 64 GPUs, the traces' own tiny
 * model and the same routing driving a d_model 2048 / d_ff 8192 model at
 * 4096 tokens per GPU. Per policy: median and p90 of max/mean GPU load
 * after routing, bytes migrated per iteration, mean iteration time from the
 * analytic cost model (bench_common.h) with the oracle's bound beside it,
 * and capacity's drop fraction. Traces are rescaled to G GPUs with
 * tr_rescale_slice (seed 1).
 *
 * Usage: bench_pl_quality [--iterations N] [--gpus 8,32,64] [--trace FILE]...
 *                         [--policy SPEC]... [--large] [--extra-slots N] [--lag]
 *                         [--hindsight]
 * --policy replaces the list (the oracle is always added; "lagN:SPEC" runs
 * SPEC on counts N iterations old, bench_common.h), --large runs only the
 * 2048 x 8192 model, --lag adds "lag:oracle",
 * --hindsight adds a row: per layer and iteration the fastest placement of
 * the past-only policies run (real counts known, moves free).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "placement/flexmoe_planner.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

static const char *policies[32] = {
    "static", "capacity", "fastermoe", "smartmoe", "eplb", "eplb:mode=hierarchical",
    "flexmoe", "oracle", NULL};
static int only_large = 0;
static int hindsight = 0;

/* Past-only: plans from counts already seen (lag:SPEC included); oracle and
 * fastermoe read the iteration's own counts, capacity drops tokens. */
static int past_only(const char *spec) {
  return strncmp(spec, "oracle", 6) && strncmp(spec, "fastermoe", 9) &&
         strncmp(spec, "capacity", 8);
}
static int extra_slots = 2;

static int run_config(const tr_trace *t, int G, bq_model *m, int iters) {
  int L = t->layers, E = t->experts;
  int64_t spg = m->tokens_per_gpu > 0 ? m->tokens_per_gpu * 2 : 0;
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)iters * L * G * E);
  if (!counts)
    return 1;
  int64_t slots_seen = 0;
  for (int it = 0; it < iters; it++)
    for (int l = 0; l < L; l++) {
      int64_t *c = counts + ((size_t)it * L + l) * G * E;
      if (tr_rescale_slice(t, it, l, G, spg, 1, c) != 0) {
        free(counts);
        return 1;
      }
      if (it == 0 && l == 0)
        for (int i = 0; i < E; i++)
          slots_seen += c[i];
    }
  int need = (E + G - 1) / G;
  int slots = need + extra_slots;
  pl_env env;
  if (bq_env(&env, L, E, G, slots, m, slots_seen / 2)) {
    free(counts);
    return 1;
  }
  printf("\n## %s, %d GPUs (%d/node), model %s (d_model %d, d_ff %d), %lld token slots/GPU, "
         "%d slots/GPU, %d iterations x %d layers\n",
         strrchr(t->path, '/') ? strrchr(t->path, '/') + 1 : t->path, G,
         env.cluster.gpus_per_node, m->name, m->d_model, m->d_ff, (long long)slots_seen,
         slots, iters, L);
  printf("%-24s %7s %7s %11s %9s %9s %9s %7s %7s %7s %7s %7s %8s\n", "policy", "bal_p50",
         "bal_p90", "MB_moved/it", "iter_ms", "vs_oracle", "vs_static", "drop_%", "comp_ms",
         "a2a_ms", "ar_ms", "mig_ms", "plan_us");
  bq_result res[32];
  memset(res, 0, sizeof(res));
  int n = 0;
  for (; policies[n]; n++) {
    char spec[128], err[256] = "";
    snprintf(spec, sizeof(spec), "%s", policies[n]);
    if (hindsight)
      res[n].layer_us = malloc(sizeof(double) * (size_t)iters * L);
    int rc = bq_run(spec, &env, counts, iters, &res[n], err, sizeof(err));
    if (rc) {
      fprintf(stderr, "bench_pl_quality: %s: %s (%s)\n", spec, pl_strerror(rc), err);
      free(counts);
      return 1;
    }
  }
  double oracle = 0, stat = res[0].iter_us;
  for (int i = 0; i < n; i++)
    if (!strcmp(policies[i], "oracle"))
      oracle = res[i].iter_us;
  for (int i = 0; i < n; i++)
    printf("%-24s %7.3f %7.3f %11.1f %9.3f %9.3f %9.3f %7.2f %7.2f %7.2f %7.2f %7.2f %8.1f\n",
           policies[i], res[i].bal50, res[i].bal90, res[i].bytes_per_it / 1e6,
           res[i].iter_us / 1e3, res[i].iter_us / oracle, stat / res[i].iter_us,
           res[i].drop_frac * 100, res[i].compute_us / 1e3, res[i].alltoall_us / 1e3,
           res[i].allreduce_us / 1e3, res[i].migr_us / 1e3, res[i].plan_us);
  if (hindsight) {
    /* per (iteration, layer) the fastest of the past-only policies'
     * placements, chosen knowing the real counts, moves free: no policy that
     * picks one of these placements from past counts can beat it */
    double sum = 0;
    int wins[32] = {0};
    for (size_t k = 0; k < (size_t)iters * L; k++) {
      int best = -1;
      for (int i = 0; i < n; i++)
        if (past_only(policies[i]) && (best < 0 || res[i].layer_us[k] < res[best].layer_us[k]))
          best = i;
      if (best >= 0) {
        sum += res[best].layer_us[k];
        wins[best]++;
      }
    }
    printf("%-24s %7s %7s %11s %9.3f %9.3f %9.3f   (best past-only placement per layer and "
           "iteration in hindsight, moves free; wins:", "hindsight:past-only", "-", "-", "-",
           sum / iters / 1e3, sum / iters / oracle, stat / (sum / iters));
    for (int i = 0; i < n; i++)
      if (past_only(policies[i]))
        printf(" %s %.0f%%", policies[i], 100.0 * wins[i] / ((double)iters * L));
    printf(")\n");
  }
  for (int i = 0; i < n; i++)
    free(res[i].layer_us);
  free(counts);
  return 0;
}

int main(int argc, char **argv) {
  int iters_max = 0;
  long gpus[8] = {8, 32, 64};
  int ngpus = 3;
  const char *traces[8];
  int ntraces = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
      iters_max = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--gpus") && i + 1 < argc) {
      ngpus = 0;
      for (char *s = strtok(argv[++i], ","); s && ngpus < 8; s = strtok(NULL, ","))
        gpus[ngpus++] = atol(s);
    } else if (!strcmp(argv[i], "--policy") && i + 1 < argc) {
      static int np = 0;
      if (np < 30) {
        policies[np++] = argv[++i];
        policies[np] = "oracle";
        policies[np + 1] = NULL;
      }
    } else if (!strcmp(argv[i], "--extra-slots") && i + 1 < argc) {
      extra_slots = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--lag")) {
      int n = 0;
      while (policies[n])
        n++;
      if (n < 30) {
        policies[n] = "lag:oracle";
        policies[n + 1] = NULL;
      }
    } else if (!strcmp(argv[i], "--hindsight"))
      hindsight = 1;
    else if (!strcmp(argv[i], "--large"))
      only_large = 1;
    else if (!strcmp(argv[i], "--trace") && i + 1 < argc && ntraces < 8)
      traces[ntraces++] = argv[++i];
    else {
      fprintf(stderr, "usage: bench_pl_quality [--iterations N] [--gpus 8,32,64] [--trace FILE]... "
                      "[--policy SPEC]... [--large] [--extra-slots N] [--lag] [--hindsight]\n");
      return 2;
    }
  }
  static char def[2][1024];
  if (ntraces == 0) {
    /* FLEXMOE_SOURCE_ROOT/../shared/traces/real (a worktree one level
     * deeper: ../../shared) */
    const char *root = getenv("FLEXMOE_SOURCE_ROOT");
    const char *up[] = {"..", "../.."};
    for (int u = 0; u < 2 && ntraces == 0; u++) {
      snprintf(def[0], sizeof(def[0]), "%s/%s/shared/traces/real/gpt-l6-e32-top2-aux.npy",
               root ? root : ".", up[u]);
      snprintf(def[1], sizeof(def[1]), "%s/%s/shared/traces/real/gpt-l6-e32-top2-noaux.npy",
               root ? root : ".", up[u]);
      FILE *f = fopen(def[0], "rb");
      if (f || u == 1) {
        traces[0] = def[0];
        traces[1] = def[1];
        ntraces = 2;
      }
      if (f)
        fclose(f);
    }
  }
  printf("# bench_pl_quality: placement %s, cluster dgx-h100-like (450 GB/s NVLink, 50 GB/s NIC per GPU,"
         " 8 GPUs/node), H200 bf16 profile (calibration 2026-11-28), Adam (12 B/param optimizer state)\n",
         pl_planner_version());
  for (int k = 0; k < ntraces; k++) {
    tr_trace t;
    tr_error err;
    if (tr_open(&t, traces[k], &err) != 0) {
      printf("# SKIP %s: %s\n", traces[k], err.msg);
      continue;
    }
    int iters = iters_max > 0 && iters_max < t.iterations ? iters_max : (int)t.iterations;
    static bq_model models[2];
    memset(models, 0, sizeof(models));
    models[0].name = "trace";
    models[0].d_model = t.meta.d_model ? t.meta.d_model : 384;
    models[0].d_ff = t.meta.d_ff ? t.meta.d_ff : 768;
    models[1].name = "large";
    models[1].d_model = 2048;
    models[1].d_ff = 8192;
    models[1].tokens_per_gpu = 4096;
    for (int mi = only_large; mi < 2; mi++)
      for (int gi = 0; gi < ngpus; gi++)
        if (run_config(&t, (int)gpus[gi], &models[mi], iters)) {
          tr_close(&t);
          return 1;
        }
    tr_close(&t);
  }
  return 0;
}
