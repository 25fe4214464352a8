/* The rescaling sampler (tr_sample): the generator against its published
 * reference, the binomial against the exact pmf (chi-square goodness of fit
 * over both algorithms and their switch point, and the test's own power
 * against deliberately wrong samplers), the edge cases, and the multinomial's
 * exact totals, moments, marginals and determinism.
 *
 * Significance. Every goodness-of-fit test uses a fixed seed and rejects
 * below P = 1e-12: with about 25 (n, p) points, a correct sampler fails
 * with probability below 1e-10 for any seed, so a change of stream cannot
 * make these tests flaky. The test `gof_test_catches_wrong_samplers` shows
 * that the same threshold rejects a 1% error in p and the normal
 * approximation, so the threshold is not so loose that nothing fails. */
#include <criterion/criterion.h>
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "traces/tr_sample.h"
#include "traces/tr_trace.h"

#define GOF_ALPHA 1e-12
#define DRAWS 1000000

/* ---- exact pmf and chi-square with pooled tails ----------------------- */

/* log pmf of Bin(n, p) for k in [lo, hi] into lp[k - lo]: GSL's pdf while n
 * fits its unsigned int, else the recurrence from k = 0 (used for small k
 * only: k <= a few hundred). */
static void binom_logpmf(int64_t n, double p, int64_t lo, int64_t hi, double *lp) {
  if (n <= 0xffffffffLL) {
    for (int64_t k = lo; k <= hi; k++)
      lp[k - lo] = log(gsl_ran_binomial_pdf((unsigned int)k, p, (unsigned int)n));
    return;
  }
  double l = (double)n * log1p(-p), lr = log(p) - log1p(-p);
  for (int64_t k = 0; k <= hi; k++) {
    if (k >= lo)
      lp[k - lo] = l;
    l += log((double)(n - k) / (double)(k + 1)) + lr;
  }
}

typedef int64_t (*sampler)(void *ctx, tr_rng *r);

/*
 * P-value of Pearson's chi-square of `draws` samples against Bin(n, p):
 * cells are consecutive k with expected count >= 20, the tails beyond
 * mean +- 12 sd pooled into the end cells (their mass, from GSL's cdf, is
 * below 1e-30 for n beyond its range and is then taken as 0).
 */
static double gof_pvalue(int64_t n, double p, sampler draw, void *ctx, uint64_t seed,
                         int draws, int *cells_out) {
  double mu = (double)n * p, sd = sqrt(mu * (1 - p));
  int64_t lo = (int64_t)fmax(0, floor(mu - 12 * sd - 10));
  int64_t hi = (int64_t)fmin((double)n, ceil(mu + 12 * sd + 10));
  int64_t w = hi - lo + 1;
  double *lp = malloc((size_t)w * sizeof(double));
  double *expct = calloc((size_t)w + 2, sizeof(double));
  double *obs = calloc((size_t)w + 2, sizeof(double));
  int *cell = malloc((size_t)w * sizeof(int));
  cr_assert(lp && expct && obs && cell);
  binom_logpmf(n, p, lo, hi, lp);
  double below = 0, above = 0;
  if (n <= 0xffffffffLL) {
    below = lo > 0 ? gsl_cdf_binomial_P((unsigned int)(lo - 1), p, (unsigned int)n) : 0;
    above = gsl_cdf_binomial_Q((unsigned int)hi, p, (unsigned int)n);
  }
  /* cells: k < lo goes to cell 0, k > hi to the last cell */
  int nc = 0;
  double acc = below;
  for (int64_t k = lo; k <= hi; k++) {
    acc += exp(lp[k - lo]) * draws;
    cell[k - lo] = nc;
    if (acc >= 20 && k < hi) {
      expct[nc++] = acc;
      acc = 0;
    }
  }
  acc += above * draws;
  expct[nc++] = acc; /* last cell: also k > hi */
  if (nc >= 2 && expct[nc - 1] < 20) { /* merge a thin last cell into the previous */
    expct[nc - 2] += expct[nc - 1];
    nc--;
    for (int64_t k = 0; k < w; k++)
      if (cell[k] == nc)
        cell[k] = nc - 1;
  }
  below *= draws;
  tr_rng r;
  tr_rng_seed(&r, seed);
  for (int i = 0; i < draws; i++) {
    int64_t k = draw(ctx, &r);
    cr_assert(k >= 0 && k <= n, "draw %lld outside [0, %lld]", (long long)k, (long long)n);
    obs[k < lo ? 0 : k > hi ? nc - 1 : cell[k - lo]] += 1;
  }
  double x2 = 0;
  for (int c = 0; c < nc; c++)
    x2 += (obs[c] - expct[c]) * (obs[c] - expct[c]) / expct[c];
  free(lp);
  free(expct);
  free(obs);
  free(cell);
  if (cells_out)
    *cells_out = nc;
  return nc >= 2 ? gsl_cdf_chisq_Q(x2, nc - 1) : 1;
}

typedef struct bin_ctx {
  int64_t n;
  double p;
} bin_ctx;

static int64_t draw_tr(void *ctx, tr_rng *r) {
  bin_ctx *c = ctx;
  return tr_binomial(r, c->n, c->p);
}

/* ---- the generator ---------------------------------------------------- */

Test(sample, xoshiro256starstar_matches_its_reference_outputs) {
  /* Reference outputs of xoshiro256** from state {1, 2, 3, 4}
   * (Blackman and Vigna's C code; the same vector is in Rust's rand_xoshiro). */
  static const uint64_t want[6] = {11520u, 0u, 1509978240u, 1215971899390074240u,
                                   1216172134540287360u, 607988272756665600u};
  tr_rng r = {{1, 2, 3, 4}};
  for (int i = 0; i < 6; i++)
    cr_assert_eq(tr_rng_next(&r), want[i], "output %d", i);
}

