/*
 * bench_shadow.c - what flexmoe's per-iteration temporaries decision
 * (shadow >= 1, pl_shadow.h) costs, against the iteration it runs in (issue
 * 17: under 1% of the simulated iteration at 64 GPUs).
 *
 * For each real trace and GPU count: the trace's counts rescaled to G GPUs
 * (tr_rescale_slice, seed 1), flexmoe (its default temporaries) driven through the plan,
 * temporaries, route and observe protocol; timed (thread CPU time, after a
 * warm-up of 10 iterations) is pl_policy_temporaries over all layers of
 * an iteration, one call per layer as the engines make it (a second call
 * on the same inputs would reuse the first's decision, policy_flexmoe.c
 * fx_last), less the least time of a pair of clock reads (a thread's CPU
 * clock is a system call, about a microsecond), beside one pl_route of the same layers on the serving
 * placement as the peer in the same run. The iteration it runs in is
 * predicted by the cost model (pl_cost_layer on the routing with the
 * temporaries, summed over layers): the simulator's des iterations at
 * these sizes are within a few percent of it or longer (docs/placement.md).
 * Also printed: the share of layer decisions that take no temporary
 * (none_%), the decisions' time as flexmoe's host= charges it at the
 * reference core (model_us: pl_temps_host_us of each, summed per
 * iteration) and the host= that charges this machine's measured time
 * (host: 100 x model_us / dec_us), and a hash of every decision (decisions_hash: the temporaries,
 * in order, and the predicted gain and cost to the bit), so that two
 * builds of the placement library can be checked to decide the same.
 *
 * Usage: bench_pl_shadow [--iterations N] [--gpus 8,16,64] [--large] [--policy SPEC]
 *                        [--trace FILE]...
 * --policy: the policy driven (default flexmoe), e.g. a flexmoe
 * with other temporaries' parameters.
 * --large: the same routing driving d_model 2048, d_ff 8192 at 4,096 tokens
 * per GPU (bench_pl_quality's large model) instead of the trace's own.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "placement/flexmoe_planner.h"
#include "placement/pl_shadow.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

#define REPS 10 /* pl_route calls timed together */

static double clock_pair = 0; /* least time of two clock reads (s) */

/* The least of many pairs of clock reads: what one timed call's two reads
 * add to it. */
static void clock_calibrate(void) {
  clock_pair = 1;
  for (int i = 0; i < 2000; i++) {
    double a = bq_now(), b = bq_now();
    clock_pair = b - a < clock_pair ? b - a : clock_pair;
  }
}

typedef struct sh_sums {
  double *dec;    /* [iters] decision CPU us per iteration */
  double route_us, iter_us;
  int64_t temps, none; /* temporaries taken; layer decisions taking none */
  double model_us;     /* pl_temps_host_us of the timed decisions */
  int iters;
  uint64_t hash;  /* FNV-1a of every decision (its temporaries, gain and cost) */
} sh_sums;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/* Folds one decision into the hash: a change of the decision (which
 * temporaries, in which order, their predicted gain and cost to the bit)
 * changes the hash, so two builds' hashes compare their decisions. */
static uint64_t hash_temps(uint64_t h, const pl_temps *t) {
  h = fnv(h, &t->n, sizeof(t->n));
  for (int k = 0; k < t->n; k++) {
    int v[3] = {t->temp[k].expert, t->temp[k].from, t->temp[k].to};
    h = fnv(h, v, sizeof(v));
  }
  h = fnv(h, &t->gain_us, sizeof(t->gain_us));
  return fnv(h, &t->cost_us, sizeof(t->cost_us));
}

/* One iteration: plan, decide (timed), route, cost, observe per layer. */
static int one_iteration(pl_policy *p, const pl_env *env, const int64_t *cs, int it,
                         pl_temps *t, pl_routing *r, sh_sums *s, int timed) {
  int L = env->layers, G = env->cluster.gpus, E = env->experts, rc = 0;
  double dec = 0, rt = 0, us = 0;
  for (int l = 0; l < L && !rc; l++) {
    const int64_t *c = cs + ((size_t)it * L + l) * G * E;
    pl_plan plan;
    pl_plan_init(&plan);
    rc = pl_policy_plan(p, it, l, NULL, &plan);
    pl_plan_fini(&plan);
    /* one call (a repeated one would reuse its decision), the clock's
     * own cost taken off */
    double t0 = bq_now();
    if (!rc)
      rc = pl_policy_temporaries(p, l, c, t);
    double t1 = bq_now(), tr = bq_now();
    for (int k = 0; k < REPS && !rc; k++)
      rc = pl_route(pl_policy_serving(p, l), &env->cluster, c, -1, r);
    double t2 = bq_now();
    s->hash = hash_temps(s->hash, t);
    s->none += timed && t->n == 0;
    if (!rc && t->n)
      rc = pl_route(&t->placement, &env->cluster, c, -1, r);
    pl_cost cost;
    if (!rc)
      rc = pl_cost_layer(&env->cluster, &env->model, &env->profile,
                         t->n ? &t->placement : pl_policy_serving(p, l), r, &cost);
    if (!rc)
      rc = pl_policy_observe(p, it, l, c);
    dec += t1 - t0 - clock_pair;
    rt += (t2 - tr) / REPS;
    us += rc ? 0 : cost.total_us;
    s->temps += timed ? t->n : 0;
    s->model_us += timed ? pl_temps_host_us(t) : 0;
  }
  if (timed) {
    s->dec[s->iters++] = dec * 1e6;
    s->route_us += rt * 1e6;
    s->iter_us += us;
  }
  return rc;
}

static int large = 0; /* --large: d_model 2048, d_ff 8192, 4,096 tokens per GPU */
static const char *spec = "flexmoe"; /* --policy */

