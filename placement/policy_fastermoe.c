/*
 * policy_fastermoe.c - FasterMoE's dynamic shadowing (He et al., PPoPP'22;
 * laekov/fastmoe: fmoe/fastermoe/shadow_policy.py, global_policy, and
 * cuda/fastermoe/smart_schedule.h).
 *
 * Each iteration, per layer, after the gate: sort experts by global load
 * B(1) >= B(2) >= ... and shadow (give every GPU a copy of) expert i while
 *     (3 t_c + 4 t_x) (B(i) - B(i+1)) > t_m,
 * which is global_policy's loop (it keeps shadowing while the predicted
 * layer latency 3 t_c B + 4 t_x B + (shadows x t_m) still falls). Here
 * t_c = forward compute time per token (the profile's time at the mean
 * tokens per expert, divided by that count: the GPU's real throughput at
 * this size where upstream uses a FLOP rate), t_x = time to send one
 * token's activations, t_m = time to send one expert's parameters, both
 * over the network bandwidth (upstream's bw_net: the NIC share across
 * nodes, else the intra-node link) and nothing else: no latency terms,
 * as upstream. B is the expert's load summed over all sources (the
 * paper's B; upstream's code sums the gathered count matrix over its
 * second dimension, which with its one expert per worker gives each
 * worker's sent total instead - we follow the paper, docs/baselines.md).
 * Shadowed experts' tokens are computed on the GPU they come from
 * (routing takes the local replica).
 *
 * How shadows are paid for (pl_policy_ops.shadows; sim_engine.h): as
 * upstream's smart schedule runs them, every shadow's weights are
 * broadcast from its owner in every forward pass (overlapping the own
 * experts' compute; the GPU computes its shadows once they arrive) and its
 * gradient is reduced back to the owner after its backward; the owner
 * keeps the optimizer state. Shadows are therefore never migrated: the
 * plan's replicate/drop moves only tell the runtime which copies exist
 * (they carry parameters only, pl_plan.copy_bytes), and a simulator
 * charges the per-iteration broadcast and reduce instead.
 *
 * FasterMoE decides on the iteration's own gate output, so by default
 * (lookahead=1) the policy reads the upcoming counts (it is registered as
 * clairvoyant for that reason only; the oracle is the one that re-plans
 * for free). lookahead=0 decides on the predictor's estimate instead.
 *
 * Shadows and slots: a shadow is a real copy of the expert in every GPU's
 * memory for the iteration, so it takes a slot on every GPU; at most
 * `slots` - (experts per GPU of the base layout) experts are shadowed, the
 * most loaded ones first (upstream allocates shadows as temporary buffers
 * without a limit; with the default slots from memory this rarely binds).
 * Base layout: the static one (expert parallelism); the owner of an
 * expert is its first GPU there.
 */
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

typedef struct fm_state {
  pl_env env;
  int slots, base_slots, max_shadows, lookahead;
  pl_monitor mon;
  pl_placement base;
  double *load; /* [E] */
  int *order;   /* [E] */
  int *owner;   /* [layers][E] shadow owner of each expert, -1 not shadowed */
  int *nshadow; /* [layers] experts shadowed */
} fm_state;

static void fm_fini(void *state) {
  fm_state *s = state;
  if (!s)
    return;
  pl_monitor_fini(&s->mon);
  pl_placement_fini(&s->base);
  pl_free(s->load);
  pl_free(s->order);
  pl_free(s->owner);
  pl_free(s->nshadow);
  pl_free(s);
}

static int fm_init(void **state, const pl_env *env, const pl_kv *kv, int nkv,
                   pl_placement *initial) {
  fm_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  s->env = *env;
  int rc;
  if ((rc = pl_param_slots(env, kv, nkv, env->cluster.slots, &s->slots)) ||
      (rc = pl_kv_int(kv, nkv, "max_shadows", 0, 0, 1 << 20, &s->max_shadows)) ||
      (rc = pl_kv_int(kv, nkv, "lookahead", 1, 0, 1, &s->lookahead)) ||
      (rc = pl_monitor_init(&s->mon, env, kv, nkv, PL_PRED_LAST, 10)))
    goto fail;
  rc = pl_placement_init(&s->base, env->experts, env->cluster.gpus, env->cluster.slots);
  if (!rc)
    rc = pl_placement_static(&s->base);
  if (rc)
    goto fail;
  s->base_slots = 0;
  for (int g = 0; g < env->cluster.gpus; g++)
    if (s->base.nhost[g] > s->base_slots)
      s->base_slots = s->base.nhost[g];
  s->load = pl_calloc((size_t)env->experts, sizeof(double));
  s->order = pl_calloc((size_t)env->experts, sizeof(int));
  s->owner = pl_calloc((size_t)env->layers * env->experts, sizeof(int));
  s->nshadow = pl_calloc((size_t)env->layers, sizeof(int));
  if (!s->load || !s->order || !s->owner || !s->nshadow) {
    rc = PL_ENOMEM;
    goto fail;
  }
  for (int i = 0; i < env->layers * env->experts; i++)
    s->owner[i] = -1;
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_copy(&initial[l], &s->base)) != 0)
      goto fail;
  *state = s;
  return PL_OK;
