/*
 * The greedy planner's incremental model (placement/pl_greedy.c, internal):
 * after every step it must be what a model built afresh on the same
 * placement is, and the trees that choose candidates (not updated while a
 * candidate is on trial) must name the true extremes of their values.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../placement/pl_internal.h"
#include "pl_check.h"

/* The index a tournament tree must report: largest (max) or smallest
 * value, ties to the lower index. */
static int brute_top(const double *v, int n, int max) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (max ? v[i] > v[best] : v[i] < v[best])
      best = i;
  return best;
}

static void check_trees(const pl_greedy *g) {
  cr_assert_eq(pl_seg_top(&g->t_tok), brute_top(g->tok, g->G, 1));
  cr_assert_eq(pl_seg_top(&g->t_ar), brute_top(g->ar, g->G, 1));
  cr_assert_eq(pl_seg_top(&g->t_all), brute_top(g->tok, g->G, 0));
  cr_assert_eq(pl_seg_top(&g->t_free), brute_top(g->kfree, g->G, 0));
  cr_assert_eq(pl_seg_top(&g->t_hot), brute_top(g->khot, g->E, 1));
  cr_assert_eq(pl_seg_top(&g->t_cold), brute_top(g->kcold, g->E, 0));
  cr_assert_eq(pl_seg_top(&g->t_mig), brute_top(g->migt, g->G, 1));
  for (int k = 0; k < g->K; k++) {
    cr_assert_eq(pl_seg_top(&g->t_sa2a[k]), brute_top(g->sa2a + (size_t)k * g->G, g->G, 1));
    cr_assert_eq(pl_seg_top(&g->t_scomp[k]), brute_top(g->scomp + (size_t)k * g->G, g->G, 1));
  }
}

