/* Synthetic traces: determinism, exact totals, and each named pattern's
 * signature. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "tr_testutil.h"
#include "traces/tr_gen.h"
#include "traces/tr_stats.h"
#include "traces/tr_trace.h"

#define P(name) tu_path((char[512]){0}, 512, name)

static tr_trace gen(const char *name, const char *pattern, int64_t I, int L, int R, int E,
                    uint64_t seed) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.iterations = I;
  c.layers = L;
  c.ranks = R;
  c.experts = E;
  c.tokens_per_rank = 512;
  c.seed = seed;
  if (pattern)
    cr_assert_eq(tr_gen_pattern(&c, pattern), TR_OK, "%s", pattern);
  tr_error err;
  const char *p = P(name);
  cr_assert_eq(tr_gen_write(&c, p, &err), TR_OK, "%s", err.msg);
  tr_trace t;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  return t;
}

/* Load of expert e summed over ranks and iterations of layer 0. */
static double load(const tr_trace *t, int e) {
  double s = 0;
  for (int64_t it = 0; it < t->iterations; it++)
    for (int r = 0; r < t->ranks; r++)
      s += (double)tr_at(t, it, 0, r, e);
  return s;
}

Test(gen, same_seed_same_file_and_another_seed_differs) {
  tr_trace a = gen("a.npy", "realistic", 30, 2, 4, 16, 5);
  tr_trace b = gen("b.npy", "realistic", 30, 2, 4, 16, 5);
  tr_trace c = gen("c.npy", "realistic", 30, 2, 4, 16, 6);
  cr_assert_eq(a.map_len, b.map_len);
  cr_assert_eq(memcmp(a.map, b.map, a.map_len), 0, "same seed, different bytes");
  cr_assert_neq(a.hash, c.hash);
  tr_close(&a);
  tr_close(&b);
  tr_close(&c);
}

Test(gen, every_rank_routes_exactly_tokens_times_k_and_at_most_one_slot_per_token) {
  for (int i = 0; tr_gen_patterns[i]; i++) {
    if (strcmp(tr_gen_patterns[i], "source-ragged") == 0)
      continue; /* ragged totals by design (below) */
    tr_trace t = gen("tot.npy", tr_gen_patterns[i], 20, 2, 4, 16, 1);
    cr_assert_eq(t.meta.top_k, 2);
    cr_assert_eq(t.meta.tokens_per_rank, 512);
    for (int64_t it = 0; it < t.iterations; it++)
      for (int l = 0; l < t.layers; l++)
        for (int r = 0; r < t.ranks; r++) {
          int64_t s = 0;
          for (int e = 0; e < t.experts; e++) {
            int64_t v = tr_at(&t, it, l, r, e);
            cr_assert(v <= 512, "%s: expert %d got %ld slots from 512 tokens",
                      tr_gen_patterns[i], e, (long)v);
            s += v;
          }
          cr_assert_eq(s, 1024, "%s: rank %d routes %ld", tr_gen_patterns[i], r, (long)s);
        }
    tr_close(&t);
  }
}

Test(gen, balanced_is_flat_and_hot_experts_are_contiguous_or_spread) {
  tr_trace b = gen("bal.npy", "balanced", 50, 1, 8, 32, 1);
  tr_stats s;
  cr_assert_eq(tr_stats_compute(&b, 0, -1, &s), TR_OK);
  cr_assert(s.layer[0].max_mean_p50 < 1.3, "%g", s.layer[0].max_mean_p50);
  tr_stats_fini(&s);
  tr_close(&b);

  tr_trace h = gen("hot.npy", "hot-experts", 50, 1, 8, 32, 1);
  tr_trace sp = gen("spread.npy", "spread-hot-experts", 50, 1, 8, 32, 1);
  double total = 0, hot = 0, spread = 0, total2 = 0;
  for (int e = 0; e < 32; e++) {
    total += load(&h, e);
    total2 += load(&sp, e);
  }
  for (int j = 0; j < 4; j++) {
    hot += load(&h, j);         /* ids 0..3 */
    spread += load(&sp, j * 8); /* ids 0, 8, 16, 24 */
  }
  cr_assert(hot / total > 0.4, "4 of 32 contiguous hot experts carry %.2f", hot / total);
  cr_assert(spread / total2 > 0.4, "4 spread hot experts carry %.2f", spread / total2);
  cr_assert(load(&sp, 1) < load(&sp, 8) / 4, "id 1 is not hot when spread");
  tr_close(&h);
  tr_close(&sp);
}