Test(sample, uniforms_are_strictly_inside_zero_one) {
  tr_rng r;
  tr_rng_seed(&r, 5);
  double lo = 1, hi = 0;
  for (int i = 0; i < 100000; i++) {
    double u = tr_rng_open01(&r);
    lo = fmin(lo, u);
    hi = fmax(hi, u);
  }
  cr_assert(lo > 0 && hi < 1);
  cr_assert(lo < 1e-3 && hi > 1 - 1e-3, "uniforms cover (0, 1): %g %g", lo, hi);
  /* the extremes of the grid are still inside: generators whose next
   * output is 0 and 2^64 - 1 (state found by running xoshiro's update
   * backwards is not needed: s[1] = 0 gives output 0, and the top value is
   * checked arithmetically, as a 53-bit grid would round it up to 1) */
  tr_rng z = {{5, 0, 7, 9}};
  cr_assert_eq(tr_rng_open01(&z), 0.5 * 0x1.0p-52);
  cr_assert_lt(((double)((1ULL << 52) - 1) + 0.5) * 0x1.0p-52, 1.0);
  cr_assert_eq(((double)((1ULL << 53) - 1) + 0.5) * 0x1.0p-53, 1.0,
               "why 52 bits: the 53-bit grid's top value is 1");
}

/* ---- binomial goodness of fit ------------------------------------------ */

/* Both algorithms, the switch at n p' = 10 from both sides, p > 1/2 (drawn
 * as n - Bin(n, 1 - p)), BTRS's two acceptance tests (|k - m| <= 15 by the
 * recurrence, beyond it by Stirling: sd > 10 makes both frequent), and n
 * beyond 2^32 and beyond 2^52 (drawn in parts). */
static const struct {
  int64_t n;
  double p;
} grid[] = {
    {1, 0.3},                         /* Bernoulli, inversion */
    {5, 0.5},                         /* n p' = 2.5 */
    {20, 0.05},                       /* 1 */
    {100, 0.02},                      /* 2 */
    {8192, 0.0012},                   /* 9.8, inversion */
    {1001, 0.00998},                  /* 9.99, inversion just below the switch */
    {1000, 0.01},                     /* 10.0, BTRS at the switch */
    {20, 0.5},                        /* 10, BTRS with tiny n */
    {100, 0.1},                       /* 10 */
    {100, 0.9},                       /* flipped, n p' = 10 */
    {30, 0.95},                       /* flipped, inversion */
    {50, 0.3},                        /* 15 */
    {100, 0.5},                       /* 50 */
    {8192, 0.0156},                   /* 128: the typical expert at 64 experts */
    {8192, 0.2},                      /* 1638, sd 36: mostly the Stirling test */
    {16384, 0.5},                     /* 8192 */
    {16384, 0.98},                    /* flipped BTRS */
    {1000000, 0.3},                   /* sd 458 */
    {(int64_t)1 << 33, 1e-9},         /* n > 2^32, inversion (n p = 8.6) */
    {((int64_t)1 << 33) + 7, 3e-9},   /* n > 2^32, BTRS (25.8) */
    {((int64_t)1 << 53) + 12345, 1e-15}, /* parts of 2^52: 9.0, inversion */
    {((int64_t)1 << 54), 4e-15},      /* parts: BTRS (18 each) */
};

Test(sample, binomial_fits_the_exact_pmf_on_both_branches_and_the_switch) {
  for (size_t i = 0; i < sizeof(grid) / sizeof(grid[0]); i++) {
    bin_ctx c = {grid[i].n, grid[i].p};
    int cells;
    double pv = gof_pvalue(c.n, c.p, draw_tr, &c, 1000 + i, DRAWS, &cells);
    cr_assert(cells >= 2, "n %lld p %g: only %d cells", (long long)c.n, c.p, cells);
    cr_assert(pv > GOF_ALPHA, "n %lld p %g: chi-square P = %g over %d cells", (long long)c.n,
              c.p, pv, cells);
  }
}

/*
 * A sharper look at BTRS's two acceptance tests. For |k - m| <= 15 (m the
 * mode) it compares f(k)/f(m) by the recurrence, beyond that by the
 * Stirling form; with sd near 8.5 (n p about 75) 7% of the draws go
 * beyond, and the chi-square above, spread over ~60 cells of 10^6 draws,
 * would miss a relative error near 1/(n p) in that branch. Here the share
 * of draws beyond 15 of the mode is compared with the exact pmf's, and the
 * variance about the exact mean with n p q, each to within 5 standard
 * errors of 10^7 draws (a correct sampler fails with probability below
 * 1e-6 for any seed). Measured, seeds 1-3: |z| <= 1.3 for the sampler;
 * z = -9 to -11 on the share when the log form's first term is off by
 * one log((m+1)/(r (n-m+1))). About 0.35 s per case.
 */