static void run_steps(int gpus, int experts, int slots, int scenarios) {
  pl_env env = chk_env(1, experts, gpus, 8, slots);
  /* strongly skewed: popularity falls by e^-3 across the experts, and the
   * hottest experts sit side by side in the static layout */
  double *load = calloc((size_t)scenarios * experts, sizeof(double));
  cr_assert(load);
  for (int k = 0; k < scenarios; k++)
    for (int e = 0; e < experts; e++)
      load[(size_t)k * experts + e] =
          8192.0 * gpus / experts * exp(-3.0 * ((e + 5 * k) % experts) / experts) * 3;
  pl_placement p, q;
  cr_assert_eq(pl_placement_init(&p, experts, gpus, slots), PL_OK);
  cr_assert_eq(pl_placement_init(&q, experts, gpus, slots), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  pl_greedy g, fresh;
  cr_assert_eq(pl_greedy_init(&g, &env.cluster, &env.model, &env.profile, &p, load, scenarios,
                              slots, 0.0), PL_OK);
  int steps = 0;
  for (; steps < 4 * experts; steps++) {
    cr_assert_eq(pl_greedy_run(&g, 1), PL_OK);
    if (g.steps == 0)
      break; /* no step lowers the objective */
    check_trees(&g);
    /* the model of the placement reached, built afresh, without moves */
    cr_assert_eq(pl_placement_copy(&q, &p), PL_OK);
    cr_assert_eq(pl_greedy_init(&fresh, &env.cluster, &env.model, &env.profile, &q, load,
                                scenarios, slots, 0.0), PL_OK);
    /* exactly: every quantity is recomputed from the placement or kept
     * in fixed point, none accumulated in floating point */
    double a = pl_greedy_layer_us(&g), b = pl_greedy_layer_us(&fresh);
    cr_assert(a == b, "step %d: %.17g vs %.17g", steps, a, b);
    cr_assert_eq(pl_greedy_balance(&g), pl_greedy_balance(&fresh));
    cr_assert_eq(g.sum_t, fresh.sum_t, "step %d", steps);
    cr_assert(g.sq == fresh.sq, "step %d", steps);
    for (int u = 0; u < gpus; u++)
      cr_assert_eq(g.tq[u], fresh.tq[u], "step %d gpu %d", steps, u);
    /* and every value the candidates are chosen by: the trials in between
     * (journaled, then restored) must leave no trace */
    for (int u = 0; u < gpus; u++) {
      cr_assert(g.tok[u] == fresh.tok[u] && g.comp[u] == fresh.comp[u] &&
                    g.ar[u] == fresh.ar[u] && g.kfree[u] == fresh.kfree[u],
                "step %d gpu %d", steps, u);
      for (int k = 0; k < scenarios; k++)
        cr_assert(g.sa2a[(size_t)k * gpus + u] == fresh.sa2a[(size_t)k * gpus + u] &&
                      g.scomp[(size_t)k * gpus + u] == fresh.scomp[(size_t)k * gpus + u],
                  "step %d gpu %d scenario %d", steps, u, k);
    }
    for (int e = 0; e < experts; e++)
      cr_assert(g.per[e] == fresh.per[e] && g.ring[e] == fresh.ring[e] &&
                    g.khot[e] == fresh.khot[e] && g.kcold[e] == fresh.kcold[e],
                "step %d expert %d", steps, e);
    pl_greedy_fini(&fresh);
  }
  cr_assert_gt(steps, 3, "the skewed loads must give the greedy work (%d steps)", steps);
  pl_greedy_fini(&g);
  pl_placement_fini(&p);
  pl_placement_fini(&q);
  free(load);
}

Test(greedy, model_after_each_step_equals_a_fresh_model_one_node) { run_steps(8, 32, 6, 1); }

Test(greedy, model_after_each_step_equals_a_fresh_model_many_nodes) { run_steps(32, 64, 3, 1); }

Test(greedy, model_after_each_step_equals_a_fresh_model_with_scenarios) {
  run_steps(64, 96, 3, 3);
}

/* A random valid placement: every expert on one GPU with room, then
 * `extra` more replicas on random GPUs with room that lack the expert. */
static void random_placement(pl_placement *p, int S, int extra, uint64_t *s) {
  int E = p->experts, G = p->gpus;
  pl_placement_clear(p);
  for (int e = 0; e < E; e++) {
    int g;
    do
      g = (int)(chk_rng(s) % (uint64_t)G);
    while (p->nhost[g] >= S);
    cr_assert_eq(pl_placement_add(p, e, g), PL_OK);
  }
  for (int k = 0, tries = 0; k < extra && tries < 100 * extra; tries++) {
    int e = (int)(chk_rng(s) % (uint64_t)E), g = (int)(chk_rng(s) % (uint64_t)G);
    if (p->nhost[g] < S && !pl_placement_has(p, e, g)) {
      cr_assert_eq(pl_placement_add(p, e, g), PL_OK);
      k++;
    }
  }
  cr_assert_eq(pl_placement_check(p), PL_OK);
}

/*
 * The greedy's model of a placement is pl_cost_layer applied to the
 * expected routing under uniform sources (pl_internal.h): every source GPU
 * sends L_e / G of expert e's load. So with counts that are exactly that
 * (every GPU sends m_e slots to expert e, m_e a multiple of lcm(1..G) so
 * that every even split of pl_route is exact) the two must agree: compute,
 * all-to-all and all-reduce, on random placements of random shapes, one
 * node or several. With K scenarios the model's layer time is the mean of
 * pl_cost_layer's over the scenarios (the all-reduce does not depend on the
 * load). On one node the model's balance (loads split evenly over
 * replicas) is the routing's too.
 */
Test(greedy, model_is_pl_cost_layer_of_the_uniform_source_routing_on_random_placements) {
  static const int shapes[][4] = {/* G, gpus per node, E, S */
                                  {4, 4, 8, 4},   {8, 8, 12, 3},  {8, 4, 16, 4}, {8, 2, 6, 3},
                                  {12, 4, 10, 2}, {16, 8, 32, 3}, {16, 4, 8, 2}, {6, 3, 9, 4}};
  const int64_t unit = 720720; /* lcm(1 .. 16) */
  uint64_t s = 0x9eed;
  int checked = 0;
  for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
    int G = shapes[k][0], gpn = shapes[k][1], E = shapes[k][2], S = shapes[k][3];
    pl_env env = chk_env(1, E, G, gpn, S);
    env.cluster.oversub = 1.0 + (double)(k % 3); /* 1, 2, 3: a switch that blocks */
    pl_placement p;
    cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
    pl_routing r;
    cr_assert_eq(pl_routing_init(&r, G, E, 0), PL_OK);
    int64_t *counts = calloc((size_t)G * E, sizeof(int64_t));
    double *load = calloc(2 * (size_t)E, sizeof(double));
    cr_assert(counts && load);
    for (int trial = 0; trial < 25; trial++) {
      random_placement(&p, S, (int)(chk_rng(&s) % (uint64_t)(G * S - E + 1)), &s);
      double want_layer = 0, want_comp[2], want_a2a[2], want_ar = 0, want_bal = 0;
      for (int sc = 0; sc < 2; sc++) {
        for (int e = 0; e < E; e++) {
          int64_t m = unit * (int64_t)(chk_rng(&s) % 40); /* some experts idle */
          load[sc * E + e] = (double)(m * G);
          for (int g = 0; g < G; g++)
            counts[g * E + e] = m;
        }
        pl_cost cost;
        cr_assert_eq(pl_route(&p, &env.cluster, counts, -1, &r), PL_OK);
        cr_assert_eq(pl_cost_layer(&env.cluster, &env.model, &env.profile, &p, &r, &cost),
                     PL_OK);
        want_layer += cost.total_us / 2;
        want_comp[sc] = cost.compute_us;
        want_a2a[sc] = cost.alltoall_us;
        want_ar = cost.allreduce_us;
        if (sc == 0)
          want_bal = pl_routing_balance(&r);
      }
      char what[96];
      snprintf(what, sizeof what, "G %d gpn %d E %d S %d trial %d", G, gpn, E, S, trial);
      pl_greedy one, two;
      cr_assert_eq(pl_greedy_init(&one, &env.cluster, &env.model, &env.profile, &p, load, 1, S,
                                  0.0), PL_OK);
      cr_assert_eq(pl_greedy_init(&two, &env.cluster, &env.model, &env.profile, &p, load, 2, S,
                                  0.0), PL_OK);
      for (int sc = 0; sc < 2; sc++) {
        double comp = 0, a2a = 0;
        for (int g = 0; g < G; g++) {
          comp = fmax(comp, two.scomp[(size_t)sc * G + g]);
          a2a = fmax(a2a, two.sa2a[(size_t)sc * G + g]);
        }
        comp *= 1.0 + env.profile.bwd_ratio;
        cr_assert(fabs(comp - want_comp[sc]) <= 1e-9 * want_comp[sc] + 1e-9,
                  "%s scenario %d: compute %.9g us, pl_cost_layer %.9g", what, sc, comp,
                  want_comp[sc]);
        cr_assert(fabs(4 * a2a - want_a2a[sc]) <= 1e-9 * want_a2a[sc] + 1e-9,
                  "%s scenario %d: all-to-all %.9g us, pl_cost_layer %.9g", what, sc, 4 * a2a,
                  want_a2a[sc]);
      }
      double ar = 0;
      for (int g = 0; g < G; g++)
        ar = fmax(ar, one.ar[g]);
      cr_assert(fabs(ar - want_ar) <= 1e-9 * want_ar + 1e-9, "%s: all-reduce %.9g, %.9g", what,
                ar, want_ar);
      double l1 = pl_greedy_layer_us(&one), l2 = pl_greedy_layer_us(&two);
      double want1 = want_comp[0] + want_a2a[0] + want_ar + 2 * env.profile.nonmoe_us;
      cr_assert(fabs(l1 - want1) <= 1e-9 * want1, "%s: layer %.9g us, pl_cost_layer %.9g", what,
                l1, want1);
      cr_assert(fabs(l2 - want_layer) <= 1e-9 * want_layer,
                "%s: two scenarios %.9g us, mean of pl_cost_layer %.9g", what, l2, want_layer);
      if (gpn == G)
        cr_assert(fabs(pl_greedy_balance(&one) - want_bal) <= 1e-12,
                  "%s: balance %.12g, routing %.12g", what, pl_greedy_balance(&one), want_bal);
      pl_greedy_fini(&one);
      pl_greedy_fini(&two);
      checked++;
    }
    free(counts);
    free(load);
    pl_routing_fini(&r);
    pl_placement_fini(&p);
  }
  cr_assert_eq(checked, 200);
}

