/*
 * tr_sample.c - exact binomial and multinomial draws (see tr_sample.h).
 *
 * Binomial, p' = min(p, 1 - p), q = 1 - p':
 *  - n p' < 10: inversion. u ~ U[0, 1); walk k = 0, 1, ... subtracting
 *    f(k) (f(0) = q^n = exp(n log1p(-p')), f(k) = f(k-1) (n-k+1)/k p'/q)
 *    until u < f(k). If rounding leaves u unspent past k = n (or past
 *    INV_KMAX, where the remaining mass is below 1e-170), the draw restarts
 *    with a fresh u, i.e. it is conditioned away, which changes no
 *    probability by more than that rounding.
 *  - n p' >= 10: BTRS (Hormann 1993), the two-uniform form: u ~ U(-1/2,
 *    1/2), v ~ U(0, 1), us = 1/2 - |u|, k = floor((2a/us + b) u + c);
 *    accept at once when us >= 0.07 and v <= v_r (the squeeze: that
 *    rectangle lies under the target), otherwise accept iff
 *    v alpha / (a/us^2 + b) <= f(k) / f(m), m = floor((n+1) p'), with
 *    f(k)/f(m) by the recurrence f(i)/f(i-1) = r (n+1-i) / i (r = p'/q)
 *    when |k - m| <= 15 and otherwise in logs:
 *      log f(k)/f(m) = (m+1/2) log((m+1)/(r (n-m+1))) + (n+1) log((n-m+1)/(n-k+1))
 *                      + (k+1/2) log(r (n-k+1)/(k+1)) + fc(m) + fc(n-m) - fc(k) - fc(n-k)
 *    with fc(x) = log x! - [(x+1/2) log(x+1) - (x+1) + log(2 pi)/2], the
 *    Stirling tail (a table below 16, five series terms above: absolute
 *    error < 1e-16). The constants a, b, c, v_r, alpha are Hormann's.
 *
 * Counts are int64; BTRS and inversion work in doubles, exact for integers
 * up to 2^53, so n above 2^52 is split into parts of at most 2^52 trials.
 */
#include "traces/tr_sample.h"

#include <math.h>
#include <stddef.h>

#include "traces/tr_trace.h"

#define BTRS_MIN_NP 10.0 /* Hormann's validity bound for BTRS's constants */
#define INV_KMAX 200      /* n p' < 10: P(k > 200) < 1e-170 */
#define SPLIT_N ((int64_t)1 << 52)

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void tr_rng_seed(tr_rng *r, uint64_t key) {
  uint64_t x = key;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
  if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) /* never, but cheap */
    r->s[0] = 1;
}

void tr_binp_set(tr_binp *b, double p) {
  if (!(p > 0)) /* also NaN */
    p = 0;
  if (p > 1)
    p = 1;
  b->flip = p > 0.5;
  double pp = b->flip ? 1 - p : p; /* exact for p >= 1/2 (Sterbenz) */
  b->p = pp;
  b->pq = pp * (1 - pp);
  b->r = pp < 1 ? pp / (1 - pp) : 0;
  b->lq = log1p(-pp);
}

/* Stirling tail fc(x) = log x! - [(x + 1/2) log(x + 1) - (x + 1) + log(2 pi)/2]. */
static double stirling_tail(double x) {
  static const double table[16] = {
      0.081061466795327261,  0.041340695955409297,  0.027677925684998338,
      0.020790672103765093,  0.016644691189821193,  0.013876128823070748,
      0.01189670994589177,   0.010411265261972096,  0.0092554621827127329,
      0.0083305634333628708, 0.0075736754879518406, 0.0069428401072095299,
      0.0064089941880042071, 0.0059513701127588475, 0.0055547335519628011,
      0.0052076559196096404};
  if (x < 16)
    return table[(int)x];
  double z = x + 1, z2 = 1 / (z * z);
  return (1.0 / 12 -
          z2 * (1.0 / 360 - z2 * (1.0 / 1260 - z2 * (1.0 / 1680 - z2 * (1.0 / 1188))))) /
         z;
}

