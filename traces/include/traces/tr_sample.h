/*
 * tr_sample.h - fast exact binomial and multinomial sampling for rescaling.
 *
 * Rescaling a trace to G GPUs draws one multinomial row of N token slots
 * over E experts per GPU, layer and iteration (1.57 million binomials per
 * iteration at 1,024 GPUs x 64 experts x 24 layers), so the sampler is on
 * the simulator's hot path. GSL's gsl_ran_multinomial is exact but pays for
 * a generic generator behind a function pointer and a general-purpose
 * binomial; this module is the same mathematics, inlined:
 *
 *   generator   xoshiro256** (Blackman and Vigna), 64-bit outputs, state
 *               seeded from one 64-bit key by SplitMix64, so every stream is
 *               named by a key (tr_stream_seed) and never depends on what
 *               was drawn before it in other streams.
 *   binomial    exact in distribution. With p' = min(p, 1 - p) (p > 1/2 is
 *               drawn as n - Bin(n, 1 - p)): n p' < 10 by inversion
 *               (sequential search from 0, q^n from a prepared log1p); n p'
 *               >= 10 by Hormann's BTRS, transformed rejection with squeeze
 *               (W. Hormann, "The generation of binomial random variates",
 *               J. Statist. Comput. Simul. 46, 1993), whose acceptance test
 *               evaluates f(k)/f(m) exactly: by the recurrence when
 *               |k - m| <= 15, else with Stirling's series and its tail
 *               correction (absolute error < 1e-16). n above 2^52 is drawn
 *               as a sum of binomials of at most 2^52 trials (exact: a sum
 *               of independent Bin(n_i, p) is Bin(sum n_i, p)).
 *   multinomial conditional binomials: category c draws Bin(left, w[c] /
 *               (w[c] + ... + w[k-1])) from the slots still left, with the
 *               conditional probabilities computed from the integer weights
 *               (not from running sums of doubles), so the last category
 *               with weight has probability exactly 1 and the counts always
 *               sum to exactly n.
 *
 * No normal approximation anywhere. Validation (tests/traces/test_sample.c):
 * chi-square goodness of fit against the exact pmf over a grid of (n, p)
 * covering both branches and the switch point, and the test's power shown
 * on deliberately wrong samplers.
 *
 * All functions are reentrant: state lives in caller-owned structs.
 */
#ifndef FLEXMOE_TR_SAMPLE_H
#define FLEXMOE_TR_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* xoshiro256** state. Any state but all-zero is valid; tr_rng_seed never
 * produces all-zero. */
typedef struct tr_rng {
  uint64_t s[4];
} tr_rng;

/* Seeds the state from a 64-bit key: s[i] = SplitMix64 output i of key. */
void tr_rng_seed(tr_rng *r, uint64_t key);

static inline uint64_t tr_rng_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* Next 64 random bits (xoshiro256**). */
static inline uint64_t tr_rng_next(tr_rng *r) {
  uint64_t *s = r->s;
  uint64_t out = tr_rng_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = tr_rng_rotl(s[3], 45);
  return out;
}

/* Uniform on the open interval (0, 1), 52 random bits: (j + 1/2) / 2^52,
 * all exact in double (with 53 bits the top value would round up to 1). */
static inline double tr_rng_open01(tr_rng *r) {
  return ((double)(tr_rng_next(r) >> 12) + 0.5) * 0x1.0p-52;
}

/*
 * A success probability prepared for repeated binomial draws (the
 * divisions and logarithms that depend on p alone, done once). p is in
 * [0, 1]; p' = min(p, 1 - p) is what is sampled.
 */
typedef struct tr_binp {
  double p;    /* p' */
  double pq;   /* p' (1 - p') */
  double r;    /* p' / (1 - p') */
  double lq;   /* log(1 - p') */
  int flip;    /* 1: p > 1/2, the draw is n - Bin(n, p') */
} tr_binp;

/* Prepares p (clamped to [0, 1]; NaN is treated as 0). */
void tr_binp_set(tr_binp *b, double p);

/* One Bin(n, p) draw; n < 0 is treated as 0. Returns a value in [0, n]. */
int64_t tr_binomial_prepared(tr_rng *r, int64_t n, const tr_binp *b);

/* One Bin(n, p) draw (prepares p on every call). */
int64_t tr_binomial(tr_rng *r, int64_t n, double p);

/*
 * Prepares the conditional probabilities of a multinomial with integer
 * weights w[0..k-1] (k >= 1, w[c] >= 0, sum > 0 and <= INT64_MAX) into
 * cat[0..k-1] (caller-owned): cat[c] is w[c] / (w[c] + ... + w[k-1]).
 * Returns TR_OK, or TR_EINVAL (cat unspecified) if k < 1, a weight is
 * negative, or the sum is 0 or overflows int64.
 */
int tr_multinomial_prepare(tr_binp *cat, int k, const int64_t *w);

