/*
 * tr_fit.c - fitting the generator to a trace (method in tr_fit.h).
 *
 * The change regimes (maximum likelihood). Per layer, y_t = log d_t with d_t
 * the L1 distance between the normalised loads of iterations t and t-1. The
 * model: a hidden two-state Markov chain s_t (0 calm, 1 burst; P(0->1) =
 * enter, P(1->0) = leave, started in its stationary law) and y_t ~ N(mu_s,
 * sigma_s^2). The log-likelihood comes from the Hamilton filter (predicted
 * regime probabilities, updated by each observation's density, in log space
 * so no density underflows); it is maximised with GSL's Nelder-Mead simplex
 * (nmsimplex2) over an unconstrained parameterisation (mu_1 = mu_0 + e^a
 * keeps the burst regime the higher one; sigma = 0.01 + e^b keeps the
 * likelihood bounded; enter, leave = logistic, within [0.02, 0.98]: regimes
 * last 50 iterations at most on average, longer ones are trends) from
 * three starts, each restarted once at its optimum; the best is kept.
 *
 * Calibration runs generate one layer at a time, of the original's shape
 * (ranks, experts, top-k, tokens) and max(original length, 1000) iterations,
 * into memory, and measure it with tr_stats_compute. The generator's regime
 * chain takes the ML enter/leave; vol_ratio starts at the ML ratio of the
 * regimes' typical changes, e^(mu_1 - mu_0). Updates per round, with S =
 * max/mean p50, M, P = median and p90 of the lag-1 change, C1, C10 = mean L1
 * change at lags 1 and 10, D = rank divergence of the calibration run and
 * S', M', P', C1', C10', D' of the target:
 *   scale  *= ((S' - 1) / (S - 1))^0.7       skew grows with the profile scale
 *   innov  *= (M' / M)^0.8                   typical step ~ innovation
 *   vol_ratio - 1 *= ((P'/M' - 1) / (P/M - 1))  bursts widen the change's spread
 *   1 - phi *= ((C10 / C1) / (C10' / C1'))^2 lag-10/lag-1 ratio grows with phi;
 *   psi += (C10'/C1') / (C10/C1) - 1 (halved)  once phi >= 0.97: trend
 *                                           persistence for ratios near or above
 *                                           sqrt(10), which a stationary AR(1)
 *                                           reaches only with a runaway variance;
 *                                           then, with the scale at its floor, phi
 *                                           comes down to bring the skew down
 *   rank_sigma *= D' / D                     rank divergence ~ rank noise
 * (multinomial sampling noise is part of every generated statistic, so the
 * calibration accounts for it).
 */
#include "traces/tr_fit.h"

#include <errno.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_multimin.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <stddef.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "traces/tr_stats.h"

/* Calibration runs: a coarse phase of max(I, CAL_SHORT) iterations, then a
 * fine phase of CAL_LONG iterations from the coarse optimum. The long runs
 * matter: a layer whose skew is set by one dominant expert has a skew median
 * that wanders by ~7% between 2000-iteration runs (the AR(1) excursions of
 * that expert), and a fit tuned to one short run inherits that error. The
 * long run's buffer is capped at CAL_BYTES. */
#define CAL_SHORT 1000
#define CAL_LONG 8000
#define CAL_BYTES ((size_t)64 << 20)
#define SHORT_ROUNDS 25
#define LONG_ROUNDS 10
/* The change regimes are fitted on the log change less its moving average
 * over this many steps (detrend). */
#define TREND_WINDOW 101

void tr_fit_fini(tr_fit *f) {
  if (!f)
    return;
  tr_free(f->base);
  tr_free(f->layer);
  memset(f, 0, sizeof(*f));
}

/* A tr_trace over caller-owned int64 counts (not freed by tr_close). */
static void wrap(tr_trace *t, const int64_t *counts, int64_t I, int L, int R, int E) {
  memset(t, 0, sizeof(*t));
  t->iterations = I;
  t->layers = L;
  t->ranks = R;
  t->experts = E;
  t->dtype = TR_INT64;
  t->data = (const unsigned char *)counts;
}

static void take(const tr_layer_stats *x, tr_fit_stats *s) {
  s->max_mean_p50 = x->max_mean_p50;
  s->change1 = x->change[0];
  s->change10 = x->change[1];
  s->rank_div = x->rank_divergence;
  s->change1_p50 = x->change1_p50;
  s->change1_p90 = x->change1_p90;
}

int tr_fit_measure(const tr_trace *t, tr_fit_stats *per_layer) {
  tr_stats s;
  int rc = tr_stats_compute(t, 0, -1, &s);
  if (rc)
    return rc;
  for (int l = 0; l < s.layers; l++)
    take(&s.layer[l], &per_layer[l]);
  tr_stats_fini(&s);
  return TR_OK;
}

static double rel(double got, double want) {
  if (!isfinite(got) || !isfinite(want))
    return isfinite(got) == isfinite(want) ? 0 : INFINITY;
  return want != 0 ? fabs(got / want - 1) : fabs(got);
}

/* Largest relative error of the matched statistics: skew, the lag-1
 * change's median and p90, the lag-10 change. */
