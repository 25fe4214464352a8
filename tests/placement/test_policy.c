/* Policy registry, spec parsing and the handle's plan protocol. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "placement/pl_shadow.h"

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
  /* a value out of range names its key and the range */
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=0", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "cf: ") && strstr(err, "0.01 to 1000"), "%s", err);
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=2,drop=2", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "drop: ") && strstr(err, "0 or 1"), "%s", err);
  cr_assert_eq(pl_policy_create(&p, "capacity:min_capacity=-1", &env, err, sizeof(err)),
               PL_EPARAM);
  cr_assert(strstr(err, "min_capacity: ") && strstr(err, "0 to 1073741824"), "%s", err);
  cr_assert_null(p);
}

Test(policy, a_bad_background_value_names_the_parameter_and_its_range) {
  pl_env env = env8();
  pl_policy *p = NULL;
  char err[256];
  const char *bad[] = {"smartmoe:background=2", "eplb:background=2", "flexmoe:background=2",
                       "flexmoe:background=yes", "eplb:period=5,background=-1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    cr_assert_eq(pl_policy_create(&p, bad[i], &env, err, sizeof(err)), PL_EPARAM, "%s", bad[i]);
    cr_assert(strstr(err, "background must be 0") && strstr(err, "or 1"), "%s: %s", bad[i], err);
    cr_assert_null(p);
  }
  /* a policy that does not re-plan has no such parameter */
  cr_assert_eq(pl_policy_create(&p, "static:background=0", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "no parameter 'background'"), "%s", err);
  /* other refused values name the keys the spec gives, with their help */
  cr_assert_eq(pl_policy_create(&p, "smartmoe:period=0", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "period=0 (") && strstr(err, "1 to 1073741824"), "%s", err);
  cr_assert_eq(pl_policy_create(&p, "eplb:groups=5", &env, err, sizeof(err)), PL_EPARAM);
  cr_assert(strstr(err, "groups=5 (") && strstr(err, "divides E"), "%s", err);
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
  cr_assert_str_eq(pl_policy_spec(p), "capacity:cf=1.0,min_capacity=4,drop=1");
  pl_policy_destroy(p);
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=2", &env, NULL, 0), PL_OK);
  cr_assert_str_eq(pl_policy_spec(p), "capacity:cf=2,min_capacity=4,drop=1");
  pl_policy_destroy(p);
}

/* Every policy's canonical spec (every parameter written out) is a spec
 * that pl_policy_create and pl_policy_param take back: stored runs and
 * validate's column names re-read it. */
/* Table labels: the name, then only the parameters off their defaults,
 * in the policy's order, whatever the spec's order or spelling. */
Test(policy, label_names_only_what_differs_from_the_defaults) {
  char buf[PL_SPEC_MAX + 1];
  cr_assert_eq(pl_policy_label("flexmoe", buf, sizeof buf), PL_OK);
  cr_assert_str_eq(buf, "flexmoe");
  cr_assert_eq(pl_policy_label("flexmoe:shadow=0,threshold=1.10,background=0", buf, sizeof buf),
               PL_OK);
  cr_assert_str_eq(buf, "flexmoe:background=0,shadow=0");
  cr_assert_eq(pl_policy_label("capacity:cf=1.0", buf, sizeof buf), PL_OK);
  cr_assert_str_eq(buf, "capacity");
  cr_assert_eq(pl_policy_label("capacity:cf=2", buf, sizeof buf), PL_OK);
  cr_assert_str_eq(buf, "capacity:cf=2");
  /* the canonical spec of a changed policy gives the same label */
  pl_env env = env8();
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "flexmoe:weights_first=0", &env, NULL, 0), PL_OK);
  cr_assert_eq(pl_policy_label(pl_policy_spec(p), buf, sizeof buf), PL_OK);
  cr_assert_str_eq(buf, "flexmoe:weights_first=0");
  pl_policy_destroy(p);
  cr_assert_eq(pl_policy_label("nosuch", buf, sizeof buf), PL_EPOLICY);
  cr_assert_eq(pl_policy_label("flexmoe:speed=1", buf, sizeof buf), PL_EPARAM);
  cr_assert_eq(pl_policy_label("flexmoe:shadow=0", buf, 8), PL_EINVAL);
}

Test(policy, every_canonical_spec_parses_back_to_itself) {
  pl_env env = env8();
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++) {
    pl_policy *p = NULL, *q = NULL;
    char err[256] = "", canon[PL_SPEC_MAX + 1], v[PL_VALUE_MAX + 1];
    cr_assert_eq(pl_policy_create(&p, (*r)->name, &env, err, sizeof err), PL_OK, "%s: %s",
                 (*r)->name, err);
    snprintf(canon, sizeof canon, "%s", pl_policy_spec(p));
    cr_assert_eq(pl_policy_create(&q, canon, &env, err, sizeof err), PL_OK, "%s: %s", canon,
                 err);
    cr_assert_str_eq(pl_policy_spec(q), canon);
    for (const pl_param_desc *d = (*r)->params; d && d->key; d++)
      cr_assert_eq(pl_policy_param(canon, d->key, v, sizeof v), PL_OK, "%s: %s", canon,
                   d->key);
    pl_policy_destroy(q);
    pl_policy_destroy(p);
  }
}

/* flexmoe:k=000...v,... with every numeric parameter in the policy's order,
 * each numeric value padded by leading zeros to `width` bytes (the same
 * number), window = `last`: canonical as given, followed by the parameters
 * appended after window (FX_APPENDED) at their defaults. Returns the spec's length. */
#define FX_APPENDED ",guard=1,charge=1,lifetime=0.5,shadow=4,shadow_margin=1,shadow_max=0,weights_first=1,payback=8,shadow_net=1,restart_backoff=4,restart_steps=-1,host=0,host_gate=1"
static size_t long_flexmoe_spec(char *buf, size_t len, int width, const char *last) {
  static const char *const kv[][2] = {
      {"threshold", "1.1"}, {"horizon", "50"}, {"slots", "0"},   {"background", "1"},
      {"max_steps", "0"},   {"interval", "1"}, {"scenarios", "1"}, {"restart", "0"},
      {"rebuild", "1"},     {"polish", "8"},   {"noise", "0"},     {"predictor", "last"}, {"alpha", "0.5"}};
  size_t off = (size_t)snprintf(buf, len, "flexmoe");
  char sep = ':';
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
    int pad = width - (int)strlen(kv[i][1]);
    if (strcmp(kv[i][0], "predictor") == 0) /* a name: not padded */
      off += (size_t)snprintf(buf + off, len - off, "%c%s=%s", sep, kv[i][0], kv[i][1]);
    else
      off += (size_t)snprintf(buf + off, len - off, "%c%s=%0*d%s", sep, kv[i][0], pad, 0,
                              kv[i][1]);
    sep = ',';
  }
  int pad = width - (int)strlen(last);
  off += (size_t)snprintf(buf + off, len - off, ",window=%0*d%s", pad, 0, last);
  cr_assert_lt(off, len);
  return off;
}

/* Issue 20, finding 3: a spec over 512 bytes was cut silently in the
 * handle's canonical spec (and at 255 in the stores), so two specs that
 * differ only at the end were one run. Now every spec up to the documented
 * limit is kept whole, and a longer one is refused naming the limit. */
