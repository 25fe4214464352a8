/* The stable C API (flexmoe_planner.h) a training framework calls. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pl_check.h"
#include "placement/flexmoe_planner.h"
#include "placement/pl_error.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

Test(planner, version_and_api_level_are_reported) {
  cr_assert_eq(pl_planner_api_version(), PL_PLANNER_API_VERSION);
  cr_assert_str_neq(pl_planner_version(), "");
  cr_assert_str_eq(pl_planner_strerror(PL_EPOLICY), "unknown policy");
}

Test(planner, key_value_environment_errors_name_the_key) {
  pl_planner *p = (pl_planner *)1;
  char err[256];
  cr_assert_eq(pl_planner_create_kv(&p, "flexmoe", "experts=32", err, sizeof(err)), PL_EPARAM);
  cr_assert_null(p);
  cr_assert(strstr(err, "gpus"), "%s", err);
  cr_assert_eq(pl_planner_create_kv(&p, "flexmoe", "experts=32,gpus=8,colour=3", err, sizeof(err)),
               PL_EPARAM);
  cr_assert(strstr(err, "colour"), "%s", err);
  cr_assert_eq(pl_planner_create_kv(&p, "flexmoe", "experts=32,gpus=8,profile=16:3/8", err,
                                    sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "profile"), "%s", err);
  cr_assert_eq(pl_planner_create_kv(&p, "teleport", "experts=32,gpus=8", err, sizeof(err)),
               PL_EPOLICY);
  cr_assert(strstr(err, "teleport"), "%s", err);
  cr_assert_eq(pl_planner_create_kv(&p, "static", "experts=32,gpus=8,slots=3", err, sizeof(err)),
               PL_ESLOTS);
}

Test(planner, moves_and_placement_matrix_agree_with_the_plan) {
  pl_env env = chk_env(2, 32, 8, 8, 6);
  pl_planner *p = NULL;
  char err[256];
  cr_assert_eq(pl_planner_create(&p, "flexmoe:threshold=1.05", &env, err, sizeof(err)), PL_OK,
               "%s", err);
  chk_loads loads;
  chk_loads_generate(&loads, 10, 2, 8, 32, 4096, 3);
  int32_t before[32 * 8], after[32 * 8];
  int64_t moves[6 * 256];
  int changes = 0;
  for (int it = 0; it < 10; it++)
    for (int l = 0; l < 2; l++) {
      int changed = -1, n = -1;
      cr_assert_eq(pl_planner_placement(p, l, before), PL_OK);
      cr_assert_eq(pl_planner_plan(p, it, l, NULL, &changed, &n), PL_OK);
      int got = pl_planner_moves(p, moves, 256);
      cr_assert_eq(got, n);
      cr_assert_eq(pl_planner_placement(p, l, after), PL_OK);
      for (int k = 0; k < got; k++) { /* replay the moves on the matrix */
        const int64_t *m = moves + 6 * k;
        cr_assert_eq(m[0], l);
        if (m[4] == PL_MOVE_DROP || m[4] == PL_MOVE_MIGRATE)
          before[m[1] * 8 + m[2]] = 0;
        if (m[4] == PL_MOVE_REPLICATE || m[4] == PL_MOVE_MIGRATE)
          before[m[1] * 8 + m[3]] = 1;
      }
      cr_assert_eq(memcmp(before, after, sizeof(before)), 0, "it %d layer %d", it, l);
      changes += changed;
      double bal = 0;
      int64_t gl[8], dropped = -1, sum = 0;
      cr_assert_eq(pl_planner_route(p, l, chk_loads_at(&loads, it, l), gl, &bal, &dropped), PL_OK);
      for (int g = 0; g < 8; g++)
        sum += gl[g];
      cr_assert_eq(sum, 8 * 4096);
      cr_assert_eq(dropped, 0);
      cr_assert_geq(bal, 1.0);
      cr_assert_eq(pl_planner_observe(p, it, l, chk_loads_at(&loads, it, l)), PL_OK);
    }
  cr_assert_gt(changes, 0);
  chk_loads_free(&loads);
  pl_planner_destroy(p);
  pl_planner_destroy(NULL);
}