/* Inversion for n p' < 10 (n <= 2^52). */
static int64_t binomial_inversion(tr_rng *rng, int64_t n, const tr_binp *b) {
  double f0 = exp((double)n * b->lq), nd = (double)n;
  for (;;) {
    double u = (double)(tr_rng_next(rng) >> 11) * 0x1.0p-53, f = f0;
    int64_t k = 0;
    while (u >= f) {
      u -= f;
      if (++k > n || k > INV_KMAX)
        break;
      f *= (nd - (double)k + 1) * b->r / (double)k;
    }
    if (k <= n && k <= INV_KMAX)
      return k;
  }
}

/* BTRS's constants for one (n, p'). */
typedef struct btrs {
  double n, p, spq, b, a, c;
} btrs;

static inline void btrs_set(btrs *s, double nd, const tr_binp *b) {
  s->n = nd;
  s->p = b->p;
  s->spq = sqrt(nd * b->pq);
  s->b = 1.15 + 2.53 * s->spq;
  s->a = -0.0873 + 0.0248 * s->b + 0.01 * b->p;
  s->c = nd * b->p + 0.5;
}

/*
 * One BTRS trial: k from (u, v); 1 if the squeeze accepts it, 0 if the
 * exact test must decide, -1 if k is outside [0, n] (rejected).
 * v <= v_r = 0.92 - 4.2/b is tested as (0.92 - v) b >= 4.2 (b > 0).
 */
static inline int btrs_trial(tr_rng *rng, const btrs *s, double *k, double *u, double *v) {
  *u = tr_rng_open01(rng) - 0.5;
  *v = tr_rng_open01(rng);
  double us = 0.5 - fabs(*u);
  double x = (2 * s->a / us + s->b) * *u + s->c;
  if (!(x >= 0 && x < s->n + 1)) /* floor(x) outside [0, n] */
    return -1;
  *k = (double)(int64_t)x; /* floor, x >= 0 (without SSE4.1's roundsd) */
  return us >= 0.07 && (0.92 - *v) * s->b >= 4.2;
}

/* BTRS's exact acceptance test of a trial outside the squeeze. */
static __attribute__((noinline)) int btrs_accept(const btrs *s, const tr_binp *b, double kd,
                                                 double u, double v) {
  double nd = s->n, p = s->p, r = b->r, us = 0.5 - fabs(u);
  double alpha = (2.83 + 5.1 / s->b) * s->spq;
  double m = floor((nd + 1) * p);
  v *= alpha / (s->a / (us * us) + s->b);
  if (fabs(kd - m) <= 15) {
    /* f(k)/f(m) = prod over i in (m, k] of r (n+1-i) / i (its inverse when
     * k < m), as two products compared without dividing: at most 15
     * factors below 2^52 each, so neither overflows. */
    double lo = kd < m ? kd : m, hi = kd < m ? m : kd, num = 1, den = 1;
    for (double i = lo + 1; i <= hi; i++) {
      num *= r * (nd + 1 - i);
      den *= i;
    }
    return kd >= m ? v * den <= num : v * num <= den;
  }
  double nm = nd - m + 1, nk = nd - kd + 1;
  double h = (m + 0.5) * log((m + 1) / (r * nm)) + stirling_tail(m) + stirling_tail(nd - m);
  /* (n+1) log(nm / nk) as log1p of a small ratio of exact integers: keeps
   * its rounding from growing with n. */
  double lf = h + (nd + 1) * log1p((kd - m) / nk) + (kd + 0.5) * log(nk * r / (kd + 1)) -
              stirling_tail(kd) - stirling_tail(nd - kd);
  return log(v) <= lf;
}

/* BTRS for n p' >= 10 (n <= 2^52). */
static inline int64_t binomial_btrs(tr_rng *rng, int64_t n, const tr_binp *b) {
  btrs s;
  btrs_set(&s, (double)n, b);
  for (;;) {
    double k, u, v;
    int t = btrs_trial(rng, &s, &k, &u, &v);
    if (t > 0 || (t == 0 && btrs_accept(&s, b, k, u, v)))
      return (int64_t)k;
  }
}

