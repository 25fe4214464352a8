/*
 * bench_speed.c - planner speed at scale, and flexmoe vs eplb under drift.
 *
 * (1) One flexmoe plan and one eplb plan for 1,024 GPUs x 256 experts x 4
 *     slots (one layer, 8 GPUs per node, d_model 2048 / d_ff 8192, 4096
 *     tokens per GPU, top-2), on skewed (log-normal popularity) loads that
 *     drift from iteration to iteration. One core (the process is single
 *     threaded). Warm-up iterations first, then every plan call is timed;
 *     median, p90, p99, max and the calls over 1 ms reported. Peers measured
 *     in the same process: one
 *     routing of the same counts (pl_route, what any simulator step costs
 *     anyway), the static policy's plan, and a naive EPLB (linear argmax per
 *     replica, linear scan per packed copy) against our tree-based one at
 *     the same budget (4 slots per GPU, G x 4 copies). Correctness in the
 *     same run: on several loads the naive and the tree-based EPLB must
 *     produce the same layout, copy for copy; the bench exits 1 if not.
 * (2) At the same slot budget, flexmoe vs eplb (period 10 and 100) over
 *     drifting loads: max/mean GPU load after routing (p50, p90), bytes
 *     migrated per iteration, and the layer time of the analytic model
 *     (pl_cost_layer + exposed migration; compute, all-to-all, replica
 *     all-reduce and exposed migration beside it), iterations 10 and later.
 *
 * Usage: bench_pl_speed [--iterations N] [--drift-only | --speed-only] [--policy SPEC]...
 *   (default 60 iterations; --drift-only skips (1), --speed-only (2); --policy
 *   replaces (2)'s list)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "placement/flexmoe_planner.h"

enum { G = 1024, GPN = 8, E = 256, S = 4 };

typedef struct gen {
  uint64_t s;
  double lw[E];
} gen;

static uint64_t rnd(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1.0p-53; }
static double gauss(uint64_t *s) {
  double u = unif(s) + 1e-300, v = unif(s);
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Next iteration's counts [G*E]: log-normal popularity (sigma 1), each log
 * weight drifting by N(0, drift^2), +-20% per-GPU noise, 8192 slots per GPU. */
static void next_counts(gen *g, double drift, int64_t *c) {
  for (int e = 0; e < E; e++)
    g->lw[e] += drift * gauss(&g->s);
  double w[E];
  for (int src = 0; src < G; src++) {
    double sum = 0;
    for (int e = 0; e < E; e++)
      sum += (w[e] = exp(g->lw[e]) * (0.8 + 0.4 * unif(&g->s)));
    int64_t used = 0, *row = c + (size_t)src * E;
    for (int e = 0; e < E; e++)
      used += (row[e] = (int64_t)(8192 * w[e] / sum));
    while (used < 8192) {
      row[rnd(&g->s) % E]++;
      used++;
    }
  }
}

/* Naive EPLB for the peer: O(E) argmax per extra replica, O(G) scan per
 * packed copy; has[g * E + e] = 1 where it puts a copy of e. Returns a
 * checksum so the work is not optimised away; a copy it cannot place (no
 * GPU with room lacks the expert: the tree-based one repairs that case,
 * this one does not) makes the checksum -1. */
static double naive_eplb(const double *load, int *nrep, int *count, double *gw,
                         unsigned char *has) {
  for (int e = 0; e < E; e++)
    nrep[e] = 1;
  for (int k = 0; k < G * S - E; k++) {
    int best = -1;
    for (int e = 0; e < E; e++)
      if (nrep[e] < G && (best < 0 || load[e] / nrep[e] > load[best] / nrep[best]))
        best = e;
    nrep[best]++;
  }
  memset(count, 0, sizeof(int) * G);
  memset(gw, 0, sizeof(double) * G);
  memset(has, 0, (size_t)G * E);
  /* copies heaviest first: experts by load per copy (selection each time) */
  static unsigned char done[E];
  memset(done, 0, sizeof(done));
  double chk = 0;
  int lost = 0;
  for (int n = 0; n < E; n++) {
    int x = -1;
    for (int e = 0; e < E; e++)
      if (!done[e] && (x < 0 || load[e] / nrep[e] > load[x] / nrep[x]))
        x = e;
    done[x] = 1;
    for (int r = 0; r < nrep[x]; r++) {
      int best = -1;
      for (int g = 0; g < G; g++)
        if (count[g] < S && !has[(size_t)g * E + x] && (best < 0 || gw[g] < gw[best]))
          best = g;
      if (best < 0) {
        lost = 1;
        continue;
      }
      count[best]++;
      has[(size_t)best * E + x] = 1;
      gw[best] += load[x] / nrep[x];
      chk += best;
    }
  }
  return lost ? -1 : chk;
}