/* Iterations [it0, it0 + n) of the bundled sample trace (an excerpt of a
 * real GPT-MoE run: 6 layers, 32 experts, 8 ranks) rescaled to G GPUs, as
 * a simulation draws them (tr_rescale_slice, seed 1). */
static void sample_loads(int64_t it0, int n, int G, chk_loads *l) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy",
           getenv("FLEXMOE_SOURCE_ROOT"));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, path, &err), 0, "cannot read %s", path);
  *l = (chk_loads){n, t.layers, G, t.experts, NULL};
  l->c = calloc((size_t)n * t.layers * G * t.experts, sizeof(int64_t));
  cr_assert_not_null(l->c);
  for (int i = 0; i < n; i++)
    for (int ly = 0; ly < t.layers; ly++)
      cr_assert_eq(tr_rescale_slice(&t, it0 + i, ly, G, 0, 1,
                                    l->c + ((size_t)i * t.layers + ly) * G * t.experts),
                   0);
  tr_close(&t);
}

/* Temporaries through the API are the simulator's. On 40 iterations of the
 * sample trace at 16 GPUs, a planner driven in a framework's order (every
 * layer's plan at the boundary, then per layer, after its gate,
 * pl_planner_temporaries and the observation) and a policy handle driven
 * in the simulator's order (run/fm_sim.c, simrun_prepare: plan and observe
 * layer by layer, then every layer's pl_policy_route_temporaries) give the
 * same temporaries in the same order at every (iteration, layer); there
 * are some; each holder serves the expert and each destination holds no
 * copy of it; and pl_planner_route_served routes each layer as the
 * simulator does (per-GPU loads equal), unlike pl_planner_route where
 * temporaries were made. */
