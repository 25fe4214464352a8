/*
 * bench_common.h - what the placement benchmarks share (header-only): the
 * environment (dgx-h100-like cluster, the simulator's built-in H200 profile
 * from ../shared/calibration/h200-2026-11-28.txt scaled to the model),
 * percentile and timing helpers, and the analytic iteration-time
 * evaluation of a policy over a sequence of counts.
 *
 * Iteration time (the simulator's analytic engine): for each layer, the plan
 * for the iteration is applied, the iteration's counts are routed over the
 * placement (pl_policy_route: locality first, capacity padding) and costed
 * with pl_cost_layer (compute of the slowest GPU, dispatch + combine
 * all-to-all, replica all-reduce, non-MoE work); the iteration is the sum
 * over layers, plus the time of the iteration's moves (all layers' moves
 * together, pl_cost_moves_us): added in full when blocking, only beyond the
 * iteration's own time when background, not at all when uncharged (oracle)
 * (pl_cost_exposed_us).
 */
#ifndef FLEXMOE_BENCH_PL_COMMON_H
#define FLEXMOE_BENCH_PL_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "sim/sim_profile.h"

typedef struct bq_model {
  const char *name;
  int d_model, d_ff;
  int64_t tokens_per_gpu; /* tokens (not slots); 0 = the trace's own */
  sim_pl_profile plp;     /* env.profile points into it */
} bq_model;

/* Fills env for G GPUs of a dgx-h100-like cluster (8 per node, 450 GB/s
 * NVLink, 50 GB/s NIC per GPU, 2 / 5 us), `slots` per GPU, model m, and
 * the built-in "h200" profile scaled to m's shape and non-MoE work at
 * `tokens` tokens per GPU, exactly as the simulator resolves them
 * (sim_profile.h). Returns 0 or -1. */
static inline int bq_env(pl_env *env, int layers, int experts, int gpus, int slots,
                         bq_model *m, int64_t tokens) {
  sim_profile prof;
  sim_errbuf err;
  if (sim_profile_builtin("h200", &prof, &err) ||
      sim_profile_for_shape(&prof, m->d_model, m->d_ff, tokens, 1.0, &m->plp))
    return -1;
  pl_env e = PL_ENV_INIT;
  e.layers = layers;
  e.experts = experts;
  int gpn = gpus < 8 ? gpus : 8;
  e.cluster = (pl_cluster){gpus, gpn, slots, 450e9, 2e-6, 50e9, 5e-6, 1.0};
  e.model = (pl_model){m->d_model, m->d_ff, 2, 2, 12.0};
  e.profile = m->plp.pl;
  e.seed = 1;
  *env = e;
  return 0;
}

/* CPU time of the calling thread, seconds: what one core spends, immune to
 * the preemption of a shared machine (wall clock is not). */
static inline double bq_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bq_dcmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of v[n] (sorts v). */
static inline double bq_pct(double *v, size_t n, double q) {
  if (n == 0)
    return NAN;
  qsort(v, n, sizeof(double), bq_dcmp);
  size_t k = (size_t)ceil(q * (double)n);
  return v[k ? k - 1 : 0];
}

typedef struct bq_result {
  double bal50, bal90;
  double bytes_per_it;
  double iter_us;      /* mean, incl. exposed migration */
  double migr_us;      /* mean exposed migration per iteration */
  double drop_frac;
  double plan_us;      /* mean wall time of pl_policy_plan per call */
  double compute_us, alltoall_us, allreduce_us; /* per iteration, means */
  double *layer_us;    /* optional, [iters * layers]: each layer's time (no migration) */
} bq_result;

/* Runs spec over counts[it][layer][G*E] for `iters` iterations. A spec
 * "lag:SPEC" (bench only) gives the policy the previous iteration's counts
 * as `upcoming`: "lag:oracle" is the clairvoyant planner one iteration late,
 * the best any policy planning on past counts could do with free moves.
 * "lagN:SPEC" gives the counts N iterations old: "lag2:oracle" plans on
 * what a background plan knows (it plans on iteration t-1's counts and its
 * placement serves from t+1), moves still free. */
