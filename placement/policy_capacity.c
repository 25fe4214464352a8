/*
 * policy_capacity.c - DeepSpeed-MoE capacity gating (docs/baselines.md,
 * "capacity (DeepSpeed-MoE)"; reference: deepspeed/moe/sharded_moe.py,
 * _capacity, top1gating, top2gating, topkgating).
 *
 * Static placement (as `static`). Every GPU is a rank that gates its own
 * tokens and computes its own capacity from them: rank r with T_r tokens
 * (its token slots / top_k, rounded up) keeps at most
 *   cap_r = max(min_capacity, ceil(T_r / E x cf x k))
 * slots for each expert, k = top_k (top1gating: cf; top2gating: cf x 2;
 * topkgating: cf x k). The product is taken in single precision as
 * DeepSpeed's float32 tensors take it. Slots over cap_r are dropped per
 * (rank, expert): max(0, count - cap_r) (top-2 queues second choices behind
 * all first choices, so seconds go first, but a (rank, expert)'s count of
 * drops is the same whichever slots go). Dispatch is padded: every rank
 * sends every expert cap_r slots and every replica computes what it
 * receives (pl_route.h, padded dispatch).
 *
 * drop=0 is DeepSpeed's drop_tokens=False: the capacity is the largest
 * (rank, expert) count of the layer (all-reduced MAX over the ranks), for
 * every rank (top-1: at most the rank's own tokens), min_capacity does not
 * apply, nothing is dropped, buffers are padded to it.
 */
#include <math.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"

typedef struct capacity_state {
  double cf;
  int min_capacity;
  int drop; /* 1: drop_tokens=True; 0: dropless, padded to the largest count */
  int top_k;
  int experts;
  int gpus;
} capacity_state;

static int capacity_init(void **state, const pl_env *env, const pl_kv *kv,
                         int nkv, pl_placement *initial) {
  double cf;
  int min_capacity, drop;
  int rc;
  if ((rc = pl_kv_double(kv, nkv, "cf", 1.0, 0.01, 1000.0, &cf)) ||
      (rc = pl_kv_int(kv, nkv, "min_capacity", 4, 0, 1 << 30, &min_capacity)) ||
      (rc = pl_kv_int(kv, nkv, "drop", 1, 0, 1, &drop)))
    return rc;
  if (env->model.top_k < 1 || env->model.top_k > env->experts)
    return PL_EINVAL;
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_static(&initial[l])) != 0)
      return rc;
  capacity_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  *s = (capacity_state){.cf = cf,
                        .min_capacity = min_capacity,
                        .drop = drop,
                        .top_k = env->model.top_k,
                        .experts = env->experts,
                        .gpus = env->cluster.gpus};
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

/* DeepSpeed's _capacity for `tokens` local tokens: ceil(tokens / E x
 * factor) in float32 (factor = cf x k, itself rounded to float32 as
 * torch.tensor(capacity_factor * k) is), at least min_capacity. */
static int64_t ds_capacity(const capacity_state *s, int64_t tokens) {
  float per_expert = (float)((double)tokens / s->experts);
  float factor = (float)(s->cf * s->top_k);
  float c = ceilf((float)(per_expert * factor));
  int64_t cap = (int64_t)c;
  return cap < s->min_capacity ? s->min_capacity : cap;
}

static int capacity_caps(void *state, int layer, const int64_t *counts, int64_t *cap) {
  (void)layer;
  const capacity_state *s = state;
  int G = s->gpus, E = s->experts, k = s->top_k;
  int64_t largest = 0;
  for (size_t i = 0; i < (size_t)G * E; i++)
    if (counts[i] > largest)
      largest = counts[i];
  for (int r = 0; r < G; r++) {
    int64_t slots = 0;
    for (int e = 0; e < E; e++)
      slots += counts[(size_t)r * E + e];
    if (slots < 0)
      return PL_EINVAL;
    int64_t tokens = slots / k + (slots % k != 0);
    if (s->drop)
      cap[r] = ds_capacity(s, tokens);
    else /* top1gating also bounds it by the rank's own tokens */
      cap[r] = k == 1 && largest > tokens ? tokens : largest;
  }
  return PL_OK;
}

static void capacity_fini(void *state) { pl_free(state); }

static const pl_param_desc capacity_params[] = {
    {"cf", "1.0",
     "capacity factor (DeepSpeed capacity_factor): a rank keeps at most "
     "ceil(its tokens / E x cf x top_k) slots per expert; 0.01 to 1000"},
    {"min_capacity", "4",
     "smallest capacity per (rank, expert) when dropping (DeepSpeed min_capacity); "
     "0 to 1073741824"},
    {"drop", "1",
     "1: drop slots over capacity (DeepSpeed drop_tokens=True); 0: dropless, buffers "
     "padded to the layer's largest (rank, expert) count; 0 or 1"},
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_capacity_ops = {
    .name = "capacity",
    .summary = "DeepSpeed-MoE: static placement, per-rank capacity, drops and padded buffers",
    .params = capacity_params,
    .clairvoyant = 0,
    .init = capacity_init,
    .observe = NULL,
    .plan = capacity_plan,
    .capacity = capacity_caps,
    .fini = capacity_fini,
};
