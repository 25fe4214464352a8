/*
 * policy_eplb.c - DeepSeek's Expert Parallelism Load Balancer.
 *
 * Every `period` iterations, from the predicted loads (window mean over the
 * period by default), builds a fresh layout with exactly `slots` replicas
 * per GPU (G x slots physical experts): replicate the expert with the
 * highest load per replica until the budget is spent, then pack the
 * replicas heaviest first onto the least-loaded GPU with a free slot, never
 * two replicas of one expert on one GPU (pl_eplb_layout; upstream's packing
 * lacks that check). mode=hierarchical first packs `groups` contiguous
 * expert groups onto nodes (groups/nodes each, heaviest to the lightest
 * node), then replicates and packs inside each node, so an expert's
 * replicas stay in one node. The new layout ignores where replicas are now:
 * EPLB is blind to migration cost (its known weakness), and its moves are
 * blocking. Iteration 0 uses the layout of uniform loads.
 * Cost: O(R log E + R (r + log G) + R log R) for R = G x slots replicas.
 */
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

static const char *const eplb_modes[] = {"global", "hierarchical", NULL};

typedef struct eplb_state {
  pl_env env;
  int slots, period, mode, groups;
  pl_monitor mon;
} eplb_state;

static void eplb_fini(void *state) {
  eplb_state *s = state;
  if (!s)
    return;
  pl_monitor_fini(&s->mon);
  pl_free(s);
}

static int eplb_init(void **state, const pl_env *env, const pl_kv *kv, int nkv,
                     pl_placement *initial) {
  eplb_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  s->env = *env;
  int E = env->experts, G = env->cluster.gpus, rc;
  int def = (E + G - 1) / G + 1;
  if (def > env->cluster.slots)
    def = env->cluster.slots;
  double *ones = NULL;
  if ((rc = pl_param_slots(env, kv, nkv, def, &s->slots)) ||
      (rc = pl_kv_int(kv, nkv, "period", 100, 1, 1 << 30, &s->period)) ||
      (rc = pl_kv_choice(kv, nkv, "mode", eplb_modes, 0, &s->mode)) ||
      (rc = pl_kv_int(kv, nkv, "groups", 0, 0, 1 << 20, &s->groups)) ||
      (rc = pl_monitor_init(&s->mon, env, kv, nkv, PL_PRED_WINDOW, s->period)))
    goto fail;
  if (s->mode == 1) {
    int nodes = pl_cluster_nodes(&env->cluster);
    if (s->groups == 0)
      s->groups = nodes;
    if (E % s->groups || s->groups % nodes ||
        env->cluster.gpus_per_node * s->slots < E / s->groups * (s->groups / nodes)) {
      rc = PL_EPARAM;
      goto fail;
    }
  } else {
    s->groups = 0;
  }
  ones = pl_calloc((size_t)E, sizeof(double));
  if (!ones) {
    rc = PL_ENOMEM;
    goto fail;
  }
  for (int e = 0; e < E; e++)
    ones[e] = 1.0;
  for (int l = 0; l < env->layers && !rc; l++)
    rc = pl_eplb_layout(&initial[l], &env->cluster, ones, s->slots, s->groups);
  pl_free(ones);
  if (rc)
    goto fail;
  *state = s;
  return PL_OK;
fail:
  eplb_fini(s);
  return rc;
}

static int eplb_observe(void *state, int iteration, int layer, const int64_t *counts) {
  (void)iteration;
  eplb_state *s = state;
  return pl_monitor_observe(&s->mon, layer, counts);
}

static int eplb_plan(void *state, int iteration, int layer,
                     const pl_placement *current, const int64_t *upcoming,
                     pl_plan *plan) {
  (void)upcoming;
  eplb_state *s = state;
  plan->changed = 0;
  const double *load = pl_monitor_estimate(&s->mon, layer);
  if (iteration == 0 || iteration % s->period != 0 || !load)
    return PL_OK;
  int rc = pl_plan_take_copy(plan, current);
  if (!rc)
    rc = pl_eplb_layout(&plan->placement, &s->env.cluster, load, s->slots, s->groups);
  if (rc)
    return rc;
  plan->changed = !pl_placement_equal(&plan->placement, current);
  plan->background = 0;
  return PL_OK;
}

static const pl_param_desc eplb_params[] = {
    {"mode", "global", "global, or hierarchical (groups onto nodes, then replicas inside nodes)"},
    {"slots", "0", "replicas per GPU, all used (0: ceil(E/G) + 1, one redundant slot)"},
    {"period", "100", "rebalance every this many iterations"},
    {"groups", "0", "hierarchical: expert groups (0: one per node); divides E, multiple of nodes"},
    PL_MONITOR_PARAMS("window", "0.5", "0"),
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_eplb_ops = {
    .name = "eplb",
    .summary = "DeepSeek EPLB: periodic replicate-and-pack with a replica budget, migration-cost blind",
    .params = eplb_params,
    .clairvoyant = 0,
    .init = eplb_init,
    .observe = eplb_observe,
    .plan = eplb_plan,
    .capacity = NULL,
    .fini = eplb_fini,
};
