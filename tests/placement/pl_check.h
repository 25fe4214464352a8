/*
 * pl_check.h - helpers for the placement tests (header-only, static): a
 * standard environment, generated loads, and chk_run_policy, which drives
 * a policy through the plan protocol and asserts every placement invariant
 * at every step (and that a second handle makes the same plans).
 */
#ifndef FLEXMOE_TESTS_PL_CHECK_H
#define FLEXMOE_TESTS_PL_CHECK_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policy.h"

static const double chk_tok[] = {16, 64, 256, 1024, 4096, 16384, 65536};
static const double chk_us[] = {27.30, 28.10, 36.51, 93.27, 332.14, 1295.43, 5458.08};

static inline pl_env chk_env(int layers, int experts, int gpus, int gpn, int slots) {
  pl_env env = PL_ENV_INIT;
  env.layers = layers;
  env.experts = experts;
  env.cluster = (pl_cluster){gpus, gpn, slots, 450e9, 2e-6, 50e9, 5e-6, 1.0};
  env.model = (pl_model){2048, 8192, 2, 2, 12.0};
  env.profile = (pl_profile){7, chk_tok, chk_us, 2.1, 60.0};
  env.seed = 1;
  return env;
}

/* counts[it][layer][gpu][expert] */
typedef struct chk_loads {
  int iterations, layers, gpus, experts;
  int64_t *c;
} chk_loads;

