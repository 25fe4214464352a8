/*
 * tr_fit.h - estimating the generator's parameters from a real trace, so a
 * longer or larger trace with the same statistics can be generated.
 *
 * Method (per layer, see tr_fit.c): the base profile is the log of the
 * expert's mean share of the load over the fitted iterations (centred). The
 * distribution of the per-iteration change is captured by a two-state
 * Markov-switching model of y_t = log(lag-1 L1 change), fitted by maximum
 * likelihood (Hamilton filter, GSL's Nelder-Mead simplex): a calm and a
 * burst regime, each a normal law of y, and the probabilities of entering
 * and leaving the burst regime. The generator's logits then get a regime
 * chain with those probabilities, whose burst regime multiplies the
 * innovation by vol_ratio (the ML ratio of the regimes' typical changes),
 * and a log-normal factor per iteration (vol_sigma) on the innovation. Then
 * the free parameters of the layer's model (profile scale, AR(1) innovation
 * and coefficient, trend persistence, vol_sigma, per-rank noise) are
 * calibrated by simulation so that the
 * generated layer matches the original's expert max/mean load median
 * (skew), median and p90 of the lag-1 L1 change, mean L1 change at lag 10
 * and rank divergence: damped multiplicative fixed-point updates on a
 * generated layer of the same shape, with common random numbers (the same
 * calibration seed every round) so the map is smooth; the best round
 * (smallest largest relative error) is kept.
 */
#ifndef FLEXMOE_TR_FIT_H
#define FLEXMOE_TR_FIT_H

#include <stdint.h>

#include "traces/tr_gen.h"
#include "traces/tr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* FIT.json's format version: 2 adds the change regimes; version 1 files
 * are still read (as a model without regimes). */
#define TR_FIT_VERSION 2

/* The statistics the fit matches, per layer (change1: the mean lag-1
 * change; change1_p50, change1_p90: its median and 90th percentile). */
typedef struct tr_fit_stats {
  double max_mean_p50, change1, change10, rank_div;
  double change1_p50, change1_p90;
} tr_fit_stats;

/* The maximum-likelihood two-state Markov-switching model of a layer's
 * series y_t = log(lag-1 L1 change): in regime s (0 calm, 1 burst, mu[0] <
 * mu[1]) y_t ~ N(mu[s], sigma[s]^2); the chain enters regime 1 with
 * probability enter and leaves it with leave per iteration. loglik: the
 * maximised log-likelihood over n observations. */
typedef struct tr_fit_regimes {
  double mu[2], sigma[2], enter, leave, loglik;
  int64_t n;
} tr_fit_regimes;

typedef struct tr_fit_layer {
  double scale, innov, phi, rank_sigma, psi;
  tr_fit_stats target, fitted; /* original's, calibration run's */
  double vol_sigma;                       /* the generator's log-normal step factor */
  double vol_ratio, vol_enter, vol_leave; /* the generator's regime chain
                                           * (vol_ratio 0, a zeroed layer:
                                           * none, as 1) */
  tr_fit_regimes regimes;                 /* the ML fit it comes from */
} tr_fit_layer;

typedef struct tr_fit {
  int layers, ranks, experts, top_k;
  int64_t iterations, tokens_per_rank;
  double rank_total_sigma; /* ragged rank totals (0: every rank the same) */
  tr_meta meta;
  char source[512];
  uint64_t hash;
  int64_t cal_iterations;
  int rounds;
  double *base;        /* [layers * experts], owned */
  tr_fit_layer *layer; /* [layers], owned */
} tr_fit;

/* Fits iterations [it0, it1) (it1 < 0: to the end) of t. seed: the
 * calibration stream. Errors: TR_ENOMEM; TR_EINVAL for fewer than 12
 * iterations or tokens per rank (the sidecar's, else the mean slots per
 * rank / top_k) outside the physical range (an all-zero trace), or a
 * layer with fewer than 8 steps that change (no regimes to fit). */
int tr_fit_trace(const tr_trace *t, int64_t it0, int64_t it1, uint64_t seed, tr_fit *f);

/* Called after each of the fit's 2 x layers steps (each layer's regimes,
 * then each layer's calibration) with the steps done and their total; for
 * progress lines only. */
typedef void (*tr_fit_progress_fn)(void *ctx, int done, int total);

/* tr_fit_trace, calling progress (when not NULL) after every step. The
 * result does not depend on it. */
int tr_fit_trace_progress(const tr_trace *t, int64_t it0, int64_t it1, uint64_t seed, tr_fit *f,
                          tr_fit_progress_fn progress, void *ctx);
void tr_fit_fini(tr_fit *f); /* accepts NULL and zeroed */

/* Fits the Markov-switching model to y[0..n) by maximum likelihood
 * (several starts, the best kept). Errors: TR_EINVAL for n < 8 or a
 * non-finite y; TR_ENOMEM. *r untouched on error. */
int tr_fit_regimes_ml(const double *y, int64_t n, tr_fit_regimes *r);

/* FIT.json: write (temp + rename) and read (errors name the file; a
 * malformed file, another version or a number out of its range is
 * TR_EMETA with a message naming the field). */
int tr_fit_save(const tr_fit *f, const char *path, tr_error *err);
int tr_fit_load(tr_fit *f, const char *path, tr_error *err);

/*
 * Fills c's model from f for c's own sizes: layers beyond the fitted ones
 * reuse layer l mod f->layers; another expert count takes the fitted
 * profile's quantiles (sorted, interpolated, hottest first on ids 0, s, 2s,
 * ... mod E with a golden-ratio stride s coprime to E). When top_k or
 * tokens_per_rank are 0 in c, f's are used. *owned receives the arrays c
 * points to (free with tr_free after the generator is done). Errors:
 * TR_EINVAL, TR_ENOMEM, TR_EBUDGET (those arrays and tr_gen_memory(c)
 * exceed c->max_memory; nothing allocated).
 */
int tr_fit_apply(const tr_fit *f, tr_gen_config *c, double **owned);

/* The statistics of tr_fit_stats for every layer of a trace, into
 * per_layer[layers] (helper for tests/reports). */
int tr_fit_measure(const tr_trace *t, tr_fit_stats *per_layer);

#ifdef __cplusplus
}
#endif
#endif