static double fit_err(const tr_fit_stats *g, const tr_fit_stats *w) {
  double e = rel(g->max_mean_p50, w->max_mean_p50);
  double e50 = rel(g->change1_p50, w->change1_p50), e90 = rel(g->change1_p90, w->change1_p90);
  double e10 = rel(g->change10, w->change10);
  return fmax(fmax(e, e10), fmax(e50, e90));
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One calibration run of layer l's parameters into *out. */
static int simulate(const tr_fit *f, int l, const tr_fit_layer *p, int64_t iters,
                    uint64_t seed, int64_t *buf, tr_fit_stats *out) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.iterations = iters;
  c.layers = 1;
  c.ranks = f->ranks;
  c.experts = f->experts;
  c.top_k = f->top_k;
  c.tokens_per_rank = f->tokens_per_rank;
  c.rank_total_sigma = f->rank_total_sigma;
  c.seed = seed;
  c.base = f->base + (size_t)l * f->experts;
  c.scale1 = p->scale;
  c.innov1 = p->innov;
  c.phi1 = p->phi;
  c.rank_sigma1 = p->rank_sigma;
  c.psi1 = p->psi;
  c.vol_ratio1 = p->vol_ratio;
  c.vol_enter1 = p->vol_enter;
  c.vol_leave1 = p->vol_leave;
  c.vol_sigma1 = p->vol_sigma;
  tr_gen *g;
  int rc = tr_gen_new(&c, &g);
  if (rc)
    return rc;
  size_t n = (size_t)f->ranks * f->experts;
  for (int64_t i = 0; i < c.iterations; i++)
    tr_gen_next(g, buf + (size_t)i * n);
  tr_gen_free(g);
  tr_trace t;
  wrap(&t, buf, c.iterations, 1, f->ranks, f->experts);
  tr_stats s;
  if ((rc = tr_stats_compute(&t, 0, -1, &s)))
    return rc;
  take(&s.layer[0], out);
  tr_stats_fini(&s);
  return TR_OK;
}

/* ---- the change regimes: maximum likelihood --------------------------------- */

#define MS_SIGMA_MIN 0.01
#define MS_P_MIN 0.02
#define MS_ITERS 4000

typedef struct ms_data {
  const double *y;
  int64_t n;
} ms_data;

static double logistic(double x) { return 1 / (1 + exp(-x)); }

/* The unconstrained parameters th[6] as a model (see the file's comment). */
static void ms_unpack(const gsl_vector *th, tr_fit_regimes *r) {
  r->mu[0] = gsl_vector_get(th, 0);
  r->mu[1] = r->mu[0] + exp(gsl_vector_get(th, 1));
  r->sigma[0] = MS_SIGMA_MIN + exp(gsl_vector_get(th, 2));
  r->sigma[1] = MS_SIGMA_MIN + exp(gsl_vector_get(th, 3));
  r->enter = MS_P_MIN + (1 - 2 * MS_P_MIN) * logistic(gsl_vector_get(th, 4));
  r->leave = MS_P_MIN + (1 - 2 * MS_P_MIN) * logistic(gsl_vector_get(th, 5));
}

static double logit(double p) {
  double q = (p - MS_P_MIN) / (1 - 2 * MS_P_MIN);
  return log(q / (1 - q));
}

/* The log-likelihood of y[0..n) under r: the Hamilton filter, in logs. */
static double ms_loglik(const tr_fit_regimes *r, const double *y, int64_t n) {
  const double a = r->enter, b = r->leave, half_log_2pi = 0.91893853320467274;
  double p1 = a / (a + b), ll = 0; /* P(s_t = 1 | y before t) */
  for (int64_t t = 0; t < n; t++) {
    double z0 = (y[t] - r->mu[0]) / r->sigma[0], z1 = (y[t] - r->mu[1]) / r->sigma[1];
    double l0 = log1p(-p1) - log(r->sigma[0]) - 0.5 * z0 * z0;
    double l1 = log(p1) - log(r->sigma[1]) - 0.5 * z1 * z1;
    double m = fmax(l0, l1), lik = m + log(exp(l0 - m) + exp(l1 - m));
    double q1 = exp(l1 - lik); /* P(s_t = 1 | y up to t) */
    ll += lik - half_log_2pi;
    p1 = (1 - q1) * a + q1 * (1 - b);
    p1 = clampd(p1, 1e-300, 1 - 1e-16);
  }
  return ll;
}

static double ms_cost(const gsl_vector *th, void *arg) {
  const ms_data *d = arg;
  tr_fit_regimes r;
  ms_unpack(th, &r);
  double ll = ms_loglik(&r, d->y, d->n);
  return isfinite(ll) ? -ll : 1e300;
}

/* Nelder-Mead from th (replaced by the optimum); the minimum, or NAN on a
 * GSL failure. */
static double ms_minimise(gsl_multimin_fminimizer *m, gsl_multimin_function *fn,
                          gsl_vector *th, gsl_vector *step) {
  if (gsl_multimin_fminimizer_set(m, fn, th, step))
    return NAN;
  int status = GSL_CONTINUE;
  for (int it = 0; it < MS_ITERS && status == GSL_CONTINUE; it++) {
    if (gsl_multimin_fminimizer_iterate(m))
      break;
    status = gsl_multimin_test_size(gsl_multimin_fminimizer_size(m), 1e-7);
  }
  gsl_vector_memcpy(th, gsl_multimin_fminimizer_x(m));
  return gsl_multimin_fminimizer_minimum(m);
}

