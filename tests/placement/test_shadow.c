/* Temporaries on the iteration's own counts (pl_shadow.h): the decision's
 * invariants on hand cases and random inputs, and flexmoe's shadow=1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pl_check.h"
#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "placement/pl_route.h"
#include "placement/pl_shadow.h"

static const pl_temps_cfg cfg1 = {.margin = 1.0, .max_temps = 0};

/* Independent check of one decision: temporaries on GPUs that had a free
 * slot in serving and current, held from a planned replica, one per
 * (expert, GPU), the placement = serving + them, tokens conserved by
 * pl_route on it, gain > cost, and the predicted time lowered by exactly
 * gain - cost. */
static void check_decision(pl_temps *t, const pl_env *env, const pl_placement *sv,
                           const pl_placement *cur, const int64_t *counts, int slots) {
  int G = env->cluster.gpus, E = env->experts;
  if (t->n == 0) {
    cr_assert_eq(t->gain_us, 0.0);
    cr_assert_eq(t->cost_us, 0.0);
    return;
  }
  cr_assert_eq(pl_placement_check(&t->placement), PL_OK);
  int *extra = calloc((size_t)G, sizeof(int));
  for (int k = 0; k < t->n; k++) {
    const pl_temp *x = &t->temp[k];
    cr_assert(pl_placement_has(sv, x->expert, x->from), "holder %d of %d is planned", x->from,
              x->expert);
    cr_assert(!pl_placement_has(sv, x->expert, x->to), "temporary %d on %d duplicates", x->expert,
              x->to);
    cr_assert(pl_placement_has(&t->placement, x->expert, x->to));
    for (int j = 0; j < k; j++)
      cr_assert(t->temp[j].expert != x->expert || t->temp[j].to != x->to, "twice");
    extra[x->to]++;
  }
  for (int g = 0; g < G; g++) {
    int used = sv->nhost[g];
    if (cur)
      for (int j = 0; j < cur->nhost[g]; j++)
        used += !pl_placement_has(sv, cur->host[g * cur->slots + j], g);
    cr_assert_leq(used + extra[g], slots, "GPU %d: %d used + %d temporaries > %d slots", g,
                  used, extra[g], slots);
    cr_assert_eq(t->placement.nhost[g], sv->nhost[g] + extra[g]);
  }
  free(extra);
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, G, E, 0), PL_OK);
  cr_assert_eq(pl_route(&t->placement, &env->cluster, counts, -1, &r), PL_OK);
  for (int x = 0; x < E; x++) {
    int64_t in = 0, out = 0;
    for (int g = 0; g < G; g++) {
      in += counts[(size_t)g * E + x];
      out += r.load[(size_t)g * E + x];
    }
    cr_assert_eq(in, out, "expert %d: %lld tokens in, %lld routed", x, (long long)in,
                 (long long)out);
  }
  pl_routing_fini(&r);
  cr_assert_gt(t->gain_us, t->cost_us, "gain %.3f us <= cost %.3f us", t->gain_us, t->cost_us);
  cr_assert_geq(t->cost_us, 0.0);
  /* the predicted times, recomputed from scratch on a second pl_temps */
  pl_temps u;
  cr_assert_eq(pl_temps_init(&u, E, G, sv->slots), PL_OK);
  double before, after;
  cr_assert_eq(pl_temps_predict_us(&u, &env->cluster, &env->model, &env->profile, sv, NULL, 0,
                                   counts, &before), PL_OK);
  cr_assert_eq(pl_temps_predict_us(&u, &env->cluster, &env->model, &env->profile,
                                   &t->placement, t->temp, t->n, counts, &after), PL_OK);
  cr_assert_lt(after, before);
  cr_assert_float_eq(before - after, t->gain_us - t->cost_us, 1e-6 * before,
                     "saving %.6f us, gain - cost %.6f us", before - after,
                     t->gain_us - t->cost_us);
  pl_temps_fini(&u);
}

/* 2 nodes x 4 GPUs, 8 experts one per GPU, 3 slots: expert 0 gets most
 * tokens from every source. */
static void hot_case(pl_env *env, pl_placement *sv, int64_t *counts) {
  *env = chk_env(1, 8, 8, 4, 3);
  cr_assert_eq(pl_placement_init(sv, 8, 8, 3), PL_OK);
  cr_assert_eq(pl_placement_static(sv), PL_OK);
  for (int g = 0; g < 8; g++)
    for (int x = 0; x < 8; x++)
      counts[g * 8 + x] = x == 0 ? 3000 : 150;
}

Test(shadow, a_hot_expert_gets_temporaries_that_pay) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_gt(t.n, 0, "an expert with 14x the mean load gets no temporary");
  for (int k = 0; k < t.n; k++)
    cr_assert_eq(t.temp[k].expert, 0, "temporary %d copies expert %d", k, t.temp[k].expert);
  check_decision(&t, &env, &sv, NULL, counts, 3);
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

Test(shadow, balanced_load_or_a_huge_margin_takes_none) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  pl_temps_cfg big = cfg1;
  big.margin = 1e6;
  cr_assert_eq(pl_temps_decide(&t, &big, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 0);
  for (int i = 0; i < 64; i++)
    counts[i] = 500;
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 0, "balanced load: %d temporaries", t.n);
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

/* Every count 0 (an empty capture, sim --allow-empty): every search takes
 * none. FAST once read the host table at expert -1 there (no hottest
 * expert); the sanitizer build of this test catches such reads. */
Test(shadow, no_tokens_take_none_with_every_search) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64] = {0};
  hot_case(&env, &sv, counts);
  memset(counts, 0, sizeof(counts));
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  const int searches[] = {PL_TEMPS_SEARCH_FULL, PL_TEMPS_SEARCH_LEAN, PL_TEMPS_SEARCH_LAZY,
                          PL_TEMPS_SEARCH_FAST};
  for (int k = 0; k < 4; k++) {
    pl_temps_cfg c = cfg1;
    c.search = searches[k];
    cr_assert_eq(pl_temps_decide(&t, &c, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, 3),
                 PL_OK, "search %d", searches[k]);
    cr_assert_eq(t.n, 0, "search %d: %d temporaries without tokens", searches[k], t.n);
  }
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