/* Smallest layer time over every placement of E experts on G GPUs with at
 * most S each (every expert at least once), by exhaustive search: each GPU
 * takes one of the subsets of at most S experts (E <= 8). */
static void best_of_all(const pl_env *env, const double *load, pl_placement *p, int g,
                        double *best) {
  int E = p->experts, S = p->slots;
  if (g == p->gpus) {
    for (int e = 0; e < E; e++)
      if (p->nrep[e] == 0)
        return;
    pl_greedy m;
    cr_assert_eq(pl_greedy_init(&m, &env->cluster, &env->model, &env->profile, p, load, 1, S,
                                0.0), PL_OK);
    *best = fmin(*best, pl_greedy_layer_us(&m));
    pl_greedy_fini(&m);
    return;
  }
  for (int set = 0; set < 1 << E; set++) {
    if (__builtin_popcount((unsigned)set) > S)
      continue;
    for (int e = 0; e < E; e++)
      if (set >> e & 1)
        cr_assert_eq(pl_placement_add(p, e, g), PL_OK);
    best_of_all(env, load, p, g + 1, best);
    for (int e = 0; e < E; e++)
      if (set >> e & 1)
        cr_assert_eq(pl_placement_remove(p, e, g), PL_OK);
  }
}

/*
 * Every slot taken, so the hot expert grows only by expand + shrink +
 * migrate. 4 GPUs in one node, 2 slots each, 6 experts with loads 1000,
 * 7500, 17500, 22500, 1000, 18500; start {2,5} {3,5} {0,1} {4,5}: expert 5
 * (cold, 3 copies) crowds every GPU but GPU 2, and expert 3 (the hottest)
 * has one copy. The greedy first drops 5's copy on GPU 1; GPU 1 then has a
 * free slot but already holds 3, and GPU 2 is full. So 5's copy on GPU 0
 * goes, GPU 2's lightest expert (0, 1000) moves into that slot and 3
 * expands onto GPU 2; one more step reaches {0,2} {3,4} {1,3} {5}, the
 * best of all 16,380 placements by exhaustive search. Moving GPU 2's other
 * expert (1, 7500) instead overloads GPU 0 and the greedy stops 18% above.
 */
