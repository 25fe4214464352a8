/*
 * tr_stats.c - per-layer statistics of a trace in one streaming pass (see
 * tr_stats.h for the definitions).
 *
 * Memory: a ring of RING = 101 past distributions and hot-set flags per
 * layer (lag 100 needs the distribution 100 iterations back), one slice
 * buffer, and one max/mean value and one lag-1 change per (iteration, layer)
 * for the quantiles.
 */
#include "traces/tr_stats.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const int tr_stats_lag[TR_STATS_LAGS] = {1, 10, 100};
#define RING 101

double tr_max_mean(const double *load, int n) {
  double s = 0, m = 0;
  for (int e = 0; e < n; e++) {
    s += load[e];
    if (load[e] > m)
      m = load[e];
  }
  return s > 0 ? m / (s / n) : NAN;
}

double tr_gini(const double *load, int n, double *scratch) {
  memcpy(scratch, load, (size_t)n * sizeof(double));
  gsl_sort(scratch, 1, (size_t)n);
  double s = 0, w = 0;
  for (int i = 0; i < n; i++) {
    s += scratch[i];
    w += (2.0 * (i + 1) - n - 1) * scratch[i];
  }
  return s > 0 ? w / (n * s) : NAN;
}

double tr_entropy(const double *p, int n) {
  if (n < 2)
    return 1;
  double h = 0;
  for (int e = 0; e < n; e++)
    if (p[e] > 0)
      h -= p[e] * log(p[e]);
  return h / log(n);
}

/* Flags the h largest entries of p (ties: lower index first). */
static void hot_set(const double *p, int n, int h, unsigned char *flag) {
  memset(flag, 0, (size_t)n);
  for (int k = 0; k < h; k++) {
    int best = -1;
    for (int e = 0; e < n; e++)
      if (!flag[e] && (best < 0 || p[e] > p[best]))
        best = e;
    flag[best] = 1;
  }
}

void tr_stats_fini(tr_stats *s) {
  if (!s)
    return;
  tr_free(s->layer);
  memset(s, 0, sizeof(*s));
}

/* One pass's state (tr_stats_compute): the slice and load scratch, the ring
 * of the last RING iterations' shares and hot-set flags per layer (and
 * whether each was a slice with tokens), the per-(layer, iteration) max/mean
 * and lag-1 change samples of the quantiles, and the per-layer counts the
 * sums are divided by. */
typedef struct stats_pass {
  int L, R, E, H;
  int64_t N;
  tr_layer_stats *ls;
  int64_t *slice;         /* [R E] */
  double *load, *p, *scr; /* [E] each (one block) */
  double *ring;           /* [RING L E] */
  unsigned char *hot;     /* [RING L E] */
  unsigned char *valid;   /* [RING L] */
  double *mm, *chg;       /* [L N] */
  int64_t *n_lag;         /* [L (TR_STATS_LAGS + 2)] samples of each lag's change */
  int64_t *n_rank;        /* [L] ranks with tokens */
} stats_pass;

static void pass_fini(stats_pass *a) {
  tr_free(a->n_rank);
  tr_free(a->n_lag);
  tr_free(a->chg);
  tr_free(a->mm);
  tr_free(a->valid);
  tr_free(a->hot);
  tr_free(a->ring);
  tr_free(a->load);
  tr_free(a->slice);
  tr_free(a->ls);
}

/* a's buffers for N iterations of t; TR_ENOMEM (a to pass_fini) when one
 * cannot be had. */