int tr_fit_regimes_ml(const double *y, int64_t n, tr_fit_regimes *r) {
  if (!y || !r || n < 8)
    return TR_EINVAL;
  for (int64_t t = 0; t < n; t++)
    if (!isfinite(y[t]))
      return TR_EINVAL;
  int rc = TR_ENOMEM;
  double *sorted = tr_malloc((size_t)n * sizeof(double));
  gsl_vector *th = gsl_vector_alloc(6), *best = gsl_vector_alloc(6), *step = gsl_vector_alloc(6);
  gsl_multimin_fminimizer *m = gsl_multimin_fminimizer_alloc(gsl_multimin_fminimizer_nmsimplex2, 6);
  if (!sorted || !th || !best || !step || !m)
    goto fail;
  memcpy(sorted, y, (size_t)n * sizeof(double));
  gsl_sort(sorted, 1, (size_t)n);
  double q40 = gsl_stats_quantile_from_sorted_data(sorted, 1, (size_t)n, 0.4);
  double q90 = gsl_stats_quantile_from_sorted_data(sorted, 1, (size_t)n, 0.9);
  double sd = gsl_stats_sd(y, 1, (size_t)n);
  ms_data d = {.y = y, .n = n};
  gsl_multimin_function fn = {.f = ms_cost, .n = 6, .params = &d};
  /* starts: (enter, leave) short, medium and long bursts */
  static const double starts[3][2] = {{0.1, 0.3}, {0.03, 0.1}, {0.3, 0.5}};
  double best_f = INFINITY;
  for (int k = 0; k < 3; k++) {
    double gap = q90 - q40 > 1e-3 ? q90 - q40 : 1e-3, s0 = fmax(0.5 * sd, 2 * MS_SIGMA_MIN);
    double init[6] = {q40, log(gap), log(s0 - MS_SIGMA_MIN), log(s0 - MS_SIGMA_MIN),
                      logit(starts[k][0]), logit(starts[k][1])};
    for (int i = 0; i < 6; i++) {
      gsl_vector_set(th, (size_t)i, init[i]);
      gsl_vector_set(step, (size_t)i, i == 0 ? fmax(0.5 * sd, 0.01) : 0.5);
    }
    double f = ms_minimise(m, &fn, th, step);
    if (isfinite(f))
      f = ms_minimise(m, &fn, th, step); /* a restart at the optimum */
    if (isfinite(f) && f < best_f) {
      best_f = f;
      gsl_vector_memcpy(best, th);
    }
  }
  if (!isfinite(best_f) || best_f >= 1e300) {
    rc = TR_EINVAL;
    goto fail;
  }
  ms_unpack(best, r);
  r->loglik = -best_f;
  r->n = n;
  rc = TR_OK;
fail:
  gsl_multimin_fminimizer_free(m);
  gsl_vector_free(step);
  gsl_vector_free(best);
  gsl_vector_free(th);
  tr_free(sorted);
  return rc;
}

/* Layer l over [it0, it1): the base profile (log of the mean share,
 * centred) into b[E], and the series log(lag-1 L1 change) into y (*ny
 * entries; steps with a zero total or no change are left out). slice[R*E],
 * p[2*E]: scratch. */
static void layer_series(const tr_trace *t, int64_t it0, int64_t it1, int l, int64_t *slice,
                         double *p, double *b, double *y, int64_t *ny) {
  const int R = t->ranks, E = t->experts;
  double *cur = p, *prev = p + E;
  int64_t used = 0, have_prev = 0;
  *ny = 0;
  for (int e = 0; e < E; e++)
    b[e] = 0;
  for (int64_t it = it0; it < it1; it++) {
    tr_slice(t, it, l, slice);
    double tot = 0;
    for (int k = 0; k < R * E; k++)
      tot += (double)slice[k];
    if (tot <= 0) {
      have_prev = 0;
      continue;
    }
    used++;
    for (int e = 0; e < E; e++) {
      double load = 0;
      for (int r = 0; r < R; r++)
        load += (double)slice[(size_t)r * E + e];
      cur[e] = load / tot;
      b[e] += cur[e];
    }
    double d = 0;
    for (int e = 0; e < E; e++)
      d += fabs(cur[e] - prev[e]);
    if (have_prev && d > 0)
      y[(*ny)++] = log(d);
    memcpy(prev, cur, (size_t)E * sizeof(double));
    have_prev = 1;
  }
  double avg = 0;
  for (int e = 0; e < E; e++) {
    b[e] = log(fmax(b[e] / (used ? used : 1), 1e-6));
    avg += b[e] / E;
  }
  for (int e = 0; e < E; e++)
    b[e] -= avg;
}

/* Removes the slow trend of y[0..n) in place: y_t minus its centred moving
 * average over TREND_WINDOW steps (fewer at the ends), plus the overall
 * mean. Training is not stationary (the change shrinks as the model
 * learns); left in, the trend is what a two-state model fits first, as two
 * regimes lasting hundreds of iterations, and the bursts go unseen. tmp[n]:
 * scratch. */
static void detrend(double *y, int64_t n, double *tmp) {
  const int64_t h = TREND_WINDOW / 2;
  double mean = 0, acc = 0;
  int64_t lo = 0, hi = 0; /* acc = sum of y[lo, hi) */
  for (int64_t t = 0; t < n; t++)
    mean += y[t] / (double)n;
  for (int64_t t = 0; t < n; t++) {
    int64_t a = t - h > 0 ? t - h : 0, b = t + h + 1 < n ? t + h + 1 : n;
    while (hi < b)
      acc += y[hi++];
    while (lo < a)
      acc -= y[lo++];
    tmp[t] = y[t] - acc / (double)(hi - lo) + mean;
  }
  memcpy(y, tmp, (size_t)n * sizeof(double));
}

/* One round's updates of p toward the target w from the generated g (see
 * the file's comment); gain damps them. */
