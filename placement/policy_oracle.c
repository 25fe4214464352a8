/*
 * policy_oracle.c - the clairvoyant bound.
 *
 * Knows each iteration's counts before it runs (the `upcoming` argument of
 * the plan protocol) and re-plans every iteration for free: its moves are
 * reported (bytes) but marked uncharged, so no time is charged for them.
 * What it optimises: the analytic layer time of pl_cost_layer (compute +
 * all-to-all + replica all-reduce, after the real locality-first routing of
 * the upcoming counts) with at most `slots` replicas per GPU. The exact
 * optimum is a hard packing problem, so the oracle takes the best, under
 * that exact cost, of these candidates: the current placement, the static
 * layout, the greedy planner (pl_greedy, migration weight 0) run from the
 * current placement, from the static layout and from EPLB's layout of the
 * upcoming loads (budget: EPLB_SPARE below). It is therefore never worse
 * than static or than keeping its placement; it is not a proof of
 * optimality, and on small clusters flexmoe, hierarchical eplb and smartmoe
 * sometimes beat it (tests/placement/test_oracle_bound.c, an expected
 * failure until it finds their placements).
 * Without upcoming counts it keeps its placement. O(K (G E + replicas)) per
 * plan for K candidates (it routes each, without the G x G matrix: the cost
 * needs only per-GPU sums) plus the greedy runs.
 */
#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

#define NCAND 6

/* Budget of the EPLB start: EPLB always fills every slot it is given, so
 * with the cluster's memory-sized slots (often every expert on every GPU)
 * it replicates everything, and with many GPUs per expert (G >> E) even a
 * few slots per GPU mean dozens of replicas per expert: layouts whose
 * replica all-reduce dwarfs any balance they buy (4-8x the other
 * candidates' time), which the greedy then spent all of max_steps
 * shrinking one replica at a time - over 95% of the oracle's time, for a
 * candidate that never won. So the EPLB start gets ceil(E/G) + 2 slots per
 * GPU (the budget the quality benchmark gives every policy), fewer when
 * that means more than 6 replicas per expert on average (not below
 * ceil(E/G)), and never more than `slots`. */
#define EPLB_SPARE 2
#define EPLB_MAX_MEAN_REPLICAS 6

typedef struct or_state {
  pl_env env;
  int slots, max_steps;
  int eplb_slots; /* EPLB start's budget: min(slots, ceil(E/G) + 2) */
  double *load; /* [E] */
  pl_placement cand[NCAND];
  pl_routing r;
} or_state;

static void or_fini(void *state) {
  or_state *s = state;
  if (!s)
    return;
  for (int k = 0; k < NCAND; k++)
    pl_placement_fini(&s->cand[k]);
  pl_routing_fini(&s->r);
  pl_free(s->load);
  pl_free(s);
}

static int or_init(void **state, const pl_env *env, const pl_kv *kv, int nkv,
                   pl_placement *initial) {
  or_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  s->env = *env;
  int E = env->experts, G = env->cluster.gpus, rc;
  if ((rc = pl_param_slots(env, kv, nkv, env->cluster.slots, &s->slots)) ||
      (rc = pl_kv_int(kv, nkv, "max_steps", 0, 0, 1 << 24, &s->max_steps)))
    goto fail;
  if (s->max_steps == 0)
    s->max_steps = 8 * E;
  {
    int need = (E + G - 1) / G, dense = EPLB_MAX_MEAN_REPLICAS * E / G;
    s->eplb_slots = need + EPLB_SPARE;
    if (s->eplb_slots > (dense > need ? dense : need))
      s->eplb_slots = dense > need ? dense : need;
    if (s->eplb_slots > s->slots)
      s->eplb_slots = s->slots;
  }
  for (int k = 0; k < NCAND && !rc; k++)
    rc = pl_placement_init(&s->cand[k], E, G, env->cluster.slots);
  if (!rc)
    rc = pl_routing_init(&s->r, G, E, 0);
  if (rc)
    goto fail;
  s->load = pl_calloc((size_t)E, sizeof(double));
  if (!s->load) {
    rc = PL_ENOMEM;
    goto fail;
  }
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_static(&initial[l])) != 0)
      goto fail;
  *state = s;
  return PL_OK;