/* The tree-based EPLB (the eplb policy at 4 slots, re-planning from the
 * last counts) and the naive one on the same loads: 0 when every layout is
 * the same, copy for copy. */
static int same_eplb_layouts(const pl_env *env, int loads) {
  pl_policy *p = NULL;
  if (pl_policy_create(&p, "eplb:slots=4,period=1,predictor=last,background=0", env, NULL, 0))
    return 1;
  gen g = {4242, {0}};
  for (int e = 0; e < E; e++)
    g.lw[e] = gauss(&g.s);
  int64_t *c = malloc(sizeof(int64_t) * G * E);
  unsigned char *has = malloc((size_t)G * E);
  static double gw[G];
  static int count[G];
  int nrep[E], bad = 0;
  pl_plan plan;
  pl_plan_init(&plan);
  pl_policy_plan(p, 0, 0, NULL, &plan);
  for (int k = 0; k < loads && !bad; k++) {
    next_counts(&g, 0.3, c);
    double load[E] = {0};
    for (int i = 0; i < G * E; i++)
      load[i % E] += (double)c[i];
    pl_policy_observe(p, k, 0, c);
    pl_policy_plan(p, k + 1, 0, NULL, &plan);
    const pl_placement *pl = pl_policy_placement(p, 0);
    if (naive_eplb(load, nrep, count, gw, has) < 0) {
      fprintf(stderr, "bench_pl_speed: load %d: the naive EPLB could not place a copy\n", k);
      bad = 1;
    }
    for (int gg = 0; gg < G && !bad; gg++)
      for (int e = 0; e < E && !bad; e++)
        if (has[(size_t)gg * E + e] != pl_placement_has(pl, e, gg)) {
          fprintf(stderr, "bench_pl_speed: load %d: GPU %d expert %d: naive %d, tree-based %d\n",
                  k, gg, e, has[(size_t)gg * E + e], pl_placement_has(pl, e, gg));
          bad = 1;
        }
  }
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  free(c);
  free(has);
  return bad;
}

typedef struct timing {
  double med, p90, p99, max;
  int over; /* calls over the 1 ms target */
} timing;

static timing summarise(double *v, int n) {
  double mx = 0;
  int over = 0;
  for (int i = 0; i < n; i++) {
    mx = fmax(mx, v[i]);
    over += v[i] > 1000.0;
  }
  return (timing){bq_pct(v, (size_t)n, 0.5), bq_pct(v, (size_t)n, 0.9),
                  bq_pct(v, (size_t)n, 0.99), mx, over};
}

/* One row of table (1); changed < 0 and a NaN median_changed print "-". */
static void print_row(const char *name, const timing *t, int changed, double med_changed,
                      double vs_route) {
  char c[16] = "-", m[32] = "-";
  if (changed >= 0)
    snprintf(c, sizeof c, "%d", changed);
  if (!isnan(med_changed))
    snprintf(m, sizeof m, "%.1f", med_changed);
  printf("%-34s %10.1f %10.1f %10.1f %10.1f %8d %8s %15s %13.3f\n", name, t->med, t->p90, t->p99,
         t->max, t->over, c, m, vs_route);
}

/* Times `iters` plan calls of spec after `warm` warm-up iterations. */
static int time_plans(const char *spec, const pl_env *env, int warm, int iters, double drift,
                      timing *all, timing *changed, int *nchanged) {
  pl_policy *p = NULL;
  char err[256];
  if (pl_policy_create(&p, spec, env, err, sizeof(err))) {
    fprintf(stderr, "bench_pl_speed: %s: %s\n", spec, err);
    return 1;
  }
  gen g = {12345, {0}};
  for (int e = 0; e < E; e++)
    g.lw[e] = gauss(&g.s);
  int64_t *c = malloc(sizeof(int64_t) * G * E);
  double *t = malloc(sizeof(double) * iters), *tc = malloc(sizeof(double) * iters);
  pl_plan plan;
  pl_plan_init(&plan);
  int nc = 0;
  for (int it = 0; it < warm + iters; it++) {
    next_counts(&g, drift, c);
    double t0 = bq_now();
    pl_policy_plan(p, it, 0, c, &plan);
    double dt = (bq_now() - t0) * 1e6;
    if (it >= warm) {
      t[it - warm] = dt;
      if (plan.changed)
        tc[nc++] = dt;
    }
    pl_policy_observe(p, it, 0, c);
  }
  *all = summarise(t, iters);
  *changed = nc ? summarise(tc, nc) : (timing){NAN, NAN, NAN, NAN, 0};
  *nchanged = nc;
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  free(c);
  free(t);
  free(tc);
  return 0;
}