Test(policy, long_specs_are_kept_whole_or_refused_naming_the_limit) {
  pl_env env = env8();
  pl_policy *a = NULL, *b = NULL;
  char sa[2048], sb[2048], err[512] = "";
  size_t na = long_flexmoe_spec(sa, sizeof sa, 40, "10");
  long_flexmoe_spec(sb, sizeof sb, 40, "11");
  cr_assert_gt(na, 600, "long enough to have been cut: %zu", na);
  cr_assert_leq(na, PL_SPEC_MAX);
  cr_assert_eq(pl_policy_create(&a, sa, &env, err, sizeof err), PL_OK, "%s", err);
  cr_assert_eq(pl_policy_create(&b, sb, &env, err, sizeof err), PL_OK, "%s", err);
  /* every parameter up to window given in the policy's order: canonical = as
   * given, then the appended ones at their defaults */
  strcat(sa, FX_APPENDED);
  strcat(sb, FX_APPENDED);
  cr_assert_str_eq(pl_policy_spec(a), sa);
  cr_assert_str_eq(pl_policy_spec(b), sb);
  cr_assert_str_neq(pl_policy_spec(a), pl_policy_spec(b));
  pl_policy_destroy(a);
  pl_policy_destroy(b);
  a = NULL;

  /* over the limit as given (16 pairs of 63-byte values): refused, the
   * message names the limit */
  char big[1300];
  size_t nb = (size_t)snprintf(big, sizeof big, "flexmoe");
  for (int i = 0; i < 16; i++)
    nb += (size_t)snprintf(big + nb, sizeof big - nb, "%cthreshold=%062d%d", i ? ',' : ':', 0,
                           i % 2 + 1);
  cr_assert_gt(nb, PL_SPEC_MAX);
  cr_assert_eq(pl_policy_create(&a, big, &env, err, sizeof err), PL_EPARAM);
  cr_assert(strstr(err, "over the limit of 1023 bytes"), "%s", err);
  cr_assert_null(a);
  char v[8];
  cr_assert_eq(pl_policy_param(big, "threshold", v, sizeof v), PL_EPARAM);
  /* a canonical spec close to the limit is kept whole (the canonical check
   * of pl_policy_create refuses longer ones): every flexmoe parameter up to
   * window at 55 bytes (63 for all of them no longer fits since shadow,
   * shadow_margin and shadow_max were appended, 59 since restart_backoff,
   * 57 since restart_steps, 56 since host_gate) */
  char c[1300];
  size_t nc = long_flexmoe_spec(c, sizeof c, 55, "10");
  cr_assert_gt(nc + strlen(FX_APPENDED), PL_SPEC_MAX - 60, "%zu", nc);
  cr_assert_leq(nc + strlen(FX_APPENDED), PL_SPEC_MAX, "%zu", nc);
  cr_assert_eq(pl_policy_create(&a, c, &env, err, sizeof err), PL_OK, "%s", err);
  strcat(c, FX_APPENDED);
  cr_assert_str_eq(pl_policy_spec(a), c);
  pl_policy_destroy(a);
}

Test(policy, each_part_over_its_limit_is_refused_naming_the_part_and_the_limit) {
  pl_env env = env8();
  pl_policy *p = NULL;
  char err[512], spec[512];
  /* a value of 64 bytes (63 is the limit) */
  snprintf(spec, sizeof spec, "flexmoe:horizon=%064d", 5);
  cr_assert_eq(pl_policy_create(&p, spec, &env, err, sizeof err), PL_EPARAM);
  cr_assert(strstr(err, "value of horizon is 64 bytes, over the limit of 63"), "%s", err);
  snprintf(spec, sizeof spec, "flexmoe:horizon=%063d", 5);
  cr_assert_eq(pl_policy_create(&p, spec, &env, err, sizeof err), PL_OK, "%s", err);
  pl_policy_destroy(p);
  p = NULL;
  /* a key of 32 bytes */
  cr_assert_eq(pl_policy_create(&p, "flexmoe:abcdefghijklmnopqrstuvwxyz012345=1", &env, err,
                                sizeof err),
               PL_EPARAM);
  cr_assert(strstr(err, "over the limit of 31"), "%s", err);
  /* 33 pairs */
  size_t off = (size_t)snprintf(spec, sizeof spec, "flexmoe:");
  for (int i = 0; i < 33; i++)
    off += (size_t)snprintf(spec + off, sizeof spec - off, "%shorizon=%d", i ? "," : "", i + 1);
  cr_assert_eq(pl_policy_create(&p, spec, &env, err, sizeof err), PL_EPARAM);
  cr_assert(strstr(err, "more than 32 key=value pairs"), "%s", err);
  /* no value, no '=' */
  cr_assert_eq(pl_policy_create(&p, "flexmoe:horizon=", &env, err, sizeof err), PL_EPARAM);
  cr_assert(strstr(err, "horizon= has no value"), "%s", err);
  cr_assert_eq(pl_policy_create(&p, "flexmoe:horizon", &env, err, sizeof err), PL_EPARAM);
  cr_assert(strstr(err, "'horizon' is not key=value"), "%s", err);
  /* bytes a spec never holds: spaces and control bytes (strtod would skip a
   * leading space or newline and keep it in the canonical spec) */
  const char *bad[] = {"flexmoe:horizon= 5", "flexmoe:horizon=\n5", "flexmoe:horizon=5\x1b",
                       "flex\x01moe", "flexmoe:horizon=\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(pl_policy_create(&p, bad[i], &env, err, sizeof err), PL_EPARAM, "%zu", i);
    cr_assert(strstr(err, "printable ASCII"), "%s", err);
    cr_assert_null(p);
  }
}

/* Creates name:key=value on env8; returns the code, the message in err. */
static int try_value(const char *name, const char *key, const char *value, char *err,
                     size_t len) {
  pl_env env = env8();
  pl_policy *p = NULL;
  char spec[256];
  snprintf(spec, sizeof spec, "%s:%s=%s", name, key, value);
  err[0] = '\0';
  int rc = pl_policy_create(&p, spec, &env, err, len);
  pl_policy_destroy(p);
  return rc;
}

/* Issue 20, finding 9: a refused value names its key and the key's range.
 * Every parameter's help states its range after the last "; " (a choice
 * lists its names); where that is "LO to HI" the test checks it against
 * the code: LO and HI are accepted, the values just outside refused with a
 * message naming key=value and the range. A range the code changes
 * without the help fails here. */
Test(policy, every_parameter_states_its_range_and_the_code_keeps_to_it) {
  int checked = 0;
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++)
    for (const pl_param_desc *d = (*r)->params; d && d->key; d++) {
      const char *semi = strrchr(d->help, ';');
      int choice = strstr(d->help, ": ") && strstr(d->help, " or ") && !semi;
      cr_assert(semi || choice, "%s:%s states no range: %s", (*r)->name, d->key, d->help);
      if (!semi)
        continue;
      double lo, hi;
      char tail[8];
      if (sscanf(semi, "; %lf to %lf%7s", &lo, &hi, tail) != 2) {
        cr_assert(strstr(semi, " or ") || strstr(semi, " to "), "%s:%s: %s", (*r)->name,
                  d->key, d->help);
        continue;
      }
      char v[64], err[512], want[96];
      const double in[] = {lo, hi};
      for (int k = 0; k < 2; k++) {
        snprintf(v, sizeof v, "%.17g", in[k]);
        cr_assert_eq(try_value((*r)->name, d->key, v, err, sizeof err), PL_OK,
                     "%s:%s=%s refused though the help allows it: %s", (*r)->name, d->key, v,
                     err);
      }
      const double out[] = {nextafter(lo, -INFINITY), nextafter(hi, INFINITY), lo - 1, hi + 1};
      for (int k = 0; k < 4; k++) {
        snprintf(v, sizeof v, "%.17g", out[k]);
        cr_assert_eq(try_value((*r)->name, d->key, v, err, sizeof err), PL_EPARAM,
                     "%s:%s=%s accepted outside the help's range", (*r)->name, d->key, v);
        snprintf(want, sizeof want, "%s=%s", d->key, v);
        cr_assert(strstr(err, want) && strstr(err, semi + 2), "%s:%s=%s: %s", (*r)->name,
                  d->key, v, err);
      }
      checked++;
    }
  cr_assert_geq(checked, 20, "only %d ranges checked", checked);
}