static int run_config(const tr_trace *tr, int G, int iters) {
  int L = tr->layers, E = tr->experts, rc = 1;
  int64_t *cs = malloc(sizeof(int64_t) * (size_t)iters * L * G * E);
  sh_sums s = {.dec = calloc((size_t)iters, sizeof(double)), .hash = 1469598103934665603ull};
  pl_policy *p = NULL;
  pl_temps t = {0};
  pl_routing r = {0};
  int64_t seen = 0;
  char err[256];
  if (!cs || !s.dec)
    goto done;
  for (int it = 0; it < iters; it++)
    for (int l = 0; l < L; l++) {
      int64_t *c = cs + ((size_t)it * L + l) * G * E;
      if (tr_rescale_slice(tr, it, l, G, large ? 2 * 4096 : 0, 1, c) != 0)
        goto done;
      for (int i = 0; it == 0 && l == 0 && i < G * E; i++)
        seen += c[i];
    }
  static bq_model m = {.name = "trace"};
  m.d_model = large ? 2048 : tr->meta.d_model ? tr->meta.d_model : 384;
  m.d_ff = large ? 8192 : tr->meta.d_ff ? tr->meta.d_ff : 768;
  pl_env env;
  int slots = (E + G - 1) / G + 2;
  if (bq_env(&env, L, E, G, slots, &m, seen / G / 2) ||
      pl_policy_create(&p, spec, &env, err, sizeof(err)) ||
      pl_temps_init(&t, E, G, slots) || pl_routing_init(&r, G, E, 0))
    goto done;
  rc = 0;
  for (int it = 0; it < iters && !rc; it++)
    rc = one_iteration(p, &env, cs, it, &t, &r, &s, it >= 10);
  if (rc || s.iters == 0)
    goto done;
  double mean = 0;
  for (int i = 0; i < s.iters; i++)
    mean += s.dec[i] / s.iters;
  double p50 = bq_pct(s.dec, (size_t)s.iters, 0.5), p99 = bq_pct(s.dec, (size_t)s.iters, 0.99);
  double iter = s.iter_us / s.iters;
  double model = s.model_us / s.iters;
  printf("%-28s %5d %5d %9.1f %9.1f %9.1f %10.1f %10.1f %8.3f %9.2f %7.1f %9.1f %6.0f %016llx\n",
         strrchr(tr->path, '/') ? strrchr(tr->path, '/') + 1 : tr->path, G, s.iters, mean, p50,
         p99, s.route_us / s.iters, iter, 100 * mean / iter, (double)s.temps / s.iters / L,
         100.0 * (double)s.none / s.iters / L, model, mean > 0 ? 100 * model / mean : 0,
         (unsigned long long)s.hash);
done:
  if (rc)
    fprintf(stderr, "bench_pl_shadow: %s, %d GPUs failed\n", tr->path, G);
  pl_routing_fini(&r);
  pl_temps_fini(&t);
  pl_policy_destroy(p);
  free(s.dec);
  free(cs);
  return rc;
}

int main(int argc, char **argv) {
  int iters_max = 210, gpus[8] = {8, 16, 64}, ngpus = 3, ntraces = 0;
  const char *traces[8];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
      iters_max = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--gpus") && i + 1 < argc) {
      ngpus = 0;
      for (char *q = strtok(argv[++i], ","); q && ngpus < 8; q = strtok(NULL, ","))
        gpus[ngpus++] = atoi(q);
    } else if (!strcmp(argv[i], "--large"))
      large = 1;
    else if (!strcmp(argv[i], "--trace") && i + 1 < argc && ntraces < 8)
      traces[ntraces++] = argv[++i];
    else if (!strcmp(argv[i], "--policy") && i + 1 < argc)
      spec = argv[++i];
    else {
      fprintf(stderr, "usage: bench_pl_shadow [--iterations N] [--gpus 8,16,64] [--large] "
                      "[--policy SPEC] [--trace FILE]...\n");
      return 2;
    }
  }
  clock_calibrate();
  static char def[2][1024];
  if (ntraces == 0) {
    const char *root = getenv("FLEXMOE_SOURCE_ROOT");
    for (int k = 0; k < 2; k++)
      snprintf(def[k], sizeof(def[k]), "%s/../shared/traces/real/gpt-l6-e32-top2-%s.npy",
               root ? root : ".", k ? "noaux" : "aux");
    traces[0] = def[0];
    traces[1] = def[1];
    ntraces = 2;
  }
  printf("# bench_pl_shadow: placement %s, %s, dgx-h100-like cluster, %s, "
         "H200 profile; thread CPU time per iteration (all layers), after 10 warm-up "
         "iterations\n", pl_planner_version(), spec,
         large ? "d_model 2048 d_ff 8192 4096 tokens/GPU" : "the trace's model");
  printf("%-28s %5s %5s %9s %9s %9s %10s %10s %8s %9s %7s %9s %6s %16s\n", "trace", "gpus",
         "iters", "dec_us", "dec_p50", "dec_p99", "route_us", "iter_us", "dec_%", "temps/l",
         "none_%", "model_us", "host", "decisions_hash");
  for (int k = 0; k < ntraces; k++) {
    tr_trace t;
    tr_error err;
    if (tr_open(&t, traces[k], &err) != 0) {
      printf("# SKIP %s: %s\n", traces[k], err.msg);
      continue;
    }
    int iters = iters_max > 0 && iters_max < t.iterations ? iters_max : (int)t.iterations;
    for (int gi = 0; gi < ngpus; gi++)
      if (run_config(&t, gpus[gi], iters)) {
        tr_close(&t);
        return 1;
      }
    tr_close(&t);
  }
  return 0;
}
