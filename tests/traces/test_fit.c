/* Fitting the generator: a trace generated from the fit has the original's
 * skew, the median and p90 of its lag-1 change (issue 19: routing changes in
 * bursts) and its lag-1/lag-10 fluctuation within a tolerance per layer
 * (issue 7). The change regimes' maximum-likelihood fit recovers a known
 * model; generation is deterministic for a seed; fit files from another
 * version or with impossible numbers are refused naming the field. */
#include <criterion/criterion.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>

#include "../require.h"
#include "tr_testutil.h"
#include "traces/tr_fit.h"
#include "traces/tr_stats.h"

#define P(name) tu_path((char[512]){0}, 512, name)

static void check_close(const char *path, int l, const char *what, double got, double want,
                        double tol) {
  cr_assert(fabs(got / want - 1) < tol, "%s layer %d: %s %.4f vs %.4f (tolerance %.0f%%)", path,
            l, what, got, want, 100 * tol);
}

/* Fits `path`, saves and reloads FIT.json, generates `mult` times the
 * original length with `seed`, and checks every layer: the change's median
 * and p90 and the mean changes within tol, the skew within skew_tol. */
static void fit_and_check(const char *path, int64_t mult, uint64_t seed, double tol,
                          double skew_tol) {
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
  cr_assert_float_eq(g.layer[1].vol_sigma, f.layer[1].vol_sigma, 1e-9);
  cr_assert_float_eq(g.layer[0].vol_enter, f.layer[0].vol_enter, 1e-9);
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
    check_close(path, l, "max/mean p50", got[l].max_mean_p50, want[l].max_mean_p50, skew_tol);
    check_close(path, l, "lag-1 change p50", got[l].change1_p50, want[l].change1_p50, tol);
    check_close(path, l, "lag-1 change p90", got[l].change1_p90, want[l].change1_p90, tol);
    check_close(path, l, "L1 lag 1", got[l].change1, want[l].change1, tol);
    check_close(path, l, "L1 lag 10", got[l].change10, want[l].change10, tol);
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
  fit_and_check(p, 8, 1, 0.10, 0.05);
}

Test(fit, generated_from_the_noaux_trace_matches_skew_and_fluctuation_per_layer) {
  const char *p = tu_real("gpt-l6-e32-top2-noaux");
  if (!p)
    fm_skip("real-traces", "../shared/traces/real not present");
  fit_and_check(p, 8, 1, 0.10, 0.05);
}

/* The bundled sample, a 200-iteration excerpt, fits too; checked on every
 * machine (about 15 s), so a bare clone checks the fitter as well. */
Test(fit, the_bundled_sample_fits) {
  fit_and_check(tu_sample(), 10, 3, 0.10, 0.10);
}

/* A small excerpt (layers 0 and 5 of the bundled sample: a steady layer and
 * one whose change trends and bursts, 200 iterations): fit, then gen 10x,
 * reproduces the change's median and p90 within 10% (a few seconds). */
Test(fit, an_excerpt_fitted_then_generated_keeps_its_change_quantiles) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, tu_sample(), &err), TR_OK, "%s", err.msg);
  tr_writer w;
  int64_t slice[8 * 32];
  cr_assert_eq(t.ranks * t.experts, 8 * 32);
  cr_assert_eq(tr_writer_open(&w, P("excerpt.npy"), t.iterations, 2, t.ranks, t.experts,
                              TR_INT32, &t.meta, &err),
               TR_OK, "%s", err.msg);
  for (int64_t i = 0; i < t.iterations; i++)
    for (int l = 0; l < 6; l += 5) {
      tr_slice(&t, i, l, slice);
      cr_assert_eq(tr_writer_put(&w, slice, &err), TR_OK, "%s", err.msg);
    }
  cr_assert_eq(tr_writer_commit(&w, &err), TR_OK, "%s", err.msg);
  tr_close(&t);
  fit_and_check(P("excerpt.npy"), 10, 3, 0.10, 0.10);
}

