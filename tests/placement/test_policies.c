/*
 * Invariants of every registered policy, table-driven, on generated loads
 * (skewed, drifting) at several cluster shapes: every expert keeps a
 * replica, no GPU over its slots, no two replicas of an expert on a GPU,
 * routing conserves tokens exactly (drops counted), the moves turn the old
 * placement into the new one exactly, and two handles fed the same calls
 * produce the same plans bit for bit. test_realtrace.c repeats the checks
 * on real routing.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "placement/pl_policy.h"
#include "placement/pl_shadow.h"
#include "../../placement/pl_internal.h"
#include "pl_check.h"

static const char *const specs[] = {
    "static",
    "capacity",
    "capacity:cf=1.25,min_capacity=16",
    "capacity:drop=0",
    "fastermoe",
    "fastermoe:lookahead=0,predictor=window,window=3",
    "smartmoe:period=4",
    "eplb:period=4",
    "eplb:mode=hierarchical,period=3",
    "flexmoe",
    "flexmoe:threshold=1.0,horizon=5,background=0,predictor=last",
    "flexmoe:predictor=window,window=4,max_steps=3",
    "flexmoe:rebuild=0",
    "flexmoe:restart=1,rebuild=2,polish=0,horizon=1000",
    "flexmoe:noise=2",
    "oracle",
    NULL};

typedef struct shape {
  int gpus, gpn, experts, slots;
} shape;

static const shape shapes[] = {
    {8, 8, 32, 6},  /* one node, E > G */
    {16, 4, 32, 4}, /* four nodes */
    {64, 8, 32, 3}, /* G > E: expert-data-parallel base */
    {6, 2, 6, 2},   /* small, odd */
};

Test(policies, every_policy_keeps_the_invariants_on_generated_loads) {
  int changes[32] = {0};
  for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
    const shape *sh = &shapes[k];
    pl_env env = chk_env(2, sh->experts, sh->gpus, sh->gpn, sh->slots);
    chk_loads loads;
    chk_loads_generate(&loads, 12, 2, sh->gpus, sh->experts, 4096, 1000 + k);
    for (int i = 0; specs[i]; i++)
      changes[i] += chk_run_policy(specs[i], &env, &loads);
    chk_loads_free(&loads);
  }
  /* the dynamic policies really moved something (else the checks above
   * would have checked nothing) */
  for (int i = 0; specs[i]; i++) {
    int dynamic = strncmp(specs[i], "static", 6) && strncmp(specs[i], "capacity", 8);
    cr_log_info("%s: %d changed plans", specs[i], changes[i]);
    if (dynamic)
      cr_assert_gt(changes[i], 0, "%s never changed its placement", specs[i]);
  }
}

/* Each policy's own `slots=` below the cluster's: the checker holds every
 * placement to the policy's limit, not to the memory the cluster has. The
 * clusters have slots to spare (8 and 6 where the policies get 5 and 2-3),
 * so a policy that counts against the cluster's slots instead of its own
 * overfills GPUs here. The defaults are checked too (chk_policy_slots). */
Test(policies, every_policy_keeps_its_own_slot_limit_below_the_clusters) {
  static const struct {
    shape sh;
    const char *const specs[12];
  } cases[] = {
      {{8, 8, 32, 8},
       {"flexmoe:slots=5", "flexmoe:slots=4,threshold=1.0,horizon=1000",
        "flexmoe:slots=5,rebuild=0,restart=1", "oracle:slots=5", "fastermoe:slots=5",
        "smartmoe:slots=5,period=2", "eplb:slots=5,period=2", "eplb:period=2", "smartmoe:period=2",
        "static", NULL}},
      {{64, 8, 32, 6},
       {"flexmoe:slots=2", "oracle:slots=2", "fastermoe:slots=3", "eplb:slots=2,period=2",
        "flexmoe:slots=3,threshold=1.0", NULL}},
  };
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    const shape *sh = &cases[k].sh;
    pl_env env = chk_env(1, sh->experts, sh->gpus, sh->gpn, sh->slots);
    chk_loads loads;
    chk_loads_generate(&loads, 10, 1, sh->gpus, sh->experts, 8192, 300 + k);
    for (int i = 0; cases[k].specs[i]; i++) {
      const char *spec = cases[k].specs[i];
      int changes = chk_run_policy(spec, &env, &loads);
      if (strncmp(spec, "static", 6))
        cr_assert_gt(changes, 0, "%s never re-placed: its limit was not exercised", spec);
    }
    chk_loads_free(&loads);
  }
}

/*
 * Layers are planned independently: a layer's plans depend on its own
 * loads only. Two handles of each policy see the same layer-0 loads and
 * different layer-1 loads (another seed); every layer-0 plan and placement
 * must be the same in both, for every spec of the table (each policy's
 * per-layer state: predictors, histories, flexmoe's noise ring, shadows).
 * Layer 1's plans, or its temporaries, really differ (else the check
 * compared nothing: with shadow_net=1 flexmoe may leave a layer's load to
 * its temporaries and never move).
 * flexmoe's background plans share the iteration's links with the other
 * layers' by design (charge=1: the window that hides them is the iteration
 * time estimated from every layer; weights_first=1: the last iteration's
 * moves of all layers), so flexmoe is checked with those two off: its own
 * per-layer state (predictor, histories, noise ring, payback's trust and
 * open evaluations) stays covered. Since payback's lifetime cap (issue 17)
 * the default's layer-0 plans do flip with layer 1's estimates.
 */
Test(policies, a_layers_plans_do_not_depend_on_another_layers_loads) {
  static const shape sh[] = {{8, 8, 32, 6}, {16, 4, 32, 4}};
  for (size_t k = 0; k < sizeof(sh) / sizeof(sh[0]); k++) {
    pl_env env = chk_env(2, sh[k].experts, sh[k].gpus, sh[k].gpn, sh[k].slots);
    int G = sh[k].gpus, E = sh[k].experts;
    chk_loads la, lb;
    chk_loads_generate(&la, 12, 2, G, E, 4096, 70 + k);
    chk_loads_generate(&lb, 12, 2, G, E, 4096, 90 + k);
    for (int i = 0; specs[i]; i++) {
      pl_policy *a = NULL, *b = NULL;
      char err[256] = "", spec[256];
      int fx = strncmp(specs[i], "flexmoe", 7) == 0;
      snprintf(spec, sizeof spec, "%s%s", specs[i],
               !fx ? "" : strchr(specs[i], ':') ? ",charge=0,weights_first=0"
                                                : ":charge=0,weights_first=0");
      cr_assert_eq(pl_policy_create(&a, spec, &env, err, sizeof err), PL_OK, "%s", err);
      cr_assert_eq(pl_policy_create(&b, spec, &env, err, sizeof err), PL_OK, "%s", err);
      pl_plan pa, pb;
      pl_plan_init(&pa);
      pl_plan_init(&pb);
      pl_temps ta, tb;
      cr_assert_eq(pl_temps_init(&ta, E, G, sh[k].slots), PL_OK);
      cr_assert_eq(pl_temps_init(&tb, E, G, sh[k].slots), PL_OK);
      int differ1 = 0;
      for (int it = 0; it < la.iterations; it++)
        for (int ly = 0; ly < 2; ly++) {
          const int64_t *ca = chk_loads_at(&la, it, ly);
          const int64_t *cb = ly == 0 ? ca : chk_loads_at(&lb, it, ly);
          cr_assert_eq(pl_policy_plan(a, it, ly, ca, &pa), PL_OK, "%s", spec);
          cr_assert_eq(pl_policy_plan(b, it, ly, cb, &pb), PL_OK, "%s", spec);
          if (ly == 0) {
            cr_assert(chk_same_plan(&pa, &pb),
                      "%s (G %d): layer 0's plan at iteration %d changed with layer 1's loads",
                      spec, G, it);
            cr_assert(pl_placement_equal(pl_policy_placement(a, 0), pl_policy_placement(b, 0)),
                      "%s (G %d): layer 0's placement at iteration %d", spec, G, it);
          } else {
            differ1 |= !chk_same_plan(&pa, &pb);
            if (pl_policy_has_temporaries(a)) {
              cr_assert_eq(pl_policy_temporaries(a, ly, ca, &ta), PL_OK, "%s", spec);
              cr_assert_eq(pl_policy_temporaries(b, ly, cb, &tb), PL_OK, "%s", spec);
              differ1 |= ta.n != tb.n ||
                         (ta.n && memcmp(ta.temp, tb.temp, (size_t)ta.n * sizeof(pl_temp)));
            }
          }
          cr_assert_eq(pl_policy_observe(a, it, ly, ca), PL_OK);
          cr_assert_eq(pl_policy_observe(b, it, ly, cb), PL_OK);
        }
      int dynamic = strncmp(spec, "static", 6) && strncmp(spec, "capacity", 8);
      if (dynamic)
        cr_assert(differ1,
                  "%s (G %d): layer 1's different loads never changed its plans or temporaries",
                  spec, G);
      pl_temps_fini(&ta);
      pl_temps_fini(&tb);
      pl_plan_fini(&pa);
      pl_plan_fini(&pb);
      pl_policy_destroy(a);
      pl_policy_destroy(b);
    }
    chk_loads_free(&la);
    chk_loads_free(&lb);
  }
}

