/*
 * tr_fit.h - estimating the generator's parameters from a real trace, so a
 * longer or larger trace with the same statistics can be generated.
 *
 * Method (per layer, see tr_fit.c): the base profile is the log of the
 * expert's mean share of the load over the fitted iterations (centred); then
 * the four free parameters of the layer's model (profile scale, AR(1)
 * innovation and coefficient of the logits, per-rank noise) are calibrated by
 * simulation so that the generated layer matches the original's expert
 * max/mean load median (skew), mean L1 change at lags 1 and 10
 * (fluctuation), and rank divergence: damped multiplicative fixed-point
 * updates on a generated layer of the same shape, with common random numbers
 * (the same calibration seed every round) so the map is smooth; the best
 * round (smallest largest relative error) is kept.
 */
#ifndef FLEXMOE_TR_FIT_H
#define FLEXMOE_TR_FIT_H

#include <stdint.h>

#include "traces/tr_gen.h"
#include "traces/tr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The statistics the fit matches, per layer. */
typedef struct tr_fit_stats {
  double max_mean_p50, change1, change10, rank_div;
} tr_fit_stats;

typedef struct tr_fit_layer {
  double scale, innov, phi, rank_sigma, psi;
  tr_fit_stats target, fitted; /* original's, calibration run's */
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
 * rank / top_k) outside the physical range (an all-zero trace). */
int tr_fit_trace(const tr_trace *t, int64_t it0, int64_t it1, uint64_t seed, tr_fit *f);
void tr_fit_fini(tr_fit *f); /* accepts NULL and zeroed */

/* FIT.json: write (temp + rename) and read (errors name the file; a
 * malformed file is TR_EMETA). */
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

/* The four statistics of one trace's layer l (helper for tests/reports). */
int tr_fit_measure(const tr_trace *t, tr_fit_stats *per_layer);

#ifdef __cplusplus
}
#endif
#endif