/* The two-state Markov-switching model's maximum likelihood recovers the
 * model a series was drawn from (5000 steps, fixed seed). */
Test(fit, the_change_regimes_maximum_likelihood_recovers_a_known_model) {
  const int64_t n = 5000;
  const double mu[2] = {-2.5, -1.9}, sigma[2] = {0.2, 0.25}, enter = 0.1, leave = 0.4;
  double *y = malloc((size_t)n * sizeof(double));
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 42);
  int s = 0, bursts = 0;
  for (int64_t t = 0; t < n; t++) {
    double u = gsl_rng_uniform(r);
    s = s ? u >= leave : u < enter;
    bursts += s;
    y[t] = mu[s] + gsl_ran_gaussian(r, sigma[s]);
  }
  tr_fit_regimes m;
  cr_assert_eq(tr_fit_regimes_ml(y, n, &m), TR_OK);
  cr_assert(bursts > 500 && bursts < 1500, "the draw has bursts: %d", bursts);
  cr_assert_float_eq(m.mu[0], mu[0], 0.03, "mu calm %.3f", m.mu[0]);
  cr_assert_float_eq(m.mu[1], mu[1], 0.05, "mu burst %.3f", m.mu[1]);
  cr_assert_float_eq(m.sigma[0], sigma[0], 0.03, "sigma calm %.3f", m.sigma[0]);
  cr_assert_float_eq(m.sigma[1], sigma[1], 0.05, "sigma burst %.3f", m.sigma[1]);
  cr_assert(fabs(m.enter / enter - 1) < 0.3, "enter %.3f", m.enter);
  cr_assert(fabs(m.leave / leave - 1) < 0.3, "leave %.3f", m.leave);
  cr_assert_eq(m.n, n);
  /* the maximum beats the true parameters' likelihood, a little */
  cr_assert(isfinite(m.loglik));
  tr_fit_regimes bad = {.mu = {0, 0}};
  y[7] = NAN;
  cr_assert_eq(tr_fit_regimes_ml(y, n, &bad), TR_EINVAL);
  cr_assert_eq(tr_fit_regimes_ml(y, 7, &bad), TR_EINVAL);
  cr_assert_float_eq(bad.mu[0], 0, 0, "untouched on error");
  gsl_rng_free(r);
  free(y);
}

/* A two-layer model with bursts and the same with them off (vol_ratio 1,
 * vol_sigma 0), generated with a seed. */
static tr_fit bursty_fit(double base[16], tr_fit_layer layer[2]) {
  for (int i = 0; i < 16; i++)
    base[i] = 0.3 * sin(i * 1.3);
  layer[0] = (tr_fit_layer){.scale = 1, .innov = 0.05, .phi = 0.9, .rank_sigma = 0.1,
                            .vol_ratio = 4, .vol_enter = 0.05, .vol_leave = 0.3,
                            .vol_sigma = 0.4};
  layer[1] = layer[0];
  return (tr_fit){.layers = 2, .ranks = 4, .experts = 8, .top_k = 2, .iterations = 10,
                  .tokens_per_rank = 4096, .base = base, .layer = layer};
}

static void gen_from(const tr_fit *f, uint64_t seed, int64_t iters, const char *path) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.layers = f->layers;
  c.ranks = f->ranks;
  c.experts = f->experts;
  c.iterations = iters;
  c.seed = seed;
  double *owned;
  tr_error err;
  cr_assert_eq(tr_fit_apply(f, &c, &owned), TR_OK);
  cr_assert_eq(tr_gen_write(&c, path, &err), TR_OK, "%s", err.msg);
  tr_free(owned);
}

static int same_file(const char *a, const char *b) {
  FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
  cr_assert(x && y);
  int cx, cy, same = 1;
  do {
    cx = fgetc(x);
    cy = fgetc(y);
    same = cx == cy;
  } while (same && cx != EOF);
  fclose(x);
  fclose(y);
  return same;
}