/*
 * One pl_plan may serve several policies in turn (the simulator keeps one
 * per run; a caller may reuse it across runs of other shapes): a plan that
 * last held a placement of another number of experts, GPUs or slots gives
 * the same plans as a fresh one. The plan is first filled by eplb on 32
 * experts x 8 GPUs, then used for shapes that differ in one dimension each.
 */
Test(policies, a_plan_reused_for_another_shape_plans_as_a_fresh_one) {
  static const shape next[] = {{8, 8, 16, 6}, {16, 8, 16, 6}, {16, 8, 16, 4}, {8, 8, 32, 6}};
  pl_plan reused;
  pl_plan_init(&reused);
  shape prev = {8, 8, 32, 6};
  for (size_t k = 0; k <= sizeof(next) / sizeof(next[0]); k++) {
    const shape *sh = k == 0 ? &prev : &next[k - 1];
    pl_env env = chk_env(1, sh->experts, sh->gpus, sh->gpn, sh->slots);
    chk_loads l;
    chk_loads_generate(&l, 6, 1, sh->gpus, sh->experts, 4096, 40 + k);
    pl_policy *a = NULL, *b = NULL;
    cr_assert_eq(pl_policy_create(&a, "eplb:period=2", &env, NULL, 0), PL_OK);
    cr_assert_eq(pl_policy_create(&b, "eplb:period=2", &env, NULL, 0), PL_OK);
    pl_plan fresh;
    pl_plan_init(&fresh);
    int changed = 0;
    for (int it = 0; it < l.iterations; it++) {
      const int64_t *c = chk_loads_at(&l, it, 0);
      int rc = pl_policy_plan(a, it, 0, c, &reused);
      cr_assert_eq(rc, PL_OK, "E %d G %d slots %d, iteration %d: %s", sh->experts, sh->gpus,
                   sh->slots, it, pl_strerror(rc));
      cr_assert_eq(pl_policy_plan(b, it, 0, c, &fresh), PL_OK);
      cr_assert(chk_same_plan(&reused, &fresh), "E %d G %d slots %d, iteration %d",
                sh->experts, sh->gpus, sh->slots, it);
      changed += fresh.changed;
      cr_assert_eq(pl_policy_observe(a, it, 0, c), PL_OK);
      cr_assert_eq(pl_policy_observe(b, it, 0, c), PL_OK);
    }
    cr_assert_gt(changed, 0, "E %d G %d: eplb never re-placed: the plan was not used",
                 sh->experts, sh->gpus);
    pl_plan_fini(&fresh);
    pl_policy_destroy(a);
    pl_policy_destroy(b);
    chk_loads_free(&l);
  }
  pl_plan_fini(&reused);
}

Test(policies, every_policy_is_in_the_registry_with_documented_parameters) {
  const char *const names[] = {"static", "capacity", "fastermoe", "smartmoe",
                               "eplb", "flexmoe", "oracle"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    const pl_policy_ops *ops = pl_policy_find(names[i]);
    cr_assert_not_null(ops, "%s missing", names[i]);
    cr_assert_str_eq(ops->name, names[i]);
    cr_assert(ops->summary && strlen(ops->summary) > 10);
    for (const pl_param_desc *d = ops->params; d->key; d++)
      cr_assert(d->defval && d->help && strlen(d->help) > 5, "%s.%s", names[i], d->key);
  }
}

Test(policies, defaults_and_bad_values_are_reported_per_policy) {
  pl_env env = chk_env(1, 32, 8, 8, 6);
  pl_policy *p = NULL;
  char err[256];
  cr_assert_eq(pl_policy_create(&p, "flexmoe:threshold=1.2,horizon=50,slots=4", &env,
                                err, sizeof(err)), PL_OK, "%s", err);
  cr_assert(strstr(pl_policy_spec(p), "threshold=1.2"));
  cr_assert(strstr(pl_policy_spec(p), "slots=4"));
  pl_policy_destroy(p);
  p = NULL;
  /* slots below ceil(E/G) or above the cluster's */
  cr_assert_eq(pl_policy_create(&p, "flexmoe:slots=3", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "eplb:slots=7", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "eplb:mode=diagonal", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "flexmoe:predictor=crystalball", &env, err, sizeof(err)),
               PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "smartmoe:period=0", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "oracle:threshold=2", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "threshold"));
  cr_assert_null(p);
}

Test(policies, eplb_uses_exactly_its_slots_and_never_doubles_an_expert) {
  /* 5 slots x 8 GPUs = 40 replicas for 32 experts, one very hot expert:
   * upstream's packing can put two of its copies on one GPU. */
  pl_env env = chk_env(1, 32, 8, 8, 6);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "eplb:slots=5,period=1,predictor=last", &env, NULL, 0), PL_OK);
  int64_t counts[8 * 32];
  for (int s = 0; s < 8; s++)
    for (int e = 0; e < 32; e++)
      counts[s * 32 + e] = e == 3 ? 4000 : e < 8 ? 200 : 10;
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, NULL, &plan), PL_OK);
  cr_assert_eq(pl_policy_observe(p, 0, 0, counts), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 1, 0, NULL, &plan), PL_OK);
  const pl_placement *pl = pl_policy_placement(p, 0);
  cr_assert_eq(pl_placement_check(pl), PL_OK);
  for (int g = 0; g < 8; g++)
    cr_assert_eq(pl->nhost[g], 5);
  cr_assert_eq(pl->nrep[3], 8, "the hot expert gets a replica on every GPU");
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

Test(policies, fastermoe_shadows_only_experts_whose_gap_pays_for_the_broadcast) {
  pl_env env = chk_env(1, 32, 8, 8, 6);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "fastermoe", &env, NULL, 0), PL_OK);
  int64_t flat[8 * 32], hot[8 * 32];
  for (int i = 0; i < 8 * 32; i++)
    flat[i] = 128;
  memcpy(hot, flat, sizeof(hot));
  for (int s = 0; s < 8; s++)
    hot[s * 32 + 7] = 20000; /* expert 7: 160000 slots vs 1024 for the rest */
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, flat, &plan), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 1, 0, flat, &plan), PL_OK);
  cr_assert_eq(plan.changed, 0, "uniform loads: no gap, no shadow");
  cr_assert_eq(pl_policy_plan(p, 2, 0, hot, &plan), PL_OK);
  cr_assert_eq(plan.changed, 1);
  const pl_placement *pl = pl_policy_placement(p, 0);
  cr_assert_eq(pl->nrep[7], 8, "the hot expert is shadowed on every GPU");
  for (int e = 0; e < 32; e++)
    if (e != 7)
      cr_assert_eq(pl->nrep[e], 1);
  /* shadows copy parameters only: 2 x 2048 x 8192 x 2 bytes */
  for (int k = 0; k < plan.nmoves; k++)
    cr_assert_eq(plan.moves[k].bytes, 2LL * 2048 * 8192 * 2);
  cr_assert_eq(plan.background, 0);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

/*
 * FasterMoE's rule as upstream's global_policy runs it, by hand: one node
 * of 8 GPUs (450 GB/s), d_model 2048, d_ff 8192, bf16. t_m = one copy of
 * the parameters over the link = 2 x 2048 x 8192 x 2 B / 450 GB/s =
 * 149.1 us; t_x = 4096 B / 450 GB/s; t_c = the profile's time per token at
 * the mean load (1199 slots: 93.27 + (332.14 - 93.27) x 175 / 3072 us
 * over 1199). A shadow pays while the gap to the next load exceeds
 * t_m / (3 t_c + 4 t_x) = 490 slots. Loads: expert 5 3424, expert 9 2624
 * (gap 800: shadow 5), expert 20 2024 (gap 600: shadow 9), expert 13 1624
 * (gap 400: stop, although 13's own gap to the rest is 600), 28 experts at
 * 1024. Slots allow 4 shadows, so the rule, not memory, stops at two:
 * shadows {5, 9}, owned by their static GPUs (4 experts per GPU: GPUs 1
 * and 2). The earlier rule (a ring all-reduce over 8 GPUs with 14 hop
 * latencies, 289 us) shadowed nothing here.
 */