Test(sample, btrs_mass_beyond_the_recurrence_window_is_the_exact_pmfs) {
  static const struct {
    int64_t n;
    double p;
  } cases[] = {{1000, 0.08}, {10000, 0.0072}};
  const int N = 10000000;
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    int64_t n = cases[c].n;
    double p = cases[c].p, q = 1 - p;
    double mode = floor((double)(n + 1) * p), mu = (double)n * p, var = mu * q;
    double mu4 = var * (1 + 3 * (double)(n - 2) * p * q); /* 4th central moment */
    double tail = 0;
    for (int64_t k = 0; k <= n; k++)
      if (fabs((double)k - mode) > 15)
        tail += gsl_ran_binomial_pdf((unsigned int)k, p, (unsigned int)n);
    tr_binp b;
    tr_binp_set(&b, p);
    tr_rng r;
    tr_rng_seed(&r, 2026 + c);
    int64_t beyond = 0;
    double ss = 0;
    for (int i = 0; i < N; i++) {
      int64_t k = tr_binomial_prepared(&r, n, &b);
      beyond += fabs((double)k - mode) > 15;
      ss += ((double)k - mu) * ((double)k - mu);
    }
    double z_tail = ((double)beyond / N - tail) / sqrt(tail * (1 - tail) / N);
    double z_var = (ss / N - var) / sqrt((mu4 - var * var) / N);
    cr_assert(tail > 0.05, "n %lld p %g: the case must reach the Stirling branch", (long long)n,
              p);
    cr_assert(fabs(z_tail) < 5, "n %lld p %g: %.5f of the draws beyond 15 of the mode, the pmf "
              "gives %.5f (z = %.2f)", (long long)n, p, (double)beyond / N, tail, z_tail);
    cr_assert(fabs(z_var) < 5, "n %lld p %g: variance %.4f, n p q = %.4f (z = %.2f)",
              (long long)n, p, ss / N, var, z_var);
  }
}

static int64_t draw_shifted(void *ctx, tr_rng *r) {
  bin_ctx *c = ctx;
  return tr_binomial(r, c->n, c->p * 1.01);
}

static gsl_rng *normal_rng;
static int64_t draw_normal(void *ctx, tr_rng *r) {
  bin_ctx *c = ctx;
  (void)r;
  double mu = (double)c->n * c->p, sd = sqrt(mu * (1 - c->p));
  double x = floor(mu + sd * gsl_ran_ugaussian(normal_rng) + 0.5);
  return x < 0 ? 0 : x > (double)c->n ? c->n : (int64_t)x;
}

/* The threshold is not so loose that wrong samplers pass. */
Test(sample, gof_test_catches_wrong_samplers) {
  normal_rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(normal_rng, 3);
  static const struct {
    int64_t n;
    double p;
  } cases[] = {{1000, 0.01}, {8192, 0.0156}, {100, 0.5}, {16384, 0.5}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    bin_ctx c = {cases[i].n, cases[i].p};
    double pv = gof_pvalue(c.n, c.p, draw_shifted, &c, 77, DRAWS, NULL);
    cr_assert(pv < GOF_ALPHA, "p off by 1%% passed at n %lld p %g (P = %g)", (long long)c.n,
              c.p, pv);
  }
  /* The rounded normal approximation, where its skew still shows. */
  for (size_t i = 0; i < 2; i++) {
    bin_ctx c = {cases[i].n, cases[i].p};
    double pv = gof_pvalue(c.n, c.p, draw_normal, &c, 78, DRAWS, NULL);
    cr_assert(pv < GOF_ALPHA, "the normal approximation passed at n %lld p %g (P = %g)",
              (long long)c.n, c.p, pv);
  }
  gsl_rng_free(normal_rng);
}

Test(sample, binomial_edges) {
  tr_rng r;
  tr_rng_seed(&r, 9);
  cr_assert_eq(tr_binomial(&r, 0, 0.5), 0);
  cr_assert_eq(tr_binomial(&r, -5, 0.5), 0);
  cr_assert_eq(tr_binomial(&r, 1000, 0), 0);
  cr_assert_eq(tr_binomial(&r, 1000, -0.1), 0);
  cr_assert_eq(tr_binomial(&r, 1000, NAN), 0);
  cr_assert_eq(tr_binomial(&r, 1000, 1), 1000);
  cr_assert_eq(tr_binomial(&r, 1000, 1.5), 1000);
  cr_assert_eq(tr_binomial(&r, INT64_MAX, 1), INT64_MAX);
  cr_assert_eq(tr_binomial(&r, INT64_MAX, 0), 0);
  /* tiny p: n p = 1e-280, never a success */
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(tr_binomial(&r, 1000000, 1e-286), 0);
  /* 1 - 1e-17 is 1 in double */
  cr_assert_eq(tr_binomial(&r, 77, 1 - 1e-17), 77);
  /* n near 2^63 at p = 1/2: within 8 sd (2^31 each) of the mean */
  for (int i = 0; i < 100; i++) {
    int64_t n = INT64_MAX - i, k = tr_binomial(&r, n, 0.5);
    double z = ((double)k - (double)n / 2) / sqrt((double)n / 4);
    cr_assert(k >= 0 && k <= n && fabs(z) < 8, "n %lld: k %lld (z %g)", (long long)n,
              (long long)k, z);
  }
  /* large n, one success expected */
  double s = 0;
  for (int i = 0; i < 10000; i++)
    s += (double)tr_binomial(&r, (int64_t)1 << 62, 0x1.0p-62);
  cr_assert(fabs(s / 10000 - 1) < 0.07, "mean %g for n p = 1", s / 10000);
}

/* ---- multinomial ------------------------------------------------------- */

Test(sample, multinomial_totals_are_exact_for_every_weight_shape) {
  static const int64_t big = (int64_t)1 << 61;
  struct {
    int k;
    int64_t w[6];
  } cases[] = {
      {1, {5}},
      {3, {0, 0, 7}},
      {3, {7, 0, 0}},
      {6, {1, 0, 3, 0, 0, 1}},
      {4, {1, 1000000000000000LL, 1, 1}},   /* tiny p next to a huge one */
      {3, {big, big, big}},                 /* sum 3 x 2^61 < 2^63 */
      {5, {3, 1, 4, 1, 5}},
  };
  static const int64_t ns[] = {0, 1, 2, 7, 8192, 16384, 123456789, (int64_t)1 << 40,
                               (int64_t)1 << 60, INT64_MAX};
  tr_rng r;
  tr_rng_seed(&r, 11);
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
    for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++)
      for (int rep = 0; rep < 20; rep++) {
        int64_t out[6];
        memset(out, 0xff, sizeof(out));
        cr_assert_eq(tr_multinomial(&r, ns[j], cases[c].k, cases[c].w, out), TR_OK);
        int64_t sum = 0;
        for (int e = 0; e < cases[c].k; e++) {
          cr_assert_geq(out[e], 0);
          if (cases[c].w[e] == 0)
            cr_assert_eq(out[e], 0, "a zero weight got slots");
          cr_assert(sum <= INT64_MAX - out[e]);
          sum += out[e];
        }
        cr_assert_eq(sum, ns[j], "case %zu n %lld: sum %lld", c, (long long)ns[j],
                     (long long)sum);
      }
}