Test(shadow, temporaries_stay_within_free_slots_of_serving_and_current) {
  pl_env env;
  pl_placement sv, cur;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  /* slots = what the static layout uses: no room */
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 1), PL_OK);
  cr_assert_eq(t.n, 0);
  /* a background plan lands replicas on GPUs 1..7 (two each): their
   * buffers are taken, so no room left anywhere but GPU 0 (which holds
   * expert 0 already) */
  cr_assert_eq(pl_placement_init(&cur, 8, 8, 3), PL_OK);
  cr_assert_eq(pl_placement_copy(&cur, &sv), PL_OK);
  for (int g = 1; g < 8; g++) {
    cr_assert_eq(pl_placement_add(&cur, (g + 1) % 8 == 0 ? 2 : (g + 1) % 8, g), PL_OK);
    cr_assert_eq(pl_placement_add(&cur, (g + 2) % 8 == 0 ? 3 : (g + 2) % 8, g), PL_OK);
  }
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, &cur,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 0, "%d temporaries on buffers a background move holds", t.n);
  /* max_temps bounds them */
  pl_temps_cfg one = cfg1;
  one.max_temps = 1;
  cr_assert_eq(pl_temps_decide(&t, &one, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 1);
  check_decision(&t, &env, &sv, NULL, counts, 3);
  pl_placement_fini(&cur);
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

/* The gradients' way back (R) is charged beyond what the layers below hide
 * (pl_temps_cfg.grad_hide_us): one temporary's cost drops by exactly the
 * hidden time up to R, R is that copy's link time (latency + weight bytes
 * over the link between its ends), and a return fully hidden lets a
 * temporary through that a full charge refuses. */
Test(shadow, gradients_hidden_below_the_layer_are_charged_only_beyond_it) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  pl_temps_cfg one = cfg1, part, all;
  one.max_temps = 1;
  part = all = one;
  cr_assert_eq(pl_temps_decide(&t, &one, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 1);
  pl_temp first = t.temp[0];
  double full = t.cost_us, gain = t.gain_us;
  int inter = first.from / env.cluster.gpus_per_node != first.to / env.cluster.gpus_per_node;
  double bytes = (double)pl_expert_params(&env.model) * env.model.bytes_per_elem;
  double R = inter ? env.cluster.inter_lat_s + bytes / (env.cluster.inter_Bps / env.cluster.oversub)
                   : env.cluster.intra_lat_s + bytes / env.cluster.intra_Bps;
  R *= 1e6;
  part.grad_hide_us = 0.25 * R;
  all.grad_hide_us = 1e9;
  cr_assert_eq(pl_temps_decide(&t, &part, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 1);
  cr_assert(t.temp[0].expert == first.expert && t.temp[0].to == first.to);
  cr_assert_float_eq(full - t.cost_us, 0.25 * R, 1e-9 * full, "hid %.6f us of %.6f",
                     full - t.cost_us, 0.25 * R);
  cr_assert_eq(pl_temps_decide(&t, &all, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(t.n, 1);
  if (t.temp[0].expert == first.expert && t.temp[0].to == first.to)
    cr_assert_float_eq(full - t.cost_us, R, 1e-9 * full, "hid %.6f us, R %.6f", full - t.cost_us,
                       R);
  else /* a copy whose return was too dear before, now predicted to save more */
    cr_assert_gt(t.gain_us - t.cost_us, gain - (full - R));
  /* the hot expert's load from low to high: wherever a full charge takes a
   * temporary a hidden one does, and somewhere only the hidden one does */
  all.max_temps = 0;
  int only_hidden = 0;
  for (int64_t v = 150; v <= 3000; v += 50) {
    for (int g = 0; g < 8; g++)
      counts[g * 8] = v;
    cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, 3), PL_OK);
    int n0 = t.n;
    cr_assert_eq(pl_temps_decide(&t, &all, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, 3), PL_OK);
    cr_assert(n0 == 0 || t.n > 0, "load %lld: %d temporaries charged, none hidden", (long long)v,
              n0);
    only_hidden += n0 == 0 && t.n > 0;
  }
  cr_assert_gt(only_hidden, 0, "hiding the gradients' way back never let a temporary through");
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

/* Expert 0 (on GPU 0) is hot for node 0's sources only and node 1's GPUs
 * compute the least: a copy on node 1 gets no token of it (none of node
 * 1's sources send it any), so the temporaries must be second copies
 * inside node 0, where they split GPU 0's in-traffic and compute. */
Test(shadow, a_node_local_hot_expert_gets_copies_inside_its_node) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  for (int g = 0; g < 8; g++)
    for (int x = 0; x < 8; x++)
      counts[g * 8 + x] = x == 0 ? (g < 4 ? 3000 : 0) : x < 4 ? 150 : 50;
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_gt(t.n, 0, "a node-local hot expert gets no temporary");
  for (int k = 0; k < t.n; k++)
    cr_assert(t.temp[k].expert != 0 || t.temp[k].to < 4, "a copy of expert 0 on GPU %d (node 1)",
              t.temp[k].to);
  int inside = 0;
  for (int k = 0; k < t.n; k++)
    inside += t.temp[k].expert == 0;
  cr_assert_gt(inside, 0);
  check_decision(&t, &env, &sv, NULL, counts, 3);
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

Test(shadow, bad_arguments_are_refused_and_leave_none) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  pl_temps_cfg bad = cfg1;
  bad.margin = 0.5;
  cr_assert_eq(pl_temps_decide(&t, &bad, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_EINVAL);
  cr_assert_eq(t.n, 0);
  bad = cfg1;
  bad.grad_hide_us = -1;
  cr_assert_eq(pl_temps_decide(&t, &bad, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_EINVAL, "negative grad_hide_us");
  bad.grad_hide_us = NAN;
  cr_assert_eq(pl_temps_decide(&t, &bad, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_EINVAL, "NaN grad_hide_us");
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 4), PL_EINVAL, "slots above the placement's");
  counts[5] = -1;
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_EINVAL);
  cr_assert_eq(pl_temps_init(&t, 0, 8, 3), PL_EINVAL);
  pl_temps_fini(&t);
  pl_temps_fini(NULL);
  pl_placement_fini(&sv);
}

/* Random skewed loads on random planned placements (fixed seed): every
 * decision keeps the invariants, and a second pl_temps makes the same. */
Test(shadow, random_inputs_keep_the_invariants_and_decide_the_same_twice) {
  uint64_t seed = 17;
  int taken = 0;
  for (int rep = 0; rep < 60; rep++) {
    int gpn = 1 + (int)(chk_rng(&seed) % 4), nodes = 1 + (int)(chk_rng(&seed) % 4);
    int G = gpn * nodes, E = 4 + (int)(chk_rng(&seed) % 13);
    int S = (E + G - 1) / G + 1 + (int)(chk_rng(&seed) % 3);
    pl_env env = chk_env(1, E, G, gpn, S);
    if (rep % 3 == 0)
      env.model.d_ff = 65536; /* heavy weights: copies rarely pay */
    pl_placement sv;
    cr_assert_eq(pl_placement_init(&sv, E, G, S), PL_OK);
    cr_assert_eq(pl_placement_static(&sv), PL_OK);
    for (int k = 0; k < G; k++) { /* a few planned replicas */
      int x = (int)(chk_rng(&seed) % E), g = (int)(chk_rng(&seed) % G);
      if (sv.nhost[g] < S - 1 && !pl_placement_has(&sv, x, g))
        cr_assert_eq(pl_placement_add(&sv, x, g), PL_OK);
    }
    int64_t *counts = calloc((size_t)G * E, sizeof(int64_t));
    int hot = (int)(chk_rng(&seed) % E);
    for (int i = 0; i < G * E; i++)
      counts[i] = (int64_t)(chk_rng(&seed) % 200) + (i % E == hot ? 4000 : 0);
    pl_temps a, b;
    cr_assert_eq(pl_temps_init(&a, E, G, S), PL_OK);
    cr_assert_eq(pl_temps_init(&b, E, G, S), PL_OK);
    int slots = S - (int)(chk_rng(&seed) % 2);
    if (slots < (E + G - 1) / G + 1)
      slots = S;
    cr_assert_eq(pl_temps_decide(&a, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, slots), PL_OK);
    cr_assert_eq(pl_temps_decide(&b, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, slots), PL_OK);
    cr_assert_eq(a.n, b.n);
    cr_assert_eq(memcmp(a.temp, b.temp, (size_t)a.n * sizeof(pl_temp)), 0, "case %d", rep);
    cr_assert_eq(a.gain_us, b.gain_us);
    check_decision(&a, &env, &sv, NULL, counts, slots);
    taken += a.n > 0;
    pl_temps_fini(&a);
    pl_temps_fini(&b);
    free(counts);
    pl_placement_fini(&sv);
  }
  cr_assert_gt(taken, 10, "only %d of 60 cases took temporaries", taken);
}

/* The decision keeps its model incrementally (orders of the GPUs, one
 * base per expert for trials on nodes holding it, arrivals per GPU): on
 * many nodes with many replicas per expert and holders sending several
 * copies, the saving it predicts must be what the model recomputed from
 * scratch gives (check_decision), and a budget of j must take the first j
 * of the unlimited decision (the greedy steps do not depend on later
 * ones). */
Test(shadow, decisions_at_many_nodes_match_the_model_recomputed_from_scratch) {
  uint64_t seed = 29;
  int taken = 0, many = 0;
  for (int rep = 0; rep < 24; rep++) {
    int gpn = 2 + (int)(chk_rng(&seed) % 7), nodes = 4 + (int)(chk_rng(&seed) % 6);
    int G = gpn * nodes, E = 8 + (int)(chk_rng(&seed) % 25);
    int S = (E + G - 1) / G + 3 + (int)(chk_rng(&seed) % 3);
    pl_env env = chk_env(1, E, G, gpn, S);
    pl_placement sv;
    cr_assert_eq(pl_placement_init(&sv, E, G, S), PL_OK);
    cr_assert_eq(pl_placement_static(&sv), PL_OK);
    for (int k = 0; k < 2 * G; k++) { /* hot experts replicated across nodes */
      int x = (int)(chk_rng(&seed) % (k % 2 ? E : 3)), g = (int)(chk_rng(&seed) % G);
      if (sv.nhost[g] < S - 2 && !pl_placement_has(&sv, x, g))
        cr_assert_eq(pl_placement_add(&sv, x, g), PL_OK);
    }
    int64_t *counts = calloc((size_t)G * E, sizeof(int64_t));
    for (int i = 0; i < G * E; i++) /* experts 0-2 hot, skewed by source */
      counts[i] = (int64_t)(chk_rng(&seed) % 300) +
                  (i % E < 3 ? (int64_t)(chk_rng(&seed) % 6000) * ((i / E) % 3) : 0);
    pl_temps a, b;
    cr_assert_eq(pl_temps_init(&a, E, G, S), PL_OK);
    cr_assert_eq(pl_temps_init(&b, E, G, S), PL_OK);
    cr_assert_eq(pl_temps_decide(&a, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, S), PL_OK);
    check_decision(&a, &env, &sv, NULL, counts, S);
    for (int j = 1; j < a.n; j += 1 + a.n / 4) {
      pl_temps_cfg cj = {.margin = 1.0, .max_temps = j};
      cr_assert_eq(pl_temps_decide(&b, &cj, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                   counts, S), PL_OK);
      cr_assert_eq(b.n, j);
      cr_assert_eq(memcmp(a.temp, b.temp, (size_t)j * sizeof(pl_temp)), 0, "case %d, %d", rep,
                   j);
      check_decision(&b, &env, &sv, NULL, counts, S);
    }
    taken += a.n > 0;
    many += a.n >= 4;
    pl_temps_fini(&a);
    pl_temps_fini(&b);
    free(counts);
    pl_placement_fini(&sv);
  }
  cr_assert_gt(taken, 16, "only %d of 24 cases took temporaries", taken);
  cr_assert_gt(many, 8, "only %d of 24 cases took 4 or more", many);
}

/* pl_temps_cfg.search (flexmoe shadow=2, 3): LEAN evaluates at most 4
 * trials a step, fewer than FULL in all; LAZY adds a FULL step where
 * LEAN's fails. Both keep the temporaries' contract (free slots,
 * planned holders, one copy per GPU, the saving the model recomputes),
 * decide the same twice, and differ from FULL somewhere; a search out of
 * range is refused. */
Test(shadow, lean_and_lazy_searches_change_the_trials_and_keep_the_contract) {
  uint64_t seed = 31;
  long trials[3] = {0}, taken[3] = {0};
  int differ[3] = {0};
  for (int rep = 0; rep < 20; rep++) {
    int gpn = 2 + (int)(chk_rng(&seed) % 7), nodes = 4 + (int)(chk_rng(&seed) % 6);
    int G = gpn * nodes, E = 8 + (int)(chk_rng(&seed) % 25);
    int S = (E + G - 1) / G + 3 + (int)(chk_rng(&seed) % 3);
    pl_env env = chk_env(1, E, G, gpn, S);
    pl_placement sv, cur;
    cr_assert_eq(pl_placement_init(&sv, E, G, S), PL_OK);
    cr_assert_eq(pl_placement_static(&sv), PL_OK);
    for (int k = 0; k < 2 * G; k++) {
      int x = (int)(chk_rng(&seed) % (k % 2 ? E : 3)), g = (int)(chk_rng(&seed) % G);
      if (sv.nhost[g] < S - 2 && !pl_placement_has(&sv, x, g))
        cr_assert_eq(pl_placement_add(&sv, x, g), PL_OK);
    }
    /* a plan in flight: its arriving replicas keep their slots */
    cr_assert_eq(pl_placement_init(&cur, E, G, S), PL_OK);
    cr_assert_eq(pl_placement_copy(&cur, &sv), PL_OK);
    for (int k = 0; k < G / 2; k++) {
      int x = (int)(chk_rng(&seed) % E), g = (int)(chk_rng(&seed) % G);
      if (cur.nhost[g] < S - 1 && !pl_placement_has(&cur, x, g))
        cr_assert_eq(pl_placement_add(&cur, x, g), PL_OK);
    }
    int64_t *counts = calloc((size_t)G * E, sizeof(int64_t));
    for (int i = 0; i < G * E; i++)
      counts[i] = (int64_t)(chk_rng(&seed) % 300) +
                  (i % E < 3 ? (int64_t)(chk_rng(&seed) % 6000) * ((i / E) % 3) : 0);
    pl_temps a[3], b;
    cr_assert_eq(pl_temps_init(&b, E, G, S), PL_OK);
    for (int s = 0; s < 3; s++) {
      pl_temps_cfg cs = {.margin = 1.0, .search = s};
      cr_assert_eq(pl_temps_init(&a[s], E, G, S), PL_OK);
      cr_assert_eq(pl_temps_decide(&a[s], &cs, &env.cluster, &env.model, &env.profile, &sv,
                                   &cur, counts, S), PL_OK);
      check_decision(&a[s], &env, &sv, &cur, counts, S);
      cr_assert_eq(pl_temps_decide(&b, &cs, &env.cluster, &env.model, &env.profile, &sv, &cur,
                                   counts, S), PL_OK);
      cr_assert_eq(b.n, a[s].n);
      cr_assert_eq(b.trials, a[s].trials);
      cr_assert_eq(memcmp(b.temp, a[s].temp, (size_t)b.n * sizeof(pl_temp)), 0, "case %d", rep);
      cr_assert_eq(b.gain_us, a[s].gain_us);
      trials[s] += a[s].trials;
      taken[s] += a[s].n;
      differ[s] |= a[s].n != a[0].n ||
                   memcmp(a[s].temp, a[0].temp, (size_t)a[0].n * sizeof(pl_temp)) != 0;
    }
    cr_assert_leq(a[PL_TEMPS_SEARCH_LEAN].trials, 4 * (a[PL_TEMPS_SEARCH_LEAN].n + 1),
                  "lean: %d trials for %d temporaries", a[1].trials, a[1].n);
    for (int s = 0; s < 3; s++)
      pl_temps_fini(&a[s]);
    pl_temps_fini(&b);
    free(counts);
    pl_placement_fini(&cur);
    pl_placement_fini(&sv);
  }
  cr_assert_lt(2 * trials[PL_TEMPS_SEARCH_LEAN], trials[PL_TEMPS_SEARCH_FULL],
               "lean %ld trials, full %ld", trials[1], trials[0]);
  cr_assert_gt(taken[PL_TEMPS_SEARCH_LEAN], 0);
  cr_assert(differ[PL_TEMPS_SEARCH_LEAN] && differ[PL_TEMPS_SEARCH_LAZY],
            "lean or lazy decided as full everywhere");
  /* out of range */
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  for (int s = -1; s <= 4; s += 5) {
    pl_temps_cfg cs = {.margin = 1.0, .search = s};
    cr_assert_eq(pl_temps_decide(&t, &cs, &env.cluster, &env.model, &env.profile, &sv, NULL,
                                 counts, 3), PL_EINVAL, "search %d", s);
    cr_assert_eq(t.n, 0);
  }
  pl_temps_fini(&t);
  pl_placement_fini(&sv);
}

/* flexmoe's shadow=2, 3 and 4 are its temporaries with the LEAN, LAZY and
 * FAST searches: the policy op's decision is pl_temps_decide's with them. */
Test(shadow, flexmoe_shadow_2_to_4_decide_with_lean_lazy_and_fast) {
  pl_env env = chk_env(2, 8, 8, 4, 3);
  char err[256];
  int64_t counts[64];
  for (int g = 0; g < 8; g++)
    for (int x = 0; x < 8; x++)
      counts[g * 8 + x] = x == 0 ? 3000 : (x == 5 ? 1200 + 100 * g : 150);
  for (int s = 1; s <= 4; s++) {
    char spec[64];
    snprintf(spec, sizeof(spec), "flexmoe:shadow=%d", s);
    pl_policy *p = NULL;
    cr_assert_eq(pl_policy_create(&p, spec, &env, err, sizeof(err)), PL_OK, "%s: %s", spec,
                 err);
    cr_assert(pl_policy_has_temporaries(p));
    pl_plan plan;
    pl_plan_init(&plan);
    cr_assert_eq(pl_policy_plan(p, 0, 0, NULL, &plan), PL_OK);
    pl_plan_fini(&plan);
    pl_temps t, u;
    cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
    cr_assert_eq(pl_temps_init(&u, 8, 8, 3), PL_OK);
    cr_assert_eq(pl_policy_temporaries(p, 0, counts, &t), PL_OK);
    cr_assert_gt(t.n, 0, "%s took none", spec);
    check_decision(&t, &env, pl_policy_serving(p, 0), pl_policy_placement(p, 0), counts, 3);
    pl_temps_cfg cs = {.margin = 1.0, .search = s - 1};
    cr_assert_eq(pl_temps_decide(&u, &cs, &env.cluster, &env.model, &env.profile,
                                 pl_policy_serving(p, 0), pl_policy_placement(p, 0), counts, 3),
                 PL_OK);
    cr_assert_eq(u.n, t.n, "%s", spec);
    cr_assert_eq(u.trials, t.trials, "%s", spec);
    cr_assert_eq(memcmp(u.temp, t.temp, (size_t)t.n * sizeof(pl_temp)), 0, "%s", spec);
    pl_temps_fini(&t);
    pl_temps_fini(&u);
    pl_policy_destroy(p);
  }
}

Test(shadow, flexmoe_shadow_parameter_switches_the_policy_op) {
  pl_env env = chk_env(2, 8, 8, 4, 3);
  char err[256];
  pl_policy *off = NULL, *on = NULL, *fm = NULL, *bad = NULL;
  cr_assert_eq(pl_policy_create(&off, "flexmoe:shadow=0", &env, err, sizeof(err)), PL_OK);
  cr_assert_eq(pl_policy_create(&on, "flexmoe", &env, err, sizeof(err)), PL_OK); /* the default */
  cr_assert_eq(pl_policy_create(&fm, "fastermoe", &env, err, sizeof(err)), PL_OK);
  cr_assert_eq(pl_policy_create(&bad, "flexmoe:shadow=6", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "bad value shadow=6") != NULL, "message: %s", err);
  cr_assert_eq(pl_policy_create(&bad, "flexmoe:shadow_margin=0.5", &env, err, sizeof(err)),
               PL_EPARAM);
  cr_assert(strstr(err, "shadow_margin") != NULL, "message: %s", err);
  cr_assert(pl_policy_has_temporaries(on));
  cr_assert(!pl_policy_has_temporaries(fm));
  int64_t counts[64];
  for (int g = 0; g < 8; g++)
    for (int x = 0; x < 8; x++)
      counts[g * 8 + x] = x == 0 ? 3000 : 150;
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(on, 0, 0, NULL, &plan), PL_OK);
  pl_plan_fini(&plan);
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(off, 0, 0, NULL, &plan), PL_OK);
  pl_plan_fini(&plan);
  cr_assert_eq(pl_policy_temporaries(off, 0, counts, &t), PL_OK);
  cr_assert_eq(t.n, 0);
  cr_assert_eq(pl_policy_temporaries(fm, 0, counts, &t), PL_OK);
  cr_assert_eq(t.n, 0);
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, 8, 8, 0), PL_OK);
  cr_assert_eq(pl_policy_route_temporaries(on, 0, counts, &t, &r), PL_OK);
  cr_assert_gt(t.n, 0);
  check_decision(&t, &env, pl_policy_serving(on, 0), pl_policy_placement(on, 0), counts, 3);
  /* the routing is the one on the placement with the temporaries */
  pl_routing q;
  cr_assert_eq(pl_routing_init(&q, 8, 8, 0), PL_OK);
  cr_assert_eq(pl_route(&t.placement, &env.cluster, counts, -1, &q), PL_OK);
  cr_assert_eq(memcmp(q.load, r.load, 64 * sizeof(int64_t)), 0);
  /* the policy's own placement never sees a temporary */
  cr_assert_eq(pl_policy_placement(on, 0)->nrep[0], 1);
  pl_routing_fini(&q);
  pl_routing_fini(&r);
  pl_temps_fini(&t);
  pl_policy_destroy(off);
  pl_policy_destroy(on);
  pl_policy_destroy(fm);
}