Test(policies, fastermoe_shadows_by_upstreams_rule_with_one_parameter_copy) {
  pl_env env = chk_env(1, 32, 8, 8, 8);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "fastermoe", &env, NULL, 0), PL_OK);
  cr_assert(pl_policy_shadowing(p));
  int64_t c[8 * 32];
  for (int s = 0; s < 8; s++)
    for (int e = 0; e < 32; e++)
      c[s * 32 + e] = e == 5 ? 428 : e == 9 ? 328 : e == 20 ? 253 : e == 13 ? 203 : 128;
  double mean = (28 * 1024.0 + 3424 + 2624 + 2024 + 1624) / 32;
  double tc = (93.27 + (332.14 - 93.27) * (mean - 1024) / 3072) * 1e-6 / mean;
  double tm = 2.0 * 2048 * 8192 * 2 / 450e9, tx = 4096 / 450e9;
  double gap = tm / (3 * tc + 4 * tx);
  cr_assert(600 > gap && 400 < gap, "the hand case brackets the threshold (%.1f)", gap);
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, c, &plan), PL_OK);
  cr_assert_null(pl_policy_shadows(p, 0), "iteration 0: the initial layout, no shadow");
  cr_assert_eq(pl_policy_plan(p, 1, 0, c, &plan), PL_OK);
  const int *owner = pl_policy_shadows(p, 0);
  cr_assert_not_null(owner);
  for (int e = 0; e < 32; e++)
    cr_assert_eq(owner[e], e == 5 ? 1 : e == 9 ? 2 : -1, "expert %d owner %d", e, owner[e]);
  const pl_placement *pl = pl_policy_placement(p, 0);
  for (int e = 0; e < 32; e++)
    cr_assert_eq(pl->nrep[e], e == 5 || e == 9 ? 8 : 1, "expert %d", e);
  /* 7 new copies of each shadow, parameters only */
  cr_assert_eq(plan.nmoves, 14);
  for (int k = 0; k < plan.nmoves; k++)
    cr_assert_eq(plan.moves[k].bytes, 2LL * 2048 * 8192 * 2);
  /* a balanced iteration drops the shadows again */
  for (int i = 0; i < 8 * 32; i++)
    c[i] = 128;
  cr_assert_eq(pl_policy_plan(p, 2, 0, c, &plan), PL_OK);
  cr_assert_null(pl_policy_shadows(p, 0));
  cr_assert_eq(pl_policy_placement(p, 0)->nrep[5], 1);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

Test(policies, flexmoe_stays_put_while_balanced_and_expands_a_hot_expert) {
  pl_env env = chk_env(1, 32, 8, 8, 6);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "flexmoe:predictor=last", &env, NULL, 0), PL_OK);
  int64_t flat[8 * 32], hot[8 * 32];
  for (int i = 0; i < 8 * 32; i++)
    flat[i] = 512;
  memcpy(hot, flat, sizeof(hot));
  for (int s = 0; s < 8; s++)
    hot[s * 32 + 0] = 8192;
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, NULL, &plan), PL_OK);
  cr_assert_eq(pl_policy_observe(p, 0, 0, flat), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 1, 0, NULL, &plan), PL_OK);
  cr_assert_eq(plan.changed, 0, "balanced: no trigger");
  cr_assert_eq(pl_policy_observe(p, 1, 0, hot), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 2, 0, NULL, &plan), PL_OK);
  cr_assert_eq(plan.changed, 1);
  cr_assert_eq(plan.background, 1);
  const pl_placement *pl = pl_policy_placement(p, 0);
  cr_assert_gt(pl->nrep[0], 1, "the hot expert got replicas");
  for (int g = 0; g < 8; g++)
    cr_assert_leq(pl->nhost[g], 6);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

Test(policies, flexmoe_does_not_move_when_the_horizon_cannot_pay_for_it) {
  /* A mild imbalance over a 1-iteration horizon: moving a 470 MB expert
   * never pays for itself. */
  pl_env env = chk_env(1, 32, 8, 8, 6);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "flexmoe:predictor=last,horizon=1,threshold=1.0", &env,
                                NULL, 0), PL_OK);
  int64_t c[8 * 32];
  for (int i = 0; i < 8 * 32; i++)
    c[i] = (i % 32) == 0 ? 700 : 512;
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, NULL, &plan), PL_OK);
  cr_assert_eq(pl_policy_observe(p, 0, 0, c), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 1, 0, NULL, &plan), PL_OK);
  cr_assert_eq(plan.changed, 0);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

/* Runs flexmoe `spec` on constant skewed counts (expert e gets (e+1)^2 of
 * the tokens' weight) for `iters` iterations; returns the routed balance of
 * the last iteration, the layer time, the plans made and the moves. */
/* Counts [G*E] where every GPU routes 8192 slots, expert e weighing
 * (e + 1)^2. */
static int64_t *skewed_counts(int G, int E) {
  int64_t *c = calloc((size_t)G * E, sizeof(int64_t));
  cr_assert(c);
  double wsum = 0;
  for (int e = 0; e < E; e++)
    wsum += (double)(e + 1) * (e + 1);
  for (int g = 0; g < G; g++)
    for (int e = 0; e < E; e++)
      c[g * E + e] = (int64_t)(8192.0 * (e + 1) * (e + 1) / wsum);
  return c;
}

static double far_off_run(const char *spec, const pl_env *env, int iters, double *layer_us,
                          int *plans, int *moves) {
  int G = env->cluster.gpus, E = env->experts;
  int64_t *c = skewed_counts(G, E);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, spec, env, NULL, 0), PL_OK);
  pl_plan plan;
  pl_plan_init(&plan);
  *plans = *moves = 0;
  for (int it = 0; it < iters; it++) {
    cr_assert_eq(pl_policy_plan(p, it, 0, NULL, &plan), PL_OK);
    if (plan.changed) {
      (*plans)++;
      *moves += plan.nmoves;
    }
    cr_assert_eq(pl_policy_observe(p, it, 0, c), PL_OK);
  }
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, G, E, 0), PL_OK);
  cr_assert_eq(pl_policy_route(p, 0, c, &r), PL_OK);
  double bal = pl_routing_balance(&r);
  *layer_us = chk_layer_us(env, pl_policy_placement(p, 0), c);
  pl_routing_fini(&r);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  free(c);
  return bal;
}

Test(policies, flexmoe_rebuild_reaches_balance_from_a_far_off_start_with_bounded_moves) {
  /* 128 GPUs in 16 nodes, 32 experts: the static start gives every expert
   * 4 copies, so the hottest GPU has 32x the coldest's load. Step by step
   * the greedy cannot leave it (the first GPU with two replicated experts
   * doubles the replica all-reduce); the rebuild's new replica counts can,
   * in one plan whose moves are bounded by the copies it adds. */
  pl_env env = chk_env(1, 32, 128, 8, 3);
  double us0, us1;
  int plans0, moves0, plans1, moves1;
  double b0 = far_off_run("flexmoe:rebuild=0,restart=0", &env, 6, &us0, &plans0, &moves0);
  double b1 = far_off_run("flexmoe:restart=0", &env, 6, &us1, &plans1, &moves1);
  cr_log_info("rebuild off: balance %.3f, %.1f us, %d plans, %d moves; on: %.3f, %.1f us, %d "
              "plans, %d moves", b0, us0, plans0, moves0, b1, us1, plans1, moves1);
  cr_assert_eq(plans0, 0, "the incremental greedy alone finds no step that pays");
  cr_assert_gt(b0, 2.5);
  cr_assert_eq(plans1, 1, "one plan, then nothing left to gain");
  cr_assert_lt(b1, 1.6, "the rebuild balances");
  cr_assert_lt(us1, 0.8 * us0, "and is cheaper in the cost model");
  /* the rebuild keeps the total at G x ceil(E/G) = 128 copies: each of at
   * most 128 - 32 new copies replaces a dropped one; the polish adds at most
   * 4 changes per step (8 steps) */
  cr_assert_leq(moves1, 2 * (128 - 32) + 4 * 8, "moves %d", moves1);
}

