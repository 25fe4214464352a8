/*
 * The greedy planner's incremental model (placement/pl_greedy.c, internal):
 * after every step it must be what a model built afresh on the same
 * placement is, and the trees that choose candidates (not updated while a
 * candidate is on trial) must name the true extremes of their values.
 */
#include <criterion/criterion.h>
#include <math.h>

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
  cr_assert_eq(pl_seg_top(&g->t_all), brute_top(g->kall, g->G, 0));
  cr_assert_eq(pl_seg_top(&g->t_free), brute_top(g->kfree, g->G, 0));
  cr_assert_eq(pl_seg_top(&g->t_hot), brute_top(g->khot, g->E, 1));
  cr_assert_eq(pl_seg_top(&g->t_cold), brute_top(g->kcold, g->E, 0));
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