static int pass_init(stats_pass *a, const tr_trace *t, int64_t N) {
  const int L = t->layers, R = t->ranks, E = t->experts;
  *a = (stats_pass){.L = L, .R = R, .E = E, .H = E / 8 > 1 ? E / 8 : 1, .N = N};
  a->ls = tr_calloc((size_t)L, sizeof(*a->ls));
  a->slice = tr_malloc((size_t)R * E * sizeof(int64_t));
  a->load = tr_malloc((size_t)E * sizeof(double) * 3);
  a->ring = tr_malloc((size_t)RING * L * E * sizeof(double));
  a->hot = tr_malloc((size_t)RING * L * E);
  a->valid = tr_calloc((size_t)RING * L, 1);
  a->mm = tr_malloc((size_t)N * L * sizeof(double));
  a->chg = tr_malloc((size_t)N * L * sizeof(double));
  a->n_lag = tr_calloc((size_t)L * (TR_STATS_LAGS + 2), sizeof(int64_t));
  a->n_rank = tr_calloc((size_t)L, sizeof(int64_t));
  if (!a->ls || !a->slice || !a->load || !a->ring || !a->hot || !a->valid || !a->mm ||
      !a->chg || !a->n_lag || !a->n_rank)
    return TR_ENOMEM;
  a->p = a->load + E;
  a->scr = a->load + 2 * E;
  return TR_OK;
}

/* Layer l at pass iteration i (ring slot i mod RING): its L1 change
 * against each lag's distribution still in the ring, and the hot set's
 * persistence at the first two lags. */
static void pass_changes(stats_pass *a, int64_t i, int l) {
  const int L = a->L, E = a->E;
  tr_layer_stats *st = &a->ls[l];
  size_t at = ((size_t)(i % RING) * L + l) * E;
  const double *cur = a->ring + at;
  const unsigned char *hcur = a->hot + at;
  int64_t *n = a->n_lag + (size_t)l * (TR_STATS_LAGS + 2);
  for (int k = 0; k < TR_STATS_LAGS; k++) {
    int lag = tr_stats_lag[k];
    if (i < lag)
      continue;
    int old = (int)((i - lag) % RING);
    if (!a->valid[(size_t)old * L + l])
      continue;
    const double *prev = a->ring + ((size_t)old * L + l) * E;
    double d = 0;
    for (int e = 0; e < E; e++)
      d += fabs(cur[e] - prev[e]);
    st->change[k] += d;
    if (k == 0)
      a->chg[(size_t)l * a->N + (size_t)n[0]] = d;
    n[k]++;
    if (k < 2) {
      const unsigned char *hprev = a->hot + ((size_t)old * L + l) * E;
      int both = 0;
      for (int e = 0; e < E; e++)
        both += hcur[e] & hprev[e];
      st->hot_persist[k] += (double)both / a->H;
    }
  }
}

/* Layer l's ranks in the slice of `total` tokens: the spread of their
 * totals and each one's L1 divergence from the layer's shares a->p. */
static void pass_ranks(stats_pass *a, int l, double total) {
  const int R = a->R, E = a->E;
  tr_layer_stats *st = &a->ls[l];
  double rmean = total / R, rvar = 0;
  for (int r = 0; r < R; r++) {
    const int64_t *row = a->slice + (size_t)r * E;
    double rt = 0;
    for (int e = 0; e < E; e++)
      rt += (double)row[e];
    rvar += (rt - rmean) * (rt - rmean);
    if (rt <= 0 || R == 1)
      continue;
    double d = 0;
    for (int e = 0; e < E; e++)
      d += fabs((double)row[e] / rt - a->p[e]);
    st->rank_divergence += d;
    a->n_rank[l]++;
  }
  st->rank_total_cv += sqrt(rvar / R) / rmean;
}

/* Iteration it (pass iteration i) of layer l into the sums: the token
 * range, the shares kept in the ring, skew, Gini, entropy, hot set, then
 * the changes and the ranks. */