Test(policies, flexmoe_rebuild_tries_a_second_budget_where_the_first_cannot_replicate) {
  /* 32 GPUs, 32 experts, 3 slots: ceil(E/G) = 1 slot per GPU gives every
   * expert exactly one copy, so that rebuild cannot replicate; one slot
   * more (64 copies) can. With one greedy step per plan and no polish,
   * only that second budget can give several experts replicas at once.
   * payback=0: the rebuild's copies pay back over the horizon here (the
   * second plan, no change rate yet), not within payback's 8 iterations,
   * and what is checked is the candidate, not that rule. */
  pl_env env = chk_env(1, 32, 32, 8, 3);
  const char *spec[2] = {"flexmoe:restart=0,max_steps=1,polish=0,rebuild=0,payback=0",
                         "flexmoe:restart=0,max_steps=1,polish=0,payback=0"};
  int replicated[2], copies[2];
  for (int k = 0; k < 2; k++) {
    int64_t *c = skewed_counts(32, 32);
    pl_policy *p = NULL;
    cr_assert_eq(pl_policy_create(&p, spec[k], &env, NULL, 0), PL_OK);
    pl_plan plan;
    pl_plan_init(&plan);
    for (int it = 0; it < 2; it++) {
      cr_assert_eq(pl_policy_plan(p, it, 0, NULL, &plan), PL_OK);
      cr_assert_eq(pl_policy_observe(p, it, 0, c), PL_OK);
    }
    const pl_placement *pl = pl_policy_placement(p, 0);
    replicated[k] = copies[k] = 0;
    for (int e = 0; e < 32; e++) {
      copies[k] += pl->nrep[e];
      replicated[k] += pl->nrep[e] > 1;
    }
    for (int g = 0; g < 32; g++)
      cr_assert_leq(pl->nhost[g], 3);
    pl_plan_fini(&plan);
    pl_policy_destroy(p);
    free(c);
  }
  cr_log_info("rebuild off: %d copies, %d experts replicated; on: %d, %d", copies[0],
              replicated[0], copies[1], replicated[1]);
  cr_assert_leq(replicated[0], 1, "one greedy step adds at most one replica");
  cr_assert_geq(replicated[1], 4, "the second budget replicates the hot experts at once");
  cr_assert_leq(copies[1], 64 + 2, "within G x (ceil(E/G) + 1) copies and one greedy step");
}

Test(policies, smartmoe_rebalances_only_on_its_period_and_never_replicates) {
  pl_env env = chk_env(1, 32, 8, 8, 4);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "smartmoe:period=3,predictor=last", &env, NULL, 0), PL_OK);
  int64_t c[8 * 32];
  for (int i = 0; i < 8 * 32; i++)
    c[i] = (i % 32) < 4 ? 2000 : 100; /* experts 0-3 all on GPU 0 */
  pl_plan plan;
  pl_plan_init(&plan);
  for (int it = 0; it < 4; it++) {
    cr_assert_eq(pl_policy_plan(p, it, 0, NULL, &plan), PL_OK);
    /* SmartMoE-AE's phase: before iteration i with (i + 1) % period == 0 */
    cr_assert_eq(plan.changed, it == 2, "iteration %d", it);
    cr_assert_eq(pl_policy_observe(p, it, 0, c), PL_OK);
  }
  const pl_placement *pl = pl_policy_placement(p, 0);
  for (int e = 0; e < 32; e++)
    cr_assert_eq(pl->nrep[e], 1);
  for (int e = 0; e < 4; e++) /* the four hot experts now on four GPUs */
    for (int f = e + 1; f < 4; f++)
      cr_assert_neq(pl->rep[e * 8], pl->rep[f * 8]);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

/* Placements alone (shadow=0): with temporaries (the default, shadow=3)
 * the oracle judges its candidates net of them, so its placement alone may
 * be slower than another under the exact cost. The same below. */
Test(policies, oracle_is_clairvoyant_free_and_never_worse_than_static) {
  pl_env env = chk_env(1, 32, 8, 8, 6);
  pl_policy *o = NULL, *s = NULL;
  cr_assert_eq(pl_policy_create(&o, "oracle:shadow=0", &env, NULL, 0), PL_OK);
  cr_assert_eq(pl_policy_create(&s, "static", &env, NULL, 0), PL_OK);
  cr_assert(pl_policy_ops_of(o)->clairvoyant);
  chk_loads loads;
  chk_loads_generate(&loads, 6, 1, 8, 32, 2048, 7);
  pl_plan plan;
  pl_plan_init(&plan);
  for (int it = 0; it < 6; it++) {
    const int64_t *c = chk_loads_at(&loads, it, 0);
    cr_assert_eq(pl_policy_plan(o, it, 0, c, &plan), PL_OK);
    if (plan.changed)
      cr_assert_eq(plan.uncharged, 1);
    double to = chk_layer_us(&env, pl_policy_placement(o, 0), c);
    double ts = chk_layer_us(&env, pl_policy_placement(s, 0), c);
    cr_assert_leq(to, ts + 1e-9, "iteration %d: oracle %.1f us > static %.1f us", it, to, ts);
  }
  chk_loads_free(&loads);
  pl_plan_fini(&plan);
  pl_policy_destroy(o);
  pl_policy_destroy(s);
}

/* Per-expert totals of counts[G*E] over the source GPUs. */
static void sum_sources(const int64_t *c, int G, int E, double *out) {
  for (int e = 0; e < E; e++) {
    out[e] = 0;
    for (int g = 0; g < G; g++)
      out[e] += (double)c[g * E + e];
  }
}

/* Layer time of EPLB's layout of `load` with `budget` slots per GPU,
 * refined by the greedy as the oracle refines its starts (one scenario,
 * migration weight 0, the oracle's slots, its default 8E steps). */
static double eplb_start_us(const pl_env *env, const double *load, const int64_t *c,
                            int budget) {
  pl_placement p;
  pl_greedy g;
  cr_assert_eq(pl_placement_init(&p, env->experts, env->cluster.gpus, env->cluster.slots),
               PL_OK);
  cr_assert_eq(pl_eplb_layout(&p, &env->cluster, load, budget, 0), PL_OK);
  cr_assert_eq(pl_greedy_init(&g, &env->cluster, &env->model, &env->profile, &p, load, 1,
                              env->cluster.slots, 0.0), PL_OK);
  cr_assert_eq(pl_greedy_run(&g, 8 * env->experts), PL_OK);
  pl_greedy_fini(&g);
  double us = chk_layer_us(env, &p, c);
  pl_placement_fini(&p);
  return us;
}

/*
 * The oracle takes the best of the starts docs/placement.md lists, so it
 * is at most each of them: here the two EPLB starts, rebuilt from the
 * documented budgets (ceil(E/G) + 2 slots per GPU, at most 6 replicas per
 * expert on average but at least ceil(E/G), at most `slots`; and ceil(E/G)
 * when that differs), each refined by the greedy, on every iteration of
 * skewed drifting loads (16,384 token slots per GPU) at shapes where G
 * divides E and where it does not. Each of the two starts is strictly the
 * best candidate on some of these iterations (measured: a budget one slot
 * larger for either start fails here on 6 shapes), so a start built with
 * another budget shows.
 */
Test(policies, oracle_is_at_most_each_of_its_documented_eplb_starts) {
  static const shape sh[] = {{8, 8, 8, 4},  {8, 8, 16, 6}, {4, 4, 12, 6}, {6, 3, 12, 5},
                             {8, 4, 8, 3},  {4, 2, 8, 6},  {6, 6, 16, 5}, {8, 4, 16, 5},
                             {4, 4, 8, 5},  {8, 8, 16, 5}, {8, 8, 8, 5},  {4, 4, 4, 4}};
  int compared = 0;
  for (size_t k = 0; k < sizeof(sh) / sizeof(sh[0]); k++) {
    int G = sh[k].gpus, E = sh[k].experts, S = sh[k].slots;
    pl_env env = chk_env(1, E, G, sh[k].gpn, S);
    int need = (E + G - 1) / G, dense = 6 * E / G, budget = need + 2;
    if (budget > (dense > need ? dense : need))
      budget = dense > need ? dense : need;
    if (budget > S)
      budget = S;
    chk_loads loads;
    chk_loads_generate(&loads, 4, 1, G, E, 16384, 700 + k);
    pl_policy *o = NULL;
    cr_assert_eq(pl_policy_create(&o, "oracle:shadow=0", &env, NULL, 0), PL_OK);
    pl_plan plan;
    pl_plan_init(&plan);
    double load[64];
    for (int it = 0; it < loads.iterations; it++) {
      const int64_t *c = chk_loads_at(&loads, it, 0);
      cr_assert_eq(pl_policy_plan(o, it, 0, c, &plan), PL_OK);
      double us = chk_layer_us(&env, pl_policy_placement(o, 0), c);
      sum_sources(c, G, E, load);
      int budgets[2] = {budget, need};
      for (int b = 0; b < (need < budget ? 2 : 1); b++, compared++) {
        double start = eplb_start_us(&env, load, c, budgets[b]);
        cr_assert_leq(us, start * (1 + 1e-12),
                      "G %d E %d slots %d iteration %d: oracle %.3f us > its EPLB start with "
                      "%d slots %.3f us", G, E, S, it, us, budgets[b], start);
      }
      cr_assert_eq(pl_policy_observe(o, it, 0, c), PL_OK);
    }
    pl_plan_fini(&plan);
    pl_policy_destroy(o);
    chk_loads_free(&loads);
  }
  cr_assert_gt(compared, 40);
}