/* A random case on many nodes (seeded): hot experts 0-2 replicated
 * across nodes, skewed by source, a plan in flight holding slots. */
typedef struct fast_case {
  pl_env env;
  pl_placement sv, cur;
  int64_t *counts;
  int G, E, S;
} fast_case;

static void fast_case_make(fast_case *c, uint64_t *seed) {
  int gpn = 2 + (int)(chk_rng(seed) % 7), nodes = 1 + (int)(chk_rng(seed) % 9);
  c->G = gpn * nodes;
  c->E = 8 + (int)(chk_rng(seed) % 25);
  c->S = (c->E + c->G - 1) / c->G + 2 + (int)(chk_rng(seed) % 3);
  c->env = chk_env(1, c->E, c->G, gpn, c->S);
  if (chk_rng(seed) % 4 == 0)
    c->env.model.d_ff = 65536; /* heavy weights: copies rarely pay */
  cr_assert_eq(pl_placement_init(&c->sv, c->E, c->G, c->S), PL_OK);
  cr_assert_eq(pl_placement_static(&c->sv), PL_OK);
  for (int k = 0; k < 2 * c->G; k++) {
    int x = (int)(chk_rng(seed) % (k % 2 ? c->E : 3)), g = (int)(chk_rng(seed) % c->G);
    if (c->sv.nhost[g] < c->S - 2 && !pl_placement_has(&c->sv, x, g))
      cr_assert_eq(pl_placement_add(&c->sv, x, g), PL_OK);
  }
  cr_assert_eq(pl_placement_init(&c->cur, c->E, c->G, c->S), PL_OK);
  cr_assert_eq(pl_placement_copy(&c->cur, &c->sv), PL_OK);
  for (int k = 0; k < c->G / 2; k++) {
    int x = (int)(chk_rng(seed) % c->E), g = (int)(chk_rng(seed) % c->G);
    if (c->cur.nhost[g] < c->S - 1 && !pl_placement_has(&c->cur, x, g))
      cr_assert_eq(pl_placement_add(&c->cur, x, g), PL_OK);
  }
  c->counts = calloc((size_t)c->G * c->E, sizeof(int64_t));
  for (int i = 0; i < c->G * c->E; i++)
    c->counts[i] = (int64_t)(chk_rng(seed) % 300) +
                   (i % c->E < 3 ? (int64_t)(chk_rng(seed) % 6000) * ((i / c->E) % 3) : 0);
}

