/*
 * tr_gen.h - synthetic routing traces (GSL, seeded) and named patterns.
 *
 * Model. For iteration t, layer l, rank r, the routing logits of the E
 * experts are
 *     x[e] = scale_l * base_l[e]            static popularity
 *          + hot(t, e) + burst_t[e]         patterns (hot set, rotation, bursts)
 *          + z_t[e]                         dynamics on the logits:
 *                                           v_t = psi_l v_{t-1} + innov_l s_t N(0,1)
 *                                           z_t = phi_l z_{t-1} + v_t
 *                                           (psi = 0: AR(1); phi = 1: a random walk =
 *                                           drift; psi > 0: trends that persist, as in
 *                                           early training); s_t = 1 in
 *                                           the calm regime, vol_ratio_l in
 *                                           the burst regime of layer l's
 *                                           two-state Markov chain (enters
 *                                           with vol_enter_l, leaves with
 *                                           vol_leave_l per iteration):
 *                                           routing that changes in bursts;
 *                                           with vol_sigma_l > 0, s_t also
 *                                           gets an independent log-normal
 *                                           factor exp(vol_sigma_l N(0,1) -
 *                                           vol_sigma_l^2 / 2) per iteration
 *                                           (heavy-tailed steps)
 *          + eta_{t,r}[e]                   per-rank variation, N(0, rank_sigma_l^2)
 *                                           minus its mean over the ranks (zero-sum:
 *                                           it moves routing between ranks, not the
 *                                           layer's aggregate)
 * p = softmax(x), with each p[e] capped at 1/top_k (an expert gets at most one
 * slot per token; the excess is spread over the others by water-filling);
 * rank r routes slots_r = tokens_r x top_k slots drawn as one multinomial over
 * p (so every rank's total is exact). base_l is drawn from a distribution
 * (uniform, Zipf, log-normal, Dirichlet) or given (by the fitter), and is
 * re-drawn every regime_period iterations (regime switches).
 *
 * Randomness: the base profiles and the rank totals come from stream
 * (seed, 1, 0); the dynamics of layer l (its regime chain, when vol_ratio_l
 * is not 1, its log-normal factor, when vol_sigma_l > 0, then its logits)
 * from stream (seed, 2, l); the
 * multinomial draws of (t, l) from stream (seed, t, l) offset (see
 * tr_stream_seed), so the same config and seed give the same trace, byte for
 * byte.
 */
#ifndef FLEXMOE_TR_GEN_H
#define FLEXMOE_TR_GEN_H

#include <stdint.h>

#include "traces/tr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tr_dist {
  TR_DIST_UNIFORM = 0,
  TR_DIST_ZIPF,      /* base[e] = -param * log(rank(e) + 1), ranks shuffled */
  TR_DIST_LOGNORMAL, /* base[e] ~ N(0, param^2): loads are log-normal */
  TR_DIST_DIRICHLET  /* base = log(Dirichlet(param, ..., param)) */
} tr_dist;

typedef enum tr_hot_layout { TR_HOT_BLOCK = 0, TR_HOT_SPREAD = 1 } tr_hot_layout;

typedef struct tr_gen_config {
  int64_t iterations;
  int layers, ranks, experts, top_k;
  int64_t tokens_per_rank; /* tokens (not slots) per rank per iteration */
  uint64_t seed;
  tr_meta meta;            /* written to the sidecar (d_model, d_ff, source) */

  tr_dist dist;
  double dist_param;       /* Zipf exponent, log-normal sigma, Dirichlet alpha */
  const double *base;      /* [layers * experts] logits, or NULL: drawn from dist */
  /* Per-layer arrays [layers] (NULL: the scalar below for every layer). */
  const double *scale, *innov, *phi, *rank_sigma, *psi;
  double scale1, innov1, phi1, rank_sigma1, psi1;

  /* Hot experts: `hot` experts get +hot_boost logits; block = contiguous
   * ids (they share a GPU under static placement), spread = evenly spaced.
   * rotate_period > 0: the hot set moves by one expert every that many
   * iterations (rotating hotspot). */
  int hot;
  double hot_boost;
  tr_hot_layout hot_layout;
  int64_t rotate_period;
  /* Bursts: each iteration an expert starts a burst with this probability
   * (per layer), lasting burst_len iterations with +burst_boost logits. */
  double burst_prob, burst_boost;
  int burst_len;
  int64_t regime_period;   /* > 0: base profile re-drawn (shuffled) */
  /* Ranks: hot_rank >= 0 routes hot_rank_share of its slots to hot_rank_experts
   * experts (ids E/2, E/2 + 1, ...) that others use normally; rank_total_sigma > 0 makes rank totals
   * ragged (log-normal factors, fixed per rank, mean 1); zero_rank >= 0 routes
   * nothing to the upper half of the experts; zero_experts experts (the
   * highest ids) get no tokens from anyone. */
  int hot_rank, hot_rank_experts;
  double hot_rank_share;
  double rank_total_sigma;
  int zero_rank, zero_experts;
  /* Bytes the generator may allocate (tr_gen_memory); 0: the default
   * budget (tr_default_max_memory). */
  uint64_t max_memory;
  /* Bursty dynamics: per-layer arrays [layers] (NULL: the scalar below).
   * The innovation of layer l's logits is innov_l x vol_ratio_l while its
   * regime chain is in the burst state; the chain enters it with probability
   * vol_enter_l and leaves it with vol_leave_l per iteration, and starts in
   * its stationary distribution. vol_ratio 1 (the default, and the value of
   * every pattern): no regimes, and no random numbers drawn for them, so the
   * trace is the one of the model without them. vol_sigma > 0 multiplies
   * each iteration's innovation by an independent log-normal factor of
   * mean 1 (0, the default: none, nothing drawn). Ranges: vol_ratio in
   * [1, 100], vol_enter and vol_leave in [0, 1], vol_sigma in [0, 5]. */
  const double *vol_ratio, *vol_enter, *vol_leave, *vol_sigma;
  double vol_ratio1, vol_enter1, vol_leave1, vol_sigma1;
} tr_gen_config;

/* Defaults: 100 iterations, 4 layers, 8 ranks, 16 experts, top-2, 1024
 * tokens per rank, uniform, stationary, no patterns. */
void tr_gen_defaults(tr_gen_config *c);

/* Applies a named pattern on top of c (keeps its sizes and seed). Returns
 * TR_EINVAL for an unknown name. tr_gen_patterns lists the names. */
int tr_gen_pattern(tr_gen_config *c, const char *name);
extern const char *const tr_gen_patterns[];
extern const char *const tr_gen_pattern_help[];

/* Bytes tr_gen_write holds for c (the generator's state, which grows with
 * layers x experts and ranks x experts, and one output slice); saturates
 * at UINT64_MAX. The length of the trace does not count: it streams. */
uint64_t tr_gen_memory(const tr_gen_config *c);

/* Streaming generator: slices in C order ((t, l) with l fastest).
 * Errors: TR_EINVAL (bad configuration), TR_EBUDGET (tr_gen_memory is over
 * c->max_memory; nothing allocated), TR_ENOMEM. */
typedef struct tr_gen tr_gen;
int tr_gen_new(const tr_gen_config *c, tr_gen **g);
/* Next slice into out[ranks * experts]; TR_EINVAL after the last one. */
int tr_gen_next(tr_gen *g, int64_t *out);
void tr_gen_free(tr_gen *g);

/* Generates the whole trace into path (.npy + sidecar), streaming. */
int tr_gen_write(const tr_gen_config *c, const char *path, tr_error *err);

#ifdef __cplusplus
}
#endif
#endif