fail:
  or_fini(s);
  return rc;
}

static int refine(or_state *s, pl_placement *p) {
  pl_greedy g;
  int rc = pl_greedy_init(&g, &s->env.cluster, &s->env.model, &s->env.profile,
                          p, s->load, 1, s->slots, 0.0);
  if (rc)
    return rc;
  rc = pl_greedy_run(&g, s->max_steps);
  pl_greedy_fini(&g);
  return rc;
}

static int exact_us(or_state *s, const pl_placement *p, const int64_t *counts,
                    double *us) {
  pl_cost cost;
  int rc = pl_route(p, &s->env.cluster, counts, -1, &s->r);
  if (!rc)
    rc = pl_cost_layer(&s->env.cluster, &s->env.model, &s->env.profile, p, &s->r, &cost);
  if (!rc)
    *us = cost.total_us;
  return rc;
}

static int or_plan(void *state, int iteration, int layer,
                   const pl_placement *current, const int64_t *upcoming,
                   pl_plan *plan) {
  (void)layer;
  or_state *s = state;
  const pl_env *env = &s->env;
  plan->changed = 0;
  if (!upcoming)
    return PL_OK;
  (void)iteration;
  pl_sum_sources(upcoming, env->cluster.gpus, env->experts, s->load);
  int rc;
  /* 0 current, 1 static, 2 greedy(current), 3 greedy(static), 4 greedy(eplb) */
  if ((rc = pl_placement_copy(&s->cand[0], current)) ||
      (rc = pl_placement_static(&s->cand[1])) ||
      (rc = pl_placement_copy(&s->cand[2], current)) || (rc = refine(s, &s->cand[2])))
    return rc;
  /* The greedy is deterministic: from the same start it ends in the same
   * place, so when the current placement is the static layout (the first
   * iterations, or a layer the oracle never changed) copy instead of
   * running it again. */
  if (pl_placement_equal(&s->cand[1], current))
    rc = pl_placement_copy(&s->cand[3], &s->cand[2]);
  else if (!(rc = pl_placement_static(&s->cand[3])))
    rc = refine(s, &s->cand[3]);
  if (rc || (rc = pl_eplb_layout(&s->cand[4], &env->cluster, s->load, s->eplb_slots, 0)) ||
      (rc = refine(s, &s->cand[4])))
    return rc;
  /* 5 greedy(eplb with the fewest slots, ceil(E/G) per GPU): few replica
   * groups per GPU, so little all-reduce (the start flexmoe's rebuild
   * uses; skipped when it is the EPLB start above) */
  int need = (env->experts + env->cluster.gpus - 1) / env->cluster.gpus, ncand = NCAND - 1;
  if (need < s->eplb_slots) {
    if ((rc = pl_eplb_layout(&s->cand[5], &env->cluster, s->load, need, 0)) ||
        (rc = refine(s, &s->cand[5])))
      return rc;
    ncand = NCAND;
  }
  int best = 0;
  double best_us = INFINITY;
  for (int k = 0; k < ncand; k++) {
    double us;
    if ((rc = exact_us(s, &s->cand[k], upcoming, &us)) != 0)
      return rc;
    if (us < best_us) {
      best_us = us;
      best = k;
    }
  }
  if (best == 0 || pl_placement_equal(&s->cand[best], current))
    return PL_OK;
  if ((rc = pl_plan_take_copy(plan, &s->cand[best])) != 0)
    return rc;
  plan->changed = 1;
  plan->uncharged = 1;
  plan->background = 0;
  return PL_OK;
}

static const pl_param_desc or_params[] = {
    {"slots", "0", "replicas per GPU (0: the cluster's slots); 0 or ceil(E/G) to the GPU's slots"},
    {"max_steps", "0", "greedy steps per candidate (0: 8 x experts); 0 to 16777216"},
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_oracle_ops = {
    .name = "oracle",
    .summary = "clairvoyant bound: best placement for each iteration's real counts, moves free",
    .params = or_params,
    .clairvoyant = 1,
    .init = or_init,
    .observe = NULL,
    .plan = or_plan,
    .capacity = NULL,
    .fini = or_fini,
};