static void update(tr_fit_layer *p, const tr_fit_stats *g, const tr_fit_stats *w, double gain) {
  if (g->max_mean_p50 > 1.0001 && w->max_mean_p50 > 1)
    p->scale *= pow((w->max_mean_p50 - 1) / (g->max_mean_p50 - 1), 0.7 * gain);
  if (g->change1_p50 > 0 && w->change1_p50 > 0)
    p->innov *= pow(w->change1_p50 / g->change1_p50, 0.8 * gain);
  if (g->change1_p50 > 0 && w->change1_p50 > 0) {
    double dg = g->change1_p90 / g->change1_p50 - 1, dw = w->change1_p90 / w->change1_p50 - 1;
    if (dg > 1e-3 && dw > 1e-3)
      p->vol_sigma *= pow(dw / dg, gain);
  }
  if (g->change1 > 0 && w->change1 > 0 && g->change10 > 0 && w->change10 > 0) {
    /* The lag-10/lag-1 ratio: phi up to 0.99 (AR(1)), then trend
     * persistence psi once phi is high (raising phi further inflates the
     * stationary variance and with it the skew). */
    double ratio = (g->change10 / g->change1) / (w->change10 / w->change1);
    if (p->psi > 0 || (p->phi >= 0.97 && ratio < 1)) {
      p->psi = clampd(p->psi + 0.5 * gain * (1 / ratio - 1), 0, 0.9);
      /* a skew too high comes from the logits' stationary variance, which
       * psi inflates and the profile scale cannot undo: lower it through
       * phi, psi keeps the ratio */
      if (g->max_mean_p50 > w->max_mean_p50 && w->max_mean_p50 > 1)
        p->phi = 1 - clampd((1 - p->phi) *
                                pow((g->max_mean_p50 - 1) / (w->max_mean_p50 - 1), gain),
                            0.01, 1.0);
    } else {
      double u = (1 - p->phi) * pow(ratio, 2.0 * gain);
      p->phi = 1 - clampd(u, 0.01, 1.0);
    }
  }
  if (g->rank_div > 0 && w->rank_div > 0)
    p->rank_sigma *= pow(w->rank_div / g->rank_div, gain);
  p->scale = clampd(p->scale, 0.02, 20);
  p->innov = clampd(p->innov, 1e-4, 5);
  p->vol_sigma = clampd(p->vol_sigma, 0.01, 3);
  p->rank_sigma = clampd(p->rank_sigma, 1e-4, 5);
}

/* p with its innovation, held by the calibration as the root mean square
 * over the two regimes, turned into the calm regime's (the generator's
 * innov): so the typical step and the spread of the steps are set by innov
 * and vol_ratio apart, whichever regime holds the median. */
static tr_fit_layer calm_innov(tr_fit_layer p) {
  double a = p.vol_enter, b = p.vol_leave, pi1 = a + b > 0 ? a / (a + b) : 0;
  p.innov /= sqrt(1 - pi1 + pi1 * p.vol_ratio * p.vol_ratio) *
             exp(p.vol_sigma * p.vol_sigma / 2);
  return p;
}

/* Calibrates layer l of f (its target and regimes set) by simulation:
 * a coarse phase of short_iters, a fine one of long_iters iterations
 * (buf holds long_iters slices); the best round into f->layer[l]. */
static int calibrate(tr_fit *f, int l, int64_t short_iters, int64_t long_iters, uint64_t seed,
                     int64_t *buf) {
  tr_fit_layer *fl = &f->layer[l];
  const tr_fit_stats *w = &fl->target;
  const tr_fit_regimes *ms = &fl->regimes;
  tr_fit_layer p = {.scale = 1, .innov = 0.1, .phi = 0.9, .rank_sigma = 0.1,
                    .vol_ratio = clampd(exp(ms->mu[1] - ms->mu[0]), 1, 20),
                    .vol_sigma = clampd(0.5 * (ms->sigma[0] + ms->sigma[1]), 0.05, 3),
                    .vol_enter = ms->enter, .vol_leave = ms->leave};
  tr_fit_layer best = p;
  int rounds = 0, rc;
  for (int phase = 0; phase < 2; phase++) {
    int64_t iters = phase == 0 ? short_iters : long_iters;
    int max_rounds = phase == 0 ? SHORT_ROUNDS : LONG_ROUNDS;
    double best_err = INFINITY, gain = 1, done = phase == 0 ? 0.02 : 0.01;
    p = best;
    for (int round = 0; round < max_rounds; round++, rounds++) {
      tr_fit_stats g;
      tr_fit_layer q = calm_innov(p);
      if ((rc = simulate(f, l, &q, iters, seed, buf, &g)))
        return rc;
      double err = fit_err(&g, w);
      if (err < best_err) {
        best_err = err;
        best = p;
        best.fitted = g;
      }
      if (err < done && rel(g.rank_div, w->rank_div) < 0.05)
        break;
      if (err > 1.5 * best_err) { /* diverging: restart from the best, smaller steps */
        p = best;
        g = best.fitted;
        gain *= 0.5;
      }
      update(&p, &g, w, gain);
    }
  }
  if (rounds > f->rounds)
    f->rounds = rounds;
  best.target = fl->target;
  best.regimes = fl->regimes;
  *fl = calm_innov(best);
  return TR_OK;
}

int tr_fit_trace(const tr_trace *t, int64_t it0, int64_t it1, uint64_t seed, tr_fit *f) {
  return tr_fit_trace_progress(t, it0, it1, seed, f, NULL, NULL);
}