static inline uint64_t chk_rng(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static inline double chk_unif(uint64_t *s) { return (chk_rng(s) >> 11) * 0x1.0p-53; }

/* Skewed (log-normal-ish popularity), drifting (a random walk on the log
 * weights) loads; each GPU routes exactly `per_gpu` slots. */
static inline void chk_loads_generate(chk_loads *l, int iterations, int layers,
                                      int gpus, int experts, int64_t per_gpu,
                                      uint64_t seed) {
  *l = (chk_loads){iterations, layers, gpus, experts, NULL};
  l->c = calloc((size_t)iterations * layers * gpus * experts, sizeof(int64_t));
  double *lw = calloc((size_t)layers * experts, sizeof(double));
  double *w = calloc((size_t)experts, sizeof(double));
  cr_assert(l->c && lw && w);
  uint64_t s = seed;
  for (int i = 0; i < layers * experts; i++)
    lw[i] = 1.5 * (chk_unif(&s) + chk_unif(&s) + chk_unif(&s) - 1.5);
  for (int it = 0; it < iterations; it++)
    for (int ly = 0; ly < layers; ly++) {
      for (int e = 0; e < experts; e++)
        lw[ly * experts + e] += 0.3 * (chk_unif(&s) - 0.5);
      for (int g = 0; g < gpus; g++) {
        double sum = 0;
        for (int e = 0; e < experts; e++)
          sum += (w[e] = exp(lw[ly * experts + e]) * (0.8 + 0.4 * chk_unif(&s)));
        int64_t *row = l->c + (((size_t)it * layers + ly) * gpus + g) * experts;
        int64_t used = 0;
        for (int e = 0; e < experts; e++)
          used += (row[e] = (int64_t)floor(per_gpu * w[e] / sum));
        for (int64_t k = 0; used < per_gpu; k++, used++) /* exact total */
          row[(size_t)(chk_rng(&s) % (uint64_t)experts)]++;
      }
    }
  free(lw);
  free(w);
}

static inline const int64_t *chk_loads_at(const chk_loads *l, int it, int layer) {
  return l->c + ((size_t)it * l->layers + layer) * l->gpus * l->experts;
}

static inline void chk_loads_free(chk_loads *l) { free(l->c); }

static inline double chk_layer_us(const pl_env *env, const pl_placement *p,
                                  const int64_t *counts) {
  pl_routing r;
  pl_cost cost;
  cr_assert_eq(pl_routing_init(&r, env->cluster.gpus, env->experts, 1), PL_OK);
  cr_assert_eq(pl_route(p, &env->cluster, counts, -1, &r), PL_OK);
  cr_assert_eq(pl_cost_layer(&env->cluster, &env->model, &env->profile, p, &r, &cost), PL_OK);
  pl_routing_fini(&r);
  return cost.total_us;
}

static inline int chk_same_plan(const pl_plan *a, const pl_plan *b) {
  if (a->changed != b->changed || a->background != b->background ||
      a->uncharged != b->uncharged || a->capacity != b->capacity)
    return 0;
  if (!a->changed)
    return 1;
  if (a->nmoves != b->nmoves || !pl_placement_equal(&a->placement, &b->placement))
    return 0;
  return memcmp(a->moves, b->moves, sizeof(pl_move) * (size_t)a->nmoves) == 0;
}

/* The most experts per GPU that policy `spec` may place under env, written
 * down here from docs/placement.md rather than read from the policy: the
 * spec's own slots=, else the policy's documented default: eplb ceil(E/G) + 1
 * (at most the cluster's), smartmoe ceil(E/G), fastermoe, flexmoe and oracle
 * the cluster's; static and capacity (no slots parameter) keep the static
 * layout, ceil(E/G). */
static inline int chk_policy_slots(const char *spec, const pl_env *env) {
  int E = env->experts, G = env->cluster.gpus, need = (E + G - 1) / G;
  char v[64];
  if (pl_policy_param(spec, "slots", v, sizeof v) != PL_OK)
    return need; /* static, capacity */
  int slots = atoi(v);
  if (slots > 0)
    return slots;
  if (strncmp(spec, "eplb", 4) == 0)
    return need + 1 < env->cluster.slots ? need + 1 : env->cluster.slots;
  if (strncmp(spec, "smartmoe", 8) == 0)
    return need;
  return env->cluster.slots;
}

/* Drives `spec` through every (iteration, layer) of the loads with two
 * handles and checks every invariant at every step, the policy's own slot
 * limit (chk_policy_slots) included. Returns the number of plans that
 * changed the placement. */
static inline int chk_run_policy(const char *spec, const pl_env *env,
                                 const chk_loads *l) {
  pl_policy *p = NULL, *q = NULL;
  char err[256] = "";
  cr_assert_eq(pl_policy_create(&p, spec, env, err, sizeof(err)), PL_OK, "%s: %s", spec, err);
  cr_assert_eq(pl_policy_create(&q, spec, env, err, sizeof(err)), PL_OK, "%s: %s", spec, err);
  int G = env->cluster.gpus, E = env->experts, slots = chk_policy_slots(spec, env);
  cr_assert_leq(slots, env->cluster.slots, "%s", spec);
  pl_plan a, b;
  pl_plan_init(&a);
  pl_plan_init(&b);
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, G, E, 1), PL_OK);
  pl_placement before;
  cr_assert_eq(pl_placement_init(&before, E, G, env->cluster.slots), PL_OK);
  int changes = 0;
  for (int it = 0; it < l->iterations; it++)
    for (int ly = 0; ly < l->layers; ly++) {
      const int64_t *c = chk_loads_at(l, it, ly);
      cr_assert_eq(pl_placement_copy(&before, pl_policy_placement(p, ly)), PL_OK);
      cr_assert_eq(pl_policy_plan(p, it, ly, c, &a), PL_OK, "%s it %d", spec, it);
      cr_assert_eq(pl_policy_plan(q, it, ly, c, &b), PL_OK);
      cr_assert(chk_same_plan(&a, &b), "%s: two handles differ at it %d layer %d", spec, it, ly);
      const pl_placement *now = pl_policy_placement(p, ly);
      cr_assert_eq(pl_placement_check(now), PL_OK, "%s: invariant broken at it %d", spec, it);
      for (int e = 0; e < E; e++)
        cr_assert_geq(now->nrep[e], 1);
      for (int g = 0; g < G; g++)
        cr_assert_leq(now->nhost[g], slots, "%s: GPU %d holds %d experts at it %d layer %d",
                      spec, g, now->nhost[g], it, ly);
      if (a.changed) {
        changes++;
        cr_assert(pl_placement_equal(&a.placement, now));
        cr_assert_eq(pl_placement_apply(&before, a.moves, a.nmoves), PL_OK, "%s", spec);
        cr_assert(pl_placement_equal(&before, now), "%s: moves do not give the plan", spec);
        for (int k = 0; k < a.nmoves; k++) {
          cr_assert_eq(a.moves[k].layer, ly);
          cr_assert_eq(a.moves[k].bytes > 0, a.moves[k].kind != PL_MOVE_DROP);
        }
      } else {
        cr_assert(pl_placement_equal(&before, now), "%s: unchanged plan moved", spec);
      }
      cr_assert_eq(pl_policy_route(p, ly, c, &r), PL_OK);
      int64_t sum = 0, load = 0, gl = 0;
      for (int i = 0; i < G * E; i++) {
        sum += c[i];
        load += r.load[i];
        cr_assert(r.load[i] == 0 || pl_placement_has(now, i % E, i / E),
                  "%s: tokens on a GPU without the expert", spec);
      }
      for (int g = 0; g < G; g++)
        gl += r.gpu_load[g];
      cr_assert_eq(r.total, sum);
      cr_assert_eq(load + r.dropped, sum, "%s: tokens not conserved", spec);
      cr_assert_eq(gl, load);
      if (strncmp(spec, "capacity", 8) != 0 || strstr(spec, "drop=0"))
        cr_assert_eq(r.dropped, 0, "%s dropped tokens", spec);
      cr_assert_eq(pl_policy_observe(p, it, ly, c), PL_OK);
      cr_assert_eq(pl_policy_observe(q, it, ly, c), PL_OK);
    }
  pl_placement_fini(&before);
  pl_routing_fini(&r);
  pl_plan_fini(&a);
  pl_plan_fini(&b);
  pl_policy_destroy(p);
  pl_policy_destroy(q);
  return changes;
}