fail:
  fm_fini(s);
  return rc;
}

static int fm_observe(void *state, int iteration, int layer, const int64_t *counts) {
  (void)iteration;
  fm_state *s = state;
  return pl_monitor_observe(&s->mon, layer, counts);
}

/* Sorts order[] by load descending, ties by expert id (insertion sort:
 * E is small, and the order is fully determined). */
static void sort_by_load(int *order, const double *load, int n) {
  for (int i = 0; i < n; i++)
    order[i] = i;
  for (int i = 1; i < n; i++) {
    int x = order[i], j = i - 1;
    while (j >= 0 && (load[order[j]] < load[x] ||
                      (load[order[j]] == load[x] && order[j] > x))) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = x;
  }
}

static int fm_plan(void *state, int iteration, int layer,
                   const pl_placement *current, const int64_t *upcoming,
                   pl_plan *plan) {
  fm_state *s = state;
  const pl_env *env = &s->env;
  int E = env->experts, G = env->cluster.gpus;
  plan->changed = 0;
  if (iteration == 0)
    return PL_OK;
  if (s->lookahead && upcoming) {
    pl_sum_sources(upcoming, G, E, s->load);
  } else {
    const double *est = pl_monitor_estimate(&s->mon, layer);
    if (!est)
      return PL_OK;
    memcpy(s->load, est, sizeof(double) * (size_t)E);
  }
  sort_by_load(s->order, s->load, E);
  double total = 0;
  for (int e = 0; e < E; e++)
    total += s->load[e];
  const pl_cluster *c = &env->cluster;
  double bw = c->gpus > c->gpus_per_node ? c->inter_Bps / c->oversub : c->intra_Bps;
  double mean = total / E > 1 ? total / E : 1;
  double t_c = pl_ffn_us(&env->profile, mean) * 1e-6 / mean;
  double t_x = (double)pl_token_bytes(&env->model) / bw;
  double param_bytes = (double)pl_expert_params(&env->model) * env->model.bytes_per_elem;
  double t_m = param_bytes / bw;
  int limit = s->slots - s->base_slots;
  if (s->max_shadows > 0 && s->max_shadows < limit)
    limit = s->max_shadows;
  int nshadow = 0;
  for (int i = 0; i + 1 < E && nshadow < limit; i++) {
    double gain = (3 * t_c + 4 * t_x) * (s->load[s->order[i]] - s->load[s->order[i + 1]]);
    if (!(gain > t_m))
      break;
    nshadow = i + 1;
  }
  int *owner = s->owner + (size_t)layer * E;
  for (int e = 0; e < E; e++)
    owner[e] = -1;
  for (int i = 0; i < nshadow; i++)
    owner[s->order[i]] = s->base.rep[(size_t)s->order[i] * G];
  s->nshadow[layer] = nshadow;
  int rc = pl_plan_take_copy(plan, &s->base);
  for (int i = 0; i < nshadow && !rc; i++)
    for (int g = 0; g < G && !rc; g++)
      if (!pl_placement_has(&plan->placement, s->order[i], g))
        rc = pl_placement_add(&plan->placement, s->order[i], g);
  if (rc)
    return rc;
  plan->changed = !pl_placement_equal(&plan->placement, current);
  plan->background = 0;
  plan->copy_bytes = (int64_t)param_bytes;
  return PL_OK;
}

static const int *fm_shadows(void *state, int layer) {
  fm_state *s = state;
  if (layer < 0 || layer >= s->env.layers || s->nshadow[layer] == 0)
    return NULL;
  return s->owner + (size_t)layer * s->env.experts;
}

static const pl_param_desc fm_params[] = {
    {"slots", "0", "replicas per GPU incl. shadows (0: the cluster's slots); 0 or ceil(E/G) to the GPU's slots"},
    {"max_shadows", "0", "most experts shadowed at once (0: as slots allow); 0 to 1048576"},
    {"lookahead", "1", "1: decide on the iteration's own gate counts (FasterMoE); 0: on the predictor; 0 or 1"},
    PL_MONITOR_PARAMS("last", "0.5", "10"),
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_fastermoe_ops = {
    .name = "fastermoe",
    .summary = "FasterMoE: shadow the hottest experts on every GPU when their gap pays one parameter copy; shadows broadcast and reduced every iteration",
    .params = fm_params,
    .clairvoyant = 1,
    .init = fm_init,
    .observe = fm_observe,
    .plan = fm_plan,
    .capacity = NULL,
    .fini = fm_fini,
    .shadows = fm_shadows,
};