static void fast_case_free(fast_case *c) {
  free(c->counts);
  pl_placement_fini(&c->cur);
  pl_placement_fini(&c->sv);
}

/* The FAST search (flexmoe shadow=4) keeps the temporaries' contract on
 * random cases: free slots of serving and current, at most one copy of
 * an expert per GPU, planned holders, the saving the model recomputed
 * from scratch gives (check_decision); no trial; the same decision from a
 * second pl_temps; and it takes temporaries in most skewed cases. */
Test(shadow, fast_search_keeps_the_contract_and_decides_the_same_twice) {
  uint64_t seed = 43;
  int taken = 0;
  for (int rep = 0; rep < 40; rep++) {
    fast_case c;
    fast_case_make(&c, &seed);
    pl_temps a, b;
    pl_temps_cfg cs = {.margin = 1.0, .search = PL_TEMPS_SEARCH_FAST};
    cr_assert_eq(pl_temps_init(&a, c.E, c.G, c.S), PL_OK);
    cr_assert_eq(pl_temps_init(&b, c.E, c.G, c.S), PL_OK);
    cr_assert_eq(pl_temps_decide(&a, &cs, &c.env.cluster, &c.env.model, &c.env.profile, &c.sv,
                                 &c.cur, c.counts, c.S), PL_OK);
    check_decision(&a, &c.env, &c.sv, &c.cur, c.counts, c.S);
    cr_assert_eq(a.trials, 0);
    cr_assert_eq(pl_temps_decide(&b, &cs, &c.env.cluster, &c.env.model, &c.env.profile, &c.sv,
                                 &c.cur, c.counts, c.S), PL_OK);
    cr_assert_eq(b.n, a.n, "case %d", rep);
    cr_assert_eq(memcmp(a.temp, b.temp, (size_t)a.n * sizeof(pl_temp)), 0, "case %d", rep);
    cr_assert_eq(a.gain_us, b.gain_us);
    cr_assert_eq(a.cost_us, b.cost_us);
    /* slots down to what the plans use: none */
    int used = 0;
    for (int g = 0; g < c.G; g++)
      used = c.cur.nhost[g] > used ? c.cur.nhost[g] : used;
    cr_assert_eq(pl_temps_decide(&b, &cs, &c.env.cluster, &c.env.model, &c.env.profile, &c.sv,
                                 &c.cur, c.counts, used), PL_OK);
    check_decision(&b, &c.env, &c.sv, &c.cur, c.counts, used);
    taken += a.n > 0;
    pl_temps_fini(&a);
    pl_temps_fini(&b);
    fast_case_free(&c);
  }
  cr_assert_gt(taken, 20, "only %d of 40 cases took temporaries", taken);
}