Test(sample, multinomial_rejects_bad_weights) {
  tr_rng r;
  tr_rng_seed(&r, 1);
  int64_t out[3] = {-1, -1, -1};
  cr_assert_eq(tr_multinomial(&r, 10, 3, (int64_t[]){0, 0, 0}, out), TR_EINVAL);
  cr_assert_eq(tr_multinomial(&r, 10, 3, (int64_t[]){1, -1, 3}, out), TR_EINVAL);
  cr_assert_eq(tr_multinomial(&r, 10, 3, (int64_t[]){INT64_MAX, 1, 0}, out), TR_EINVAL);
  cr_assert_eq(tr_multinomial(&r, 10, 0, (int64_t[]){1}, out), TR_EINVAL);
  cr_assert_eq(out[0], -1, "out untouched on error");
}

/* Means, variances and one covariance of 20,000 rows of 8,192 slots over
 * 64 log-normal-ish weights, within 7 standard errors each (false failure
 * about 1e-10 over the 129 checks). Standard error of the sample variance
 * from the binomial's fourth central moment. */
Test(sample, multinomial_means_variances_and_covariance) {
  enum { K = 64, ROWS = 20000 };
  const int64_t N = 8192;
  int64_t w[K];
  uint64_t s = 3;
  for (int e = 0; e < K; e++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    w[e] = 1 + (int64_t)(1000 * exp(4.0 * (double)(s >> 11) * 0x1.0p-53 - 2));
  }
  w[5] = 0;
  int64_t tot = 0;
  for (int e = 0; e < K; e++)
    tot += w[e];
  tr_binp cat[K];
  cr_assert_eq(tr_multinomial_prepare(cat, K, w), TR_OK);
  double sum[K] = {0}, sq[K] = {0}, c01 = 0;
  tr_rng r;
  tr_rng_seed(&r, 21);
  for (int i = 0; i < ROWS; i++) {
    int64_t out[K];
    tr_multinomial_prepared(&r, N, K, cat, out);
    for (int e = 0; e < K; e++) {
      sum[e] += (double)out[e];
      sq[e] += (double)out[e] * (double)out[e];
    }
    c01 += (double)out[0] * (double)out[K - 1];
  }
  for (int e = 0; e < K; e++) {
    double p = (double)w[e] / (double)tot, q = 1 - p, mu = N * p, var = N * p * q;
    double m = sum[e] / ROWS, v = (sq[e] - ROWS * m * m) / (ROWS - 1);
    cr_assert(fabs(m - mu) <= 7 * sqrt(var / ROWS) + 1e-12, "expert %d: mean %g, want %g", e,
              m, mu);
    double mu4 = var * (1 + 3 * (N - 2) * p * q);
    double sev = sqrt((mu4 - var * var * (ROWS - 3.0) / (ROWS - 1)) / ROWS);
    cr_assert(fabs(v - var) <= 7 * sev + 1e-12, "expert %d: variance %g, want %g (se %g)", e,
              v, var, sev);
  }
  double p0 = (double)w[0] / (double)tot, pl = (double)w[K - 1] / (double)tot;
  double cov = c01 / ROWS - (sum[0] / ROWS) * (sum[K - 1] / ROWS), want = -N * p0 * pl;
  double se = sqrt(N * p0 * (1 - p0) * N * pl * (1 - pl) / ROWS);
  cr_assert(fabs(cov - want) <= 7 * se, "cov(first, last) %g, want %g (se %g)", cov, want, se);
}

/* The first category is one binomial; the last is what the chain of 63
 * conditional binomials leaves: both must be exactly Bin(N, p). */
typedef struct marg_ctx {
  const tr_binp *cat;
  int k, which;
  int64_t n;
} marg_ctx;

static int64_t draw_marginal(void *ctx, tr_rng *r) {
  marg_ctx *c = ctx;
  int64_t out[64];
  tr_multinomial_prepared(r, c->n, c->k, c->cat, out);
  return out[c->which];
}

Test(sample, multinomial_marginals_fit_the_exact_binomial) {
  int64_t w[64];
  for (int e = 0; e < 64; e++)
    w[e] = 100 + 37 * ((e * 17) % 64);
  int64_t tot = 0;
  for (int e = 0; e < 64; e++)
    tot += w[e];
  tr_binp cat[64];
  cr_assert_eq(tr_multinomial_prepare(cat, 64, w), TR_OK);
  static const int which[] = {0, 31, 63};
  for (int i = 0; i < 3; i++) {
    marg_ctx c = {cat, 64, which[i], 8192};
    double p = (double)w[which[i]] / (double)tot;
    double pv = gof_pvalue(8192, p, draw_marginal, &c, 300 + i, 200000, NULL);
    cr_assert(pv > GOF_ALPHA, "expert %d: chi-square P = %g", which[i], pv);
  }
}