/* SmartMoE-AE's greedy (fmoe/smartmoe/mapping.py), written independently
 * for E = n x G experts with one copy each: experts by load descending
 * (equal loads: the higher id first, the reversed stable argsort), each to
 * the least-loaded GPU with room (the lowest id among equals) unless its
 * current GPU has room and the same load; the result only if it lowers the
 * maximum GPU load. gpu[e] is the current GPU of e, updated in place;
 * returns whether it changed. */
static int smartmoe_reference(const double *load, int E, int G, int *gpu) {
  int n = E / G, order[64], cnt[64] = {0}, next[64];
  double old[64] = {0}, tok[64] = {0}, old_max = 0, new_max = 0;
  cr_assert(E <= 64 && G <= 64 && E % G == 0);
  for (int e = 0; e < E; e++) {
    old[gpu[e]] += load[e];
    order[e] = e;
  }
  for (int g = 0; g < G; g++)
    old_max = fmax(old_max, old[g]);
  for (int i = 0; i < E; i++) /* selection sort: plain, obviously right */
    for (int j = i + 1; j < E; j++) {
      int a = order[i], b = order[j];
      if (load[b] > load[a] || (load[b] == load[a] && b > a)) {
        order[i] = b;
        order[j] = a;
      }
    }
  for (int i = 0; i < E; i++) {
    int e = order[i], pos = -1;
    for (int g = 0; g < G; g++)
      if (cnt[g] < n && (pos < 0 || tok[g] < tok[pos]))
        pos = g;
    if (cnt[gpu[e]] < n && tok[gpu[e]] == tok[pos])
      pos = gpu[e];
    next[e] = pos;
    cnt[pos]++;
    tok[pos] += load[e];
    new_max = fmax(new_max, tok[pos]);
  }
  if (!(old_max > new_max))
    return 0;
  int changed = 0;
  for (int e = 0; e < E; e++) {
    changed |= gpu[e] != next[e];
    gpu[e] = next[e];
  }
  return changed;
}

Test(policies, smartmoe_replaces_before_every_tenth_iteration_on_the_two_before) {
  /* SmartMoE-AE, --dynamic-freq 10: before the gate of iterations 9, 19,
   * ... (0-based), on the mean of iterations 7, 8 (17, 18, ...). Random
   * skewed counts make every window give its own layout: the placement
   * must be the reference greedy's on exactly that window, not on one
   * iteration more or less, nor on one that includes the iteration itself
   * (its counts come after the plan). */
  enum { G = 8, E = 32, IT = 21 };
  pl_env env = chk_env(1, E, G, 8, 4);
  chk_loads loads;
  chk_loads_generate(&loads, IT, 1, G, E, 4096, 77);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "smartmoe", &env, NULL, 0), PL_OK);
  cr_assert_str_eq(pl_policy_spec(p), "smartmoe:period=10,slots=0,background=1,predictor=window,"
                                      "alpha=0.5,window=2");
  int gpu[E];
  for (int e = 0; e < E; e++)
    gpu[e] = pl_policy_placement(p, 0)->rep[e * G];
  double sums[IT][E]; /* per iteration, summed over sources */
  for (int it = 0; it < IT; it++)
    sum_sources(chk_loads_at(&loads, it, 0), G, E, sums[it]);
  pl_plan plan;
  pl_plan_init(&plan);
  int replans = 0;
  for (int it = 0; it < IT; it++) {
    cr_assert_eq(pl_policy_plan(p, it, 0, NULL, &plan), PL_OK);
    if (it == 9 || it == 19) {
      /* the reference on windows (a, b]: only (it-3, it-1] is the one */
      int want[E], other[E], lo[3] = {it - 3, it - 2, it - 2}, hi[3] = {it - 1, it - 1, it};
      double mean[E];
      for (int w = 0; w < 3; w++) {
        for (int e = 0; e < E; e++) {
          double s = 0;
          for (int k = lo[w]; k <= hi[w]; k++)
            s += sums[k][e];
          mean[e] = s / (hi[w] - lo[w] + 1);
        }
        int *g = w == 1 ? want : other;
        memcpy(g, gpu, sizeof gpu);
        smartmoe_reference(mean, E, G, g);
        if (w != 1) { /* the other windows give other layouts: the test can tell */
          int same = 1;
          for (int e = 0; e < E; e++)
            same &= pl_placement_has(pl_policy_placement(p, 0), e, g[e]);
          cr_assert_not(same, "iteration %d: window %d..%d gives the same layout", it, lo[w],
                        hi[w]);
        }
      }
      cr_assert(plan.changed, "iteration %d: no re-placement", it);
      for (int e = 0; e < E; e++) {
        cr_assert_eq(pl_policy_placement(p, 0)->nrep[e], 1);
        cr_assert(pl_placement_has(pl_policy_placement(p, 0), e, want[e]),
                  "iteration %d: expert %d not on GPU %d as on the mean of %d and %d", it, e,
                  want[e], it - 2, it - 1);
      }
      memcpy(gpu, want, sizeof gpu);
      replans++;
    } else {
      cr_assert_not(plan.changed, "iteration %d re-placed", it);
    }
    cr_assert_eq(pl_policy_observe(p, it, 0, chk_loads_at(&loads, it, 0)), PL_OK);
  }
  cr_assert_eq(replans, 2);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  chk_loads_free(&loads);
}

Test(policies, smartmoe_breaks_equal_loads_by_the_higher_expert_id) {
  /* 4 experts on 2 GPUs, 2 slots: 0 and 1 (on GPU 0) hot and equal, 2 and
   * 3 (on GPU 1) cold and equal. Higher id first: 1 stays on GPU 0 (both
   * empty, its own wins), 0 goes to GPU 1, 3 stays on GPU 1 (equal loads,
   * its own wins), 2 fills GPU 0. Lower id first would keep 0 and 2 and
   * move 1 and 3. */
  pl_env env = chk_env(1, 4, 2, 2, 2);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "smartmoe:period=1,window=1", &env, NULL, 0), PL_OK);
  int64_t c[2 * 4] = {500, 500, 10, 10, 500, 500, 10, 10};
  double load[4];
  sum_sources(c, 2, 4, load);
  int gpu[4] = {0, 0, 1, 1};
  cr_assert(smartmoe_reference(load, 4, 2, gpu));
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, NULL, &plan), PL_OK);
  cr_assert_eq(pl_policy_observe(p, 0, 0, c), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 1, 0, NULL, &plan), PL_OK);
  cr_assert(plan.changed);
  const pl_placement *pl = pl_policy_placement(p, 0);
  for (int e = 0; e < 4; e++)
    cr_assert(pl_placement_has(pl, e, gpu[e]), "expert %d not on GPU %d", e, gpu[e]);
  cr_assert(pl_placement_has(pl, 1, 0) && pl_placement_has(pl, 0, 1), "tie order");
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

/* The placement of layer 0 after running `spec` on `loads` up to and
 * including the plan of iteration `last` (copied into *out, initialised). */
static void eplb_after(const char *spec, const pl_env *env, const chk_loads *loads, int last,
                       pl_placement *out) {
  pl_policy *p = NULL;
  char err[256] = "";
  cr_assert_eq(pl_policy_create(&p, spec, env, err, sizeof err), PL_OK, "%s: %s", spec, err);
  pl_plan plan;
  pl_plan_init(&plan);
  for (int it = 0; it <= last; it++) {
    cr_assert_eq(pl_policy_plan(p, it, 0, NULL, &plan), PL_OK);
    if (it < last)
      cr_assert_eq(pl_policy_observe(p, it, 0, chk_loads_at(loads, it, 0)), PL_OK);
  }
  const pl_placement *pl = pl_policy_placement(p, 0);
  cr_assert_eq(pl_placement_init(out, pl->experts, pl->gpus, pl->slots), PL_OK);
  cr_assert_eq(pl_placement_copy(out, pl), PL_OK);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}

Test(policies, eplb_starts_from_upstreams_trivial_layout) {
  /* vLLM and SGLang: physical expert k is expert k mod E, on GPU k / slots */
  pl_env env = chk_env(1, 32, 16, 8, 6); /* slots: ceil(32/16) + 1 = 3 */
  chk_loads loads;
  chk_loads_generate(&loads, 1, 1, 16, 32, 1024, 5);
  pl_placement a, b, st;
  eplb_after("eplb", &env, &loads, 0, &a);
  for (int g = 0; g < 16; g++) {
    cr_assert_eq(a.nhost[g], 3);
    for (int j = 0; j < 3; j++)
      cr_assert(pl_placement_has(&a, (3 * g + j) % 32, g), "GPU %d lacks expert %d", g,
                (3 * g + j) % 32);
  }
  /* init=static: the static layout, the redundant slots empty */
  eplb_after("eplb:init=static", &env, &loads, 0, &b);
  cr_assert_eq(pl_placement_init(&st, 32, 16, 6), PL_OK);
  cr_assert_eq(pl_placement_static(&st), PL_OK);
  cr_assert(pl_placement_equal(&b, &st));
  pl_placement_fini(&a);
  pl_placement_fini(&b);
  pl_placement_fini(&st);
  chk_loads_free(&loads);
}