/* Balance and bytes of spec over drifting loads. */
static int drift_run(const char *spec, const pl_env *env, int iters, double drift,
                     double *b50, double *b90, double *gb_per_it, double *ms, double *ar_ms,
                     double *comp_ms, double *a2a_ms, double *mig_ms) {
  pl_policy *p = NULL;
  char err[256];
  if (pl_policy_create(&p, spec, env, err, sizeof(err))) {
    fprintf(stderr, "bench_pl_speed: %s: %s\n", spec, err);
    return 1;
  }
  gen g = {777, {0}};
  for (int e = 0; e < E; e++)
    g.lw[e] = gauss(&g.s);
  int64_t *c = malloc(sizeof(int64_t) * G * E);
  double *bal = malloc(sizeof(double) * iters), bytes = 0;
  pl_plan plan;
  pl_plan_init(&plan);
  pl_routing r;
  pl_routing_init(&r, G, E, 0);
  double sum_us = 0, sum_ar = 0, sum_comp = 0, sum_a2a = 0, sum_mig = 0;
  for (int it = 0; it < iters; it++) {
    next_counts(&g, drift, c);
    pl_policy_plan(p, it, 0, c, &plan);
    double mig = 0;
    if (plan.changed) {
      for (int k = 0; k < plan.nmoves; k++)
        bytes += (double)plan.moves[k].bytes;
      mig = pl_cost_moves_us(&env->cluster, plan.moves, plan.nmoves);
    }
    pl_policy_route_serving(p, 0, c, &r);
    bal[it] = pl_routing_balance(&r);
    pl_cost cost;
    pl_cost_layer(&env->cluster, &env->model, &env->profile, pl_policy_serving(p, 0), &r, &cost);
    if (it >= 10) {
      double exposed = pl_cost_exposed_us(mig, plan.changed && plan.background,
                                          plan.changed && plan.uncharged, cost.total_us);
      sum_us += cost.total_us + exposed;
      sum_ar += cost.allreduce_us;
      sum_comp += cost.compute_us;
      sum_a2a += cost.alltoall_us;
      sum_mig += exposed;
    }
    pl_policy_observe(p, it, 0, c);
  }
  *ms = sum_us / (iters - 10) / 1e3;
  *ar_ms = sum_ar / (iters - 10) / 1e3;
  *comp_ms = sum_comp / (iters - 10) / 1e3;
  *a2a_ms = sum_a2a / (iters - 10) / 1e3;
  *mig_ms = sum_mig / (iters - 10) / 1e3;
  /* skip the first 10 iterations (everyone starts from its initial layout) */
  *b50 = bq_pct(bal + 10, (size_t)(iters - 10), 0.5);
  *b90 = bq_pct(bal + 10, (size_t)(iters - 10), 0.9);
  *gb_per_it = bytes / iters / 1e9;
  pl_routing_fini(&r);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  free(c);
  free(bal);
  return 0;
}

