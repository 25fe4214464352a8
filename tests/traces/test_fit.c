/* Fitting the generator: a trace generated from the fit has the original's
 * skew and lag-1/lag-10 fluctuation within 10% per layer (issue 7). */
#include <criterion/criterion.h>
#include <math.h>

#include "../require.h"
#include "tr_testutil.h"
#include "traces/tr_fit.h"
#include "traces/tr_stats.h"

#define P(name) tu_path((char[512]){0}, 512, name)

/* Fits `path`, saves and reloads FIT.json, generates `mult` times the
 * original length with `seed`, and checks every layer. */
static void fit_and_check(const char *path, int64_t mult, uint64_t seed, double tol) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, path, &err), TR_OK, "%s", err.msg);
  tr_fit f, g;
  cr_assert_eq(tr_fit_trace(&t, 0, -1, 1, &f), TR_OK);
  cr_assert_eq(tr_fit_save(&f, P("fit.json"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_fit_load(&g, P("fit.json"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(g.layers, t.layers);
  cr_assert_eq(g.experts, t.experts);
  cr_assert_float_eq(g.layer[1].phi, f.layer[1].phi, 1e-9);
  cr_assert_float_eq(g.base[5], f.base[5], 1e-9);

  tr_gen_config c;
  tr_gen_defaults(&c);
  c.layers = g.layers;
  c.ranks = g.ranks;
  c.experts = g.experts;
  c.top_k = 0;
  c.tokens_per_rank = 0;
  c.iterations = t.iterations * mult;
  c.seed = seed;
  double *owned;
  cr_assert_eq(tr_fit_apply(&g, &c, &owned), TR_OK);
  cr_assert_eq(c.top_k, t.meta.top_k ? t.meta.top_k : 1);
  cr_assert_eq(tr_gen_write(&c, P("gen.npy"), &err), TR_OK, "%s", err.msg);
  tr_free(owned);
  tr_trace u;
  cr_assert_eq(tr_open(&u, P("gen.npy"), &err), TR_OK, "%s", err.msg);
  tr_fit_stats want[64], got[64];
  cr_assert_eq(tr_fit_measure(&t, want), TR_OK);
  cr_assert_eq(tr_fit_measure(&u, got), TR_OK);
  for (int l = 0; l < t.layers; l++) {
    cr_assert(fabs(got[l].max_mean_p50 / want[l].max_mean_p50 - 1) < tol,
              "%s layer %d: max/mean p50 %.3f vs %.3f", path, l, got[l].max_mean_p50,
              want[l].max_mean_p50);
    cr_assert(fabs(got[l].change1 / want[l].change1 - 1) < tol,
              "%s layer %d: L1 lag 1 %.4f vs %.4f", path, l, got[l].change1, want[l].change1);
    cr_assert(fabs(got[l].change10 / want[l].change10 - 1) < tol,
              "%s layer %d: L1 lag 10 %.4f vs %.4f", path, l, got[l].change10,
              want[l].change10);
  }
  tr_close(&u);
  tr_fit_fini(&f);
  tr_fit_fini(&g);
  tr_close(&t);
}

Test(fit, generated_from_the_aux_trace_matches_skew_and_fluctuation_per_layer) {
  const char *p = tu_real("gpt-l6-e32-top2-aux");
  if (!p)
    fm_skip("real-traces", "../shared/traces/real not present");
  fit_and_check(p, 8, 1, 0.10);
}

Test(fit, generated_from_the_noaux_trace_matches_skew_and_fluctuation_per_layer) {
  const char *p = tu_real("gpt-l6-e32-top2-noaux");
  if (!p)
    fm_skip("real-traces", "../shared/traces/real not present");
  fit_and_check(p, 8, 1, 0.10);
}

/* The bundled sample, a 200-iteration excerpt, fits too; checked on every
 * machine (about 15 s), so a bare clone checks the fitter as well. */
Test(fit, the_bundled_sample_fits) {
  fit_and_check(tu_sample(), 10, 3, 0.10);
}

/* A hand-made two-layer fit: larger layer and expert counts reuse it. */
Test(fit, larger_expert_counts_keep_the_profile_range) {
  tr_fit f = {.layers = 2, .ranks = 4, .experts = 32, .top_k = 2, .iterations = 10,
              .tokens_per_rank = 100};
  double base[64];
  tr_fit_layer layer[2] = {{.scale = 1, .innov = 0.1, .phi = 0.9, .rank_sigma = 0.2},
                           {.scale = 2, .innov = 0.2, .phi = 0.8, .rank_sigma = 0.1, .psi = 0.3}};
  for (int i = 0; i < 64; i++)
    base[i] = sin(i * 1.7) * (1 + i / 32);
  f.base = base;
  f.layer = layer;
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.layers = 8; /* layers 2..7 reuse fitted layers 0, 1 */
  c.experts = 64;
  c.top_k = 0; /* 0: the fit's */
  c.tokens_per_rank = 0;
  double *owned;
  cr_assert_eq(tr_fit_apply(&f, &c, &owned), TR_OK);
  double lo = INFINITY, hi = -INFINITY, flo = INFINITY, fhi = -INFINITY;
  for (int e = 0; e < 64; e++) {
    lo = fmin(lo, c.base[64 * 3 + e]);
    hi = fmax(hi, c.base[64 * 3 + e]);
  }
  for (int e = 0; e < 32; e++) {
    flo = fmin(flo, base[32 + e]);
    fhi = fmax(fhi, base[32 + e]);
  }
  cr_assert_float_eq(hi, fhi, 1e-12, "the hottest keeps its logit");
  cr_assert_float_eq(lo, flo, 1e-12, "the coldest too");
  cr_assert_float_eq(c.phi[6], 0.9, 1e-12);
  cr_assert_float_eq(c.scale[7], 2, 1e-12);
  cr_assert_float_eq(c.psi[7], 0.3, 1e-12);
  cr_assert_eq(c.top_k, 2);
  cr_assert_eq(c.tokens_per_rank, 100);
  c.iterations = 5;
  cr_assert_eq(tr_gen_write(&c, P("big.npy"), NULL), TR_OK);
  tr_free(owned);
}

Test(fit, a_malformed_fit_file_is_emeta_naming_it) {
  tr_fit f;
  tr_error err;
  const char *p = P("bad-fit.json");
  tu_text(p, "{\"layers\": 2, \"ranks\": 8}");
  cr_assert_eq(tr_fit_load(&f, p, &err), TR_EMETA);
  cr_assert_str_eq(err.path, p);
  tu_text(p, "{\"layers\": 2,\n");
  cr_assert_eq(tr_fit_load(&f, p, &err), TR_EMETA);
  cr_assert_eq(err.line, 2);
  cr_assert_eq(tr_fit_load(&f, P("none.json"), &err), TR_ENOENT);
}

/* A fit file's sizes and model numbers are within their physical ranges,
 * named in the message; a trace with no tokens has no model to fit. */
Test(fit, fit_files_with_numbers_beyond_their_ranges_are_refused_naming_them) {
  static const struct {
    const char *json, *want;
  } bad[] = {
      {"{\"layers\": 1, \"ranks\": 1, \"experts\": 1048577, \"top_k\": 1, "
       "\"tokens_per_rank\": 8, \"iterations\": 20}",
       "'experts' must be an integer between 1 and 1048576"},
      {"{\"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 5, "
       "\"tokens_per_rank\": 8, \"iterations\": 20}",
       "'top_k' must be an integer between 1 and 4 (its experts)"},
      {"{\"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 9223372036854775807, \"iterations\": 20}",
       "'tokens_per_rank' must be an integer between 1 and 1099511627776"},
      {"{\"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 8, \"iterations\": 16777217}",
       "'iterations' must be an integer between 1 and 16777216"},
      {"{\"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 8, \"iterations\": 20, \"d_model\": 4294967296}",
       "'d_model' must be an integer between 1 and 1048576"},
      {"{\"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 8, \"iterations\": 20, \"bytes_per_elem\": 9}",
       "'bytes_per_elem' must be an integer between 1 and 8"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tu_text(P("bad-fit.json"), bad[i].json);
    tr_fit f;
    tr_error err;
    cr_assert_eq(tr_fit_load(&f, P("bad-fit.json"), &err), TR_EMETA, "%s", bad[i].json);
    cr_assert(strstr(err.msg, bad[i].want) != NULL, "'%s' lacks '%s'", err.msg, bad[i].want);
    cr_assert_null(f.base);
  }
  int32_t zero[12 * 4] = {0};
  tu_npy(P("zero.npy"), 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (12, 1, 1, 4), }",
         zero, sizeof(zero));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, P("zero.npy"), &err), TR_OK, "%s", err.msg);
  tr_fit f;
  cr_assert_eq(tr_fit_trace(&t, 0, -1, 1, &f), TR_EINVAL);
  tr_close(&t);
}

/* tr_fit_apply spreads the model over the generator's sizes (L x E
 * doubles): with the generator's own state, checked against c's budget
 * before allocating. */
Test(fit, applying_a_fit_over_the_memory_budget_is_ebudget) {
  tu_text(P("tiny-fit.json"), "{\"layers\": 1, \"ranks\": 1, \"experts\": 2, \"top_k\": 1, "
                              "\"tokens_per_rank\": 8, \"iterations\": 20, \"per_layer\": "
                              "[{\"scale\": 1, \"innov\": 0.1, \"phi\": 0.9, \"rank_sigma\": 0, "
                              "\"base\": [0.5, -0.5]}]}");
  tr_fit f;
  tr_error err;
  cr_assert_eq(tr_fit_load(&f, P("tiny-fit.json"), &err), TR_OK, "%s", err.msg);
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.layers = 4096;
  c.experts = 1 << 20;
  c.max_memory = (uint64_t)1 << 30;
  double *owned = (double *)&c; /* untouched on error */
  cr_assert_eq(tr_fit_apply(&f, &c, &owned), TR_EBUDGET);
  cr_assert_eq(owned, (double *)&c);
  c.layers = 2;
  c.experts = 4;
  cr_assert_eq(tr_fit_apply(&f, &c, &owned), TR_OK);
  tr_free(owned);
  tr_fit_fini(&f);
}