Test(policies, eplb_is_hierarchical_exactly_when_the_expert_groups_divide_by_the_nodes) {
  /* eplb.py rebalance_experts: hierarchical iff num_groups % num_nodes == 0.
   * A model without expert groups counts 1 (vLLM): global on 2 nodes. */
  pl_env env = chk_env(1, 32, 16, 8, 6);
  chk_loads loads;
  chk_loads_generate(&loads, 3, 1, 16, 32, 4096, 11);
  pl_placement autog, global, hier4, auto4, auto1;
  eplb_after("eplb:period=2", &env, &loads, 2, &autog);
  eplb_after("eplb:mode=global,period=2", &env, &loads, 2, &global);
  eplb_after("eplb:mode=hierarchical,groups=4,period=2", &env, &loads, 2, &hier4);
  eplb_after("eplb:groups=4,period=2", &env, &loads, 2, &auto4);
  cr_assert(pl_placement_equal(&autog, &global), "no groups on 2 nodes: global");
  cr_assert(pl_placement_equal(&auto4, &hier4), "4 groups on 2 nodes: hierarchical");
  cr_assert_not(pl_placement_equal(&global, &hier4), "the test needs the modes to differ");
  /* hierarchical keeps each expert's replicas in one node; here global does not */
  int spread_h = 0, spread_g = 0;
  for (int e = 0; e < 32; e++) {
    int nh[2] = {0, 0}, ng[2] = {0, 0};
    for (int g = 0; g < 16; g++) {
      nh[g / 8] += pl_placement_has(&hier4, e, g);
      ng[g / 8] += pl_placement_has(&global, e, g);
    }
    spread_h += nh[0] && nh[1];
    spread_g += ng[0] && ng[1];
  }
  cr_assert_eq(spread_h, 0);
  cr_assert_gt(spread_g, 0);
  /* one node: no groups means one group on one node, the global layout */
  pl_env one = chk_env(1, 32, 8, 8, 6);
  chk_loads l8;
  chk_loads_generate(&l8, 3, 1, 8, 32, 4096, 12);
  pl_placement g8;
  eplb_after("eplb:period=2", &one, &l8, 2, &auto1);
  eplb_after("eplb:mode=global,period=2", &one, &l8, 2, &g8);
  cr_assert(pl_placement_equal(&auto1, &g8));
  /* groups must divide the experts */
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "eplb:groups=3", &env, NULL, 0), PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "eplb:mode=hierarchical,groups=1", &env, NULL, 0), PL_EPARAM);
  cr_assert_null(p);
  pl_placement *all[] = {&autog, &global, &hier4, &auto4, &auto1, &g8};
  for (int i = 0; i < 6; i++)
    pl_placement_fini(all[i]);
  chk_loads_free(&loads);
  chk_loads_free(&l8);
}


/* The oracle is a heuristic (pl_greedy from several starts and a local
 * search, the best under its exact cost), not an exact optimum:
 * chk_oracle_bounds checks it is a bound on random small cases, for these
 * policies here and for flexmoe, hierarchical eplb and smartmoe in
 * test_oracle_bound.c. */
Test(policies, oracle_is_at_most_static_fastermoe_and_global_eplb_on_random_cases) {
  static const char *const rivals[] = {"static", "fastermoe", "fastermoe:lookahead=0",
                                       "eplb:period=2", "eplb:period=1,predictor=last",
                                       "eplb:mode=global,period=3", NULL};
  cr_assert_gt(chk_oracle_bounds(rivals), 700);
}

/* oracle:shadow=1 makes its temporaries through the policy contract as
 * flexmoe's shadow=1 decides them: pl_temps_decide with flexmoe's
 * configuration (margin 1, no cap, the full search) on the oracle's own
 * serving placement and the iteration's counts, within the oracle's slots,
 * the gradients' way back hidden by pl_grad_hide_us of the oracle's exact
 * layer times (layer 0: nothing below; layer 1: layer 0's non-MoE work and
 * half of its exact time). shadow_net=0 keeps shadow=0's placements, and
 * shadow=0 makes none. */
static void oracle_temps_case(const char *spec, int both) {
  pl_env env = chk_env(2, 16, 8, 4, 6);
  chk_loads loads;
  chk_loads_generate(&loads, 10, 2, 8, 16, 4096, 4242);
  pl_policy *o0 = NULL, *o1 = NULL;
  cr_assert_eq(pl_policy_create(&o0, "oracle:shadow=0", &env, NULL, 0), PL_OK);
  cr_assert_eq(pl_policy_create(&o1, spec, &env, NULL, 0), PL_OK);
  cr_assert(pl_policy_has_temporaries(o1));
  pl_plan plan;
  pl_plan_init(&plan);
  pl_temps t, u, w;
  cr_assert_eq(pl_temps_init(&t, 16, 8, 6), PL_OK);
  cr_assert_eq(pl_temps_init(&u, 16, 8, 6), PL_OK);
  cr_assert_eq(pl_temps_init(&w, 16, 8, 6), PL_OK);
  int fast_won = 0, lazy_won = 0;
  double share = fmin(0.5, env.profile.bwd_ratio / (1.0 + env.profile.bwd_ratio)), lay0 = 0;
  int made = 0;
  for (int it = 0; it < loads.iterations; it++)
    for (int ly = 0; ly < 2; ly++) {
      const int64_t *c = chk_loads_at(&loads, it, ly);
      cr_assert_eq(pl_policy_plan(o0, it, ly, c, &plan), PL_OK);
      cr_assert_eq(pl_policy_plan(o1, it, ly, c, &plan), PL_OK);
      const pl_placement *p = pl_policy_serving(o1, ly);
      cr_assert(pl_placement_equal(p, pl_policy_serving(o0, ly)), "it %d layer %d", it, ly);
      cr_assert_eq(pl_policy_temporaries(o0, ly, c, &t), PL_OK);
      cr_assert_eq(t.n, 0, "shadow=0 made temporaries");
      pl_temps_cfg cfg = {.margin = 1.0,
                          .max_temps = 0,
                          .grad_hide_us = ly == 0 ? 0 : env.profile.nonmoe_us + share * lay0,
                          .search = PL_TEMPS_SEARCH_FULL};
      cfg.search = both ? PL_TEMPS_SEARCH_FAST : PL_TEMPS_SEARCH_FULL;
      cr_assert_eq(pl_temps_decide(&u, &cfg, &env.cluster, &env.model, &env.profile, p,
                                   pl_policy_placement(o1, ly), c, env.cluster.slots),
                   PL_OK);
      double fast = u.n > 0 ? u.gain_us - u.cost_us : 0.0;
      if (both) { /* shadow=5: LAZY's unless FAST's is predicted to save more */
        cfg.search = PL_TEMPS_SEARCH_LAZY;
        cr_assert_eq(pl_temps_decide(&w, &cfg, &env.cluster, &env.model, &env.profile, p,
                                     pl_policy_placement(o1, ly), c, env.cluster.slots),
                     PL_OK);
        double lazy = w.n > 0 ? w.gain_us - w.cost_us : 0.0;
        fast_won += fast > lazy && w.n != u.n;
        lazy_won += fast <= lazy && w.n != u.n;
        if (fast <= lazy)
          cr_assert_eq(pl_temps_decide(&u, &cfg, &env.cluster, &env.model, &env.profile, p,
                                       pl_policy_placement(o1, ly), c, env.cluster.slots),
                       PL_OK);
      }
      cr_assert_eq(pl_policy_temporaries(o1, ly, c, &t), PL_OK);
      cr_assert_eq(t.n, u.n, "it %d layer %d: %d temporaries, flexmoe's decision %d", it, ly,
                   t.n, u.n);
      cr_assert(t.n == 0 || memcmp(t.temp, u.temp, (size_t)t.n * sizeof(pl_temp)) == 0,
                "it %d layer %d: other temporaries", it, ly);
      made += t.n;
      if (ly == 0)
        lay0 = chk_layer_us(&env, p, c);
      cr_assert_eq(pl_policy_observe(o0, it, ly, c), PL_OK);
      cr_assert_eq(pl_policy_observe(o1, it, ly, c), PL_OK);
    }
  cr_assert_gt(made, 0, "no temporaries: the case checks nothing");
  if (both) /* the two searches differ on this case, each wins somewhere */
    cr_assert(fast_won > 0 && lazy_won > 0, "%s: FAST won %d, LAZY %d", spec, fast_won, lazy_won);
  pl_temps_fini(&t);
  pl_temps_fini(&u);
  pl_temps_fini(&w);
  pl_plan_fini(&plan);
  pl_policy_destroy(o0);
  pl_policy_destroy(o1);
  chk_loads_free(&loads);
}