Test(greedy, reaches_the_exhaustive_optimum_when_the_hot_expert_grows_by_a_swap) {
  enum { G = 4, E = 6, S = 2 };
  pl_env env = chk_env(1, E, G, G, S);
  const double load[E] = {1000, 7500, 17500, 22500, 1000, 18500};
  const int start[G][S] = {{2, 5}, {3, 5}, {0, 1}, {4, 5}};
  pl_placement p, all;
  cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
  cr_assert_eq(pl_placement_init(&all, E, G, S), PL_OK);
  for (int g = 0; g < G; g++)
    for (int j = 0; j < S; j++)
      cr_assert_eq(pl_placement_add(&p, start[g][j], g), PL_OK);
  double best = INFINITY;
  best_of_all(&env, load, &all, 0, &best);
  pl_greedy g;
  cr_assert_eq(pl_greedy_init(&g, &env.cluster, &env.model, &env.profile, &p, load, 1, S, 0.0),
               PL_OK);
  double before = pl_greedy_layer_us(&g);
  cr_assert_eq(pl_greedy_run(&g, 8 * E), PL_OK);
  double after = pl_greedy_layer_us(&g);
  cr_assert(fabs(after - best) <= 1e-9 * best,
            "greedy ends at %.3f us, the best placement takes %.3f us (start %.3f us)", after,
            best, before);
  cr_assert_eq(p.nrep[3], 2, "the hot expert has %d copies", p.nrep[3]);
  cr_assert_eq(pl_placement_check(&p), PL_OK);
  pl_greedy_fini(&g);
  pl_placement_fini(&p);
  pl_placement_fini(&all);
}