Test(sample, interleaved_rows_equal_rows_drawn_one_at_a_time) {
  enum { ROWS = 150, K = 40 };
  int64_t w[K];
  for (int e = 0; e < K; e++)
    w[e] = e % 7 == 3 ? 0 : 1 + (e * 7919) % 500;
  tr_binp cat[K];
  cr_assert_eq(tr_multinomial_prepare(cat, K, w), TR_OK);
  static const int64_t ns[] = {0, 3, 8192, (int64_t)1 << 53};
  for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
    tr_rng a[ROWS], b[ROWS];
    static int64_t x[ROWS * (K + 3)], y[ROWS][K];
    for (int i = 0; i < ROWS; i++) {
      tr_rng_seed(&a[i], 1000 + (uint64_t)i);
      b[i] = a[i];
    }
    tr_multinomial_rows(a, ROWS, ns[j], K, cat, x, K + 3); /* stride > K */
    for (int i = 0; i < ROWS; i++) {
      tr_multinomial_prepared(&b[i], ns[j], K, cat, y[i]);
      cr_assert_arr_eq(x + (size_t)i * (K + 3), y[i], sizeof(y[i]), "n %lld row %d",
                       (long long)ns[j], i);
      cr_assert_arr_eq(&a[i], &b[i], sizeof(tr_rng), "generator state after row %d", i);
    }
  }
}

Test(sample, same_seed_same_draws_other_seed_other_draws) {
  int64_t w[32], x[32], y[32], z[32];
  for (int e = 0; e < 32; e++)
    w[e] = 1 + e;
  tr_rng a, b, c;
  tr_rng_seed(&a, 42);
  tr_rng_seed(&b, 42);
  tr_rng_seed(&c, 43);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(tr_multinomial(&a, 8192, 32, w, x), TR_OK);
    cr_assert_eq(tr_multinomial(&b, 8192, 32, w, y), TR_OK);
    cr_assert_eq(tr_multinomial(&c, 8192, 32, w, z), TR_OK);
    cr_assert_arr_eq(x, y, sizeof(x));
    cr_assert(memcmp(x, z, sizeof(x)) != 0, "seeds 42 and 43 drew the same row %d", i);
  }
}

/* ---- the Poisson method (tr_mpois) -------------------------------------- */

/*
 * P-value of Pearson's chi-square of `draws` rows of n slots over k <= 4
 * categories against the exact multinomial pmf, over every composition of
 * n (cells with expected count below 20 pooled into one). draw fills a row.
 */
typedef void (*row_sampler)(void *ctx, tr_rng *r, int64_t *out);

static double mult_gof_pvalue(int64_t n, int k, const int64_t *w, row_sampler draw, void *ctx,
                              uint64_t seed, int draws) {
  cr_assert(k >= 2 && k <= 4);
  size_t base = (size_t)n + 1, ncell = 1;
  for (int c = 0; c < k - 1; c++)
    ncell *= base;
  double *expct = calloc(ncell, sizeof(double)), *obs = calloc(ncell, sizeof(double));
  cr_assert(expct && obs);
  double W = 0, lp[4];
  for (int c = 0; c < k; c++)
    W += (double)w[c];
  for (int c = 0; c < k; c++)
    lp[c] = w[c] > 0 ? log((double)w[c] / W) : -INFINITY;
  /* every composition x of n: index sum over c < k - 1 of x[c] base^c */
  for (size_t id = 0; id < ncell; id++) {
    int64_t x[4], s = 0;
    size_t v = id;
    for (int c = 0; c < k - 1; c++) {
      x[c] = (int64_t)(v % base);
      v /= base;
      s += x[c];
    }
    if (s > n)
      continue;
    x[k - 1] = n - s;
    double l = lgamma((double)n + 1);
    for (int c = 0; c < k; c++)
      if (x[c] > 0)
        l += (double)x[c] * lp[c] - lgamma((double)x[c] + 1);
    expct[id] = isinf(l) ? 0 : exp(l) * draws;
  }
  tr_rng r;
  tr_rng_seed(&r, seed);
  for (int i = 0; i < draws; i++) {
    int64_t x[4] = {-1, -1, -1, -1}, s = 0;
    draw(ctx, &r, x);
    size_t id = 0, mul = 1;
    for (int c = 0; c < k; c++) {
      cr_assert(x[c] >= 0 && x[c] <= n, "category %d: %lld", c, (long long)x[c]);
      cr_assert(w[c] > 0 || x[c] == 0, "category %d has weight 0 and got %lld", c,
                (long long)x[c]);
      s += x[c];
      if (c < k - 1) {
        id += (size_t)x[c] * mul;
        mul *= base;
      }
    }
    cr_assert_eq(s, n);
    obs[id] += 1;
  }
  double x2 = 0, pe = 0, po = 0;
  int cells = 0;
  for (size_t id = 0; id < ncell; id++) {
    if (expct[id] >= 20) {
      x2 += (obs[id] - expct[id]) * (obs[id] - expct[id]) / expct[id];
      cells++;
    } else {
      pe += expct[id];
      po += obs[id];
    }
  }
  if (pe > 0) {
    x2 += (po - pe) * (po - pe) / pe;
    cells++;
  }
  free(expct);
  free(obs);
  cr_assert(cells >= 3, "only %d cells", cells);
  return gsl_cdf_chisq_Q(x2, cells - 1);
}

static void draw_mpois_row(void *ctx, tr_rng *r, int64_t *out) {
  tr_mpois_row(r, ctx, out);
}

/* The cases of the joint fit: small k and n, near the method's bound n =
 * 16 k^2 (about 1.5% of the Poisson draws fall in the tails, walked by the
 * recurrence), with zero weights, a tiny weight next to large ones, and
 * one category of almost everything. */
