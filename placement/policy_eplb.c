/*
 * policy_eplb.c - DeepSeek's Expert Parallelism Load Balancer, with the
 * defaults its reference and the serving frameworks that call it use
 * (deepseek-ai/EPLB eplb.py rebalance_experts; vLLM eplb_state.py, SGLang
 * eplb_algorithms; each default and its source in docs/baselines.md).
 *
 * Every `period` iterations, from the window mean of the last `window`
 * iterations' loads (window = period, as SGLang sizes its recorder), builds
 * a fresh layout with exactly `slots` replicas per GPU (G x slots physical
 * experts): replicate the expert with the highest load per replica until
 * the budget is spent, then pack the replicas heaviest first onto the
 * least-loaded GPU with a free slot, never two replicas of one expert on
 * one GPU (pl_eplb_layout; upstream's packing lacks that check).
 * Hierarchical: first pack `groups` contiguous expert groups onto nodes
 * (groups/nodes each, heaviest to the lightest node), then replicate and
 * pack inside each node, so an expert's replicas stay in one node.
 * mode=auto chooses as eplb.py does: hierarchical when the model's expert
 * groups divide by the nodes, else global. `groups` is the model's number
 * of routing groups (DeepSeek-V3: 8); 0, a model without group-limited
 * routing, counts as 1 group, as vLLM passes it (num_expert_groups = 1):
 * auto is then hierarchical with one group on one node, the same layout as
 * global, and global beyond one node. The first layout is upstream's
 * "trivial" one (init=trivial): physical expert p is expert p mod E, on GPU
 * p / slots (vLLM build_initial_global_physical_to_logical_map, SGLang
 * init_trivial); init=static starts from the static layout with the
 * redundant slots empty, init=uniform from EPLB's layout of uniform loads.
 * The new layout ignores where replicas are now: EPLB is blind to
 * migration cost (its known weakness). Moves follow the common protocol
 * (`background`, applied by the policy handle; the references' moves are
 * blocking: background=0).
 * Cost: O(R log E + R (r + log G) + R log R) for R = G x slots replicas.
 */
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

enum { EPLB_AUTO, EPLB_GLOBAL, EPLB_HIER };
static const char *const eplb_modes[] = {"auto", "global", "hierarchical", NULL};
enum { EPLB_INIT_TRIVIAL, EPLB_INIT_STATIC, EPLB_INIT_UNIFORM };
static const char *const eplb_inits[] = {"trivial", "static", "uniform", NULL};

typedef struct eplb_state {
  pl_env env;
  int slots, period, mode, groups, init;
  int layout_groups; /* pl_eplb_layout's groups: 0 global, else hierarchical */
  pl_monitor mon;
} eplb_state;

static void eplb_fini(void *state) {
  eplb_state *s = state;
  if (!s)
    return;
  pl_monitor_fini(&s->mon);
  pl_free(s);
}

/* Upstream's first layout: physical expert k (k < G x slots) is expert
 * k mod E on GPU k / slots. A copy that would land on a GPU already holding
 * the expert (only when slots > E) leaves its slot empty. */
static int trivial_layout(pl_placement *p, int slots) {
  pl_placement_clear(p);
  int64_t R = (int64_t)p->gpus * slots;
  for (int64_t k = 0; k < R; k++) {
    int e = (int)(k % p->experts), g = (int)(k / slots);
    int rc = pl_placement_has(p, e, g) ? PL_OK : pl_placement_add(p, e, g);
    if (rc)
      return rc;
  }
  return PL_OK;
}

/* The first layout of every layer, as `init` says. */
static int initial_layout(const eplb_state *s, pl_placement *initial) {
  int E = s->env.experts, rc = PL_OK;
  double *ones = NULL;
  if (s->init == EPLB_INIT_UNIFORM) {
    if (!(ones = pl_calloc((size_t)E, sizeof(double))))
      return PL_ENOMEM;
    for (int e = 0; e < E; e++)
      ones[e] = 1.0;
  }
  for (int l = 0; l < s->env.layers && !rc; l++) {
    if (s->init == EPLB_INIT_TRIVIAL)
      rc = trivial_layout(&initial[l], s->slots);
    else if (s->init == EPLB_INIT_STATIC)
      rc = pl_placement_static(&initial[l]);
    else
      rc = pl_eplb_layout(&initial[l], &s->env.cluster, ones, s->slots, s->layout_groups);
  }
  pl_free(ones);
  return rc;
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
  if ((rc = pl_param_slots(env, kv, nkv, def, &s->slots)) ||
      (rc = pl_kv_int(kv, nkv, "period", 100, 1, 1 << 30, &s->period)) ||
      (rc = pl_kv_choice(kv, nkv, "mode", eplb_modes, EPLB_AUTO, &s->mode)) ||
      (rc = pl_kv_int(kv, nkv, "groups", 0, 0, 1 << 20, &s->groups)) ||
      (rc = pl_kv_choice(kv, nkv, "init", eplb_inits, EPLB_INIT_TRIVIAL, &s->init)) ||
      (rc = pl_monitor_init(&s->mon, env, kv, nkv, PL_PRED_WINDOW, s->period)))
    goto fail;
  int nodes = pl_cluster_nodes(&env->cluster);
  int groups = s->groups ? s->groups : 1; /* no expert groups: 1, as vLLM passes it */
  int hier = s->mode == EPLB_HIER || (s->mode == EPLB_AUTO && groups % nodes == 0);
  if (s->mode == EPLB_HIER && s->groups == 0)
    groups = nodes; /* forced without groups: one per node (upstream would refuse) */
  if ((s->groups && E % s->groups) ||
      (hier && (E % groups || groups % nodes ||
                env->cluster.gpus_per_node * s->slots < E / groups * (groups / nodes)))) {
    rc = PL_EPARAM;
    goto fail;
  }
  s->layout_groups = hier ? groups : 0;
  if ((rc = initial_layout(s, initial)) != 0)
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
    rc = pl_eplb_layout(&plan->placement, &s->env.cluster, load, s->slots, s->layout_groups);
  if (rc)
    return rc;
  plan->changed = !pl_placement_equal(&plan->placement, current);
  return PL_OK;
}

static const pl_param_desc eplb_params[] = {
    {"mode", "auto",
     "auto (eplb.py: hierarchical when the expert groups divide by the nodes, else global), "
     "global, or hierarchical (groups onto nodes, then replicas inside nodes)"},
    {"slots", "0",
     "replicas per GPU, all used (0: ceil(E/G) + 1, one redundant slot, at most the GPU's); "
     "0 or ceil(E/G) to the GPU's slots"},
    {"period", "100", "rebalance before iterations period, 2 period, ...; 1 to 1073741824"},
    {"groups", "0",
     "the model's expert groups (group-limited routing): divides E, and hierarchical needs a "
     "multiple of the nodes (0: none, counted as 1 as vLLM does; mode=hierarchical: one per "
     "node); 0 or a divisor of E up to 1048576"},
    {"init", "trivial",
     "first layout: trivial (upstream: physical expert k is expert k mod E, k / slots its "
     "GPU), static (redundant slots empty) or uniform (EPLB's layout of uniform loads)"},
    PL_BACKGROUND_PARAM,
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