/*
 * pl_seg_max_unchanged, which the objective of a candidate on trial reads
 * its maxima with (the tree left as it was, the changed entries' old values
 * bounding the subtrees it skips), against a scan of the unchanged entries
 * on random trees: values drawn from a few levels (ties) or spread, random
 * changed subsets up to all of them, new values above and below the old.
 */
Test(greedy, max_of_unchanged_entries_is_the_scan_of_them) {
  enum { N = 300, STRIDE = 3 };
  uint64_t s = 0x5eed;
  double v[N], old[N * STRIDE];
  uint64_t stamp[N];
  int pos[N];
  for (int round = 0; round < 400; round++) {
    int n = 1 + (int)(chk_rng(&s) % N), levels = round % 2 ? 4 : 1 << 20;
    for (int i = 0; i < n; i++) {
      v[i] = (double)(chk_rng(&s) % (uint64_t)levels);
      stamp[i] = 0;
    }
    pl_seg t;
    cr_assert_eq(pl_seg_init(&t, n, v, 1), PL_OK);
    /* change a random subset (each entry with probability share) */
    uint64_t id = (uint64_t)round + 1;
    double share = (double)(round % 5) / 4.0, mchanged = -INFINITY;
    int nc = 0;
    for (int i = 0; i < n; i++) {
      if (!(chk_unif(&s) < share))
        continue;
      stamp[i] = id;
      pos[i] = nc;
      old[(size_t)nc * STRIDE + 1] = v[i];
      nc++;
      v[i] = (double)(chk_rng(&s) % (uint64_t)levels) * (chk_unif(&s) < 0.5 ? 0.5 : 1.5);
      mchanged = fmax(mchanged, v[i]);
    }
    pl_seg_changed c = {.stamp = stamp, .id = id, .pos = pos, .old = old + 1, .stride = STRIDE};
    double ms[3] = {-INFINITY, mchanged, (double)levels / 2};
    for (int j = 0; j < 3; j++) {
      double want = ms[j];
      for (int i = 0; i < n; i++)
        if (stamp[i] != id && v[i] > want)
          want = v[i];
      double got = pl_seg_max_unchanged(&t, v, &c, ms[j]);
      cr_assert(got == want, "round %d n %d changed %d m %g: %g, scan %g", round, n, nc, ms[j],
                got, want);
    }
    pl_seg_fini(&t);
  }
}

/* pl_fmax and pl_llround, the greedy's inline fmax and llround, give the
 * library's bits: signed zeros, NaN, halves, integers, random values. The
 * library's, called: the compiler's own folding of fmax may order signed
 * zeros the other way. */
Test(greedy, inline_fmax_and_llround_are_the_library_s) {
  double (*volatile lib_fmax)(double, double) = fmax;
  long long (*volatile lib_llround)(double) = llround;
  double x[] = {0.0, -0.0, NAN, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999999999999994,
                4503599627370495.5, 4503599627370497.0, 1e18, -1e18, INFINITY, -INFINITY};
  int n = (int)(sizeof x / sizeof x[0]);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double a = pl_fmax(x[i], x[j]), b = lib_fmax(x[i], x[j]);
      cr_assert(memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b)), "fmax(%g, %g): %g, library %g",
                x[i], x[j], a, b);
    }
  for (int i = 0; i < n; i++)
    if (fabs(x[i]) < 0x1p62)
      cr_assert_eq(pl_llround(x[i]), lib_llround(x[i]), "llround(%.17g)", x[i]);
  uint64_t s = 7;
  for (int i = 0; i < 100000; i++) {
    double u = (chk_unif(&s) - 0.5) * ldexp(1.0, (int)(chk_rng(&s) % 60));
    double h = floor(u) + 0.5; /* a half */
    cr_assert_eq(pl_llround(u), lib_llround(u), "llround(%.17g)", u);
    cr_assert_eq(pl_llround(h), lib_llround(h), "llround(%.17g)", h);
    double a = pl_fmax(u, h), b = lib_fmax(u, h);
    cr_assert(memcmp(&a, &b, sizeof a) == 0, "fmax(%.17g, %.17g)", u, h);
  }
}
