/*
 * policy_static.c - expert parallelism: E/G experts per GPU in contiguous
 * blocks (expert-data-parallel when G > E), never changed, dropless.
 */
#include "placement/pl_error.h"
#include "placement/pl_policies.h"

static int static_init(void **state, const pl_env *env, const pl_kv *kv,
                       int nkv, pl_placement *initial) {
  (void)kv;
  (void)nkv;
  for (int l = 0; l < env->layers; l++) {
    int rc = pl_placement_static(&initial[l]);
    if (rc)
      return rc;
  }
  *state = NULL;
  return PL_OK;
}

static int static_plan(void *state, int iteration, int layer,
                       const pl_placement *current, const int64_t *upcoming,
                       pl_plan *plan) {
  (void)state, (void)iteration, (void)layer, (void)current, (void)upcoming;
  plan->changed = 0;
  return PL_OK;
}

static const pl_param_desc static_params[] = {{NULL, NULL, NULL}};

const pl_policy_ops pl_policy_static_ops = {
    .name = "static",
    .summary = "expert parallelism: E/G experts per GPU, never changes, dropless",
    .params = static_params,
    .clairvoyant = 0,
    .init = static_init,
    .observe = NULL,
    .plan = static_plan,
    .capacity = NULL,
    .fini = NULL,
};
