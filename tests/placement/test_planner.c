/* The stable C API (flexmoe_planner.h) a training framework calls. */
#include <criterion/criterion.h>
#include <string.h>

#include "pl_check.h"
#include "placement/flexmoe_planner.h"
#include "placement/pl_error.h"

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