/* The set FAST takes pays: its predicted gain exceeds margin x its cost
 * for every margin, a larger margin never takes a set predicted to save
 * more... and a margin no set meets takes none. */
Test(shadow, fast_search_never_takes_a_set_below_margin_times_cost) {
  uint64_t seed = 47;
  const double margins[] = {1.0, 1.5, 3.0, 1e6};
  int fewer = 0;
  for (int rep = 0; rep < 30; rep++) {
    fast_case c;
    fast_case_make(&c, &seed);
    pl_temps t;
    cr_assert_eq(pl_temps_init(&t, c.E, c.G, c.S), PL_OK);
    int n1 = -1;
    for (int i = 0; i < 4; i++) {
      pl_temps_cfg cs = {.margin = margins[i], .search = PL_TEMPS_SEARCH_FAST};
      cr_assert_eq(pl_temps_decide(&t, &cs, &c.env.cluster, &c.env.model, &c.env.profile,
                                   &c.sv, &c.cur, c.counts, c.S), PL_OK);
      if (t.n > 0) {
        cr_assert_gt(t.gain_us, margins[i] * t.cost_us, "case %d margin %g: gain %g cost %g",
                     rep, margins[i], t.gain_us, t.cost_us);
        check_decision(&t, &c.env, &c.sv, &c.cur, c.counts, c.S);
      }
      if (i == 0)
        n1 = t.n;
      if (i == 3)
        cr_assert(t.n == 0 || t.cost_us <= 0, "margin 1e6 took %d (cost %g)", t.n, t.cost_us);
      fewer += i > 0 && t.n < n1;
    }
    pl_temps_fini(&t);
    fast_case_free(&c);
  }
  cr_assert_gt(fewer, 0, "a larger margin never took fewer temporaries");
}

