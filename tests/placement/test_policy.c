/* Policy registry, spec parsing and the handle's plan protocol. */
#include <criterion/criterion.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policy.h"

static const double tok[] = {16, 256, 4096};
static const double us[] = {27, 37, 332};

static pl_env env8(void) {
  pl_env env = PL_ENV_INIT;
  env.layers = 2;
  env.experts = 32;
  env.cluster = (pl_cluster){8, 8, 4, 450e9, 2e-6, 50e9, 5e-6, 1.0};
  env.model = (pl_model){2048, 8192, 2, 2, 12.0};
  env.profile = (pl_profile){3, tok, us, 2.1, 50.0};
  env.seed = 1;
  return env;
}

Test(policy, registry_lists_static_and_capacity) {
  cr_assert_not_null(pl_policy_find("static"));
  cr_assert_not_null(pl_policy_find("capacity"));
  cr_assert_null(pl_policy_find("nope"));
  int n = 0;
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++)
    n++;
  cr_assert_geq(n, 2);
}

Test(policy, unknown_names_keys_and_values_say_what_is_wrong) {
  pl_env env = env8();
  pl_policy *p = NULL;
  char err[256];
  cr_assert_eq(pl_policy_create(&p, "bogus", &env, err, sizeof(err)), PL_EPOLICY);
  cr_assert(strstr(err, "bogus"));
  cr_assert_eq(pl_policy_create(&p, "capacity:zz=1", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "zz"));
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=abc", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert_eq(pl_policy_create(&p, "capacity:cf", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert_null(p);
}

Test(policy, too_few_slots_for_the_experts_is_refused) {
  pl_env env = env8();
  env.cluster.slots = 3; /* 8 x 3 < 32 */
  pl_policy *p = NULL;
  char err[256];
  cr_assert_eq(pl_policy_create(&p, "static", &env, err, sizeof(err)), PL_ESLOTS);
}

Test(policy, canonical_spec_fills_defaults) {
  pl_env env = env8();
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "capacity", &env, NULL, 0), PL_OK);
  cr_assert_str_eq(pl_policy_spec(p), "capacity:cf=1.25");
  pl_policy_destroy(p);
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=2", &env, NULL, 0), PL_OK);
  cr_assert_str_eq(pl_policy_spec(p), "capacity:cf=2");
  pl_policy_destroy(p);
}

Test(policy, capacity_drops_over_cf_times_even_share) {
  pl_env env = env8();
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=1.0", &env, NULL, 0), PL_OK);
  int64_t counts[8 * 32] = {0};
  for (int s = 0; s < 8; s++)
    counts[s * 32 + 0] = 64; /* all 512 slots to expert 0 */
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, 8, 32, 1), PL_OK);
  cr_assert_eq(pl_policy_route(p, 0, counts, &r), PL_OK);
  cr_assert_eq(r.load[0], 16); /* ceil(512 / 32 x 1.0) */
  cr_assert_eq(r.dropped, 512 - 16);
  pl_routing_fini(&r);
  pl_policy_destroy(p);
}

Test(policy, static_never_changes_its_placement) {
  pl_env env = env8();
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "static", &env, NULL, 0), PL_OK);
  int64_t counts[8 * 32];
  for (int i = 0; i < 8 * 32; i++)
    counts[i] = (i * 7919) % 101;
  pl_plan plan;
  pl_plan_init(&plan);
  for (int it = 0; it < 5; it++)
    for (int l = 0; l < 2; l++) {
      cr_assert_eq(pl_policy_plan(p, it, l, counts, &plan), PL_OK);
      cr_assert_eq(plan.changed, 0);
      cr_assert_eq(pl_policy_observe(p, it, l, counts), PL_OK);
    }
  const pl_placement *pl = pl_policy_placement(p, 1);
  cr_assert_eq(pl_placement_check(pl), PL_OK);
  cr_assert_eq(pl->rep[5 * 8], 1);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}
