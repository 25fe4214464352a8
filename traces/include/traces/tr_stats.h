/*
 * tr_stats.h - what a routing trace looks like, per layer: skew,
 * fluctuation, persistence of the hot experts, variation across ranks.
 *
 * Definitions (per layer l; load[e] = sum over ranks of counts[i][l][r][e];
 * p = load / sum(load) the normalised load distribution of iteration i):
 * - max/mean: max_e load[e] / mean_e load[e]; reported as median (p50), p90
 *   and mean over iterations.
 * - gini: Gini coefficient of load[] (0 = balanced, (E-1)/E = one expert
 *   takes all); mean over iterations.
 * - entropy: -sum p log p / log E (1 = balanced); mean over iterations.
 * - change at lag k: L1 distance sum_e |p_i[e] - p_{i-k}[e]| (0..2), mean
 *   over i >= k; NaN when the trace has no k+1 iterations. Half of it is the
 *   share of the load that moved between experts.
 * - change distribution at lag 1: the median, p90 and p99 over i >= 1 of the
 *   same per-iteration L1 distance (linear interpolation between order
 *   statistics, as NumPy's default percentile). Real routing changes in
 *   bursts: most steps move little, a few move a lot, which the mean hides.
 * - hot-expert persistence at lag k: hot set = the H = max(1, E/8) most
 *   loaded experts (ties by lower id); mean over i >= k of
 *   |hot_i & hot_{i-k}| / H. 1 = the same experts stay hot.
 * - rank divergence: mean over iterations and ranks (with tokens) of the L1
 *   distance between a rank's own distribution and the layer's p: how
 *   differently data-parallel ranks route. 0 when R = 1.
 * - rank total cv: mean over iterations of the coefficient of variation of
 *   the ranks' slot totals (0 when every rank routes the same number).
 * Slices whose total is 0 are left out of every statistic.
 *
 * The pass streams: one (iteration, layer) slice at a time and a ring of the
 * last 100 distributions per layer, plus two doubles per (iteration, layer)
 * for the max/mean and the lag-1 change quantiles; the trace itself is never
 * copied, so a memory-mapped trace larger than memory works.
 */
#ifndef FLEXMOE_TR_STATS_H
#define FLEXMOE_TR_STATS_H

#include <stdint.h>

#include "traces/tr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TR_STATS_LAGS 3 /* lags 1, 10, 100 */
extern const int tr_stats_lag[TR_STATS_LAGS];

typedef struct tr_layer_stats {
  int64_t samples;                  /* iterations with a non-zero total */
  double max_mean_p50, max_mean_p90, max_mean_mean;
  double gini, entropy;
  double change[TR_STATS_LAGS];     /* L1 at lags 1, 10, 100 (NaN: too short) */
  double change1_p50, change1_p90, change1_p99; /* lag-1 L1 quantiles (NaN: too short) */
  double hot_persist[2];            /* lags 1 and 10 */
  double rank_divergence, rank_total_cv;
} tr_layer_stats;

typedef struct tr_stats {
  int64_t iterations; /* analysed: [first, first + iterations) */
  int64_t first;
  int layers, ranks, experts, hot;
  int64_t tokens_min, tokens_max; /* slot totals per (iteration, layer) */
  tr_layer_stats *layer;          /* [layers], owned */
} tr_stats;

/*
 * Statistics of iterations [it0, it1) of t (it1 < 0: to the end). On
 * success s owns its arrays (tr_stats_fini). Errors: TR_EINVAL (empty or out
 * of range), TR_ENOMEM.
 */
int tr_stats_compute(const tr_trace *t, int64_t it0, int64_t it1, tr_stats *s);
void tr_stats_fini(tr_stats *s); /* accepts NULL and zeroed */

/* Helpers on one load vector of n experts (load[e] >= 0; also used by the
 * fitter). max/mean and gini are NaN when the loads sum to 0. */
double tr_max_mean(const double *load, int n);
double tr_gini(const double *load, int n, double *scratch /* n */);
double tr_entropy(const double *p, int n); /* normalised by log n */

#ifdef __cplusplus
}
#endif
#endif