Test(gen, hot_rank_sends_half_to_a_few_experts_others_do_not) {
  tr_trace t = gen("hotrank.npy", "hot-rank", 30, 1, 4, 16, 1);
  double r0 = 0, r1 = 0, all0 = 0, all1 = 0;
  for (int64_t it = 0; it < 30; it++)
    for (int e = 0; e < 16; e++) {
      double a = (double)tr_at(&t, it, 0, 0, e), b = (double)tr_at(&t, it, 0, 1, e);
      all0 += a;
      all1 += b;
      if (e == 8 || e == 9) { /* E/8 = 2 experts from E/2 */
        r0 += a;
        r1 += b;
      }
    }
  cr_assert(r0 / all0 > 0.45, "rank 0 sends %.2f to its hot experts", r0 / all0);
  cr_assert(r1 / all1 < 0.3, "rank 1 sends %.2f there", r1 / all1);
  tr_close(&t);
}

Test(gen, source_ragged_ranks_route_different_totals) {
  tr_trace t = gen("ragged.npy", "source-ragged", 5, 1, 8, 16, 1);
  tr_stats s;
  cr_assert_eq(tr_stats_compute(&t, 0, -1, &s), TR_OK);
  cr_assert(s.layer[0].rank_total_cv > 0.1, "%g", s.layer[0].rank_total_cv);
  tr_stats_fini(&s);
  tr_close(&t);
}

Test(gen, zero_expert_rank_leaves_its_upper_half_and_the_last_expert_empty) {
  tr_trace t = gen("zero.npy", "zero-expert-rank", 20, 2, 4, 16, 1);
  for (int64_t it = 0; it < 20; it++)
    for (int l = 0; l < 2; l++) {
      for (int e = 8; e < 16; e++)
        cr_assert_eq(tr_at(&t, it, l, 0, e), 0);
      for (int r = 0; r < 4; r++)
        cr_assert_eq(tr_at(&t, it, l, r, 15), 0);
    }
  tr_close(&t);
}

Test(gen, rotating_hotspot_moves_and_bursts_jump_16x) {
  tr_trace t = gen("rot.npy", "rotating-hotspot", 100, 1, 4, 32, 1);
  tr_trace h = gen("still.npy", "hot-experts", 100, 1, 4, 32, 1);
  tr_stats a, b;
  cr_assert_eq(tr_stats_compute(&t, 0, -1, &a), TR_OK);
  cr_assert_eq(tr_stats_compute(&h, 0, -1, &b), TR_OK);
  cr_assert(b.layer[0].hot_persist[1] > 0.9, "%g", b.layer[0].hot_persist[1]);
  /* 4 contiguous hot experts shift by one every 10 iterations: 3 of 4 remain */
  cr_assert(a.layer[0].hot_persist[1] < 0.85, "%g", a.layer[0].hot_persist[1]);
  tr_stats_fini(&a);
  tr_stats_fini(&b);
  tr_close(&t);
  tr_close(&h);

  tr_trace u = gen("burst.npy", "burst", 400, 1, 4, 32, 1);
  double jump = 0;
  for (int64_t it = 3; it < 400; it++)
    for (int e = 0; e < 32; e++) {
      double now = 0, before = 0;
      for (int r = 0; r < 4; r++) {
        now += (double)tr_at(&u, it, 0, r, e);
        before += (double)tr_at(&u, it - 3, 0, r, e);
      }
      jump = fmax(jump, now / (before + 1));
    }
  cr_assert(jump > 6, "largest 3-iteration jump %.1fx", jump);
  tr_close(&u);
}