static const struct {
  int64_t n;
  int k;
  int64_t w[4];
} mp_cases[] = {
    {12, 3, {1, 2, 5}},        {40, 4, {0, 3, 1, 6}},     {64, 2, {1, 3}},
    {60, 3, {1, 1, 1}},        {30, 4, {1, 100, 100, 1}}, {200, 4, {5, 0, 2, 9}},
    {1, 3, {1, 2, 3}},         {3, 2, {1, 1}},            {140, 3, {1, 1000000, 3}},
};

Test(sample, mpois_rows_fit_the_exact_multinomial_pmf) {
  tr_mpois m;
  tr_mpois_init(&m); /* one method for all cases: its memory grows and is reused */
  for (size_t i = 0; i < sizeof(mp_cases) / sizeof(mp_cases[0]); i++) {
    if (mp_cases[i].n == 1 || mp_cases[i].n == 3)
      continue; /* too few compositions for a chi-square: below */
    cr_assert_eq(tr_mpois_prepare(&m, mp_cases[i].k, mp_cases[i].w, mp_cases[i].n), TR_OK);
    double pv = mult_gof_pvalue(mp_cases[i].n, mp_cases[i].k, mp_cases[i].w, draw_mpois_row, &m,
                                500 + i, DRAWS);
    cr_assert(pv > GOF_ALPHA, "case %zu (n %lld, k %d): chi-square P = %g", i,
              (long long)mp_cases[i].n, mp_cases[i].k, pv);
  }
  /* n = 1 over weights 1, 2, 3 and n = 3 over 1, 1: frequencies within 6 se */
  static const int64_t w3[3] = {1, 2, 3}, w2[2] = {1, 1};
  cr_assert_eq(tr_mpois_prepare(&m, 3, w3, 1), TR_OK);
  tr_rng r;
  tr_rng_seed(&r, 7);
  double hit[3] = {0};
  for (int i = 0; i < DRAWS; i++) {
    int64_t x[3];
    tr_mpois_row(&r, &m, x);
    cr_assert_eq(x[0] + x[1] + x[2], 1);
    for (int c = 0; c < 3; c++)
      hit[c] += (double)x[c];
  }
  for (int c = 0; c < 3; c++) {
    double p = (double)w3[c] / 6;
    cr_assert(fabs(hit[c] / DRAWS - p) < 6 * sqrt(p * (1 - p) / DRAWS), "n 1: category %d %g",
              c, hit[c] / DRAWS);
  }
  cr_assert_eq(tr_mpois_prepare(&m, 2, w2, 3), TR_OK);
  double k3[4] = {0};
  for (int i = 0; i < DRAWS; i++) {
    int64_t x[2];
    tr_mpois_row(&r, &m, x);
    cr_assert_eq(x[0] + x[1], 3);
    k3[x[0]] += 1;
  }
  for (int j = 0; j < 4; j++) {
    double p = (j == 0 || j == 3 ? 1.0 : 3.0) / 8;
    cr_assert(fabs(k3[j] / DRAWS - p) < 6 * sqrt(p * (1 - p) / DRAWS), "n 3: %d of 3 %g", j,
              k3[j] / DRAWS);
  }
  tr_mpois_fini(&m);
  tr_mpois_fini(&m); /* twice, and NULL: both fine */
  tr_mpois_fini(NULL);
}

/* A sampler with the right means that is not multinomial: independent
 * Poissons whose excess over n is taken from the largest category (no
 * rejection) - the bug the method's conditioning avoids. */
typedef struct wrong_ctx {
  tr_mpois *m;
  int64_t n;
  int k;
  const int64_t *w;
} wrong_ctx;

static gsl_rng *wrong_rng;
static void draw_wrong_row(void *ctx, tr_rng *r, int64_t *out) {
  wrong_ctx *c = ctx;
  (void)r;
  double W = 0;
  for (int e = 0; e < c->k; e++)
    W += (double)c->w[e];
  int64_t s = 0;
  int big = 0;
  for (int e = 0; e < c->k; e++) {
    out[e] = gsl_ran_poisson(wrong_rng, (double)c->n * (double)c->w[e] / W);
    s += out[e];
    big = out[e] > out[big] ? e : big;
  }
  if (s > c->n && out[big] >= s - c->n)
    out[big] -= s - c->n;
  else if (s > c->n) /* rare: start again */
    return draw_wrong_row(ctx, r, out);
  else
    out[c->k - 1] += c->n - s;
}

static void draw_shifted_row(void *ctx, tr_rng *r, int64_t *out) {
  tr_mpois_row(r, ((wrong_ctx *)ctx)->m, out);
}

/* The joint test is not so loose that wrong samplers pass: the fix-up
 * above, and the right method on weights 3% off in one category. */
Test(sample, mpois_gof_catches_wrong_samplers) {
  wrong_rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(wrong_rng, 5);
  static const int64_t w[3] = {1, 2, 5}, ws[3] = {103, 200, 500};
  wrong_ctx c = {.n = 12, .k = 3, .w = w};
  double pv = mult_gof_pvalue(12, 3, w, draw_wrong_row, &c, 90, DRAWS);
  cr_assert(pv < GOF_ALPHA, "the fix-up sampler passed (P = %g)", pv);
  tr_mpois m;
  tr_mpois_init(&m);
  cr_assert_eq(tr_mpois_prepare(&m, 3, ws, 12), TR_OK);
  c.m = &m;
  pv = mult_gof_pvalue(12, 3, w, draw_shifted_row, &c, 91, DRAWS);
  cr_assert(pv < GOF_ALPHA, "weights 3%% off passed (P = %g)", pv);
  tr_mpois_fini(&m);
  gsl_rng_free(wrong_rng);
}

/* At the simulator's size (8,192 slots, 64 experts): the first, a middle
 * and the last expert's counts are exactly Bin(8192, p). */