/*
 * One multinomial row: out[0..k-1] >= 0, sum exactly n (n >= 0), with
 * E[out[c]] = n w[c] / sum(w), drawn as conditional binomials in category
 * order from the prepared cat (tr_multinomial_prepare).
 */
void tr_multinomial_prepared(tr_rng *r, int64_t n, int k, const tr_binp *cat,
                             int64_t *out);

/*
 * `rows` multinomial rows of n slots over the same prepared categories, row
 * i drawn from its own generator rngs[i] into out[i * stride + c]. Row i is
 * exactly what tr_multinomial_prepared(&rngs[i], n, k, cat, ...) draws (the
 * same draws in the same order within each stream, and rngs[i] ends in the
 * same state); the rows are only interleaved category by category, so that
 * their independent draws overlap in the CPU instead of waiting on each
 * other (a row's binomials form a chain: each needs the slots left).
 */
void tr_multinomial_rows(tr_rng *rngs, int rows, int64_t n, int k, const tr_binp *cat,
                         int64_t *out, size_t stride);

/* tr_multinomial_prepare then tr_multinomial_prepared. Returns TR_OK,
 * TR_EINVAL (bad weights or k; out untouched) or TR_ENOMEM (k > 256 needs
 * an allocation). */
int tr_multinomial(tr_rng *r, int64_t n, int k, const int64_t *w, int64_t *out);


/*
 * The Poisson method: many rows of one multinomial (tr_sample.c explains
 * why it is exact). Rows are independent Poisson(lam_c) vectors with lam_c
 * proportional to w[c] and sum n - ceil(sqrt n), kept when their sum S is
 * at most n (else redrawn), completed by n - S tokens from an alias table
 * of w. The Poissons come from tables prepared once per weight vector, so
 * a row costs k table draws and about 1.3 sqrt(n) token draws: faster than
 * k conditional binomials when the same weights serve many rows and n is
 * at most 16 k^2 (tr_mpois_fits). Exact in distribution like the binomial
 * (the tables are the exact pmf to a few units of rounding), and a
 * function of (generator state, n, w) alone.
 */
typedef struct tr_pcat { /* one category's Poisson table (private) */
  double lam;            /* mean; 0: always 0 */
  double ctot;           /* the centre's mass: cdf[off + w - 1] */
  double flo, fhi;       /* f(lo), f(lo + w - 1): where the tail walks start */
  int64_t lo;            /* the centre is lo .. lo + w - 1 */
  int64_t off;           /* its running sums and guide at cdf[off], guide[off] */
  int32_t w;             /* centre width */
} tr_pcat;

typedef struct tr_mpois { /* caller-owned; tr_mpois_init, _prepare, _fini */
  int k, bits;            /* categories; alias columns 2^bits >= k */
  int64_t n;              /* slots per row */
  tr_pcat *cat;           /* [k] */
  double *cdf;            /* [cap] running sums of each centre */
  int32_t *guide;         /* [cap] guide tables (one bucket per entry) */
  double *aprob;          /* [2^bits] alias acceptance (built in doubles) */
  uint64_t *athr;         /* [2^bits] the same as 53-bit integer thresholds */
  int32_t *alias;         /* [3 x 2^bits] alias (first 2^bits), scratch */
  int kcap, colcap;       /* room of cat, aprob */
  size_t cap;             /* room of cdf and guide */
} tr_mpois;

/* 1 when tr_mpois serves (n, k): 2 <= k <= 2,048, 1 <= n <= min(16 k^2,
 * 2^24); a choice made from (n, k) alone, so a row never depends on how
 * many rows are drawn. */
int tr_mpois_fits(int64_t n, int k);

/* An empty method (no memory). */
void tr_mpois_init(tr_mpois *m);

/* Frees the tables; accepts NULL; m is empty after. */
void tr_mpois_fini(tr_mpois *m);

/*
 * Prepares rows of n slots over weights w[0..k-1] (w[c] >= 0, sum > 0 and
 * <= INT64_MAX), reusing m's memory when it is large enough. Returns TR_OK,
 * TR_EINVAL (tr_mpois_fits(n, k) false or bad weights; m unchanged), or
 * TR_ENOMEM (m unchanged).
 */
int tr_mpois_prepare(tr_mpois *m, int k, const int64_t *w, int64_t n);

/* One row into out[0..k-1] from generator r: out[c] >= 0, zero where w[c]
 * is 0, sum exactly n, distributed Mult(n, w / sum w). */
void tr_mpois_row(tr_rng *r, const tr_mpois *m, int64_t *out);

/* `rows` rows, row i from its own generator rngs[i] into out[i * stride +
 * c]: row i is exactly what tr_mpois_row(&rngs[i], m, ...) draws (and
 * rngs[i] ends in the same state). */
void tr_mpois_rows(tr_rng *rngs, int rows, const tr_mpois *m, int64_t *out, size_t stride);

/* Bytes tr_mpois_prepare may hold for (n, k) (0 when it does not fit). */
uint64_t tr_mpois_memory(int64_t n, int k);

#ifdef __cplusplus
}
#endif
#endif