Test(gen, distributions_order_by_skew) {
  static const tr_dist d[] = {TR_DIST_UNIFORM, TR_DIST_LOGNORMAL, TR_DIST_ZIPF};
  double prev = 0;
  for (int i = 0; i < 3; i++) {
    tr_gen_config c;
    tr_gen_defaults(&c);
    c.iterations = 20;
    c.layers = 1;
    c.experts = 32;
    c.dist = d[i];
    c.dist_param = 1.2;
    const char *p = P("dist.npy");
    tr_error err;
    cr_assert_eq(tr_gen_write(&c, p, &err), TR_OK, "%s", err.msg);
    tr_trace t;
    cr_assert_eq(tr_open(&t, p, &err), TR_OK);
    tr_stats s;
    cr_assert_eq(tr_stats_compute(&t, 0, -1, &s), TR_OK);
    cr_assert(s.layer[0].gini > prev, "dist %d gini %g <= %g", i, s.layer[0].gini, prev);
    prev = s.layer[0].gini;
    tr_stats_fini(&s);
    tr_close(&t);
  }
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.dist = TR_DIST_DIRICHLET;
  c.dist_param = 0.3;
  cr_assert_eq(tr_gen_write(&c, P("dir.npy"), NULL), TR_OK);
}

Test(gen, bad_configurations_are_refused) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  cr_assert_eq(tr_gen_pattern(&c, "no-such-pattern"), TR_EINVAL);
  c.top_k = c.experts + 1;
  tr_gen *g;
  cr_assert_eq(tr_gen_new(&c, &g), TR_EINVAL);
  tr_gen_defaults(&c);
  c.iterations = 0;
  tr_error err;
  cr_assert_eq(tr_gen_write(&c, P("x.npy"), &err), TR_EINVAL);
  cr_assert_neq(access(P("x.npy"), F_OK), 0);
}

/* What the generator holds grows with layers x experts and ranks x experts,
 * not with the length: it is checked against the budget before anything is
 * allocated, and nothing is written. */
Test(gen, a_configuration_over_the_memory_budget_is_refused_with_its_size) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.ranks = 1 << 20;
  c.experts = 1 << 20;
  c.max_memory = (uint64_t)1 << 30;
  tr_gen *g = NULL;
  cr_assert_eq(tr_gen_new(&c, &g), TR_EBUDGET);
  cr_assert_null(g);
  tr_error err;
  cr_assert_eq(tr_gen_write(&c, P("huge.npy"), &err), TR_EBUDGET);
  cr_assert(strstr(err.msg, "1048576 ranks x 1048576 experts needs 16.0 TiB") != NULL, "%s",
            err.msg);
  cr_assert(strstr(err.msg, "budget of 1.00 GiB") != NULL, "%s", err.msg);
  cr_assert_neq(access(P("huge.npy"), F_OK), 0);
  /* the default configuration fits a small budget; its length does not count */
  tr_gen_defaults(&c);
  c.iterations = 3;
  uint64_t need = tr_gen_memory(&c);
  c.max_memory = need;
  cr_assert_eq(tr_gen_write(&c, P("small.npy"), &err), TR_OK, "%s", err.msg);
  c.iterations = 300;
  cr_assert_eq(tr_gen_memory(&c), need);
  c.max_memory = need - 1;
  cr_assert_eq(tr_gen_write(&c, P("small.npy"), &err), TR_EBUDGET);
}

/* Sizes and model numbers outside their physical ranges are refused with
 * the field and the range in the message; nothing is written. */