Test(policy, a_slots_value_out_of_range_names_this_jobs_range) {
  char err[512];
  const char *pols[] = {"fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"};
  for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
    /* env8: 32 experts on 8 GPUs, 4 slots each: 0 or 4 to 4 */
    cr_assert_eq(try_value(pols[i], "slots", "5", err, sizeof err), PL_EPARAM, "%s", pols[i]);
    cr_assert(strstr(err, "slots=5 (") && strstr(err, "here 0 or 4 to 4"), "%s", err);
    cr_assert_eq(try_value(pols[i], "slots", "3", err, sizeof err), PL_EPARAM, "%s", pols[i]);
    cr_assert_eq(try_value(pols[i], "slots", "4", err, sizeof err), PL_OK, "%s", err);
  }
  /* an unknown key lists the keys there are */
  cr_assert_eq(try_value("oracle", "steps", "4", err, sizeof err), PL_EPARAM);
  cr_assert(strstr(err, "no parameter 'steps' (its parameters: slots, max_steps, search, shadow, shadow_net)"), "%s", err);
}

Test(policy, param_reads_a_specs_value_or_the_default_without_an_environment) {
  char v[64];
  cr_assert_eq(pl_policy_param("flexmoe", "background", v, sizeof v), PL_OK);
  cr_assert_str_eq(v, "1", "the default");
  cr_assert_eq(pl_policy_param("flexmoe:background=0,horizon=20", "background", v, sizeof v),
               PL_OK);
  cr_assert_str_eq(v, "0");
  cr_assert_eq(pl_policy_param("flexmoe:background=0,background=1", "background", v, sizeof v),
               PL_OK);
  cr_assert_str_eq(v, "1", "the last one given, as pl_policy_create reads it");
  cr_assert_eq(pl_policy_param("flexmoe:horizon=20", "horizon", v, sizeof v), PL_OK);
  cr_assert_str_eq(v, "20");
  cr_assert_eq(pl_policy_param("static", "background", v, sizeof v), PL_EPARAM);
  cr_assert_eq(pl_policy_param("teleport", "background", v, sizeof v), PL_EPOLICY);
  cr_assert_eq(pl_policy_param("flexmoe:horizon", "horizon", v, sizeof v), PL_EPARAM);
  cr_assert_eq(pl_policy_param("flexmoe:horizon=1000", "horizon", v, 4), PL_EINVAL);
}

Test(policy, capacity_drops_over_each_ranks_own_capacity) {
  pl_env env = env8();
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "capacity:cf=1.0,min_capacity=0", &env, NULL, 0), PL_OK);
  int64_t counts[8 * 32] = {0};
  for (int s = 0; s < 8; s++)
    counts[s * 32 + 0] = 64; /* all 512 slots to expert 0 */
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, 8, 32, 1), PL_OK);
  cr_assert_eq(pl_policy_route(p, 0, counts, &r), PL_OK);
  /* each rank: 64 slots = 32 top-2 tokens, capacity ceil(32 / 32 x 1.0 x 2)
   * = 2 per expert, so 8 ranks x 2 reach expert 0 */
  cr_assert_eq(r.load[0], 16);
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

/* Runs a policy on 8 GPUs with two hot experts on one GPU (0 and 1, then
 * 6 and 7 from iteration 5 on, so that a clairvoyant policy re-plans too;
 * two, so that one without replicas can spread them) until it re-plans; returns
 * the iteration of the first changed plan after the initial one (-1: none
 * in 20), with counts holding that iteration's counts. */
static int first_change(pl_policy *p, pl_plan *plan, int64_t *counts) {
  for (int it = 0; it < 20; it++) {
    for (int s = 0; s < 8; s++)
      for (int e = 0; e < 32; e++)
        counts[s * 32 + e] = e / 2 == (it < 5 ? 0 : 3) ? 4000 : 40;
    cr_assert_eq(pl_policy_plan(p, it, 0, counts, plan), PL_OK);
    if (it > 0 && plan->changed && plan->nmoves > 0)
      return it;
    cr_assert_eq(pl_policy_observe(p, it, 0, counts), PL_OK);
  }
  return -1;
}