static inline int bq_run(const char *spec, const pl_env *env, const int64_t *counts,
                         int iters, bq_result *out, char *err, size_t errlen) {
  int L = env->layers, G = env->cluster.gpus, E = env->experts;
  pl_policy *p = NULL;
  int lag = 0;
  if (!strncmp(spec, "lag", 3)) {
    const char *q = spec + 3;
    while (*q >= '0' && *q <= '9')
      lag = 10 * lag + (*q++ - '0');
    if (*q == ':') {
      lag = q == spec + 3 ? 1 : lag;
      spec = q + 1;
    } else
      lag = 0;
  }
  int rc = pl_policy_create(&p, spec, env, err, errlen);
  if (rc)
    return rc;
  pl_plan plan;
  pl_plan_init(&plan);
  pl_routing r;
  if ((rc = pl_routing_init(&r, G, E, 0)) != 0)
    return rc;
  double *bal = malloc(sizeof(double) * (size_t)iters * L);
  size_t cap = 1024, nm = 0;
  pl_move *moves = malloc(sizeof(pl_move) * cap);
  double sum_it = 0, sum_mig = 0, bytes = 0, planned = 0, comp = 0, a2a = 0, ar = 0;
  int64_t dropped = 0, total = 0;
  size_t nb = 0;
  for (int it = 0; it < iters && !rc; it++) {
    double it_us = 0;
    int bg = 0, unch = 0;
    nm = 0;
    for (int l = 0; l < L && !rc; l++) {
      const int64_t *c = counts + ((size_t)it * L + l) * G * E;
      double t0 = bq_now();
      const int64_t *up = !lag ? c : it >= lag ? c - (size_t)lag * L * G * E : NULL;
      if ((rc = pl_policy_plan(p, it, l, up, &plan)) != 0)
        break;
      planned += bq_now() - t0;
      if (plan.changed) {
        bg = plan.background;
        unch = plan.uncharged;
        for (int k = 0; k < plan.nmoves; k++) {
          if (nm == cap)
            moves = realloc(moves, sizeof(pl_move) * (cap *= 2));
          moves[nm++] = plan.moves[k];
          bytes += (double)plan.moves[k].bytes;
        }
      }
      pl_cost cost;
      if ((rc = pl_policy_route_serving(p, l, c, &r)) != 0 ||
          (rc = pl_cost_layer(&env->cluster, &env->model, &env->profile,
                              pl_policy_serving(p, l), &r, &cost)) != 0)
        break;
      it_us += cost.total_us;
      if (out->layer_us)
        out->layer_us[(size_t)it * L + l] = cost.total_us;
      comp += cost.compute_us;
      a2a += cost.alltoall_us;
      ar += cost.allreduce_us;
      bal[nb++] = pl_routing_balance(&r);
      dropped += r.dropped;
      total += r.total;
      if ((rc = pl_policy_observe(p, it, l, c)) != 0)
        break;
    }
    double mig = pl_cost_exposed_us(pl_cost_moves_us(&env->cluster, moves, (int)nm),
                                    bg, unch, it_us);
    sum_mig += mig;
    sum_it += it_us + mig;
  }
  if (!rc) {
    out->bal50 = bq_pct(bal, nb, 0.5);
    out->bal90 = bq_pct(bal, nb, 0.9);
    out->bytes_per_it = bytes / iters;
    out->iter_us = sum_it / iters;
    out->migr_us = sum_mig / iters;
    out->drop_frac = total ? (double)dropped / (double)total : 0;
    out->compute_us = comp / iters;
    out->alltoall_us = a2a / iters;
    out->allreduce_us = ar / iters;
    out->plan_us = planned * 1e6 / ((double)iters * L);
  }
  free(bal);
  free(moves);
  pl_routing_fini(&r);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  return rc;
}

#endif