Test(policies, oracle_shadow_makes_the_temporaries_flexmoe_would_on_its_placement) {
  oracle_temps_case("oracle:shadow=1,shadow_net=0", 0);
}

/* shadow=5: per layer and iteration LAZY's decision (shadow=3's) unless
 * FAST's (shadow=4's) is predicted to save more. */
Test(policies, oracle_shadow_5_takes_the_better_of_lazy_and_fast) {
  oracle_temps_case("oracle:shadow=5,shadow_net=0", 1);
}

/* One layer's routing of an iteration as the simulator serves it:
 * pl_policy_route_temporaries (t: the temporaries) into r. */
static void route_one(pl_policy *p, int layer, const int64_t *c, pl_temps *t, pl_routing *r) {
  cr_assert_eq(pl_policy_route_temporaries(p, layer, c, t, r), PL_OK, "%s layer %d",
               pl_policy_spec(p), layer);
}

/* Whether routings a and b (G x E, hose sums kept) hold the same numbers. */
static int same_routing(const pl_routing *a, const pl_routing *b, int G, int E) {
  return a->total == b->total && a->dropped == b->dropped &&
         !memcmp(a->load, b->load, (size_t)G * E * sizeof(int64_t)) &&
         !memcmp(a->gpu_load, b->gpu_load, (size_t)G * sizeof(int64_t)) &&
         !memcmp(a->hose, b->hose, 4 * (size_t)G * sizeof(int64_t));
}

/*
 * pl_policy_route_ready (issue 19: the simulator routes a layer on a helper
 * thread while the layers above it plan): a policy driven in the
 * simulator's streamed order (per layer: plan, observe, and the layer's
 * temporaries and routing at once while it and every layer below say
 * route_ready; the rest after the last plan) decides the same temporaries
 * and routes the same tokens, bit for bit, as one driven in the plain order
 * (every layer's plan and observe, then every layer's routing), for every
 * policy. static and the policies without capacity and temporaries are
 * always ready, capacity never (its op may read anything), flexmoe's
 * layer 1 not before any layer time is estimated (iteration 0) and at
 * least once after.
 */
Test(policies, a_layer_routed_as_soon_as_route_ready_routes_as_after_every_plan,
     .timeout = 120) {
  enum { L = 4, G = 16, GPN = 8, E = 32, S = 4, IT = 10 };
  pl_env env = chk_env(L, E, G, GPN, S);
  chk_loads ld;
  chk_loads_generate(&ld, IT, L, G, E, 4096, 33);
  for (int i = 0; specs[i]; i++) {
    pl_policy *a = NULL, *b = NULL;
    char err[256] = "";
    cr_assert_eq(pl_policy_create(&a, specs[i], &env, err, sizeof err), PL_OK, "%s", err);
    cr_assert_eq(pl_policy_create(&b, specs[i], &env, err, sizeof err), PL_OK, "%s", err);
    const pl_policy_ops *ops = pl_policy_ops_of(a);
    int plain = !ops->capacity && !ops->temporaries, fx = !strcmp(ops->name, "flexmoe");
    pl_plan pa, pb;
    pl_plan_init(&pa);
    pl_plan_init(&pb);
    pl_temps ta[L], tb[L];
    pl_routing ra[L], rb[L];
    for (int l = 0; l < L; l++) {
      cr_assert_eq(pl_temps_init(&ta[l], E, G, S), PL_OK);
      cr_assert_eq(pl_temps_init(&tb[l], E, G, S), PL_OK);
      cr_assert_eq(pl_routing_init(&ra[l], G, E, 0), PL_OK);
      cr_assert_eq(pl_routing_init(&rb[l], G, E, 0), PL_OK);
    }
    int streamed_above_0 = 0;
    for (int it = 0; it < IT; it++) {
      int released = 0;
      for (int l = 0; l < L; l++) {
        const int64_t *c = chk_loads_at(&ld, it, l);
        cr_assert_eq(pl_policy_plan(a, it, l, c, &pa), PL_OK);
        cr_assert_eq(pl_policy_observe(a, it, l, c), PL_OK);
        cr_assert_eq(pl_policy_plan(b, it, l, c, &pb), PL_OK);
        cr_assert_eq(pl_policy_observe(b, it, l, c), PL_OK);
        int ready = pl_policy_route_ready(b, l);
        if (plain)
          cr_assert_eq(ready, 1, "%s layer %d", specs[i], l);
        if (ops->capacity)
          cr_assert_eq(ready, 0, "%s layer %d", specs[i], l);
        if (fx && it == 0 && l == 1)
          cr_assert_eq(ready, 0, "%s: layer 1 ready before any layer time", specs[i]);
        if (released == l && ready) {
          route_one(b, l, c, &tb[l], &rb[l]);
          released++;
          streamed_above_0 |= l > 0;
        }
      }
      for (int l = 0; l < L; l++)
        route_one(a, l, chk_loads_at(&ld, it, l), &ta[l], &ra[l]);
      for (int l = released; l < L; l++)
        route_one(b, l, chk_loads_at(&ld, it, l), &tb[l], &rb[l]);
      for (int l = 0; l < L; l++) {
        cr_assert(ta[l].n == tb[l].n &&
                      !memcmp(ta[l].temp, tb[l].temp, (size_t)ta[l].n * sizeof(pl_temp)),
                  "%s iteration %d layer %d: other temporaries when streamed", specs[i], it, l);
        cr_assert(same_routing(&ra[l], &rb[l], G, E),
                  "%s iteration %d layer %d: another routing when streamed", specs[i], it, l);
      }
    }
    if (fx)
      cr_assert(streamed_above_0, "%s: no layer above 0 was ever ready", specs[i]);
    for (int l = 0; l < L; l++) {
      pl_temps_fini(&ta[l]);
      pl_temps_fini(&tb[l]);
      pl_routing_fini(&ra[l]);
      pl_routing_fini(&rb[l]);
    }
    pl_plan_fini(&pa);
    pl_plan_fini(&pb);
    pl_policy_destroy(a);
    pl_policy_destroy(b);
  }
  chk_loads_free(&ld);
  cr_assert_eq(pl_policy_route_ready(NULL, 0), 0);
}

/*
 * pl_policy_ahead (issue 19: flexmoe's restart greedy worked out on a
 * helper thread after a layer's observation, taken by the next plan when
 * it runs on the same scenarios): three handles of each flexmoe variant
 * fed the same loads plan move for move alike: one never asked ahead, one
 * asked after each observation (the simulator's order), one asked before
 * each observation instead, on the estimate the observation then replaces
 * (the plan must see that its scenarios changed and run its own). Every
 * other policy takes the call as a no-op, and a bad call is refused.
 */
Test(policies, plans_are_the_same_with_the_restart_worked_out_ahead, .timeout = 120) {
  static const char *const fx[] = {"flexmoe", "flexmoe:restart=1,scenarios=3",
                                   "flexmoe:restart=1,noise=2,threshold=1.0",
                                   "flexmoe:restart=1,restart_steps=2", "flexmoe:restart=0",
                                   "static", "eplb:period=2", NULL};
  enum { L = 2, G = 16, GPN = 8, E = 32, S = 4, IT = 14 };
  pl_env env = chk_env(L, E, G, GPN, S);
  chk_loads ld;
  chk_loads_generate(&ld, IT, L, G, E, 4096, 57);
  for (int i = 0; fx[i]; i++) {
    pl_policy *p[3] = {NULL, NULL, NULL};
    pl_plan plan[3];
    char err[256] = "";
    for (int h = 0; h < 3; h++) {
      cr_assert_eq(pl_policy_create(&p[h], fx[i], &env, err, sizeof err), PL_OK, "%s", err);
      pl_plan_init(&plan[h]);
    }
    int changed = 0;
    for (int it = 0; it < IT; it++)
      for (int l = 0; l < L; l++) {
        const int64_t *c = chk_loads_at(&ld, it, l);
        for (int h = 0; h < 3; h++)
          cr_assert_eq(pl_policy_plan(p[h], it, l, c, &plan[h]), PL_OK, "%s", fx[i]);
        cr_assert_eq(pl_policy_ahead(p[2], it, l), PL_OK); /* stale: before the observation */
        for (int h = 0; h < 3; h++)
          cr_assert_eq(pl_policy_observe(p[h], it, l, c), PL_OK);
        cr_assert_eq(pl_policy_ahead(p[1], it, l), PL_OK);
        for (int h = 1; h < 3; h++) {
          cr_assert(chk_same_plan(&plan[0], &plan[h]),
                    "%s iteration %d layer %d: another plan with the restart asked ahead (%s)",
                    fx[i], it, l, h == 1 ? "after the observation" : "before it");
          cr_assert(pl_placement_equal(pl_policy_placement(p[0], l), pl_policy_placement(p[h], l)));
        }
        changed += plan[0].changed;
      }
    if (!strncmp(fx[i], "flexmoe", 7))
      cr_assert_gt(changed, 0, "%s: the test needs plans", fx[i]);
    cr_assert_eq(pl_policy_ahead(p[0], 0, L), PL_EINVAL);
    cr_assert_eq(pl_policy_ahead(p[0], -1, 0), PL_EINVAL);
    for (int h = 0; h < 3; h++) {
      pl_plan_fini(&plan[h]);
      pl_policy_destroy(p[h]);
    }
  }
  chk_loads_free(&ld);
  cr_assert_eq(pl_policy_ahead(NULL, 0, 0), PL_EINVAL);
}