typedef struct mp_marg_ctx {
  const tr_mpois *m;
  int which;
} mp_marg_ctx;

static int64_t draw_mpois_marginal(void *ctx, tr_rng *r) {
  mp_marg_ctx *c = ctx;
  int64_t out[64];
  tr_mpois_row(r, c->m, out);
  return out[c->which];
}

Test(sample, mpois_marginals_fit_the_exact_binomial) {
  int64_t w[64], tot = 0;
  for (int e = 0; e < 64; e++)
    tot += w[e] = 100 + 37 * ((e * 17) % 64);
  tr_mpois m;
  tr_mpois_init(&m);
  cr_assert_eq(tr_mpois_prepare(&m, 64, w, 8192), TR_OK);
  static const int which[] = {0, 31, 63};
  for (int i = 0; i < 3; i++) {
    mp_marg_ctx c = {&m, which[i]};
    double p = (double)w[which[i]] / (double)tot;
    double pv = gof_pvalue(8192, p, draw_mpois_marginal, &c, 600 + i, 200000, NULL);
    cr_assert(pv > GOF_ALPHA, "expert %d: chi-square P = %g", which[i], pv);
  }
  tr_mpois_fini(&m);
}

/* Means, variances and one covariance of 20,000 rows of 8,192 slots over
 * 64 log-normal-ish weights (one of them 0), within 7 standard errors each,
 * as for the binomial chain above. */
Test(sample, mpois_means_variances_and_covariance) {
  enum { K = 64, ROWS = 20000 };
  const int64_t N = 8192;
  int64_t w[K], tot = 0;
  uint64_t s = 3;
  for (int e = 0; e < K; e++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    w[e] = 1 + (int64_t)(1000 * exp(4.0 * (double)(s >> 11) * 0x1.0p-53 - 2));
  }
  w[5] = 0;
  for (int e = 0; e < K; e++)
    tot += w[e];
  tr_mpois m;
  tr_mpois_init(&m);
  cr_assert_eq(tr_mpois_prepare(&m, K, w, N), TR_OK);
  double sum[K] = {0}, sq[K] = {0}, c01 = 0;
  tr_rng r;
  tr_rng_seed(&r, 22);
  for (int i = 0; i < ROWS; i++) {
    int64_t out[K];
    tr_mpois_row(&r, &m, out);
    for (int e = 0; e < K; e++) {
      sum[e] += (double)out[e];
      sq[e] += (double)out[e] * (double)out[e];
    }
    c01 += (double)out[0] * (double)out[K - 1];
  }
  cr_assert_eq(sum[5], 0, "the expert of weight 0 got slots");
  for (int e = 0; e < K; e++) {
    double p = (double)w[e] / (double)tot, q = 1 - p, mu = N * p, var = N * p * q;
    double mean = sum[e] / ROWS, v = (sq[e] - ROWS * mean * mean) / (ROWS - 1);
    cr_assert(fabs(mean - mu) <= 7 * sqrt(var / ROWS) + 1e-12, "expert %d: mean %g, want %g",
              e, mean, mu);
    double mu4 = var * (1 + 3 * (N - 2) * p * q);
    double sev = sqrt((mu4 - var * var * (ROWS - 3.0) / (ROWS - 1)) / ROWS);
    cr_assert(fabs(v - var) <= 7 * sev + 1e-12, "expert %d: variance %g, want %g (se %g)", e,
              v, var, sev);
  }
  double p0 = (double)w[0] / (double)tot, pl = (double)w[K - 1] / (double)tot;
  double cov = c01 / ROWS - (sum[0] / ROWS) * (sum[K - 1] / ROWS), want = -N * p0 * pl;
  double se = sqrt(N * p0 * (1 - p0) * N * pl * (1 - pl) / ROWS);
  cr_assert(fabs(cov - want) <= 7 * se, "cov(first, last) %g, want %g (se %g)", cov, want, se);
  tr_mpois_fini(&m);
}

Test(sample, mpois_rows_equal_rows_drawn_one_at_a_time) {
  enum { ROWS = 150, K = 40 };
  int64_t w[K];
  for (int e = 0; e < K; e++)
    w[e] = e % 7 == 3 ? 0 : 1 + (e * 7919) % 500;
  static const int64_t ns[] = {1, 3, 100, 8192, 16 * K * K};
  tr_mpois m;
  tr_mpois_init(&m);
  for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
    cr_assert_eq(tr_mpois_prepare(&m, K, w, ns[j]), TR_OK);
    tr_rng a[ROWS], b[ROWS];
    static int64_t x[ROWS * (K + 3)], y[ROWS][K];
    for (int i = 0; i < ROWS; i++) {
      tr_rng_seed(&a[i], 3000 + (uint64_t)i);
      b[i] = a[i];
    }
    tr_mpois_rows(a, ROWS, &m, x, K + 3); /* stride > K */
    for (int i = 0; i < ROWS; i++) {
      tr_mpois_row(&b[i], &m, y[i]);
      cr_assert_arr_eq(x + (size_t)i * (K + 3), y[i], sizeof(y[i]), "n %lld row %d",
                       (long long)ns[j], i);
      cr_assert_arr_eq(&a[i], &b[i], sizeof(tr_rng), "generator state after row %d", i);
    }
  }
  tr_mpois_fini(&m);
}

/* The rows of fixed (weights, n, seed) are the draws recorded from the
 * sampler as first written (main at 66fdd05): its tables and guide may be
 * built faster, never differently. A guide bucket pointing past the answer
 * draws larger counts; one pointing before it only searches longer. The
 * weights: flat, one expert holding nearly everything (a long, narrow
 * table beside tables of small means), and irregular with zeros. */