int tr_fit_trace_progress(const tr_trace *t, int64_t it0, int64_t it1, uint64_t seed, tr_fit *f,
                          tr_fit_progress_fn progress, void *ctx) {
  if (!t || !f)
    return TR_EINVAL;
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (it0 < 0 || it0 >= it1 || it1 - it0 < 12)
    return TR_EINVAL; /* lag 10 needs a few iterations */
  memset(f, 0, sizeof(*f));
  const int L = t->layers, R = t->ranks, E = t->experts;
  const int64_t I = it1 - it0;
  int rc = TR_ENOMEM;
  tr_stats st = {0};
  int64_t *slice = NULL, *buf = NULL;
  double *p = NULL, *y = NULL;
  f->layers = L;
  f->ranks = R;
  f->experts = E;
  f->iterations = I;
  f->meta = t->meta;
  f->hash = t->hash;
  snprintf(f->source, sizeof(f->source), "%s", t->path);
  f->base = tr_calloc((size_t)L * E, sizeof(double));
  f->layer = tr_calloc((size_t)L, sizeof(tr_fit_layer));
  slice = tr_malloc((size_t)R * E * sizeof(int64_t));
  p = tr_calloc((size_t)2 * E, sizeof(double));
  y = tr_malloc((size_t)I * 2 * sizeof(double)); /* series, detrend's scratch */
  if (!f->base || !f->layer || !slice || !p || !y)
    goto fail;
  if ((rc = tr_stats_compute(t, it0, it1, &st)))
    goto fail;
  /* sizes of the model: tokens per rank from the sidecar, else the data */
  f->top_k = t->meta.top_k > 0 ? t->meta.top_k : 1;
  double slots = (double)(st.tokens_min + st.tokens_max) / 2 / R;
  double tokens = t->meta.tokens_per_rank > 0 ? (double)t->meta.tokens_per_rank
                                              : round(slots / f->top_k);
  if (!(tokens >= 1 && tokens <= (double)tr_limits[TR_LIM_TOKENS_PER_RANK].hi)) {
    rc = TR_EINVAL; /* an empty trace, or more than any rank routes: no model to fit */
    goto fail;
  }
  f->tokens_per_rank = (int64_t)tokens;
  double cv = 0;
  for (int l = 0; l < L; l++)
    cv += st.layer[l].rank_total_cv / L;
  f->rank_total_sigma = cv > 0.01 ? cv : 0;
  /* base profiles, change series and their regimes */
  for (int l = 0; l < L; l++) {
    int64_t ny;
    layer_series(t, it0, it1, l, slice, p, f->base + (size_t)l * E, y, &ny);
    take(&st.layer[l], &f->layer[l].target);
    detrend(y, ny, y + I);
    if ((rc = tr_fit_regimes_ml(y, ny, &f->layer[l].regimes)))
      goto fail; /* fewer than 8 steps that change: no regimes to fit */
    if (progress)
      progress(ctx, l + 1, 2 * L);
  }
  int64_t per_iter = (int64_t)R * E * (int64_t)sizeof(int64_t);
  int64_t short_iters = I > CAL_SHORT ? I : CAL_SHORT;
  int64_t long_iters = (int64_t)(CAL_BYTES / (size_t)per_iter);
  if (long_iters > CAL_LONG)
    long_iters = CAL_LONG;
  if (long_iters < short_iters)
    long_iters = short_iters;
  f->cal_iterations = long_iters;
  buf = tr_malloc((size_t)long_iters * (size_t)per_iter);
  if (!buf) {
    rc = TR_ENOMEM;
    goto fail;
  }
  for (int l = 0; l < L; l++) {
    if ((rc = calibrate(f, l, short_iters, long_iters, seed, buf)))
      goto fail;
    if (progress)
      progress(ctx, L + l + 1, 2 * L);
  }
  rc = TR_OK;
fail:
  tr_stats_fini(&st);
  tr_free(buf);
  tr_free(y);
  tr_free(p);
  tr_free(slice);
  if (rc)
    tr_fit_fini(f);
  return rc;
}

/* ---- FIT.json --------------------------------------------------------------- */

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *stats_obj(const tr_fit_stats *s) {
  json_t *o = json_object();
  json_object_set_new(o, "max_mean_p50", jnum(s->max_mean_p50));
  json_object_set_new(o, "change_l1_lag1", jnum(s->change1));
  json_object_set_new(o, "change_l1_lag1_p50", jnum(s->change1_p50));
  json_object_set_new(o, "change_l1_lag1_p90", jnum(s->change1_p90));
  json_object_set_new(o, "change_l1_lag10", jnum(s->change10));
  json_object_set_new(o, "rank_divergence_l1", jnum(s->rank_div));
  return o;
}

static json_t *regimes_obj(const tr_fit_regimes *r) {
  json_t *o = json_object();
  json_object_set_new(o, "mu_calm", jnum(r->mu[0]));
  json_object_set_new(o, "mu_burst", jnum(r->mu[1]));
  json_object_set_new(o, "sigma_calm", jnum(r->sigma[0]));
  json_object_set_new(o, "sigma_burst", jnum(r->sigma[1]));
  json_object_set_new(o, "enter", jnum(r->enter));
  json_object_set_new(o, "leave", jnum(r->leave));
  json_object_set_new(o, "loglik", jnum(r->loglik));
  json_object_set_new(o, "n", json_integer(r->n));
  return o;
}

static json_t *layer_obj(const tr_fit *f, int l) {
  const tr_fit_layer *x = &f->layer[l];
  json_t *j = json_object();
  json_object_set_new(j, "layer", json_integer(l));
  json_object_set_new(j, "scale", json_real(x->scale));
  json_object_set_new(j, "innov", json_real(x->innov));
  json_object_set_new(j, "phi", json_real(x->phi));
  json_object_set_new(j, "rank_sigma", json_real(x->rank_sigma));
  json_object_set_new(j, "psi", json_real(x->psi));
  json_object_set_new(j, "vol_ratio", json_real(x->vol_ratio));
  json_object_set_new(j, "vol_enter", json_real(x->vol_enter));
  json_object_set_new(j, "vol_leave", json_real(x->vol_leave));
  json_object_set_new(j, "vol_sigma", json_real(x->vol_sigma));
  json_object_set_new(j, "change_regimes", regimes_obj(&x->regimes));
  json_object_set_new(j, "target", stats_obj(&x->target));
  json_object_set_new(j, "fitted", stats_obj(&x->fitted));
  json_t *b = json_array();
  for (int e = 0; e < f->experts; e++)
    json_array_append_new(b, json_real(f->base[(size_t)l * f->experts + e]));
  json_object_set_new(j, "base", b);
  return j;
}