/* restart_backoff's rule (pl_backoff, issue 19): after m runs in a row that
 * lost, the next min(m, cap) chances go without the search; a win starts
 * over; cap 0 runs it at every chance. With cap 4 and only losses the
 * search runs at chances 1, 3, 6, 10, 15, then every fifth. */
Test(policies, restart_backoff_skips_more_chances_after_each_loss_up_to_its_cap) {
  pl_backoff b = {0};
  int ran[40], n = 0;
  for (int chance = 1; chance <= 40; chance++)
    if (pl_backoff_take(&b)) {
      ran[n++] = chance;
      pl_backoff_done(&b, 0, 4);
    }
  static const int want[] = {1, 3, 6, 10, 15, 20, 25, 30, 35, 40};
  cr_assert_eq(n, 10, "%d runs in 40 chances", n);
  for (int k = 0; k < n; k++)
    cr_assert_eq(ran[k], want[k], "run %d at chance %d (want %d)", k, ran[k], want[k]);
  /* a win: the next chance runs it again, and the losses count from 1 */
  cr_assert_eq(pl_backoff_take(&b) + pl_backoff_take(&b) + pl_backoff_take(&b) +
                   pl_backoff_take(&b) + pl_backoff_take(&b),
               1);
  pl_backoff_done(&b, 1, 4);
  cr_assert_eq(b.miss, 0);
  cr_assert(pl_backoff_take(&b));
  pl_backoff_done(&b, 0, 4);
  cr_assert(!pl_backoff_take(&b));
  cr_assert(pl_backoff_take(&b));
  /* cap 0: every chance */
  pl_backoff z = {0};
  for (int chance = 0; chance < 10; chance++) {
    cr_assert(pl_backoff_take(&z));
    pl_backoff_done(&z, 0, 0);
  }
}

/* The restart greedy's placement from the static layout after at most
 * `steps` steps on the loads `load`, worked out apart from the policy
 * (pl_greedy alone, no migration term, as restart_run); the steps it took
 * in *took. */
static void restart_by_hand(const pl_env *env, const double *load, int steps, pl_placement *p,
                            int *took) {
  cr_assert_eq(pl_placement_init(p, env->experts, env->cluster.gpus, env->cluster.slots), PL_OK);
  cr_assert_eq(pl_placement_static(p), PL_OK);
  pl_greedy g;
  cr_assert_eq(pl_greedy_init(&g, &env->cluster, &env->model, &env->profile, p, load, 1,
                              env->cluster.slots, 0.0),
               PL_OK);
  cr_assert_eq(pl_greedy_run(&g, steps), PL_OK);
  *took = g.steps;
  pl_greedy_fini(&g);
}

/* restart_steps's rule (issue 19): a layer's restart greedy runs at most
 * restart_steps steps (-1, the default: max_steps) while its last restart
 * lost, 4 x max_steps otherwise (its first, one after a win; 0: always). With max_steps=1, a restart
 * every plan (restart_backoff=0) and nothing but the two greedies
 * (rebuild, guard, payback, shadow off): the first plan, from the static
 * layout, takes the restart's 4 steps over the one incremental step
 * whatever restart_steps; the second, on the same loads, takes the
 * incremental step on top of it, the greedy's 5th (the restart reaches the
 * 4 steps' placement again: it loses); the third, on loads whose hot experts are others, takes
 * the restart again, now of restart_steps steps: each plan must be the
 * placement the greedy reaches from the static layout in exactly that many
 * steps (each step lowers the objective, so K and K + 1 steps differ). */
Test(policies, restart_steps_caps_a_layers_restarts_after_one_that_lost) {
  enum { G = 16, GPN = 8, E = 32, S = 4 };
  pl_env env = chk_env(1, E, G, GPN, S);
  chk_loads ld;
  chk_loads_generate(&ld, 1, 1, G, E, 65536, 91);
  int64_t ca[G * E], cb[G * E]; /* loads A, and B: A with the experts in reverse */
  memcpy(ca, chk_loads_at(&ld, 0, 0), sizeof ca);
  for (int u = 0; u < G; u++)
    for (int e = 0; e < E; e++)
      cb[u * E + e] = ca[u * E + E - 1 - e];
  double la[E], lb[E]; /* the estimates: the last counts */
  pl_sum_sources(ca, G, E, la);
  pl_sum_sources(cb, G, E, lb);
  static const struct {
    const char *steps;
    int want;
  } cases[] = {{"2", 2}, {"3", 3}, {"0", 4}, {"-1", 1}}; /* 0: 4 x max_steps=1; -1: max_steps */
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char spec[256], err[256] = "";
    snprintf(spec, sizeof spec,
             "flexmoe:restart=1,max_steps=1,rebuild=0,guard=0,payback=0,charge=0,lifetime=0,"
             "horizon=1000000,threshold=1.0,shadow=0,weights_first=0,restart_backoff=0,"
             "restart_steps=%s",
             cases[i].steps);
    pl_policy *p = NULL;
    pl_plan plan;
    pl_plan_init(&plan);
    cr_assert_eq(pl_policy_create(&p, spec, &env, err, sizeof err), PL_OK, "%s", err);
    const int64_t *seq[3] = {ca, ca, cb};
    const double *est[3] = {la, la, lb};
    pl_placement want, more;
    int took = 0;
    for (int it = 0; it < 3; it++) {
      cr_assert_eq(pl_policy_observe(p, it, 0, seq[it]), PL_OK);
      cr_assert_eq(pl_policy_plan(p, it + 1, 0, seq[it], &plan), PL_OK);
      cr_assert(plan.changed, "restart_steps=%s: no plan %d", cases[i].steps, it + 1);
      int steps = it == 2 ? cases[i].want : 4;
      restart_by_hand(&env, est[it], steps, &want, &took);
      restart_by_hand(&env, est[it], steps + 1, &more, &took);
      cr_assert_eq(took, steps + 1, "the case needs a restart that runs on (%d steps)", took);
      cr_assert_eq(pl_placement_equal(&plan.placement, &want), it != 1,
                   "restart_steps=%s, plan %d: %s the restart greedy's after %d steps",
                   cases[i].steps, it + 1, it != 1 ? "not" : "still", steps);
      /* plan 2: the incremental step from the restart's 4 is the greedy's 5th */
      cr_assert_eq(pl_placement_equal(&plan.placement, &more), it == 1, "plan %d", it + 1);
      pl_placement_fini(&want);
      pl_placement_fini(&more);
    }
    pl_plan_fini(&plan);
    pl_policy_destroy(p);
  }
  chk_loads_free(&ld);
}

/* pl_backoff_steps: the capped budget exactly while the last run lost. */
Test(policies, restart_steps_budget_is_capped_only_while_the_last_run_lost) {
  pl_backoff b = {0};
  cr_assert_eq(pl_backoff_steps(&b, 256, 32), 256); /* the first run */
  pl_backoff_done(&b, 0, 4);
  cr_assert_eq(pl_backoff_steps(&b, 256, 32), 32);
  pl_backoff_done(&b, 0, 4);
  cr_assert_eq(pl_backoff_steps(&b, 256, 32), 32);
  cr_assert_eq(pl_backoff_steps(&b, 256, 0), 256); /* 0: no cap */
  pl_backoff_done(&b, 1, 4);
  cr_assert_eq(pl_backoff_steps(&b, 256, 32), 256); /* after a win */
}