/* The same fit and seed give the same bytes; another seed other bytes; the
 * bursts widen the change's spread (p90/p50) over the model without them. */
Test(fit, generation_from_a_bursty_fit_is_deterministic_and_bursty) {
  double base[16];
  tr_fit_layer layer[2];
  tr_fit f = bursty_fit(base, layer);
  gen_from(&f, 7, 400, P("a.npy"));
  gen_from(&f, 7, 400, P("b.npy"));
  gen_from(&f, 8, 400, P("c.npy"));
  cr_assert(same_file(P("a.npy"), P("b.npy")), "same seed, same bytes");
  cr_assert(!same_file(P("a.npy"), P("c.npy")), "another seed, other bytes");
  layer[0].vol_ratio = layer[1].vol_ratio = 1;
  layer[0].vol_sigma = layer[1].vol_sigma = 0;
  gen_from(&f, 7, 400, P("calm.npy"));
  tr_trace a, calm;
  tr_error err;
  cr_assert_eq(tr_open(&a, P("a.npy"), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&calm, P("calm.npy"), &err), TR_OK, "%s", err.msg);
  tr_fit_stats sa[2], sc[2];
  cr_assert_eq(tr_fit_measure(&a, sa), TR_OK);
  cr_assert_eq(tr_fit_measure(&calm, sc), TR_OK);
  for (int l = 0; l < 2; l++)
    cr_assert(sa[l].change1_p90 / sa[l].change1_p50 > 1.2 * sc[l].change1_p90 / sc[l].change1_p50,
              "layer %d: p90/p50 %.2f with bursts vs %.2f without", l,
              sa[l].change1_p90 / sa[l].change1_p50, sc[l].change1_p90 / sc[l].change1_p50);
  tr_close(&a);
  tr_close(&calm);
}