/* On the skewed case (expert 0 gets 20x the others' tokens from every
 * source), FAST takes copies of expert 0 and the layer it predicts is
 * clearly faster than with no temporaries, and no slower than a tenth
 * behind FULL's. */
Test(shadow, fast_search_beats_no_temporaries_on_a_skewed_case) {
  pl_env env;
  pl_placement sv;
  int64_t counts[64];
  hot_case(&env, &sv, counts);
  pl_temps t, u;
  cr_assert_eq(pl_temps_init(&t, 8, 8, 3), PL_OK);
  cr_assert_eq(pl_temps_init(&u, 8, 8, 3), PL_OK);
  pl_temps_cfg cs = {.margin = 1.0, .search = PL_TEMPS_SEARCH_FAST};
  cr_assert_eq(pl_temps_decide(&t, &cs, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_gt(t.n, 0, "a 20x hot expert gets no temporary");
  int zero = 0;
  for (int k = 0; k < t.n; k++)
    zero += t.temp[k].expert == 0;
  cr_assert_gt(zero, 0, "no copy of the hot expert");
  check_decision(&t, &env, &sv, NULL, counts, 3);
  double none, fast, full;
  cr_assert_eq(pl_temps_predict_us(&u, &env.cluster, &env.model, &env.profile, &sv, NULL, 0,
                                   counts, &none), PL_OK);
  cr_assert_eq(pl_temps_predict_us(&u, &env.cluster, &env.model, &env.profile, &t.placement,
                                   t.temp, t.n, counts, &fast), PL_OK);
  cr_assert_lt(fast, 0.8 * none, "fast %.3f us vs none %.3f us", fast, none);
  cr_assert_eq(pl_temps_decide(&t, &cfg1, &env.cluster, &env.model, &env.profile, &sv, NULL,
                               counts, 3), PL_OK);
  cr_assert_eq(pl_temps_predict_us(&u, &env.cluster, &env.model, &env.profile, &t.placement,
                                   t.temp, t.n, counts, &full), PL_OK);
  cr_assert_lt(fast, 1.1 * full, "fast %.3f us vs full %.3f us", fast, full);
  pl_temps_fini(&t);
  pl_temps_fini(&u);
  pl_placement_fini(&sv);
}


/* Whether two decisions are the same, bit for bit: n, temp, gain_us,
 * cost_us, trials and the placement when n > 0. */
static int same_decision(const pl_temps *a, const pl_temps *b) {
  if (a->n != b->n || a->trials != b->trials ||
      memcmp(&a->gain_us, &b->gain_us, sizeof(double)) != 0 ||
      memcmp(&a->cost_us, &b->cost_us, sizeof(double)) != 0 ||
      memcmp(a->temp, b->temp, (size_t)a->n * sizeof(pl_temp)) != 0)
    return 0;
  return a->n == 0 || pl_placement_equal(&a->placement, &b->placement);
}

/* The range of grad_hide_us a decision reports (pl_temps.hide_lo,
 * hide_hi; issue 19: flexmoe reuses a decision across it) holds the value
 * it was made with, and every value in it decides the same, bit for bit,
 * on random cases with every search: its ends, points inside, a huge one.
 * Where the decisions with no return hidden and with all hidden differ,
 * the range from "all" excludes 0 (a range reaching too low fails). */
Test(shadow, a_decision_is_the_same_over_its_reported_grad_hide_range) {
  uint64_t seed = 53;
  const int searches[] = {PL_TEMPS_SEARCH_FULL, PL_TEMPS_SEARCH_LEAN, PL_TEMPS_SEARCH_LAZY,
                          PL_TEMPS_SEARCH_FAST};
  int open = 0, differ = 0;
  for (int rep = 0; rep < 24; rep++) {
    fast_case c;
    fast_case_make(&c, &seed);
    pl_temps a, b;
    cr_assert_eq(pl_temps_init(&a, c.E, c.G, c.S), PL_OK);
    cr_assert_eq(pl_temps_init(&b, c.E, c.G, c.S), PL_OK);
    for (int s = 0; s < 4; s++) {
      pl_temps_cfg cs = {.margin = 1.0, .search = searches[s]};
      /* all hidden first: lo is the latest return costed, r */
      cs.grad_hide_us = 1e12;
      cr_assert_eq(pl_temps_decide(&a, &cs, &c.env.cluster, &c.env.model, &c.env.profile,
                                   &c.sv, &c.cur, c.counts, c.S), PL_OK);
      cr_assert(a.hide_lo <= 1e12 && a.hide_hi >= 1e12, "case %d search %d: [%g, %g]", rep, s,
                a.hide_lo, a.hide_hi);
      double r = a.hide_lo;
      open += isinf(a.hide_hi) && r > 0;
      const double in[] = {r, nextafter(r, INFINITY), 1.5 * r + 1, 1e6 * (r + 1), 1e300};
      for (int i = 0; i < 5; i++) {
        cs.grad_hide_us = in[i];
        cr_assert_eq(pl_temps_decide(&b, &cs, &c.env.cluster, &c.env.model, &c.env.profile,
                                     &c.sv, &c.cur, c.counts, c.S), PL_OK);
        cr_assert(same_decision(&a, &b), "case %d search %d: hide %.17g in [%.17g, inf) decides "
                  "otherwise (%d vs %d temporaries)", rep, s, in[i], r, b.n, a.n);
        cr_assert_eq(b.hide_lo, r, "case %d search %d", rep, s);
      }
      /* charged in full and halfway: each range holds its own value, and
       * decides the same at its ends */
      const double low[] = {0, 0.5 * r};
      for (int i = 0; i < 2; i++) {
        cs.grad_hide_us = low[i];
        cr_assert_eq(pl_temps_decide(&b, &cs, &c.env.cluster, &c.env.model, &c.env.profile,
                                     &c.sv, &c.cur, c.counts, c.S), PL_OK);
        cr_assert(b.hide_lo <= low[i] && b.hide_hi >= low[i], "case %d: %g not in [%g, %g]", rep,
                  low[i], b.hide_lo, b.hide_hi);
        if (i == 0 && !same_decision(&a, &b)) {
          differ++;
          cr_assert_gt(a.hide_lo, 0.0, "case %d search %d: 0 decides otherwise", rep, s);
        }
        double lo = b.hide_lo;
        if (lo < 0 || isinf(lo))
          continue;
        cr_assert_eq(pl_temps_decide(&a, &cs, &c.env.cluster, &c.env.model, &c.env.profile,
                                     &c.sv, &c.cur, c.counts, c.S), PL_OK);
        cs.grad_hide_us = lo;
        cr_assert_eq(pl_temps_decide(&b, &cs, &c.env.cluster, &c.env.model, &c.env.profile,
                                     &c.sv, &c.cur, c.counts, c.S), PL_OK);
        cr_assert(same_decision(&a, &b), "case %d search %d: lo %.17g decides otherwise", rep,
                  s, lo);
      }
    }
    pl_temps_fini(&a);
    pl_temps_fini(&b);
    fast_case_free(&c);
  }
  cr_assert_gt(open, 20, "only %d decisions reported an open range", open);
  cr_assert_gt(differ, 0, "no case whose decision depends on grad_hide_us");
}

/* FNV-1a of one decision (n, temporaries in order, gain and cost to the
 * bit) folded into h. */
static uint64_t fold_decision(uint64_t h, const pl_temps *t) {
  const unsigned char *p[4] = {(const void *)&t->n, (const void *)t->temp,
                               (const void *)&t->gain_us, (const void *)&t->cost_us};
  size_t n[4] = {sizeof(t->n), (size_t)t->n * sizeof(pl_temp), sizeof(double), sizeof(double)};
  for (int k = 0; k < 4; k++)
    for (size_t i = 0; i < n[k]; i++)
      h = (h ^ p[k][i]) * 1099511628211ull;
  return h;
}

/* The FAST search decides on random cases exactly as d7d6140's library
 * did (issue 17 step 5: its speed-ups must be exact): every decision of
 * 80 seeded cases x 4 configurations (margins, budget, gradients hidden)
 * and of 40 cases on 2 or 4 GPUs with many slots, folded into one hash,
 * equals the hash recorded with that library. The cases have many GPUs
 * holding nothing (equal compute keys: the lowest id must win), plans in
 * flight filling slots, sets of up to dozens of temporaries and GPUs sent
 * several copies; a changed tie, a stale value, an arrival not raised
 * (fast_arrivals after a step) or a candidate's arrival or all-to-all read
 * otherwise changes the hash. */
Test(shadow, fast_search_decides_as_before_its_exact_speed_ups) {
  uint64_t seed = 59, h = 1469598103934665603ull;
  const pl_temps_cfg cfgs[4] = {
      {.margin = 1.0, .search = PL_TEMPS_SEARCH_FAST},
      {.margin = 1.5, .search = PL_TEMPS_SEARCH_FAST, .grad_hide_us = 40},
      {.margin = 1.0, .max_temps = 3, .search = PL_TEMPS_SEARCH_FAST},
      {.margin = 1.0, .search = PL_TEMPS_SEARCH_FAST, .grad_hide_us = 1e9}};
  int taken = 0, many = 0;
  for (int rep = 0; rep < 80; rep++) {
    fast_case c;
    fast_case_make(&c, &seed);
    pl_temps t;
    cr_assert_eq(pl_temps_init(&t, c.E, c.G, c.S), PL_OK);
    for (int k = 0; k < 4; k++) {
      const pl_placement *cur = k % 2 ? &c.cur : NULL;
      cr_assert_eq(pl_temps_decide(&t, &cfgs[k], &c.env.cluster, &c.env.model, &c.env.profile,
                                   &c.sv, cur, c.counts, c.S), PL_OK);
      h = fold_decision(h, &t);
      taken += t.n > 0;
      many += t.n >= 8;
    }
    pl_temps_fini(&t);
    fast_case_free(&c);
  }
  /* few GPUs with many free slots: every GPU is soon sent a copy, and
   * the later copies go to busy GPUs (fast_first's list) */
  for (int rep = 0; rep < 40; rep++) {
    int G = 2 + 2 * (rep % 2), E = 12 + rep % 5, S = E;
    pl_env env = chk_env(1, E, G, 2, S);
    pl_placement sv;
    cr_assert_eq(pl_placement_init(&sv, E, G, S), PL_OK);
    cr_assert_eq(pl_placement_static(&sv), PL_OK);
    int64_t *counts = calloc((size_t)G * E, sizeof(int64_t));
    for (int i = 0; i < G * E; i++)
      counts[i] = (int64_t)(chk_rng(&seed) % 4000) * (1 + (i % E) % 3);
    pl_temps t;
    cr_assert_eq(pl_temps_init(&t, E, G, S), PL_OK);
    cr_assert_eq(pl_temps_decide(&t, &cfgs[rep % 4], &env.cluster, &env.model, &env.profile,
                                 &sv, NULL, counts, S), PL_OK);
    h = fold_decision(h, &t);
    many += t.n >= 8;
    pl_temps_fini(&t);
    free(counts);
    pl_placement_fini(&sv);
  }
  cr_assert_gt(taken, 150, "only %d of 320 decisions took temporaries", taken);
  cr_assert_gt(many, 20, "only %d decisions took 8 or more", many);
  cr_assert_eq(h, 0xd2359e8845de391dull, "decisions hash %016llx", (unsigned long long)h);
}

/* FULL, LEAN and LAZY decide on random cases exactly as 640ee70's library
 * did (issue 17, the decision's cost: its speed-ups must be exact): every
 * decision of 40 seeded cases x 3 searches x 2 configurations (margins,
 * gradients hidden, a plan in flight), folded into one hash with its
 * trials and its range of grad_hide_us, equals the hash recorded with
 * that library. LAZY's FULL steps try its LEAN steps' trials again under
 * other cuts (a trial kept since the last commit is reused, seen_get), so
 * a trial reused where it would now be finished, a stale one, or a
 * latest return it did not count changes the hash. */
Test(shadow, full_lean_and_lazy_searches_decide_as_before_their_exact_speed_ups) {
  uint64_t seed = 71, h = 1469598103934665603ull;
  const pl_temps_cfg cfgs[2] = {{.margin = 1.0}, {.margin = 1.5, .grad_hide_us = 40}};
  const int searches[3] = {PL_TEMPS_SEARCH_FULL, PL_TEMPS_SEARCH_LEAN, PL_TEMPS_SEARCH_LAZY};
  int taken = 0;
  for (int rep = 0; rep < 40; rep++) {
    fast_case c;
    fast_case_make(&c, &seed);
    pl_temps t;
    cr_assert_eq(pl_temps_init(&t, c.E, c.G, c.S), PL_OK);
    for (int s = 0; s < 3; s++)
      for (int k = 0; k < 2; k++) {
        pl_temps_cfg cfg = cfgs[k];
        cfg.search = searches[s];
        cr_assert_eq(pl_temps_decide(&t, &cfg, &c.env.cluster, &c.env.model, &c.env.profile,
                                     &c.sv, k ? &c.cur : NULL, c.counts, c.S), PL_OK);
        h = fold_decision(h, &t);
        const unsigned char *p[3] = {(const void *)&t.trials, (const void *)&t.hide_lo,
                                     (const void *)&t.hide_hi};
        size_t n[3] = {sizeof(t.trials), sizeof(double), sizeof(double)};
        for (int j = 0; j < 3; j++)
          for (size_t i = 0; i < n[j]; i++)
            h = (h ^ p[j][i]) * 1099511628211ull;
        taken += t.n > 0;
      }
    pl_temps_fini(&t);
    fast_case_free(&c);
  }
  cr_assert_gt(taken, 120, "only %d of 240 decisions took temporaries", taken);
  cr_assert_eq(h, 0x013d2d310a257423ull, "decisions hash %016llx", (unsigned long long)h);
}