/* Bin(n, p) for any n (parts of at most 2^52 trials). */
static __attribute__((noinline)) int64_t binomial_general(tr_rng *rng, int64_t n,
                                                          const tr_binp *b) {
  int64_t k = 0;
  for (int64_t left = n; left > 0;) {
    int64_t part = left > SPLIT_N ? SPLIT_N : left;
    k += (double)part * b->p < BTRS_MIN_NP ? binomial_inversion(rng, part, b)
                                           : binomial_btrs(rng, part, b);
    left -= part;
  }
  return b->flip ? n - k : k;
}

/* The common case (BTRS, n <= 2^52) inline, the rest out of line. */
static inline int64_t binomial(tr_rng *rng, int64_t n, const tr_binp *b) {
  if (n <= 0)
    return 0;
  if (b->p == 0)
    return b->flip ? n : 0;
  if (n <= SPLIT_N && (double)n * b->p >= BTRS_MIN_NP) {
    int64_t k = binomial_btrs(rng, n, b);
    return b->flip ? n - k : k;
  }
  return binomial_general(rng, n, b);
}

int64_t tr_binomial_prepared(tr_rng *rng, int64_t n, const tr_binp *b) {
  return binomial(rng, n, b);
}

int64_t tr_binomial(tr_rng *rng, int64_t n, double p) {
  tr_binp b;
  tr_binp_set(&b, p);
  return tr_binomial_prepared(rng, n, &b);
}

int tr_multinomial_prepare(tr_binp *cat, int k, const int64_t *w) {
  if (k < 1 || !cat || !w)
    return TR_EINVAL;
  int64_t rest = 0;
  for (int c = 0; c < k; c++) {
    if (w[c] < 0 || w[c] > INT64_MAX - rest)
      return TR_EINVAL;
    rest += w[c];
  }
  if (rest == 0)
    return TR_EINVAL;
  for (int c = 0; c < k; c++) {
    /* w[c] == rest (the last category with weight) gives exactly 1: x / x
     * is 1 in IEEE arithmetic, also after rounding both to double. */
    tr_binp_set(&cat[c], rest > 0 ? (double)w[c] / (double)rest : 0);
    rest -= w[c];
  }
  return 0;
}

void tr_multinomial_prepared(tr_rng *rng, int64_t n, int k, const tr_binp *cat,
                             int64_t *out) {
  int64_t left = n > 0 ? n : 0;
  int c = 0;
  for (; c < k && left > 0; c++) {
    int64_t x = binomial(rng, left, &cat[c]);
    out[c] = x;
    left -= x;
  }
  for (; c < k; c++)
    out[c] = 0;
}

void tr_multinomial_rows(tr_rng *rngs, int rows, int64_t n, int k, const tr_binp *cat,
                         int64_t *out, size_t stride) {
  enum { BLOCK = 64 };
  int64_t left[BLOCK];
  for (int r0 = 0; r0 < rows; r0 += BLOCK) {
    int nr = rows - r0 < BLOCK ? rows - r0 : BLOCK;
    for (int i = 0; i < nr; i++)
      left[i] = n > 0 ? n : 0;
    for (int c = 0; c < k; c++)
      for (int i = 0; i < nr; i++) {
        int64_t x = binomial(&rngs[r0 + i], left[i], &cat[c]);
        out[(size_t)(r0 + i) * stride + (size_t)c] = x;
        left[i] -= x;
      }
  }
}

int tr_multinomial(tr_rng *rng, int64_t n, int k, const int64_t *w, int64_t *out) {
  tr_binp local[256], *cat = local;
  if (k > 256 && !(cat = tr_malloc((size_t)k * sizeof(tr_binp))))
    return TR_ENOMEM;
  int rc = tr_multinomial_prepare(cat, k, w);
  if (rc == TR_OK)
    tr_multinomial_prepared(rng, n, k, cat, out);
  if (cat != local)
    tr_free(cat);
  return rc;
}
