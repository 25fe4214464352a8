/*
 * policy_capacity.c - DeepSpeed-MoE / GShard capacity dropping.
 *
 * Static placement (as `static`). Each expert accepts at most
 * ceil(T / E x cf) token slots per iteration, T the layer's total token slots
 * (top-k already counted in T); with G > E an expert's capacity is shared by
 * its replicas, so each replica accepts ceil(T x cf / replicas). Tokens over
 * capacity are dropped in source-GPU order and counted. Dispatch buffers are
 * padded to capacity (the all-to-all volume is fixed), which the cost model
 * and simulator account for (the capacity op is non-NULL: padded dispatch).
 */
#include <math.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"

typedef struct capacity_state {
  double cf;
  int experts;
  int gpus;
  int replicas; /* total replicas of the static layout */
} capacity_state;

static int capacity_init(void **state, const pl_env *env, const pl_kv *kv,
                         int nkv, pl_placement *initial) {
  double cf;
  int rc = pl_kv_double(kv, nkv, "cf", 1.25, 0.01, 1000.0, &cf);
  if (rc)
    return rc;
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_static(&initial[l])) != 0)
      return rc;
  capacity_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  s->cf = cf;
  s->experts = env->experts;
  s->gpus = env->cluster.gpus;
  s->replicas = env->cluster.gpus > env->experts ? env->cluster.gpus : env->experts;
  *state = s;
  return PL_OK;
}

static int capacity_plan(void *state, int iteration, int layer,
                         const pl_placement *current, const int64_t *upcoming,
                         pl_plan *plan) {
  (void)state, (void)iteration, (void)layer, (void)current, (void)upcoming;
  plan->changed = 0;
  return PL_OK;
}

static int64_t capacity_cap(void *state, int layer, const int64_t *counts) {
  (void)layer;
  const capacity_state *s = state;
  int64_t total = 0;
  for (int i = 0; i < s->gpus * s->experts; i++)
    total += counts[i];
  return (int64_t)ceil((double)total * s->cf / s->replicas);
}

static void capacity_fini(void *state) { pl_free(state); }

static const pl_param_desc capacity_params[] = {
    {"cf", "1.25", "capacity factor: each expert takes at most cf x its even share"},
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_capacity_ops = {
    .name = "capacity",
    .summary = "DeepSpeed/GShard: static placement, tokens over capacity dropped",
    .params = capacity_params,
    .clairvoyant = 0,
    .init = capacity_init,
    .observe = NULL,
    .plan = capacity_plan,
    .capacity = capacity_cap,
    .fini = capacity_fini,
};