static uint64_t fnv_counts(uint64_t h, const int64_t *x, int n) {
  for (int i = 0; i < n; i++)
    h = (h ^ (uint64_t)x[i]) * 1099511628211ULL;
  return h;
}

Test(sample, mpois_rows_are_the_recorded_draws) {
  enum { K = 64, ROWS = 64 };
  int64_t w[3][K];
  for (int e = 0; e < K; e++) {
    w[0][e] = 1;
    w[1][e] = e == 5 ? 100000 : 1 + e % 3;
    w[2][e] = e % 9 == 4 ? 0 : 1 + (int64_t)(e * e * 2654435761u % 9973);
  }
  static const int64_t ns[] = {2, 50, 1000, 8192, 65536};
  tr_mpois m;
  tr_mpois_init(&m);
  uint64_t h = 1469598103934665603ULL;
  for (int s = 0; s < 3; s++)
    for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
      cr_assert_eq(tr_mpois_prepare(&m, K, w[s], ns[j]), TR_OK);
      for (int i = 0; i < ROWS; i++) {
        tr_rng r;
        int64_t x[K];
        tr_rng_seed(&r, 77 + (uint64_t)i);
        tr_mpois_row(&r, &m, x);
        h = fnv_counts(h, x, K);
      }
    }
  tr_mpois_fini(&m);
  cr_assert_eq(h, 0xf2a006eaa5abf95dULL, "draws changed: %016llx", (unsigned long long)h);
}

Test(sample, mpois_totals_are_exact_for_every_weight_shape) {
  static const struct {
    int k;
    int64_t w[6];
  } cases[] = {
      {2, {0, 5}},
      {3, {7, 0, 0}},
      {6, {1, 0, 3, 0, 0, 1}},
      {4, {1, 1000000000000000LL, 1, 1}}, /* tiny p next to a huge one */
      {3, {(int64_t)1 << 61, (int64_t)1 << 61, (int64_t)1 << 61}},
      {5, {3, 1, 4, 1, 5}},
  };
  tr_mpois m;
  tr_mpois_init(&m);
  tr_rng r;
  tr_rng_seed(&r, 12);
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    int k = cases[c].k;
    static const int64_t ns[] = {1, 2, 7, 50, 300, 576};
    for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
      if (!tr_mpois_fits(ns[j], k))
        continue;
      cr_assert_eq(tr_mpois_prepare(&m, k, cases[c].w, ns[j]), TR_OK);
      for (int rep = 0; rep < 200; rep++) {
        int64_t out[6], sum = 0;
        tr_mpois_row(&r, &m, out);
        for (int e = 0; e < k; e++) {
          cr_assert_geq(out[e], 0);
          cr_assert(cases[c].w[e] > 0 || out[e] == 0, "case %zu: a zero weight got slots", c);
          sum += out[e];
        }
        cr_assert_eq(sum, ns[j], "case %zu n %lld: sum %lld", c, (long long)ns[j],
                     (long long)sum);
      }
    }
  }
  tr_mpois_fini(&m);
}

Test(sample, mpois_serves_only_what_it_fits_and_rejects_bad_weights) {
  cr_assert(tr_mpois_fits(8192, 64));
  cr_assert(tr_mpois_fits(16 * 64 * 64, 64));
  cr_assert(!tr_mpois_fits(16 * 64 * 64 + 1, 64));
  cr_assert(!tr_mpois_fits(8192, 1));
  cr_assert(!tr_mpois_fits(0, 64));
  cr_assert(tr_mpois_fits((int64_t)1 << 24, 2048));
  cr_assert(!tr_mpois_fits(((int64_t)1 << 24) + 1, 2048));
  cr_assert(!tr_mpois_fits(100, 2049));
  cr_assert_eq(tr_mpois_memory(100, 1), 0);
  cr_assert_gt(tr_mpois_memory(8192, 64), 0);
  tr_mpois m;
  tr_mpois_init(&m);
  cr_assert_eq(tr_mpois_prepare(&m, 3, (int64_t[]){0, 0, 0}, 10), TR_EINVAL);
  cr_assert_eq(tr_mpois_prepare(&m, 3, (int64_t[]){1, -1, 3}, 10), TR_EINVAL);
  cr_assert_eq(tr_mpois_prepare(&m, 3, (int64_t[]){INT64_MAX, 1, 0}, 10), TR_EINVAL);
  cr_assert_eq(tr_mpois_prepare(&m, 3, (int64_t[]){1, 1, 1}, 145), TR_EINVAL);
  cr_assert_eq(tr_mpois_prepare(NULL, 3, (int64_t[]){1, 1, 1}, 10), TR_EINVAL);
  cr_assert_null(m.cat, "nothing allocated on error");
  tr_mpois_fini(&m);
}

Test(sample, mpois_same_seed_same_rows_other_seed_other_rows) {
  int64_t w[32], x[32], y[32], z[32];
  for (int e = 0; e < 32; e++)
    w[e] = 1 + e;
  tr_mpois m;
  tr_mpois_init(&m);
  cr_assert_eq(tr_mpois_prepare(&m, 32, w, 8192), TR_OK);
  tr_rng a, b, c;
  tr_rng_seed(&a, 42);
  tr_rng_seed(&b, 42);
  tr_rng_seed(&c, 43);
  for (int i = 0; i < 100; i++) {
    tr_mpois_row(&a, &m, x);
    tr_mpois_row(&b, &m, y);
    tr_mpois_row(&c, &m, z);
    cr_assert_arr_eq(x, y, sizeof(x));
    cr_assert(memcmp(x, z, sizeof(x)) != 0, "seeds 42 and 43 drew the same row %d", i);
  }
  tr_mpois_fini(&m);
}