int main(int argc, char **argv) {
  int iters = 60, drift_only = 0, speed_only = 0, nuser = 0;
  const char *user[16];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
      iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--drift-only"))
      drift_only = 1;
    else if (!strcmp(argv[i], "--speed-only"))
      speed_only = 1;
    else if (!strcmp(argv[i], "--policy") && i + 1 < argc && nuser < 15)
      user[nuser++] = argv[++i];
    else {
      fprintf(stderr, "usage: bench_pl_speed [--iterations N] [--drift-only | --speed-only] "
                      "[--policy SPEC]...\n");
      return 2;
    }
  }
  user[nuser] = NULL;
  if (drift_only && speed_only) {
    fprintf(stderr, "bench_pl_speed: --drift-only and --speed-only exclude each other\n");
    return 2;
  }
  if (iters < 20)
    iters = 20;
  static bq_model m;
  m.name = "large";
  m.d_model = 2048;
  m.d_ff = 8192;
  m.tokens_per_gpu = 4096;
  pl_env env;
  if (bq_env(&env, 1, E, G, S, &m, 4096)) {
    fprintf(stderr, "bench_pl_speed: no profile\n");
    return 1;
  }
  printf("# bench_pl_speed: placement %s; %d GPUs (%d/node) x %d experts x %d slots, one layer, "
         "d_model 2048, d_ff 8192, 8192 token slots/GPU, log-normal loads (sigma 1) drifting; one core, thread CPU time\n",
         pl_planner_version(), G, GPN, E, S);
  if (drift_only)
    goto drift;
  /* (1) speed */
  timing fa, fc, ea, ec, sa, sc;
  int nf, ne, ns;
  if (time_plans("flexmoe", &env, 5, iters, 0.1, &fa, &fc, &nf) ||
      time_plans("eplb:slots=4,period=1,predictor=last", &env, 2, iters, 0.1, &ea, &ec, &ne) ||
      time_plans("static", &env, 2, iters, 0.1, &sa, &sc, &ns))
    return 1;
  /* peers: one routing, naive EPLB */
  gen g = {99, {0}};
  for (int e = 0; e < E; e++)
    g.lw[e] = gauss(&g.s);
  int64_t *c = malloc(sizeof(int64_t) * G * E);
  next_counts(&g, 0.1, c);
  pl_routing r;
  pl_routing_init(&r, G, E, 0);
  const pl_placement *sp = NULL;
  pl_policy *stat = NULL;
  pl_policy_create(&stat, "static", &env, NULL, 0);
  sp = pl_policy_placement(stat, 0);
  double *tr = malloc(sizeof(double) * iters), *tn = malloc(sizeof(double) * iters);
  double load[E] = {0}, gw[G], chk = 0;
  int nrep[E], count[G];
  unsigned char *has = malloc((size_t)G * E);
  for (int i = 0; i < G * E; i++)
    load[i % E] += (double)c[i];
  for (int k = 0; k < iters; k++) {
    double t0 = bq_now();
    pl_route(sp, &env.cluster, c, -1, &r);
    tr[k] = (bq_now() - t0) * 1e6;
    t0 = bq_now();
    chk += naive_eplb(load, nrep, count, gw, has);
    tn[k] = (bq_now() - t0) * 1e6;
  }
  timing ra = summarise(tr, iters), na = summarise(tn, iters);
  printf("\n## (1) plan time, %d timed plan calls each (microseconds)\n", iters);
  printf("%-34s %10s %10s %10s %10s %8s %8s %15s %13s\n", "planner", "median_us", "p90_us",
         "p99_us", "max_us", "over_1ms", "changed", "median_changed", "vs_one_route");
  print_row("flexmoe (defaults)", &fa, nf, fc.med, fa.med / ra.med);
  print_row("eplb (slots=4, re-plans every call)", &ea, ne, ec.med, ea.med / ra.med);
  print_row("static (peer: no work)", &sa, ns, NAN, sa.med / ra.med);
  print_row("peer: one pl_route (G x E counts)", &ra, -1, NAN, 1.0);
  print_row("peer: naive eplb (linear scans)", &na, -1, NAN, na.med / ra.med);
  int differ = same_eplb_layouts(&env, 8);
  printf("eplb tree-based vs naive: %.1fx faster (checksum %.0f); same layouts on 8 loads: %s\n",
         na.med / ea.med, chk, differ ? "NO" : "yes");
  printf("target: under 1000 us per plan: flexmoe %d of %d calls over, eplb %d of %d\n",
         fa.over, iters, ea.over, iters);
  pl_routing_fini(&r);
  pl_policy_destroy(stat);
  free(c);
  free(tr);
  free(tn);
  free(has);
  if (differ)
    return 1;
  if (speed_only)
    return 0;
drift:
  /* (2) drift */
  printf("\n## (2) same slot budget (%d per GPU), %d iterations of drifting loads (log-weight "
         "step sigma 0.1 and 0.3)\n", S, iters);
  printf("%-34s %6s %9s %9s %12s %9s %8s %8s %8s %8s\n", "policy", "drift", "bal_p50", "bal_p90",
         "GB_moved/it", "layer_ms", "comp_ms", "a2a_ms", "ar_ms", "mig_ms");
  const char *specs[] = {"static", "eplb:slots=4,period=10", "eplb:slots=4,period=100",
                         "flexmoe:slots=4", "flexmoe:slots=4,rebuild=0", "flexmoe:slots=4,rebuild=5",
                         "flexmoe:slots=4,horizon=1000", NULL};
  const double drifts[] = {0.1, 0.3};
  const char *const *list = nuser ? user : specs;
  for (int d = 0; d < 2; d++)
    for (int i = 0; list[i]; i++) {
      double b50, b90, gb, ms, ar, comp, a2a, mig;
      if (drift_run(list[i], &env, iters, drifts[d], &b50, &b90, &gb, &ms, &ar, &comp, &a2a, &mig))
        return 1;
      printf("%-34s %6.1f %9.3f %9.3f %12.2f %9.2f %8.2f %8.2f %8.2f %8.2f\n", list[i], drifts[d],
             b50, b90, gb, ms, comp, a2a, ar, mig);
    }
  return 0;
}