Test(gen, sizes_beyond_their_physical_ranges_are_refused_naming_the_range) {
  static const struct {
    int field;
    int64_t v;
    const char *want;
  } bad[] = {{0, 16777217, "iterations 16777217 is out of range: it must be between 1 and 16777216"},
             {1, 4097, "layers 4097 is out of range: it must be between 1 and 4096"},
             {2, 1048577, "ranks 1048577 is out of range"},
             {3, 0, "experts 0 is out of range: it must be between 1 and 1048576"},
             {4, 17, "top_k 17 is out of range: it must be between 1 and 16 (the experts)"},
             {5, ((int64_t)1 << 40) + 1, "tokens_per_rank 1099511627777 is out of range"},
             {6, 1048577, "d_model 1048577 is out of range"},
             {7, 9, "bytes_per_elem 9 is out of range: it must be between 1 and 8"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tr_gen_config c;
    tr_gen_defaults(&c);
    int64_t v = bad[i].v;
    switch (bad[i].field) {
    case 0: c.iterations = v; break;
    case 1: c.layers = (int)v; break;
    case 2: c.ranks = (int)v; break;
    case 3: c.experts = (int)v; break;
    case 4: c.top_k = (int)v; break;
    case 5: c.tokens_per_rank = v; break;
    case 6: c.meta.d_model = (int)v; break;
    default: c.meta.bytes_per_elem = (int)v; break;
    }
    tr_gen *g = NULL;
    cr_assert_eq(tr_gen_new(&c, &g), TR_EINVAL, "%s", bad[i].want);
    tr_error err;
    cr_assert_eq(tr_gen_write(&c, P("r.npy"), &err), TR_EINVAL, "%s", bad[i].want);
    cr_assert(strstr(err.msg, bad[i].want) != NULL, "'%s' lacks '%s'", err.msg, bad[i].want);
    cr_assert_neq(access(P("r.npy"), F_OK), 0);
  }
}

/* Bursts off (vol_ratio 1, vol_sigma 0) draw nothing: the trace is the
 * same bytes whatever the chain's probabilities; bursts on change it; a
 * regime number outside its range is refused. */
Test(gen, bursts_off_draw_nothing_and_bad_burst_numbers_are_refused) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  cr_assert_eq(tr_gen_pattern(&c, "realistic"), TR_OK);
  c.iterations = 30;
  tr_error err;
  cr_assert_eq(tr_gen_write(&c, P("plain.npy"), &err), TR_OK, "%s", err.msg);
  c.vol_enter1 = 0.3;
  c.vol_leave1 = 0.5;
  cr_assert_eq(tr_gen_write(&c, P("off.npy"), &err), TR_OK, "%s", err.msg);
  c.vol_ratio1 = 3;
  cr_assert_eq(tr_gen_write(&c, P("on.npy"), &err), TR_OK, "%s", err.msg);
  c.vol_ratio1 = 1;
  c.vol_sigma1 = 0.5;
  cr_assert_eq(tr_gen_write(&c, P("sigma.npy"), &err), TR_OK, "%s", err.msg);
  tr_trace a, b, on, sg;
  cr_assert_eq(tr_open(&a, P("plain.npy"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&b, P("off.npy"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&on, P("on.npy"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&sg, P("sigma.npy"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(a.hash, b.hash, "bursts off: the same counts");
  cr_assert_neq(a.hash, on.hash, "a burst regime changes them");
  cr_assert_neq(a.hash, sg.hash, "a log-normal step factor too");
  tr_close(&a);
  tr_close(&b);
  tr_close(&on);
  tr_close(&sg);
  static const struct {
    double ratio, enter, leave, sigma;
  } bad[] = {{0.5, 0.1, 0.1, 0}, {101, 0.1, 0.1, 0}, {2, -0.1, 0.1, 0},
             {2, 0.1, 1.5, 0},   {1, 0, 0, 5.5},     {NAN, 0.1, 0.1, 0}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tr_gen_defaults(&c);
    c.vol_ratio1 = bad[i].ratio;
    c.vol_enter1 = bad[i].enter;
    c.vol_leave1 = bad[i].leave;
    c.vol_sigma1 = bad[i].sigma;
    tr_gen *g = NULL;
    cr_assert_eq(tr_gen_new(&c, &g), TR_EINVAL, "case %zu", i);
    cr_assert_null(g);
  }
}