/* Layer time of routing c on the placement that serves it (pl_cost_layer,
 * migration not charged). */
static inline double chk_serving_us(pl_policy *p, const pl_env *env, const int64_t *c,
                                    pl_routing *r) {
  pl_cost cost;
  cr_assert_eq(pl_policy_route_serving(p, 0, c, r), PL_OK);
  cr_assert_eq(pl_cost_layer(&env->cluster, &env->model, &env->profile,
                             pl_policy_serving(p, 0), r, &cost), PL_OK);
  return cost.total_us;
}

/*
 * The oracle's objective is pl_cost_layer of the iteration's own routing,
 * over placements within the cluster's slots (every policy's are a subset),
 * its moves free. Runs the oracle and each of `rivals` (dropless policies)
 * on random small cases (shapes of one and two nodes, E above, equal to and
 * below G, skewed drifting loads, fixed seeds) and asserts on every
 * iteration that the oracle's layer time is at most each rival's serving
 * placement's, charged no migration either. Returns the comparisons made.
 */
static inline int chk_oracle_bounds(const char *const *rivals) {
  typedef struct { int gpus, gpn, experts, slots; } small_shape;
  static const small_shape small[] = {{4, 4, 8, 3}, {8, 4, 16, 3}, {8, 8, 8, 2},
                                      {8, 4, 4, 2}, {6, 3, 12, 4}, {16, 8, 32, 3}};
  int compared = 0;
  for (size_t k = 0; k < sizeof(small) / sizeof(small[0]); k++)
    for (uint64_t seed = 1; seed <= 3; seed++) {
      const small_shape *sh = &small[k];
      pl_env env = chk_env(1, sh->experts, sh->gpus, sh->gpn, sh->slots);
      chk_loads loads;
      chk_loads_generate(&loads, 8, 1, sh->gpus, sh->experts, 4096, 500 + 10 * k + seed);
      int n = 0;
      pl_policy *pol[16];
      cr_assert_eq(pl_policy_create(&pol[n++], "oracle:shadow=0", &env, NULL, 0), PL_OK);
      for (int i = 0; rivals[i] && n < 16; i++) {
        char err[256] = "";
        int rc = pl_policy_create(&pol[n], rivals[i], &env, err, sizeof err);
        if (rc == PL_EPARAM && sh->gpn == sh->gpus && strstr(rivals[i], "hierarchical"))
          continue; /* one node: no hierarchy to build */
        cr_assert_eq(rc, PL_OK, "%s: %s", rivals[i], err);
        n++;
      }
      pl_routing r;
      cr_assert_eq(pl_routing_init(&r, sh->gpus, sh->experts, 0), PL_OK);
      pl_plan plan;
      pl_plan_init(&plan);
      for (int it = 0; it < loads.iterations; it++) {
        const int64_t *c = chk_loads_at(&loads, it, 0);
        double us[16];
        for (int i = 0; i < n; i++) {
          cr_assert_eq(pl_policy_plan(pol[i], it, 0, c, &plan), PL_OK);
          us[i] = chk_serving_us(pol[i], &env, c, &r);
        }
        for (int i = 1; i < n; i++, compared++)
          cr_assert_leq(us[0], us[i] * (1 + 1e-12),
                        "G %d (%d per node) E %d slots %d seed %llu it %d: oracle %.3f us > "
                        "%s %.3f us", sh->gpus, sh->gpn, sh->experts, sh->slots,
                        (unsigned long long)seed, it, us[0], pl_policy_spec(pol[i]), us[i]);
        for (int i = 0; i < n; i++)
          cr_assert_eq(pl_policy_observe(pol[i], it, 0, c), PL_OK);
      }
      for (int i = 0; i < n; i++)
        pl_policy_destroy(pol[i]);
      pl_plan_fini(&plan);
      pl_routing_fini(&r);
      chk_loads_free(&loads);
    }
  return compared;
}

#endif