Test(policy, background_moves_serve_tokens_from_the_next_iteration) {
  /* one protocol for every policy that re-plans: background=1 (the common
   * default) serves the plan's iteration from the old placement, 0 from the
   * new one at once; the oracle's moves are free */
  const struct {
    const char *spec;
    int in_flight;
  } cases[] = {
      {"flexmoe", 1},           {"flexmoe:background=0", 0},  {"flexmoe:background=1", 1},
      {"smartmoe", 1},          {"smartmoe:background=0", 0}, {"eplb:period=4", 1},
      {"eplb:period=4,background=0", 0}, {"oracle", 0},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  const char *specs[sizeof cases / sizeof cases[0]];
  for (int k = 0; k < ncases; k++)
    specs[k] = cases[k].spec;
  for (int k = 0; k < ncases; k++) {
    pl_env env = env8();
    env.cluster.slots = 6; /* room for replicas of the hot expert */
    pl_policy *p = NULL;
    cr_assert_eq(pl_policy_create(&p, specs[k], &env, NULL, 0), PL_OK, "%s", specs[k]);
    pl_plan plan;
    pl_plan_init(&plan);
    pl_placement before;
    cr_assert_eq(pl_placement_init(&before, 32, 8, env.cluster.slots), PL_OK);
    cr_assert_eq(pl_placement_copy(&before, pl_policy_placement(p, 0)), PL_OK);
    static int64_t counts[8 * 32];
    int it = first_change(p, &plan, counts);
    cr_assert_geq(it, 1, "%s never re-planned for a hot expert", specs[k]);
    const pl_placement *now = pl_policy_placement(p, 0), *serving = pl_policy_serving(p, 0);
    cr_assert_not(pl_placement_equal(now, &before), "%s: the plan changed nothing", specs[k]);
    int in_flight = plan.background && !plan.uncharged;
    cr_assert_eq(in_flight, cases[k].in_flight, "%s: background %d uncharged %d", specs[k],
                 plan.background, plan.uncharged);
    /* while the moves are in flight the old placement serves the tokens */
    cr_assert_eq(pl_placement_equal(serving, in_flight ? &before : now), 1, "%s", specs[k]);
    pl_routing r;
    cr_assert_eq(pl_routing_init(&r, 8, 32, 0), PL_OK);
    cr_assert_eq(pl_policy_route_serving(p, 0, counts, &r), PL_OK);
    for (int g = 0; g < 8; g++)
      for (int e = 0; e < 32; e++)
        if (r.load[g * 32 + e] > 0)
          cr_assert(pl_placement_has(serving, e, g), "%s: tokens on a replica not serving",
                    specs[k]);
    /* from the next plan on, the new placement serves */
    cr_assert_eq(pl_policy_observe(p, it, 0, counts), PL_OK);
    pl_placement landed;
    cr_assert_eq(pl_placement_init(&landed, 32, 8, env.cluster.slots), PL_OK);
    cr_assert_eq(pl_placement_copy(&landed, now), PL_OK);
    cr_assert_eq(pl_policy_plan(p, it + 1, 0, counts, &plan), PL_OK);
    if (!plan.changed)
      cr_assert_eq(pl_placement_equal(pl_policy_serving(p, 0), &landed), 1, "%s", specs[k]);
    pl_routing_fini(&r);
    pl_placement_fini(&landed);
    pl_placement_fini(&before);
    pl_plan_fini(&plan);
    pl_policy_destroy(p);
  }
}

/* Issue 17 step 1 (pl_policy.h rule 6): flexmoe:weights_first=1 makes a
 * background plan whose weight copies fit before the layer's forward a
 * weights-first plan: it serves its own iteration (the plan made from the
 * counts of iteration t - 1 routes iteration t on the new placement), every
 * copy is split into the parameters (bytes_per_elem of the 2 + 12 bytes per
 * parameter: 1/7) and the optimizer state, and every token is routed to a
 * replica of the new placement. A plan whose weights cannot arrive in time
 * (layer 0 has only its own non-MoE work, 50 us, to hide them behind; the
 * 2048 x 8192 expert's 67 MB take 149 us over NVLink) stays a plain
 * background plan, and so does every plan without weights_first=1 or with
 * blocking moves. */
Test(policy, weights_first_plans_serve_their_own_iteration_when_the_weights_fit) {
  const struct {
    const char *spec;
    int small; /* 256 x 512 experts: 0.5 MB of weights, 1.2 us + 2 us */
    int wf, in_flight;
  } cases[] = {
      {"flexmoe:weights_first=1", 1, 1, 0},
      {"flexmoe:weights_first=1", 0, 0, 1},
      {"flexmoe:weights_first=0", 1, 0, 1},
      {"flexmoe:weights_first=1,background=0", 1, 0, 0},
  };
  for (int k = 0; k < (int)(sizeof cases / sizeof cases[0]); k++) {
    pl_env env = env8();
    env.cluster.slots = 6;
    if (cases[k].small)
      env.model = (pl_model){256, 512, 2, 2, 12.0};
    pl_policy *p = NULL;
    cr_assert_eq(pl_policy_create(&p, cases[k].spec, &env, NULL, 0), PL_OK, "%s", cases[k].spec);
    pl_plan plan;
    pl_plan_init(&plan);
    pl_placement before;
    cr_assert_eq(pl_placement_init(&before, 32, 8, env.cluster.slots), PL_OK);
    cr_assert_eq(pl_placement_copy(&before, pl_policy_placement(p, 0)), PL_OK);
    static int64_t counts[8 * 32];
    int it = first_change(p, &plan, counts);
    cr_assert_geq(it, 1, "%s never re-planned", cases[k].spec);
    cr_assert_eq(plan.weights_first, cases[k].wf, "case %d %s", k, cases[k].spec);
    cr_assert_eq(pl_policy_weights_first(p, 0), cases[k].wf, "case %d", k);
    cr_assert_eq(pl_policy_inflight(p, 0), cases[k].in_flight, "case %d", k);
    const pl_placement *now = pl_policy_placement(p, 0), *serving = pl_policy_serving(p, 0);
    cr_assert_eq(pl_placement_equal(serving, cases[k].in_flight ? &before : now), 1, "case %d", k);
    int64_t w = pl_expert_weight_bytes(&env.model), full = pl_expert_move_bytes(&env.model);
    cr_assert_eq(full, 7 * w, "bf16 weights are 1/7 of the bytes with Adam state");
    for (int m = 0; m < plan.nmoves; m++)
      cr_assert_eq(plan.moves[m].weight_bytes,
                   cases[k].wf && plan.moves[m].bytes > 0 ? w : 0, "case %d move %d", k, m);
    /* tokens: every slot routed, each to a replica that serves */
    pl_routing r;
    cr_assert_eq(pl_routing_init(&r, 8, 32, 0), PL_OK);
    cr_assert_eq(pl_policy_route_serving(p, 0, counts, &r), PL_OK);
    int64_t sum = 0, want = 0;
    for (int i = 0; i < 8 * 32; i++) {
      sum += r.load[i];
      want += counts[i];
      if (r.load[i] > 0)
        cr_assert(pl_placement_has(serving, i % 32, i / 32), "case %d", k);
    }
    cr_assert_eq(sum, want, "case %d: %lld of %lld token slots", k, (long long)sum,
                 (long long)want);
    cr_assert_eq(r.dropped, 0);
    /* the next plan clears the flag: a plan that moves nothing is not
     * weights-first */
    cr_assert_eq(pl_policy_observe(p, it, 0, counts), PL_OK);
    cr_assert_eq(pl_policy_plan(p, it + 1, 0, counts, &plan), PL_OK);
    if (!plan.changed)
      cr_assert_eq(pl_policy_weights_first(p, 0) + plan.weights_first, 0, "case %d", k);
    pl_routing_fini(&r);
    pl_placement_fini(&before);
    pl_plan_fini(&plan);
    pl_policy_destroy(p);
  }
}

/* Moves made for a hot spot that is gone before they pay back, 40
 * iterations of layer 0 on 8 GPUs of one node with a large expert (d_model
 * 4096, d_ff 14336: 2.5 GB with its optimizer state, 5.5 ms over NVLink):
 * a pair of experts 3.75 x as hot as the others sits on one GPU for 3
 * iterations, then on the next GPU. Returns the bytes moved, *plans the
 * plans that moved any. */
static int64_t chase(const char *spec, int *plans) {
  pl_env env = env8();
  env.model.d_model = 4096;
  env.model.d_ff = 14336;
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, spec, &env, NULL, 0), PL_OK, "%s", spec);
  pl_plan plan;
  pl_plan_init(&plan);
  static int64_t counts[8 * 32];
  int64_t bytes = 0;
  *plans = 0;
  for (int it = 0; it < 40; it++) {
    cr_assert_eq(pl_policy_plan(p, it, 0, counts, &plan), PL_OK, "%s", spec);
    *plans += plan.changed && plan.nmoves > 0;
    for (int m = 0; plan.changed && m < plan.nmoves; m++)
      bytes += plan.moves[m].bytes;
    for (int s = 0; s < 8; s++)
      for (int e = 0; e < 32; e++)
        counts[s * 32 + e] = e / 4 == (it / 3) % 8 && e % 4 < 2 ? 150 : 40;
    cr_assert_eq(pl_policy_observe(p, it, 0, counts), PL_OK, "%s", spec);
  }
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  return bytes;
}

/* Issue 17, "never behind": with payback (the default, 8 iterations) a plan
 * must pay its moves back within its lifetime capped at `payback`, charged
 * the moves the engines run (pl_placement_diff's), times the layer's trust,
 * which falls when the counts that followed its plans show they did not pay.
 * Without it (payback=0) flexmoe splits the hot pair each time it moves on
 * (7 plans, 23 GB); with it, it moves at most a third as often and a third
 * of the bytes (measured: never). */
Test(policy, flexmoe_does_not_chase_a_hot_spot_its_moves_cannot_pay_for) {
  int n0 = 0, n1 = 0;
  int64_t b0 = chase("flexmoe:payback=0", &n0), b1 = chase("flexmoe", &n1);
  cr_assert_geq(n0, 5, "payback=0 should chase the hot spot: %d plans, %lld bytes", n0,
                (long long)b0);
  cr_assert_leq(3 * n1, n0, "payback=8: %d plans that move (payback=0: %d)", n1, n0);
  cr_assert_leq(3 * b1, b0, "payback=8: %lld bytes moved (payback=0: %lld)", (long long)b1,
                (long long)b0);
}

/* A hot expert that stays, 20 iterations of 2 layers on 8 GPUs of one
 * node with the real traces' small expert (d_model 384, d_ff 768: NVLink
 * copies of its weights take microseconds) and 8 slots per GPU: expert 0
 * gets 5 x the others' tokens from every source. Returns the bytes moved
 * by layer 1's plans, *plans the plans that moved any, *temps layer 1's
 * temporaries in the last iteration. */