/* Fitting the same trace twice writes the same FIT.json, byte for byte. */
Test(fit, fitting_twice_writes_the_same_file) {
  double base[16];
  tr_fit_layer layer[2];
  tr_fit f = bursty_fit(base, layer);
  gen_from(&f, 3, 60, P("src.npy"));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, P("src.npy"), &err), TR_OK, "%s", err.msg);
  for (int k = 0; k < 2; k++) {
    tr_fit g;
    cr_assert_eq(tr_fit_trace(&t, 0, -1, 1, &g), TR_OK);
    cr_assert_eq(tr_fit_save(&g, k ? P("f2.json") : P("f1.json"), &err), TR_OK, "%s", err.msg);
    tr_fit_fini(&g);
  }
  cr_assert(same_file(P("f1.json"), P("f2.json")));
  tr_close(&t);
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
      {"{\"version\": 2, \"layers\": 1, \"ranks\": 1, \"experts\": 1048577, \"top_k\": 1, "
       "\"tokens_per_rank\": 8, \"iterations\": 20}",
       "'experts' must be an integer between 1 and 1048576"},
      {"{\"version\": 2, \"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 5, "
       "\"tokens_per_rank\": 8, \"iterations\": 20}",
       "'top_k' must be an integer between 1 and 4 (its experts)"},
      {"{\"version\": 2, \"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 9223372036854775807, \"iterations\": 20}",
       "'tokens_per_rank' must be an integer between 1 and 1099511627776"},
      {"{\"version\": 2, \"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 8, \"iterations\": 16777217}",
       "'iterations' must be an integer between 1 and 16777216"},
      {"{\"version\": 2, \"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
       "\"tokens_per_rank\": 8, \"iterations\": 20, \"d_model\": 4294967296}",
       "'d_model' must be an integer between 1 and 1048576"},
      {"{\"version\": 2, \"layers\": 1, \"ranks\": 1, \"experts\": 4, \"top_k\": 2, "
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
  tu_text(P("tiny-fit.json"), "{\"version\": 1, \"layers\": 1, \"ranks\": 1, \"experts\": 2, \"top_k\": 1, "
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

/* A valid version-2 fit file of one layer, 2 experts, with `layer` as its
 * per-layer object's body and `head` ahead of the sizes. */
static void write_fit(const char *path, const char *head, const char *layer) {
  char text[2048];
  snprintf(text, sizeof(text),
           "{%s \"layers\": 1, \"ranks\": 1, \"experts\": 2, \"top_k\": 1, "
           "\"tokens_per_rank\": 8, \"iterations\": 20, \"per_layer\": [{%s}]}",
           head, layer);
  tu_text(path, text);
}

#define LAYER_OK(...)                                                                  \
  "\"scale\": 1, \"innov\": 0.1, \"phi\": 0.9, \"psi\": 0, \"rank_sigma\": 0.1, "      \
  "\"vol_ratio\": 2, \"vol_enter\": 0.1, \"vol_leave\": 0.3, \"vol_sigma\": 0.2, " __VA_ARGS__

/* Another version, another model name, impossible model numbers: refused,
 * one message naming the field (and nothing allocated). */
Test(fit, fit_files_of_another_version_or_with_impossible_numbers_are_refused) {
  static const struct {
    const char *head, *layer, *want;
  } bad[] = {
      {"", LAYER_OK("\"base\": [0, 1]"), "'version' is missing: this flexmoe reads fit files "
                                         "of version 1 and 2"},
      {"\"version\": 3,", LAYER_OK("\"base\": [0, 1]"), "'version' is 3"},
      {"\"version\": \"2\",", LAYER_OK("\"base\": [0, 1]"), "'version' is not an integer"},
      {"\"version\": 2, \"model\": \"flexmoe-ar1-logits\",", LAYER_OK("\"base\": [0, 1]"),
       "'model' must be \"flexmoe-ms-ar1-logits\" in a version 2 fit file"},
      {"\"version\": 2,", "\"scale\": 1", "'per_layer[0].innov' is missing"},
      {"\"version\": 2,",
       "\"scale\": 1, \"innov\": 0.1, \"phi\": 1.5, \"psi\": 0, \"rank_sigma\": 0.1, "
       "\"vol_ratio\": 2, \"vol_enter\": 0.1, \"vol_leave\": 0.3, \"vol_sigma\": 0.2, "
       "\"base\": [0, 1]",
       "'per_layer[0].phi' is 1.5: it must be a number between 0 and 1"},
      {"\"version\": 2,",
       "\"scale\": 1, \"innov\": 0.1, \"phi\": 0.9, \"psi\": 1, \"rank_sigma\": 0.1, "
       "\"vol_ratio\": 2, \"vol_enter\": 0.1, \"vol_leave\": 0.3, \"vol_sigma\": 0.2, "
       "\"base\": [0, 1]",
       "'per_layer[0].psi' is 1: it must be a number at least 0 and below 1"},
      {"\"version\": 2,",
       "\"scale\": 1, \"innov\": 0.1, \"phi\": 0.9, \"psi\": 0, \"rank_sigma\": 0.1, "
       "\"vol_ratio\": 0.5, \"vol_enter\": 0.1, \"vol_leave\": 0.3, \"vol_sigma\": 0.2, "
       "\"base\": [0, 1]",
       "'per_layer[0].vol_ratio' is 0.5: it must be a number between 1 and 100"},
      {"\"version\": 2,",
       "\"scale\": 1, \"innov\": 0.1, \"phi\": 0.9, \"psi\": 0, \"rank_sigma\": 0.1, "
       "\"vol_ratio\": 2, \"vol_enter\": 2, \"vol_leave\": 0.3, \"vol_sigma\": 0.2, "
       "\"base\": [0, 1]",
       "'per_layer[0].vol_enter' is 2"},
      {"\"version\": 2,",
       "\"scale\": 1, \"innov\": -0.1, \"phi\": 0.9, \"psi\": 0, \"rank_sigma\": 0.1, "
       "\"vol_ratio\": 2, \"vol_enter\": 0.1, \"vol_leave\": 0.3, \"vol_sigma\": 0.2, "
       "\"base\": [0, 1]",
       "'per_layer[0].innov' is -0.1"},
      {"\"version\": 2,", LAYER_OK("\"vol_sigma\": 9, \"base\": [0, 1]"),
       "'per_layer[0].vol_sigma' is 9"},
      {"\"version\": 2,", LAYER_OK("\"base\": [0, 1e300]"),
       "'per_layer[0].base[1]' must be a number between -100 and 100"},
      {"\"version\": 2,", LAYER_OK("\"base\": [0]"),
       "'per_layer[0].base' must be an array of 2 numbers"},
      {"\"version\": 2, \"rank_total_sigma\": -1,", LAYER_OK("\"base\": [0, 1]"),
       "'rank_total_sigma' must be a number between 0 and 10"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_fit(P("bad-fit.json"), bad[i].head, bad[i].layer);
    tr_fit f;
    tr_error err;
    cr_assert_eq(tr_fit_load(&f, P("bad-fit.json"), &err), TR_EMETA, "case %zu", i);
    cr_assert(strstr(err.msg, bad[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg,
              bad[i].want);
    cr_assert_str_eq(err.path, P("bad-fit.json"));
    cr_assert_null(f.base);
    cr_assert_null(f.layer);
  }
  /* the same file with a valid layer loads */
  write_fit(P("good-fit.json"), "\"version\": 2,", LAYER_OK("\"base\": [0, 1]"));
  tr_fit f;
  tr_error err;
  cr_assert_eq(tr_fit_load(&f, P("good-fit.json"), &err), TR_OK, "%s", err.msg);
  cr_assert_float_eq(f.layer[0].vol_ratio, 2, 1e-12);
  cr_assert_float_eq(f.layer[0].vol_sigma, 0.2, 1e-12);
  tr_fit_fini(&f);
}

/* A version-1 file (before the bursts) is read as the model without them:
 * regimes off, no step spread; its psi may be absent (0). A version-2 file
 * must have every number. */
Test(fit, version_1_fit_files_are_read_without_bursts) {
  const char *v1 = "\"scale\": 1, \"innov\": 0.1, \"phi\": 0.9, \"rank_sigma\": 0.1, "
                   "\"base\": [0.5, -0.5]";
  write_fit(P("v1.json"), "\"version\": 1, \"model\": \"flexmoe-ar1-logits\",", v1);
  tr_fit f;
  tr_error err;
  cr_assert_eq(tr_fit_load(&f, P("v1.json"), &err), TR_OK, "%s", err.msg);
  cr_assert_float_eq(f.layer[0].vol_ratio, 1, 0);
  cr_assert_float_eq(f.layer[0].vol_sigma, 0, 0);
  cr_assert_float_eq(f.layer[0].psi, 0, 0);
  cr_assert_float_eq(f.layer[0].phi, 0.9, 1e-12);
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.layers = 1;
  c.ranks = 1;
  c.experts = 2;
  c.iterations = 5;
  double *owned;
  cr_assert_eq(tr_fit_apply(&f, &c, &owned), TR_OK);
  cr_assert_float_eq(c.vol_ratio[0], 1, 0);
  cr_assert_eq(tr_gen_write(&c, P("v1.npy"), &err), TR_OK, "%s", err.msg);
  tr_free(owned);
  tr_fit_fini(&f);
  write_fit(P("v2.json"), "\"version\": 2,", v1);
  cr_assert_eq(tr_fit_load(&f, P("v2.json"), &err), TR_EMETA);
  cr_assert(strstr(err.msg, "'per_layer[0].psi' is missing") != NULL, "%s", err.msg);
}