Test(planner, temporaries_are_the_ones_the_simulator_decides, .timeout = 120) {
  enum { G = 16, IT = 40, MAXT = 32 * 16 };
  chk_loads loads;
  sample_loads(100, IT, G, &loads);
  const int L = loads.layers, E = loads.experts;
  pl_env env = chk_env(L, E, G, 8, 4);
  char err[256];
  pl_planner *p = NULL;
  pl_policy *sim = NULL;
  cr_assert_eq(pl_planner_create(&p, "flexmoe", &env, err, sizeof(err)), PL_OK, "%s", err);
  cr_assert_eq(pl_policy_create(&sim, "flexmoe", &env, err, sizeof(err)), PL_OK, "%s", err);
  pl_temps *ref = calloc((size_t)L, sizeof(pl_temps));
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, G, E, 1), PL_OK);
  for (int l = 0; l < L; l++)
    cr_assert_eq(pl_temps_init(&ref[l], E, G, env.cluster.slots), PL_OK);
  pl_plan plan;
  pl_plan_init(&plan);
  int32_t got[3 * MAXT], one[3];
  int64_t simload[8 * G], served[G], current[G], dropped = -1;
  cr_assert_leq(L, 8);
  int made = 0, moved = 0;
  for (int it = 0; it < IT; it++) {
    for (int l = 0; l < L; l++) { /* the simulator */
      const int64_t *c = chk_loads_at(&loads, it, l);
      cr_assert_eq(pl_policy_plan(sim, it, l, c, &plan), PL_OK);
      cr_assert_eq(pl_policy_observe(sim, it, l, c), PL_OK);
    }
    for (int l = 0; l < L; l++) {
      cr_assert_eq(pl_policy_route_temporaries(sim, l, chk_loads_at(&loads, it, l), &ref[l], &r),
                   PL_OK);
      memcpy(simload + (size_t)l * G, r.gpu_load, sizeof(int64_t) * G);
    }
    for (int l = 0; l < L; l++) /* the framework: plans at the boundary */
      cr_assert_eq(pl_planner_plan(p, it, l, NULL, NULL, NULL), PL_OK);
    for (int l = 0; l < L; l++) {
      const int64_t *c = chk_loads_at(&loads, it, l);
      int n = pl_planner_temporaries(p, l, c, got, MAXT);
      cr_assert_eq(n, ref[l].n, "iteration %d layer %d: %d temporaries, the simulator %d", it, l,
                   n, ref[l].n);
      const pl_placement *sv = pl_policy_serving(sim, l);
      int32_t serving[MAXT]; /* the API's serving placement is the simulator's */
      cr_assert_eq(pl_planner_serving(p, l, serving), PL_OK);
      for (int e = 0; e < E; e++)
        for (int g = 0; g < G; g++)
          cr_assert_eq(serving[e * G + g], pl_placement_has(sv, e, g));
      cr_assert_eq(pl_planner_weights_first(p, l), pl_policy_weights_first(sim, l));
      for (int k = 0; k < n; k++) {
        const pl_temp *t = &ref[l].temp[k];
        cr_assert(got[3 * k] == t->expert && got[3 * k + 1] == t->from && got[3 * k + 2] == t->to,
                  "iteration %d layer %d temporary %d: (%d, %d, %d), the simulator (%d, %d, %d)",
                  it, l, k, got[3 * k], got[3 * k + 1], got[3 * k + 2], t->expert, t->from, t->to);
        cr_assert(pl_placement_has(sv, t->expert, t->from), "a holder that does not serve it");
        cr_assert(!pl_placement_has(sv, t->expert, t->to), "a destination that holds it");
      }
      if (n > 0) { /* a short buffer gets the first ones and the count */
        cr_assert_eq(pl_planner_temporaries(p, l, c, one, 1), n);
        cr_assert_eq(memcmp(one, got, sizeof(one)), 0);
      }
      /* routed as served: the simulator's routing of the layer, which the
       * temporaries change (against the current placement alone) */
      double bal = 0;
      cr_assert_eq(pl_planner_route_served(p, l, c, served, &bal, &dropped), PL_OK);
      cr_assert_eq(memcmp(served, simload + (size_t)l * G, sizeof(served)), 0,
                   "iteration %d layer %d: served routing is not the simulator's", it, l);
      cr_assert(bal >= 1.0 && dropped == 0);
      cr_assert_eq(pl_planner_route(p, l, c, current, NULL, NULL), PL_OK);
      moved += n > 0 && memcmp(served, current, sizeof(served)) != 0;
      made += n;
      cr_assert_eq(pl_planner_observe(p, it, l, c), PL_OK);
    }
  }
  cr_assert_gt(made, 0, "the test needs temporaries");
  cr_assert_gt(moved, 0, "temporaries never changed the served routing");
  cr_assert_eq(pl_planner_route_served(p, L, chk_loads_at(&loads, 0, 0), served, NULL, NULL),
               PL_EINVAL);
  cr_assert_eq(pl_planner_route_served(p, 0, NULL, served, NULL, NULL), PL_EINVAL);
  cr_assert_eq(pl_planner_temporaries(p, L, chk_loads_at(&loads, 0, 0), got, MAXT), PL_EINVAL);
  cr_assert_eq(pl_planner_temporaries(p, 0, NULL, got, MAXT), PL_EINVAL);
  cr_assert_eq(pl_planner_temporaries(p, 0, chk_loads_at(&loads, 0, 0), NULL, 4), PL_EINVAL);
  pl_planner *st = NULL; /* a policy without temporaries makes none */
  cr_assert_eq(pl_planner_create(&st, "static", &env, err, sizeof(err)), PL_OK, "%s", err);
  cr_assert_eq(pl_planner_plan(st, 0, 0, NULL, NULL, NULL), PL_OK);
  cr_assert_eq(pl_planner_temporaries(st, 0, chk_loads_at(&loads, 0, 0), got, MAXT), 0);
  pl_planner_destroy(st);
  for (int l = 0; l < L; l++)
    pl_temps_fini(&ref[l]);
  free(ref);
  pl_plan_fini(&plan);
  pl_routing_fini(&r);
  pl_policy_destroy(sim);
  pl_planner_destroy(p);
  chk_loads_free(&loads);
}