static int64_t steady_hot(const char *spec, int *plans, int *temps) {
  pl_env env = env8();
  env.model.d_model = 384;
  env.model.d_ff = 768;
  env.cluster.slots = 8;
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, spec, &env, NULL, 0), PL_OK, "%s", spec);
  pl_plan plan;
  pl_plan_init(&plan);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 32, 8, 8), PL_OK);
  static int64_t counts[8 * 32];
  for (int s = 0; s < 8; s++)
    for (int e = 0; e < 32; e++)
      counts[s * 32 + e] = e == 0 ? 200 : 40;
  int64_t bytes = 0;
  *plans = 0;
  for (int it = 0; it < 20; it++)
    for (int l = 0; l < 2; l++) {
      cr_assert_eq(pl_policy_plan(p, it, l, counts, &plan), PL_OK, "%s", spec);
      if (l == 1) {
        *plans += plan.changed && plan.nmoves > 0;
        for (int m = 0; plan.changed && m < plan.nmoves; m++)
          bytes += plan.moves[m].bytes;
        cr_assert_eq(pl_policy_temporaries(p, l, counts, &t), PL_OK, "%s", spec);
        *temps = t.n;
      }
      cr_assert_eq(pl_policy_observe(p, it, l, counts), PL_OK, "%s", spec);
    }
  pl_temps_fini(&t);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  return bytes;
}

/* Issue 17, aux at 8 GPUs: with shadow_net=1 (the default) the guard
 * judges every plan as the layer would serve, each placement less what its
 * temporaries would save on the same counts. A hot expert that the
 * temporaries absorb each iteration at no exposed cost (layer 1: its
 * gradients' way back hides behind layer 0's backward) is left to them:
 * no move. With shadow_net=0 only plans that do not pay back within one
 * iteration were judged so, and this one (it pays in one) moved. */
Test(policy, flexmoe_leaves_to_the_temporaries_what_they_absorb) {
  int n0 = 0, n1 = 0, t0 = 0, t1 = 0;
  int64_t b0 = steady_hot("flexmoe:shadow_net=0", &n0, &t0);
  int64_t b1 = steady_hot("flexmoe", &n1, &t1);
  cr_assert_geq(n0, 1, "shadow_net=0: %d plans, %lld bytes", n0, (long long)b0);
  cr_assert_eq(n1, 0, "shadow_net=1: %d plans, %lld bytes", n1, (long long)b1);
  cr_assert_gt(t1, 0, "shadow_net=1: the temporaries absorb the hot expert");
}

/* flexmoe keeps payback's decision of the temporaries on its open plan's
 * placement and hands it to the engines' call for the same counts
 * (policy_flexmoe.c fx_memo): the temporaries the policy returns must be
 * those pl_temps_decide makes from scratch on the serving and current
 * placements and the counts, every iteration, as the counts change and
 * plans open and close. One layer (its gradients' way back has no layer
 * below to hide behind: grad_hide_us 0), a hot pair of experts whose load
 * grows and moves on every 6 iterations, counts passed in a buffer of
 * their own as the simulator passes them. */
static int fresh_decide(pl_temps *ref, pl_temps_cfg *cfg, int search, const pl_env *env,
                        const pl_placement *sv, const pl_placement *cur, const int64_t *c) {
  cfg->search = search < 0 ? PL_TEMPS_SEARCH_FAST : search;
  int rc = pl_temps_decide(ref, cfg, &env->cluster, &env->model, &env->profile, sv, cur, c,
                           env->cluster.slots);
  if (rc || search >= 0)
    return rc;
  /* search -1 (shadow=5): LAZY's unless FAST's is predicted to save more */
  double fast = ref->n > 0 ? ref->gain_us - ref->cost_us : 0.0;
  cfg->search = PL_TEMPS_SEARCH_LAZY;
  if ((rc = pl_temps_decide(ref, cfg, &env->cluster, &env->model, &env->profile, sv, cur, c,
                            env->cluster.slots)) != 0 ||
      !(fast > (ref->n > 0 ? ref->gain_us - ref->cost_us : 0.0)))
    return rc;
  cfg->search = PL_TEMPS_SEARCH_FAST;
  return pl_temps_decide(ref, cfg, &env->cluster, &env->model, &env->profile, sv, cur, c,
                         env->cluster.slots);
}

/* The temporaries tests' set-up: one layer of env8 with 8 slots per GPU
 * (its gradients' way back has no layer below to hide behind:
 * grad_hide_us 0), policy `spec` on it, a plan, and two temporaries of its
 * dimensions. */
typedef struct one_layer {
  pl_env env;
  pl_policy *p;
  pl_plan plan;
  pl_temps t, ref;
} one_layer;

static void one_layer_init(one_layer *o, const char *spec) {
  o->env = env8();
  o->env.layers = 1;
  o->env.cluster.slots = 8;
  o->p = NULL;
  cr_assert_eq(pl_policy_create(&o->p, spec, &o->env, NULL, 0), PL_OK, "%s", spec);
  pl_plan_init(&o->plan);
  cr_assert_eq(pl_temps_init(&o->t, 32, 8, 8), PL_OK);
  cr_assert_eq(pl_temps_init(&o->ref, 32, 8, 8), PL_OK);
}

static void one_layer_fini(one_layer *o) {
  pl_temps_fini(&o->ref);
  pl_temps_fini(&o->t);
  pl_plan_fini(&o->plan);
  pl_policy_destroy(o->p);
}

/* Iteration it's counts [8 x 32] of the temporaries tests: a hot pair of
 * experts (hot, the pair's index) whose load grows over 6 iterations, the
 * others at 40-46 tokens per source. */
static void hot_pair_counts(int64_t *c, int it, int hot) {
  for (int s = 0; s < 8; s++)
    for (int e = 0; e < 32; e++)
      c[s * 32 + e] = e / 2 == hot ? 300 + 20 * (it % 6) + s : 40 + (e + it) % 7;
}

/* t is ref bit for bit: temporaries in order, predictions, placement. */
static void assert_same_temps(const pl_temps *t, const pl_temps *ref, const char *spec, int it) {
  cr_assert_eq(t->n, ref->n, "%s iteration %d: %d temporaries, fresh %d", spec, it, t->n, ref->n);
  cr_assert_eq(t->gain_us, ref->gain_us, "%s iteration %d", spec, it);
  cr_assert_eq(t->cost_us, ref->cost_us, "%s iteration %d", spec, it);
  for (int k = 0; k < t->n; k++)
    cr_assert(t->temp[k].expert == ref->temp[k].expert && t->temp[k].from == ref->temp[k].from &&
                  t->temp[k].to == ref->temp[k].to,
              "%s iteration %d temporary %d", spec, it, k);
  cr_assert(t->n == 0 || pl_placement_equal(&t->placement, &ref->placement), "%s iteration %d",
            spec, it);
}

/* Iteration it of the hot pair through the n policies o[0..n): each plans
 * on the counts before, then observes this iteration's (drawn once, into
 * counts) and decides its temporaries on them, into o[k]->t. */
static void hot_pair_step(one_layer **o, int n, int it, int64_t *counts) {
  for (int k = 0; k < n; k++) {
    cr_assert_eq(pl_policy_plan(o[k]->p, it, 0, counts, &o[k]->plan), PL_OK);
    if (k == 0)
      hot_pair_counts(counts, it, (it / 6) % 16);
    cr_assert_eq(pl_policy_observe(o[k]->p, it, 0, counts), PL_OK);
    cr_assert_eq(pl_policy_temporaries(o[k]->p, 0, counts, &o[k]->t), PL_OK);
  }
}

