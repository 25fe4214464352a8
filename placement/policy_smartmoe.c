/*
 * policy_smartmoe.c - SmartMoE's online expert re-placement without
 * replicas (Zhai et al., USENIX ATC'23), as its artifact runs it
 * (thu-pacman/SmartMoE-AE, fmoe/layers.py FMoE.forward and
 * fmoe/smartmoe/mapping.py greedy_gen_mapping_from_history; facts and
 * sources in docs/baselines.md).
 *
 * Timing: the artifact re-places before the gate of every iteration k with
 * k % dynamic_freq == dynamic_freq - 1 (0-based; --dynamic-freq 10 in its
 * runs), on the mean gate counts of the 2 iterations before (it records
 * iterations k with (k + 1) % freq >= freq - 2 and clears the record at
 * each re-placement). Here pl_policy_plan(i) comes before iteration i's
 * counts are observed, so a plan at every i with (i + 1) % period == 0 on
 * the window mean of the last `window` observed iterations is exactly
 * that: iterations 9, 19, ... on i-2 and i-1. period=10 and window=2 (the
 * period when shorter, as the artifact's record) are the defaults; both
 * remain parameters.
 *
 * Greedy: the experts sorted by load, descending; among equal loads the
 * higher expert id first (the artifact reverses numpy's ascending argsort:
 * with a stable sort that is this order, its default quicksort leaves
 * ties unspecified). Each goes to the least-loaded GPU that has a free
 * slot, the lowest id among equals, except that its current GPU wins an
 * equal load. The new mapping is kept only if it lowers the maximum GPU
 * load. No replicas: with G > E (which the artifact never runs: E is a
 * multiple of G there) the units placed are the replicas of the static
 * expert-data-parallel layout (each carrying load / copies), never two of
 * one expert on a GPU. Slots default to what the static layout uses
 * (ceil(E/G)): SmartMoE needs no extra memory. Moves follow the common
 * protocol (`background`, applied by the policy handle; the artifact's
 * moves are blocking: background=0). O(U G) per re-placement for U placed
 * units.
 */
#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

/* SmartMoE-AE's defaults: re-place every 10 iterations on the last 2 */
#define SM_PERIOD 10
#define SM_WINDOW 2

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
      (rc = pl_kv_int(kv, nkv, "period", SM_PERIOD, 1, 1 << 30, &s->period)) ||
      (rc = pl_monitor_init(&s->mon, env, kv, nkv, PL_PRED_WINDOW,
                            s->period < SM_WINDOW ? s->period : SM_WINDOW)))
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
  if ((iteration + 1) % s->period != 0 || !load)
    return PL_OK;
  /* units sorted by load per copy, descending; ties: higher expert id first */
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
      if (wy > wx || (wy == wx && y >= x))
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
  return PL_OK;
}

static const pl_param_desc sm_params[] = {
    {"period", PL_STR(SM_PERIOD),
     "re-place before each iteration i with (i + 1) % period == 0 (SmartMoE-AE: "
     "--dynamic-freq 10); 1 to 1073741824"},
    {"slots", "0", "experts per GPU (0: ceil(E/G), the static layout's memory); 0 or ceil(E/G) to the GPU's slots"},
    PL_BACKGROUND_PARAM,
    {"predictor", "window", "load predictor: last, ewma, window or auto (per layer the one of last, ewma and trend with the lowest recent error)"},
    {"alpha", "0.5", "ewma weight of the newest iteration; 0.000001 to 1"},
    {"window", PL_STR(SM_WINDOW),
     "window predictor: the last N iterations averaged (0 or absent: 2, or the period if "
     "shorter, as SmartMoE-AE records them); 0 to 100000"},
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