int tr_fit_save(const tr_fit *f, const char *path, tr_error *err) {
  json_t *o = json_object();
  json_object_set_new(o, "version", json_integer(TR_FIT_VERSION));
  json_object_set_new(o, "model", json_string("flexmoe-ms-ar1-logits"));
  json_object_set_new(o, "source", json_string(f->source));
  char h[32];
  snprintf(h, sizeof(h), "%016" PRIx64, f->hash);
  json_object_set_new(o, "source_hash", json_string(h));
  json_object_set_new(o, "iterations", json_integer(f->iterations));
  json_object_set_new(o, "layers", json_integer(f->layers));
  json_object_set_new(o, "ranks", json_integer(f->ranks));
  json_object_set_new(o, "experts", json_integer(f->experts));
  json_object_set_new(o, "top_k", json_integer(f->top_k));
  json_object_set_new(o, "tokens_per_rank", json_integer(f->tokens_per_rank));
  json_object_set_new(o, "rank_total_sigma", json_real(f->rank_total_sigma));
  json_object_set_new(o, "d_model", json_integer(f->meta.d_model));
  json_object_set_new(o, "d_ff", json_integer(f->meta.d_ff));
  json_object_set_new(o, "bytes_per_elem", json_integer(f->meta.bytes_per_elem));
  json_object_set_new(o, "calibration_iterations", json_integer(f->cal_iterations));
  json_object_set_new(o, "calibration_rounds", json_integer(f->rounds));
  json_t *layers = json_array();
  for (int l = 0; l < f->layers; l++)
    json_array_append_new(layers, layer_obj(f, l));
  json_object_set_new(o, "per_layer", layers);
  char tmp[600];
  snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
  int rc = TR_OK;
  int fd = mkstemp(tmp);
  FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!fp) {
    if (fd >= 0) {
      close(fd);
      unlink(tmp);
    }
    rc = tr_seterr(err, TR_EWRITE, path, 0, "cannot create: %s", strerror(errno));
  } else {
    int bad = json_dumpf(o, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    bad |= fputc('\n', fp) == EOF;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path) != 0) {
      unlink(tmp);
      rc = tr_seterr(err, TR_EWRITE, path, 0, "cannot write: %s", strerror(errno));
    }
  }
  json_decref(o);
  return rc;
}

/* A per-layer model number of FIT.json: its key, where it goes, its range
 * ([lo, hi], or [lo, hi) with hi_open), its value when a version-1 file
 * lacks it (v1_default < 0: version 1 has it too, required). */
typedef struct layer_key {
  const char *key;
  size_t off;
  double lo, hi;
  int hi_open;
  double v1_default;
} layer_key;

static const layer_key layer_keys[] = {
    {.key = "scale", .off = offsetof(tr_fit_layer, scale), .lo = 0, .hi = 100, .v1_default = -1},
    {.key = "innov", .off = offsetof(tr_fit_layer, innov), .lo = 0, .hi = 10, .v1_default = -1},
    {.key = "phi", .off = offsetof(tr_fit_layer, phi), .lo = 0, .hi = 1, .v1_default = -1},
    {.key = "psi", .off = offsetof(tr_fit_layer, psi), .lo = 0, .hi = 1, .hi_open = 1,
     .v1_default = 0},
    {.key = "rank_sigma", .off = offsetof(tr_fit_layer, rank_sigma), .lo = 0, .hi = 10,
     .v1_default = -1},
    {.key = "vol_ratio", .off = offsetof(tr_fit_layer, vol_ratio), .lo = 1, .hi = 100,
     .v1_default = 1},
    {.key = "vol_enter", .off = offsetof(tr_fit_layer, vol_enter), .lo = 0, .hi = 1,
     .v1_default = 0},
    {.key = "vol_leave", .off = offsetof(tr_fit_layer, vol_leave), .lo = 0, .hi = 1,
     .v1_default = 0},
    {.key = "vol_sigma", .off = offsetof(tr_fit_layer, vol_sigma), .lo = 0, .hi = 5,
     .v1_default = 0},
};

/* The model numbers of per_layer[l] (j) into fl; TR_OK or TR_EMETA with
 * err naming the field, its value and its range. */
static int load_layer(json_t *j, int l, int version, tr_fit_layer *fl, const char *path,
                      tr_error *err) {
  if (!json_is_object(j))
    return tr_seterr(err, TR_EMETA, path, 0, "'per_layer[%d]' must be an object", l);
  for (size_t i = 0; i < sizeof(layer_keys) / sizeof(layer_keys[0]); i++) {
    const layer_key *k = &layer_keys[i];
    json_t *x = json_object_get(j, k->key);
    double *dst = (double *)((char *)fl + k->off);
    if (!x && version == 1 && k->v1_default >= 0) {
      *dst = k->v1_default;
      continue;
    }
    double v = json_is_number(x) ? json_number_value(x) : NAN;
    if (!(v >= k->lo && (k->hi_open ? v < k->hi : v <= k->hi))) {
      char got[64];
      if (json_is_number(x))
        snprintf(got, sizeof(got), "is %g", v);
      else
        snprintf(got, sizeof(got), "is %s", x ? "not a number" : "missing");
      return tr_seterr(err, TR_EMETA, path, 0,
                       k->hi_open ? "'per_layer[%d].%s' %s: it must be a number at least %g "
                                    "and below %g"
                                  : "'per_layer[%d].%s' %s: it must be a number between %g "
                                    "and %g",
                       l, k->key, got, k->lo, k->hi);
    }
    *dst = v;
  }
  return TR_OK;
}