/* search: PL_TEMPS_SEARCH_*, or -1 for shadow=5 (fresh_decide) */
static void fresh_each_iteration(const char *spec, int search) {
  one_layer o;
  one_layer_init(&o, spec);
  static int64_t counts[8 * 32], copy[8 * 32];
  pl_temps_cfg cfg = {.margin = 1, .max_temps = 0, .grad_hide_us = 0};
  int plans = 0, served = 0, taken = 0;
  for (int it = 0; it < 40; it++) {
    cr_assert_eq(pl_policy_plan(o.p, it, 0, counts, &o.plan), PL_OK);
    plans += o.plan.changed && o.plan.nmoves > 0;
    hot_pair_counts(counts, it, (it / 6) % 16);
    cr_assert_eq(pl_policy_observe(o.p, it, 0, counts), PL_OK);
    memcpy(copy, counts, sizeof(copy));
    cr_assert_eq(pl_policy_temporaries(o.p, 0, copy, &o.t), PL_OK);
    const pl_placement *sv = pl_policy_serving(o.p, 0), *cur = pl_policy_placement(o.p, 0);
    cr_assert_eq(fresh_decide(&o.ref, &cfg, search, &o.env, sv, cur, copy), PL_OK);
    served += plans > 0 && pl_placement_equal(sv, cur);
    taken += o.t.n > 0;
    assert_same_temps(&o.t, &o.ref, spec, it);
  }
  /* the case the memo serves: plans that moved, serving afterwards */
  cr_assert_geq(plans, 1, "no plan moved");
  cr_assert_geq(served, 5, "a moved plan served %d iterations", served);
  cr_assert_geq(taken, 5, "%s: temporaries in %d iterations", spec, taken);
  one_layer_fini(&o);
}

/* The default (shadow=4: FAST), shadow=5 (the better of LAZY and FAST,
 * search -1) and shadow=1 (FULL). */
Test(policy, flexmoe_temporaries_equal_a_fresh_decision_each_iteration) {
  fresh_each_iteration("flexmoe", PL_TEMPS_SEARCH_FAST);
  fresh_each_iteration("flexmoe:shadow=5", -1);
  fresh_each_iteration("flexmoe:shadow=1", PL_TEMPS_SEARCH_FULL);
}

/* The oracle keeps the temporaries its plan decided for the placement it
 * chose and hands them to the engines' call on the same counts
 * (policy_oracle.c or_memo): what it returns must be what pl_temps_decide
 * makes from scratch (shadow=5's rule) on the serving placement, for the
 * plan's own counts (the memo) and for other counts (decided afresh), and
 * the two must differ somewhere (else a memo that ignored the counts would
 * pass). One layer (grad_hide_us 0), a hot pair of experts moving every 6
 * iterations; `other` has the pair of the 8 experts further on. */
Test(policy, oracle_temporaries_equal_a_fresh_decision_for_its_counts_and_others) {
  one_layer o;
  one_layer_init(&o, "oracle:max_steps=1,search=0");
  static int64_t counts[8 * 32], copy[8 * 32], other[8 * 32];
  pl_temps_cfg cfg = {.margin = 1, .max_temps = 0, .grad_hide_us = 0};
  int differ = 0, taken = 0;
  for (int it = 0; it < 24; it++) {
    int hot = (it / 6) % 16;
    hot_pair_counts(counts, it, hot);
    for (int s = 0; s < 8; s++)
      for (int e = 0; e < 32; e++)
        other[s * 32 + e] = e / 2 == (hot + 4) % 16 ? 500 + 9 * s : 30 + (e + s) % 5;
    cr_assert_eq(pl_policy_plan(o.p, it, 0, counts, &o.plan), PL_OK);
    cr_assert_eq(pl_policy_observe(o.p, it, 0, counts), PL_OK);
    const pl_placement *sv = pl_policy_serving(o.p, 0);
    memcpy(copy, counts, sizeof(copy));
    cr_assert_eq(pl_policy_temporaries(o.p, 0, copy, &o.t), PL_OK);
    cr_assert_eq(fresh_decide(&o.ref, &cfg, -1, &o.env, sv, sv, copy), PL_OK);
    assert_same_temps(&o.t, &o.ref, "oracle, its counts", it);
    taken += o.t.n > 0;
    int n = o.t.n, x0 = n > 0 ? o.t.temp[0].expert : -1;
    cr_assert_eq(pl_policy_temporaries(o.p, 0, other, &o.t), PL_OK);
    cr_assert_eq(fresh_decide(&o.ref, &cfg, -1, &o.env, sv, sv, other), PL_OK);
    assert_same_temps(&o.t, &o.ref, "oracle, other counts", it);
    differ += n != o.t.n || (n > 0 && o.t.temp[0].expert != x0);
  }
  cr_assert_geq(taken, 5, "temporaries in %d iterations", taken);
  cr_assert_geq(differ, 5, "other counts changed the decision in %d iterations", differ);
  one_layer_fini(&o);
}

/* flexmoe's guard vetoes a plan on the layer's temporaries (shadow_net=1,
 * fx_shadow_veto) and reuses the engines' last decision for it when the
 * counts and placements are the same and the veto's grad_hide_us is in
 * that decision's range (policy_flexmoe.c fx_last). Calling the
 * temporaries op must then change no plan: A calls it every iteration of
 * every layer, on the observed counts on even iterations and on other
 * counts (the hot pair elsewhere) on odd ones, B never calls it (every
 * veto decides from scratch); their plans must be the same, move for move.
 * Three layers (the upper ones hide their gradients' way back behind the
 * lower ones' estimates, which the plans re-estimate), a hot pair moving
 * every 4 iterations, three models and inter-node links. A reuse that
 * skips the counts' or the placements' comparison changes plans here (each
 * checked by breaking it); whether the veto's grad_hide_us is in the
 * decision's range seldom flips a veto: the range itself is checked in
 * test_shadow.c (a_decision_is_the_same_over_its_reported_grad_hide_range). */
static void veto_reuse(const char *spec, int d_model, double inter_Bps, int *moved, int *temps) {
  pl_env env = env8();
  env.layers = 3;
  env.cluster.slots = 8;
  env.cluster.inter_Bps = inter_Bps;
  env.model.d_model = d_model;
  env.model.d_ff = 2 * d_model;
  pl_policy *a = NULL, *b = NULL;
  cr_assert_eq(pl_policy_create(&a, spec, &env, NULL, 0), PL_OK, "%s", spec);
  cr_assert_eq(pl_policy_create(&b, spec, &env, NULL, 0), PL_OK, "%s", spec);
  pl_plan pa, pb;
  pl_plan_init(&pa);
  pl_plan_init(&pb);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, 32, 8, 8), PL_OK);
  static int64_t counts[8 * 32], other[8 * 32];
  for (int it = 0; it < 60; it++)
    for (int l = 0; l < 3; l++) {
      cr_assert_eq(pl_policy_plan(a, it, l, counts, &pa), PL_OK);
      cr_assert_eq(pl_policy_plan(b, it, l, counts, &pb), PL_OK);
      cr_assert_eq(pa.changed, pb.changed, "%s iteration %d layer %d", spec, it, l);
      if (pa.changed) {
        cr_assert_eq(pa.nmoves, pb.nmoves, "%s iteration %d layer %d", spec, it, l);
        cr_assert_eq(memcmp(pa.moves, pb.moves, (size_t)pa.nmoves * sizeof(pl_move)), 0,
                     "%s iteration %d layer %d", spec, it, l);
        *moved += pa.nmoves > 0;
      }
      /* the same counts for 4 iterations at a time, a new hot pair after */
      int hot = (it / 4 + 3 * l) % 16, blk = it / 4;
      for (int s = 0; s < 8; s++)
        for (int e = 0; e < 32; e++) {
          counts[s * 32 + e] =
              e / 2 == hot ? 250 + 30 * (blk % 5) + 7 * s + 11 * l : 30 + (e + blk + s) % 9;
          other[s * 32 + e] = e / 2 == (hot + 5) % 16 ? 900 + s : 30 + (e + s) % 5;
        }
      cr_assert_eq(pl_policy_observe(a, it, l, counts), PL_OK);
      cr_assert_eq(pl_policy_observe(b, it, l, counts), PL_OK);
      /* the observed counts, other counts, or none (an older decision on
       * the same counts and another placement stays) */
      if (it % 3 != 2) {
        cr_assert_eq(pl_policy_temporaries(a, l, it % 3 ? other : counts, &t), PL_OK);
        *temps += t.n > 0;
      }
    }
  pl_temps_fini(&t);
  pl_plan_fini(&pa);
  pl_plan_fini(&pb);
  pl_policy_destroy(a);
  pl_policy_destroy(b);
}