static void pass_slice(stats_pass *a, const tr_trace *t, int64_t it, int64_t i, int l,
                       tr_stats *s) {
  const int L = a->L, R = a->R, E = a->E;
  tr_layer_stats *st = &a->ls[l];
  double *load = a->load, *p = a->p;
  tr_slice(t, it, l, a->slice);
  double total = 0;
  for (int e = 0; e < E; e++)
    load[e] = 0;
  for (int r = 0; r < R; r++)
    for (int e = 0; e < E; e++)
      load[e] += (double)a->slice[(size_t)r * E + e];
  for (int e = 0; e < E; e++)
    total += load[e];
  int64_t itotal = 0;
  for (int k = 0; k < R * E; k++)
    itotal += a->slice[k];
  if (itotal < s->tokens_min)
    s->tokens_min = itotal;
  if (itotal > s->tokens_max)
    s->tokens_max = itotal;
  size_t slot = (size_t)(i % RING) * L + l;
  double *cur = a->ring + slot * E;
  a->valid[slot] = total > 0;
  if (total <= 0)
    return;
  for (int e = 0; e < E; e++)
    p[e] = cur[e] = load[e] / total;
  double skew = tr_max_mean(load, E);
  a->mm[(size_t)l * a->N + (size_t)st->samples++] = skew;
  st->max_mean_mean += skew;
  st->gini += tr_gini(load, E, a->scr);
  st->entropy += tr_entropy(p, E);
  hot_set(p, E, a->H, a->hot + slot * E);
  pass_changes(a, i, l);
  pass_ranks(a, l, total);
}

/* The q-quantile of the n samples v (sorted in place), NAN for none. */
static double quantile(double *v, int64_t n, double q) {
  return n > 0 ? gsl_stats_quantile_from_sorted_data(v, 1, (size_t)n, q) : NAN;
}

/* Layer l's sums turned into its statistics: means over the samples each
 * was taken on, the quantiles of the sorted samples. */
static void pass_layer_done(stats_pass *a, int l) {
  tr_layer_stats *st = &a->ls[l];
  int64_t n = st->samples;
  double *v = a->mm + (size_t)l * a->N;
  if (n > 0) {
    gsl_sort(v, 1, (size_t)n);
    st->max_mean_p50 = quantile(v, n, 0.5);
    st->max_mean_p90 = quantile(v, n, 0.9);
    st->max_mean_mean /= n;
    st->gini /= n;
    st->entropy /= n;
    st->rank_total_cv /= n;
  } else {
    st->max_mean_p50 = st->max_mean_p90 = st->max_mean_mean = NAN;
    st->gini = st->entropy = st->rank_total_cv = NAN;
  }
  const int64_t *nl = a->n_lag + (size_t)l * (TR_STATS_LAGS + 2);
  for (int k = 0; k < TR_STATS_LAGS; k++) {
    st->change[k] = nl[k] ? st->change[k] / nl[k] : NAN;
    if (k < 2)
      st->hot_persist[k] = nl[k] ? st->hot_persist[k] / nl[k] : NAN;
  }
  double *d = a->chg + (size_t)l * a->N;
  if (nl[0] > 0)
    gsl_sort(d, 1, (size_t)nl[0]);
  st->change1_p50 = quantile(d, nl[0], 0.5);
  st->change1_p90 = quantile(d, nl[0], 0.9);
  st->change1_p99 = quantile(d, nl[0], 0.99);
  st->rank_divergence =
      a->n_rank[l] ? st->rank_divergence / a->n_rank[l] : (a->R == 1 ? 0 : NAN);
}

int tr_stats_compute(const tr_trace *t, int64_t it0, int64_t it1, tr_stats *s) {
  if (!t || !s || it0 < 0 || it0 >= t->iterations)
    return TR_EINVAL;
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (it1 <= it0)
    return TR_EINVAL;
  const int64_t N = it1 - it0;
  memset(s, 0, sizeof(*s));
  stats_pass a;
  int rc = pass_init(&a, t, N);
  if (rc)
    goto done;
  s->tokens_min = INT64_MAX;
  s->tokens_max = 0;
  for (int64_t i = 0; i < N; i++) {
    if (i % 4096 == 0)
      tr_release_before(t, it0 + i);
    for (int l = 0; l < a.L; l++)
      pass_slice(&a, t, it0 + i, i, l, s);
  }
  for (int l = 0; l < a.L; l++)
    pass_layer_done(&a, l);
  if (s->tokens_min == INT64_MAX)
    s->tokens_min = 0;
  s->iterations = N;
  s->first = it0;
  s->layers = a.L;
  s->ranks = a.R;
  s->experts = a.E;
  s->hot = a.H;
  s->layer = a.ls;
  a.ls = NULL;
done:
  pass_fini(&a);
  return rc;
}
