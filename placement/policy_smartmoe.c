/*
 * policy_smartmoe.c - SmartMoE-style periodic re-placement without replicas
 * (Zhai et al., USENIX ATC'23).
 *
 * Every `period` iterations: take the predicted per-expert loads (window
 * mean over the period by default), sort the experts by load (descending,
 * ties by id) and put each on the least-loaded GPU that has a free slot,
 * preferring the expert's current GPU when several are equally loaded (then
 * the lowest id). Keep the new mapping only if it lowers the maximum GPU
 * load. No replicas are added: with G > E the units placed are the replicas
 * of the static expert-data-parallel layout (each carrying load / copies),
 * never two of one expert on a GPU. Slots default to what the static layout
 * uses (ceil(E/G)): SmartMoE needs no extra memory. Moves are blocking.
 * O(U G) per re-placement for U placed units.
 */
#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

typedef struct sm_state {
  pl_env env;
  int slots, period;
  pl_monitor mon;
  double *gload; /* [G] */
  int *unit;     /* [U] expert of each unit, sorted */
  int nunits;
  int *copies;   /* [E] units per expert (static layout) */
} sm_state;

static void sm_fini(void *state) {
  sm_state *s = state;
  if (!s)
    return;
  pl_monitor_fini(&s->mon);
  pl_free(s->gload);
  pl_free(s->unit);
  pl_free(s->copies);
  pl_free(s);
}

static int sm_init(void **state, const pl_env *env, const pl_kv *kv, int nkv,
                   pl_placement *initial) {
  sm_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  s->env = *env;
  int E = env->experts, G = env->cluster.gpus, rc;
  int base = (E + G - 1) / G;
  if ((rc = pl_param_slots(env, kv, nkv, base, &s->slots)) ||
      (rc = pl_kv_int(kv, nkv, "period", 100, 1, 1 << 30, &s->period)) ||
      (rc = pl_monitor_init(&s->mon, env, kv, nkv, PL_PRED_WINDOW, s->period)))
    goto fail;
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_static(&initial[l])) != 0)
      goto fail;
  s->nunits = G > E ? G : E;
  s->gload = pl_calloc((size_t)G, sizeof(double));
  s->unit = pl_calloc((size_t)s->nunits, sizeof(int));
  s->copies = pl_calloc((size_t)E, sizeof(int));
  if (!s->gload || !s->unit || !s->copies) {
    rc = PL_ENOMEM;
    goto fail;
  }
  for (int e = 0; e < E; e++)
    s->copies[e] = initial[0].nrep[e];
  *state = s;
  return PL_OK;
fail:
  sm_fini(s);
  return rc;
}

static int sm_observe(void *state, int iteration, int layer, const int64_t *counts) {
  (void)iteration;
  sm_state *s = state;
  return pl_monitor_observe(&s->mon, layer, counts);
}

static double max_of(const double *v, int n) {
  double m = 0;
  for (int i = 0; i < n; i++)
    m = fmax(m, v[i]);
  return m;
}

static int sm_plan(void *state, int iteration, int layer,
                   const pl_placement *current, const int64_t *upcoming,
                   pl_plan *plan) {
  (void)upcoming;
  sm_state *s = state;
  int E = s->env.experts, G = s->env.cluster.gpus;
  plan->changed = 0;
  const double *load = pl_monitor_estimate(&s->mon, layer);
  if (iteration == 0 || iteration % s->period != 0 || !load)
    return PL_OK;
  /* units sorted by load per copy, descending, ties by expert id */
  int n = 0;
  for (int e = 0; e < E; e++)
    for (int k = 0; k < s->copies[e]; k++)
      s->unit[n++] = e;
  for (int i = 1; i < n; i++) {
    int x = s->unit[i], j = i - 1;
    double wx = load[x] / s->copies[x];
    while (j >= 0) {
      int y = s->unit[j];
      double wy = load[y] / s->copies[y];
      if (wy > wx || (wy == wx && y <= x))
        break;
      s->unit[j + 1] = y;
      j--;
    }
    s->unit[j + 1] = x;
  }
  pl_even_balance(current, load, s->gload);
  double max_before = max_of(s->gload, G);
  int rc = pl_plan_take_copy(plan, current);
  if (rc)
    return rc;
  pl_placement *p = &plan->placement;
  pl_placement_clear(p);
  memset(s->gload, 0, sizeof(double) * (size_t)G);
  for (int i = 0; i < n; i++) {
    int e = s->unit[i], best = -1;
    for (int g = 0; g < G; g++) {
      if (p->nhost[g] >= s->slots || pl_placement_has(p, e, g))
        continue;
      if (best < 0 || s->gload[g] < s->gload[best] ||
          (s->gload[g] == s->gload[best] && pl_placement_has(current, e, g) &&
           !pl_placement_has(current, e, best)))
        best = g;
    }
    if (best < 0)
      return PL_EINVARIANT;
    if ((rc = pl_placement_add(p, e, best)) != 0)
      return rc;
    s->gload[best] += load[e] / s->copies[e];
  }
  if (max_of(s->gload, G) < max_before)
    plan->changed = !pl_placement_equal(p, current);
  plan->background = 0;
  return PL_OK;
}

static const pl_param_desc sm_params[] = {
    {"period", "100", "re-place every this many iterations"},
    {"slots", "0", "experts per GPU (0: ceil(E/G), the static layout's memory)"},
    PL_MONITOR_PARAMS("window", "0.5", "0"),
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_smartmoe_ops = {
    .name = "smartmoe",
    .summary = "SmartMoE: periodic greedy re-placement, no replicas, kept only if the max GPU load drops",
    .params = sm_params,
    .clairvoyant = 0,
    .init = sm_init,
    .observe = sm_observe,
    .plan = sm_plan,
    .capacity = NULL,
    .fini = sm_fini,
};