Test(policy, flexmoe_veto_reusing_the_engines_temporaries_changes_no_plan) {
  int moved = 0, temps = 0;
  const char *specs[] = {"flexmoe", "flexmoe:shadow=5", "flexmoe:shadow=1",
                         "flexmoe:shadow=1,shadow_net=0"};
  const int dm[] = {1024, 768, 1536};
  const double bw[] = {50e9, 12.5e9, 25e9};
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 3; k++)
      veto_reuse(specs[i], dm[k], bw[k], &moved, &temps);
  cr_assert_geq(moved, 4, "only %d plans moved", moved);
  cr_assert_geq(temps, 20, "temporaries in only %d calls", temps);
}

/* Issue 17, 16 GPUs: flexmoe's shadow=5 temporaries are per layer and
 * iteration the better predicted of LAZY's and FAST's (shadow=4, the
 * default): on the hot pair of fresh_each_iteration each call's
 * temporaries save at least what FAST's would on the same serving and
 * current placements and counts, and more in some iterations (a faster
 * predicted layer; with FAST in its place never more). */
Test(policy, flexmoe_shadow_5_temporaries_save_at_least_fasts_and_more_somewhere) {
  one_layer o; /* o.ref: FAST's decision */
  one_layer_init(&o, "flexmoe:shadow=5");
  static int64_t counts[8 * 32];
  pl_temps_cfg cfg = {.margin = 1, .max_temps = 0, .grad_hide_us = 0,
                      .search = PL_TEMPS_SEARCH_FAST};
  int more = 0;
  for (int it = 0; it < 40; it++) {
    cr_assert_eq(pl_policy_plan(o.p, it, 0, counts, &o.plan), PL_OK);
    hot_pair_counts(counts, it, (it / 6) % 16);
    cr_assert_eq(pl_policy_observe(o.p, it, 0, counts), PL_OK);
    cr_assert_eq(pl_policy_temporaries(o.p, 0, counts, &o.t), PL_OK);
    cr_assert_eq(pl_temps_decide(&o.ref, &cfg, &o.env.cluster, &o.env.model, &o.env.profile,
                                 pl_policy_serving(o.p, 0), pl_policy_placement(o.p, 0), counts,
                                 o.env.cluster.slots),
                 PL_OK);
    double a = o.t.n > 0 ? o.t.gain_us - o.t.cost_us : 0,
           b = o.ref.n > 0 ? o.ref.gain_us - o.ref.cost_us : 0;
    cr_assert_geq(a, b, "iteration %d: shadow=5 saves %.3f us, FAST %.3f", it, a, b);
    more += a > b;
  }
  cr_assert_geq(more, 1, "shadow=5 never saved more than FAST");
  one_layer_fini(&o);
}

/* flexmoe's host=: the engines charge the temporaries decision's modelled
 * time (pl_temps_host_us: FAST's steps, LAZY's trials) at the given speed,
 * and with host_gate=0 nothing else changes: on the hot pair, shadow=5
 * with host=200 takes the same temporaries as without, every decision (one
 * that takes none too) is charged half its reference time, and without
 * host= nothing; FAST's decision alone counts steps and no trials, its
 * time steps x (2.56 + 0.0298 G). */
Test(policy, flexmoe_host_charges_the_decisions_modelled_time_and_changes_nothing_else) {
  one_layer a, b; /* b.ref: FAST's decision */
  one_layer_init(&a, "flexmoe:shadow=5");
  one_layer_init(&b, "flexmoe:shadow=5,host=200,host_gate=0");
  static int64_t counts[8 * 32];
  pl_temps_cfg cfg = {.margin = 1, .grad_hide_us = 0, .search = PL_TEMPS_SEARCH_FAST};
  for (int it = 0; it < 24; it++) {
    one_layer *o[2] = {&a, &b};
    hot_pair_step(o, 2, it, counts);
    assert_same_temps(&b.t, &a.t, "host=200", it);
    cr_assert_eq(a.t.host_us, 0.0, "iteration %d", it);
    cr_assert(b.t.steps > 0 && b.t.trials > 0, "iteration %d: %d steps, %d trials", it, b.t.steps,
              b.t.trials);
    cr_assert_eq(b.t.host_us, pl_temps_host_us(&b.t) * 100.0 / 200.0, "iteration %d", it);
    cr_assert_gt(b.t.host_us, 0.0);
    cr_assert_eq(pl_temps_decide(&b.ref, &cfg, &b.env.cluster, &b.env.model, &b.env.profile,
                                 pl_policy_serving(b.p, 0), pl_policy_placement(b.p, 0), counts,
                                 b.env.cluster.slots),
                 PL_OK);
    cr_assert(b.ref.steps > 0 && b.ref.trials == 0, "iteration %d", it);
    cr_assert_float_eq(pl_temps_host_us(&b.ref), b.ref.steps * (2.56 + 0.0298 * 8), 1e-9);
  }
  one_layer_fini(&b);
  one_layer_fini(&a);
}

/* flexmoe's host_gate (on with host > 0): a layer whose decisions cost
 * more than they predict to save stops deciding. On the hot pair with a
 * host a hundred times slower than the reference core (host=1) every
 * decision costs far more than it saves: the first four (the warm-up) are
 * made and charged as without the gate, then the layer serves without
 * temporaries and is charged nothing but for a probe after 10, then 20,
 * then 40 iterations (decisions at 0-3, 13, 33 and 73). With a host so
 * fast that a decision costs next to nothing (host=1000000) the gate stays
 * open: every iteration's temporaries and charge are host_gate=0's. */
Test(policy, flexmoe_host_gate_stops_deciding_where_the_decision_costs_more_than_it_saves) {
  const char *specs[4] = {"flexmoe:host=1,host_gate=0", "flexmoe:host=1",
                          "flexmoe:host=1000000,host_gate=0", "flexmoe:host=1000000"};
  one_layer o[4], *op[4] = {&o[0], &o[1], &o[2], &o[3]};
  for (int k = 0; k < 4; k++)
    one_layer_init(&o[k], specs[k]);
  static int64_t counts[8 * 32];
  int decided = 0, saved = 0;
  for (int it = 0; it < 80; it++) {
    hot_pair_step(op, 4, it, counts);
    int want = it < 4 || it == 13 || it == 33 || it == 73;
    if (it < 4)
      assert_same_temps(&o[1].t, &o[0].t, specs[1], it);
    cr_assert_gt(o[0].t.host_us, 0.0, "iteration %d", it);
    if (want) {
      cr_assert_gt(o[1].t.host_us, 0.0, "iteration %d: a decision, charged", it);
      saved += o[1].t.n > 0 ? o[1].t.gain_us - o[1].t.cost_us < o[1].t.host_us : 1;
      decided++;
    } else {
      cr_assert(o[1].t.host_us == 0.0 && o[1].t.n == 0,
                "iteration %d: %d temporaries, %.3f us charged while the gate is closed", it,
                o[1].t.n, o[1].t.host_us);
    }
    assert_same_temps(&o[3].t, &o[2].t, specs[3], it);
    cr_assert_eq(o[3].t.host_us, o[2].t.host_us, "iteration %d", it);
    cr_assert(o[3].t.host_us > 0.0 && o[3].t.host_us < 0.01, "iteration %d: %.6f us", it,
              o[3].t.host_us);
  }
  cr_assert_eq(decided, 7);
  cr_assert_eq(saved, 7, "a decision at host=1 saved more than it cost");
  for (int k = 0; k < 4; k++)
    one_layer_fini(&o[k]);
}