/* The base profile of per_layer[l] (j) into b[E] (b NULL: its length
 * only): E logits within [-100, 100]; TR_OK or TR_EMETA naming the field. */
static int load_base(json_t *j, int l, int E, double *b, const char *path, tr_error *err) {
  json_t *a = json_object_get(j, "base");
  if (!json_is_array(a) || json_array_size(a) != (size_t)E)
    return tr_seterr(err, TR_EMETA, path, 0,
                     "'per_layer[%d].base' must be an array of %d numbers (the experts)", l, E);
  for (int e = 0; b && e < E; e++) {
    json_t *x = json_array_get(a, (size_t)e);
    double v = json_is_number(x) ? json_number_value(x) : NAN;
    if (!(v >= -100 && v <= 100))
      return tr_seterr(err, TR_EMETA, path, 0,
                       "'per_layer[%d].base[%d]' must be a number between -100 and 100 (a "
                       "log share)",
                       l, e);
    b[e] = v;
  }
  return TR_OK;
}

/* FIT.json's version: 1 or 2 (TR_FIT_VERSION) into *version, its model
 * name (when given) the version's; TR_OK or TR_EMETA naming the field. */
static int load_version(json_t *o, int *version, const char *path, tr_error *err) {
  static const char *const models[] = {"flexmoe-ar1-logits", "flexmoe-ms-ar1-logits"};
  json_t *v = json_object_get(o, "version");
  if (!json_is_integer(v) || json_integer_value(v) < 1 ||
      json_integer_value(v) > TR_FIT_VERSION) {
    char got[64];
    if (json_is_integer(v))
      snprintf(got, sizeof(got), "is %" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
      snprintf(got, sizeof(got), "is %s", v ? "not an integer" : "missing");
    return tr_seterr(err, TR_EMETA, path, 0,
                     "'version' %s: this flexmoe reads fit files of version 1 and %d (refit "
                     "the trace with 'flexmoe trace fit')",
                     got, TR_FIT_VERSION);
  }
  *version = (int)json_integer_value(v);
  json_t *m = json_object_get(o, "model");
  if (m && (!json_is_string(m) || strcmp(json_string_value(m), models[*version - 1]) != 0))
    return tr_seterr(err, TR_EMETA, path, 0, "'model' must be \"%s\" in a version %d fit file",
                     models[*version - 1], *version);
  return TR_OK;
}

/* The sizes (within their physical ranges, tr_limits; top_k at most the
 * experts) and the model numbers d_model, d_ff, bytes_per_elem (0 or
 * absent: unknown) of o into f; TR_OK or TR_EMETA naming the field. */
static int load_sizes(json_t *o, tr_fit *f, const char *path, tr_error *err) {
  static const tr_limit_id ints[] = {TR_LIM_LAYERS, TR_LIM_RANKS, TR_LIM_EXPERTS, TR_LIM_TOP_K,
                                     TR_LIM_TOKENS_PER_RANK, TR_LIM_ITERATIONS};
  int64_t iv[6] = {0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 6; i++) {
    const tr_limit *l = &tr_limits[ints[i]];
    int64_t hi = ints[i] == TR_LIM_TOP_K && iv[2] < l->hi ? iv[2] : l->hi;
    json_t *x = json_object_get(o, l->name);
    if (!json_is_integer(x) || json_integer_value(x) < l->lo || json_integer_value(x) > hi)
      return tr_seterr(err, TR_EMETA, path, 0,
                       "not a flexmoe fit file: '%s' must be an integer between %" PRId64
                       " and %" PRId64 "%s",
                       l->name, l->lo, hi, hi < l->hi ? " (its experts)" : "");
    iv[i] = json_integer_value(x);
  }
  f->layers = (int)iv[0];
  f->ranks = (int)iv[1];
  f->experts = (int)iv[2];
  f->top_k = (int)iv[3];
  f->tokens_per_rank = iv[4];
  f->iterations = iv[5];
  const struct {
    tr_limit_id id;
    int *dst;
  } model[] = {{TR_LIM_D_MODEL, &f->meta.d_model},
               {TR_LIM_D_FF, &f->meta.d_ff},
               {TR_LIM_BYTES_PER_ELEM, &f->meta.bytes_per_elem}};
  for (size_t i = 0; i < sizeof(model) / sizeof(model[0]); i++) {
    const tr_limit *l = &tr_limits[model[i].id];
    json_t *x = json_object_get(o, l->name);
    if (!x || json_is_null(x))
      continue;
    int64_t m = json_is_integer(x) ? json_integer_value(x) : -1;
    if (m != 0 && (m < l->lo || m > l->hi))
      return tr_seterr(err, TR_EMETA, path, 0,
                       "'%s' must be an integer between %" PRId64 " and %" PRId64
                       " (0: unknown)",
                       l->name, l->lo, l->hi);
    *model[i].dst = (int)m;
  }
  json_t *rs = json_object_get(o, "rank_total_sigma");
  double v = json_is_number(rs) ? json_number_value(rs) : NAN;
  if (rs && !(v >= 0 && v <= 10))
    return tr_seterr(err, TR_EMETA, path, 0,
                     "'rank_total_sigma' must be a number between 0 and 10");
  f->rank_total_sigma = rs ? v : 0;
  return TR_OK;
}

int tr_fit_load(tr_fit *f, const char *path, tr_error *err) {
  if (err)
    memset(err, 0, sizeof(*err));
  memset(f, 0, sizeof(*f));
  if (access(path, F_OK) != 0)
    return tr_seterr(err, TR_ENOENT, path, 0, "cannot open: %s", strerror(errno));
  json_error_t je;
  json_t *o = json_load_file(path, 0, &je);
  if (!o)
    return tr_seterr(err, TR_EMETA, path, je.line > 0 ? je.line : 0, "malformed JSON: %s",
                     je.text);
  int rc, version = 0;
  if ((rc = load_version(o, &version, path, err)) || (rc = load_sizes(o, f, path, err)))
    goto fail;
  json_t *s = json_object_get(o, "source");
  if (json_is_string(s))
    snprintf(f->source, sizeof(f->source), "%s", json_string_value(s));
  json_t *pl = json_object_get(o, "per_layer");
  if (!json_is_array(pl) || json_array_size(pl) != (size_t)f->layers) {
    rc = tr_seterr(err, TR_EMETA, path, 0,
                   "not a flexmoe fit file: 'per_layer' must be an array of %d layers",
                   f->layers);
    goto fail;
  }
  /* The layers' numbers and base lengths first, then the base profiles:
   * they are allocated only once the file holds every one of their
   * numbers (a few bytes of JSON each), whatever sizes it claims. */
  f->layer = tr_calloc((size_t)f->layers, sizeof(tr_fit_layer));
  if (!f->layer) {
    rc = tr_seterr(err, TR_ENOMEM, path, 0, "out of memory");
    goto fail;
  }
  for (int l = 0; l < f->layers; l++) {
    json_t *j = json_array_get(pl, (size_t)l);
    if ((rc = load_layer(j, l, version, &f->layer[l], path, err)) ||
        (rc = load_base(j, l, f->experts, NULL, path, err)))
      goto fail;
  }
  f->base = tr_calloc((size_t)f->layers * f->experts, sizeof(double));
  if (!f->base) {
    rc = tr_seterr(err, TR_ENOMEM, path, 0, "out of memory");
    goto fail;
  }
  for (int l = 0; l < f->layers; l++)
    if ((rc = load_base(json_array_get(pl, (size_t)l), l, f->experts,
                        f->base + (size_t)l * f->experts, path, err)))
      goto fail;
  json_decref(o);
  return TR_OK;
fail:
  json_decref(o);
  tr_fit_fini(f);
  return rc;
}

int tr_fit_apply(const tr_fit *f, tr_gen_config *c, double **owned) {
  if (!f || !c || !owned || c->layers < 1 || c->experts < 1)
    return TR_EINVAL;
  int L = c->layers, E = c->experts, FE = f->experts;
  uint64_t bytes = tr_mul_sat(tr_mul_sat((uint64_t)L, (uint64_t)E) + 9 * (uint64_t)L + (uint64_t)FE,
                              sizeof(double));
  if (tr_add_sat(bytes, tr_gen_memory(c)) > tr_max_memory(c->max_memory))
    return TR_EBUDGET; /* the model and the generator it feeds, over the budget */
  double *m = tr_malloc((size_t)bytes);
  if (!m)
    return TR_ENOMEM;
  double *base = m, *scale = base + (size_t)L * E, *innov = scale + L, *phi = innov + L,
         *rs = phi + L, *psi = rs + L, *vr = psi + L, *ve = vr + L, *vl = ve + L,
         *vs = vl + L, *sorted = vs + L;
  for (int l = 0; l < L; l++) {
    int fl = l % f->layers;
    const double *b = f->base + (size_t)fl * FE;
    scale[l] = f->layer[fl].scale;
    innov[l] = f->layer[fl].innov;
    phi[l] = f->layer[fl].phi;
    rs[l] = f->layer[fl].rank_sigma;
    psi[l] = f->layer[fl].psi;
    vr[l] = f->layer[fl].vol_ratio > 0 ? f->layer[fl].vol_ratio : 1; /* 0: a zeroed layer */
    ve[l] = f->layer[fl].vol_enter;
    vl[l] = f->layer[fl].vol_leave;
    vs[l] = f->layer[fl].vol_sigma;
    if (E == FE) {
      memcpy(base + (size_t)l * E, b, (size_t)E * sizeof(double));
      continue;
    }
    /* Another expert count: the profile's quantiles, hottest first, laid
     * over the ids with a golden-ratio stride so hot experts do not sit on
     * neighbouring ids (which static placement would put on one GPU). */
    memcpy(sorted, b, (size_t)FE * sizeof(double));
    gsl_sort(sorted, 1, (size_t)FE);
    int stride = (int)(0.618 * E) > 0 ? (int)(0.618 * E) : 1;
    while (gcd(stride, E) != 1)
      stride++;
    for (int k = 0; k < E; k++) {
      double q = (E - 1 - k + 0.5) / E * FE - 0.5; /* k = 0: the hottest */
      if (q < 0)
        q = 0;
      int i = (int)floor(q);
      double w = q - i, lo = sorted[i], hi = sorted[i + 1 < FE ? i + 1 : FE - 1];
      base[(size_t)l * E + (size_t)((int64_t)k * stride % E)] = lo + (hi - lo) * w;
    }
  }
  c->base = base;
  c->scale = scale;
  c->innov = innov;
  c->phi = phi;
  c->rank_sigma = rs;
  c->psi = psi;
  c->vol_ratio = vr;
  c->vol_enter = ve;
  c->vol_leave = vl;
  c->vol_sigma = vs;
  if (c->top_k <= 0)
    c->top_k = f->top_k;
  if (c->tokens_per_rank <= 0)
    c->tokens_per_rank = f->tokens_per_rank;
  c->rank_total_sigma = f->rank_total_sigma;
  *owned = m;
  return TR_OK;
}

