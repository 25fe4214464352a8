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

int tr_stats_compute(const tr_trace *t, int64_t it0, int64_t it1, tr_stats *s) {
  if (!t || !s || it0 < 0 || it0 >= t->iterations)
    return TR_EINVAL;
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (it1 <= it0)
    return TR_EINVAL;
  const int L = t->layers, R = t->ranks, E = t->experts;
  const int64_t N = it1 - it0;
  const int H = E / 8 > 1 ? E / 8 : 1;
  memset(s, 0, sizeof(*s));
  int rc = TR_ENOMEM;
  tr_layer_stats *ls = tr_calloc((size_t)L, sizeof(*ls));
  int64_t *slice = tr_malloc((size_t)R * E * sizeof(int64_t));
  double *load = tr_malloc((size_t)E * sizeof(double) * 3);
  double *ring = tr_malloc((size_t)RING * L * E * sizeof(double));
  unsigned char *hot = tr_malloc((size_t)RING * L * E);
  unsigned char *valid = tr_calloc((size_t)RING * L, 1);
  double *mm = tr_malloc((size_t)N * L * sizeof(double));
  double *chg = tr_malloc((size_t)N * L * sizeof(double));
  int64_t *n_lag = tr_calloc((size_t)L * (TR_STATS_LAGS + 2), sizeof(int64_t));
  int64_t *n_rank = tr_calloc((size_t)L, sizeof(int64_t));
  if (!ls || !slice || !load || !ring || !hot || !valid || !mm || !chg || !n_lag || !n_rank)
    goto fail;
  double *p = load + E, *scratch = load + 2 * E;
  s->tokens_min = INT64_MAX;
  s->tokens_max = 0;
  for (int64_t i = 0; i < N; i++) {
    int slot = (int)(i % RING);
    if (i % 4096 == 0)
      tr_release_before(t, it0 + i);
    for (int l = 0; l < L; l++) {
      tr_layer_stats *st = &ls[l];
      tr_slice(t, it0 + i, l, slice);
      double total = 0;
      for (int e = 0; e < E; e++)
        load[e] = 0;
      for (int r = 0; r < R; r++)
        for (int e = 0; e < E; e++)
          load[e] += (double)slice[(size_t)r * E + e];
      for (int e = 0; e < E; e++)
        total += load[e];
      int64_t itotal = 0;
      for (int k = 0; k < R * E; k++)
        itotal += slice[k];
      if (itotal < s->tokens_min)
        s->tokens_min = itotal;
      if (itotal > s->tokens_max)
        s->tokens_max = itotal;
      double *cur = ring + ((size_t)slot * L + l) * E;
      unsigned char *hcur = hot + ((size_t)slot * L + l) * E;
      valid[(size_t)slot * L + l] = total > 0;
      if (total <= 0)
        continue;
      for (int e = 0; e < E; e++)
        p[e] = cur[e] = load[e] / total;
      double skew = tr_max_mean(load, E);
      mm[(size_t)l * N + (size_t)st->samples++] = skew;
      st->max_mean_mean += skew;
      st->gini += tr_gini(load, E, scratch);
      st->entropy += tr_entropy(p, E);
      hot_set(p, E, H, hcur);
      for (int k = 0; k < TR_STATS_LAGS; k++) {
        int lag = tr_stats_lag[k];
        if (i < lag)
          continue;
        int old = (int)((i - lag) % RING);
        if (!valid[(size_t)old * L + l])
          continue;
        const double *prev = ring + ((size_t)old * L + l) * E;
        double d = 0;
        for (int e = 0; e < E; e++)
          d += fabs(cur[e] - prev[e]);
        st->change[k] += d;
        if (k == 0)
          chg[(size_t)l * N + (size_t)n_lag[(size_t)l * (TR_STATS_LAGS + 2)]] = d;
        n_lag[(size_t)l * (TR_STATS_LAGS + 2) + k]++;
        if (k < 2) {
          const unsigned char *hprev = hot + ((size_t)old * L + l) * E;
          int both = 0;
          for (int e = 0; e < E; e++)
            both += hcur[e] & hprev[e];
          st->hot_persist[k] += (double)both / H;
        }
      }
      /* ranks */
      double rmean = total / R, rvar = 0;
      for (int r = 0; r < R; r++) {
        double rt = 0;
        for (int e = 0; e < E; e++)
          rt += (double)slice[(size_t)r * E + e];
        rvar += (rt - rmean) * (rt - rmean);
        if (rt <= 0 || R == 1)
          continue;
        double d = 0;
        for (int e = 0; e < E; e++)
          d += fabs((double)slice[(size_t)r * E + e] / rt - p[e]);
        st->rank_divergence += d;
        n_rank[l]++;
      }
      st->rank_total_cv += sqrt(rvar / R) / rmean;
    }
  }
  for (int l = 0; l < L; l++) {
    tr_layer_stats *st = &ls[l];
    int64_t n = st->samples;
    double *v = mm + (size_t)l * N;
    if (n > 0) {
      gsl_sort(v, 1, (size_t)n);
      st->max_mean_p50 = gsl_stats_quantile_from_sorted_data(v, 1, (size_t)n, 0.5);
      st->max_mean_p90 = gsl_stats_quantile_from_sorted_data(v, 1, (size_t)n, 0.9);
      st->max_mean_mean /= n;
      st->gini /= n;
      st->entropy /= n;
      st->rank_total_cv /= n;
    } else {
      st->max_mean_p50 = st->max_mean_p90 = st->max_mean_mean = NAN;
      st->gini = st->entropy = st->rank_total_cv = NAN;
    }
    for (int k = 0; k < TR_STATS_LAGS; k++) {
      int64_t c = n_lag[(size_t)l * (TR_STATS_LAGS + 2) + k];
      st->change[k] = c ? st->change[k] / c : NAN;
      if (k < 2)
        st->hot_persist[k] = c ? st->hot_persist[k] / c : NAN;
    }
    int64_t n1 = n_lag[(size_t)l * (TR_STATS_LAGS + 2)];
    double *d = chg + (size_t)l * N;
    st->change1_p50 = st->change1_p90 = st->change1_p99 = NAN;
    if (n1 > 0) {
      gsl_sort(d, 1, (size_t)n1);
      st->change1_p50 = gsl_stats_quantile_from_sorted_data(d, 1, (size_t)n1, 0.5);
      st->change1_p90 = gsl_stats_quantile_from_sorted_data(d, 1, (size_t)n1, 0.9);
      st->change1_p99 = gsl_stats_quantile_from_sorted_data(d, 1, (size_t)n1, 0.99);
    }
    st->rank_divergence = n_rank[l] ? st->rank_divergence / n_rank[l] : (R == 1 ? 0 : NAN);
  }
  if (s->tokens_min == INT64_MAX)
    s->tokens_min = 0;
  s->iterations = N;
  s->first = it0;
  s->layers = L;
  s->ranks = R;
  s->experts = E;
  s->hot = H;
  s->layer = ls;
  ls = NULL;
  rc = TR_OK;
fail:
  tr_free(n_rank);
  tr_free(n_lag);
  tr_free(chg);
  tr_free(mm);
  tr_free(valid);
  tr_free(hot);
  tr_free(ring);
  tr_free(load);
  tr_free(slice);
  tr_free(ls);
  return rc;
}