/* shadow=5's second gate: LAZY's part of the decision, judged by what it
 * adds to FAST's predicted saving against its own charged time. On the
 * hot pair (host=100) LAZY adds nothing to FAST's sets: after its four
 * warm-up decisions (trials at iterations 0-3) the layer decides with FAST
 * alone, charged every iteration (its decisions pay), and LAZY runs again
 * only as probes, after 10, 20 and 40 iterations (13, 33, 73). */
Test(policy, flexmoe_shadow_5_host_gate_runs_lazy_only_where_its_part_pays) {
  one_layer o, *op[1] = {&o};
  one_layer_init(&o, "flexmoe:shadow=5,host=100");
  static int64_t counts[8 * 32];
  for (int it = 0; it < 80; it++) {
    hot_pair_step(op, 1, it, counts);
    int lazy = it < 4 || it == 13 || it == 33 || it == 73;
    cr_assert_gt(o.t.host_us, 0.0, "iteration %d: decided and charged", it);
    cr_assert_gt(o.t.steps, 0, "iteration %d", it);
    cr_assert(lazy ? o.t.trials > 0 : o.t.trials == 0, "iteration %d: %d trials", it,
              o.t.trials);
  }
  one_layer_fini(&o);
}

/* host_gate without host=: no gate (nothing is charged, so every decision
 * pays), the same temporaries as host_gate=0 every iteration; and a value
 * other than 0 or 1 is refused. */
Test(policy, flexmoe_host_gate_needs_a_charge_and_takes_0_or_1) {
  one_layer a, b;
  one_layer_init(&a, "flexmoe:host_gate=0");
  one_layer_init(&b, "flexmoe:host_gate=1");
  static int64_t counts[8 * 32];
  for (int it = 0; it < 30; it++) {
    one_layer *o[2] = {&a, &b};
    hot_pair_step(o, 2, it, counts);
    assert_same_temps(&b.t, &a.t, "host_gate=1 without host=", it);
    cr_assert_eq(b.t.host_us, 0.0);
  }
  one_layer_fini(&b);
  one_layer_fini(&a);
  pl_env env = env8();
  pl_policy *p = NULL;
  cr_assert_neq(pl_policy_create(&p, "flexmoe:host=100,host_gate=2", &env, NULL, 0), PL_OK);
  cr_assert_null(p);
}

/* Issue 17, 16 GPUs: with shadow=5 and shadow_net=1 flexmoe's guard
 * judges the static layout net of its temporaries too, as it judges the
 * plan and the current placement. Eight hot experts (iterations 0-19) make
 * plans that replicate them; then they cool and expert 31 (static's GPU 7)
 * runs hot at 202 tokens per source. Static plus its temporaries serves
 * layer 1 faster (predicted, each placement with shadow=5's temporaries on
 * the same counts) than the replicated placement, whose planned copies pay their
 * all-reduce every iteration, and the layer goes back to it; judged gross
 * (the guard before) static, without the temporary its hot GPU, never
 * won and no layer went back. Measured: 668.7 against 700.9 us; at 180
 * tokens neither guard goes back (a sharp case, not a typical one). */
Test(policy, flexmoe_guard_returns_to_static_when_its_temporaries_serve_faster) {
  pl_env env = env8();
  env.model.d_model = 384;
  env.model.d_ff = 768;
  env.cluster.slots = 8;
  pl_policy *p = NULL;
  /* restart_backoff=0: a restart every plan, as when the case was made
   * (with the default's backoff the restarts after the switch at iteration
   * 20 are skipped and the plans take another way; the guard is checked) */
  cr_assert_eq(pl_policy_create(&p, "flexmoe:shadow=5,restart_backoff=0", &env, NULL, 0), PL_OK);
  pl_plan plan;
  pl_plan_init(&plan);
  pl_temps t, a, b;
  cr_assert_eq(pl_temps_init(&t, 32, 8, 8), PL_OK);
  cr_assert_eq(pl_temps_init(&a, 32, 8, 8), PL_OK);
  cr_assert_eq(pl_temps_init(&b, 32, 8, 8), PL_OK);
  pl_placement st, was[2];
  cr_assert_eq(pl_placement_init(&st, 32, 8, 8), PL_OK);
  cr_assert_eq(pl_placement_static(&st), PL_OK);
  static int64_t counts[8 * 32];
  int back = 0;
  for (int it = 0; it < 40; it++) {
    for (int s = 0; s < 8; s++)
      for (int e = 0; e < 32; e++)
        counts[s * 32 + e] = it < 20 ? (e < 8 ? 100 + 400 * (e % 3) + 30 * s : 40)
                                     : (e == 31 ? 202 : 40);
    for (int l = 0; l < 2; l++) {
      cr_assert_eq(pl_policy_plan(p, it, l, counts, &plan), PL_OK);
      if (it == 19) {
        cr_assert(!pl_placement_equal(pl_policy_placement(p, l), &st), "layer %d moved", l);
        cr_assert_eq(pl_placement_init(&was[l], 32, 8, 8), PL_OK);
        cr_assert_eq(pl_placement_copy(&was[l], pl_policy_placement(p, l)), PL_OK);
      }
      cr_assert_eq(pl_policy_temporaries(p, l, counts, &t), PL_OK);
      cr_assert_eq(pl_policy_observe(p, it, l, counts), PL_OK);
    }
  }
  pl_temps_cfg cfg = {.margin = 1, .max_temps = 0, .grad_hide_us = 0};
  for (int l = 0; l < 2; l++) {
    if (!pl_placement_equal(pl_policy_placement(p, l), &st))
      continue;
    back++;
    double us_st, us_was;
    cr_assert_eq(fresh_decide(&a, &cfg, -1, &env, &st, &st, counts), PL_OK);
    cr_assert_eq(fresh_decide(&b, &cfg, -1, &env, &was[l], &was[l], counts), PL_OK);
    cr_assert_gt(a.n, 0, "layer %d: static's temporaries", l);
    cr_assert_eq(pl_temps_predict_us(&t, &env.cluster, &env.model, &env.profile, &a.placement,
                                     a.temp, a.n, counts, &us_st),
                 PL_OK);
    cr_assert_eq(pl_temps_predict_us(&t, &env.cluster, &env.model, &env.profile,
                                     b.n > 0 ? &b.placement : &was[l], b.temp, b.n, counts,
                                     &us_was),
                 PL_OK);
    cr_assert_lt(us_st, us_was, "layer %d: static %.3f us, the placement it left %.3f", l,
                 us_st, us_was);
  }
  cr_assert_geq(back, 1, "no layer went back to static");
  pl_placement_fini(&was[0]);
  pl_placement_fini(&was[1]);
  pl_placement_fini(&st);
  pl_temps_fini(&b);
  pl_temps_fini(&a);
  pl_temps_fini(&t);
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}
