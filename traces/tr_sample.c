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
#include <string.h>

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

/* ---- the Poisson method for many rows of one multinomial ----------------
 *
 * Why it is exact. Independent X_c ~ Poisson(lam_c) with lam_c = L w_c / W
 * have, given their sum S = s, the multinomial distribution Mult(s, w / W)
 * (for any L > 0). Keeping only the vectors with S <= n conditions S alone,
 * so what is kept is still Mult(S, w / W) given S; adding n - S tokens drawn
 * one by one from the categorical w / W (alias table) adds an independent
 * Mult(n - S, w / W), and the sum of two independent multinomials with the
 * same probabilities is Mult(n, w / W). L = n - D with D = ceil(MP_D sqrt n)
 * makes the rejection rare (S > n about one row in six) and the completion
 * short (about D + 0.3 sqrt n tokens).
 *
 * Why it is fast. lam_c is the same for every row of one source, so each
 * Poisson is drawn by inversion from a table: the pmf over the centre of the
 * distribution (where f(k) >= MP_CUT f(mode), about 5.8 sd wide), its
 * running sums, and a guide table (Chen and Asau) that starts the search
 * within a step or two of the answer: one uniform and a few compares, where
 * a BTRS binomial with a varying number of trials takes two uniforms, a
 * square root, a division and, for a third of its trials, four logarithms.
 *
 * The inversion order is the centre [lo, hi] ascending, then the right tail
 * (hi + 1, hi + 2, ...), then the left tail (lo - 1, ..., 0), each walked by
 * the pmf's ratio recurrence when u falls beyond the centre's mass (about
 * one draw in 250). A tail walk stops when a geometric bound on what is left
 * of that tail is below the u still unspent (that tail cannot hold it); a u
 * left over by rounding after both tails is replaced by a fresh one, which
 * changes no probability by more than that rounding. f(mode) is computed
 * absolutely (Stirling's series with its tail correction, as in BTRS): the
 * table is the exact Poisson pmf to a few units of rounding.
 */

#define MP_D 1.0             /* D = ceil(MP_D sqrt(n)) */
#define MP_GUIDE 1           /* guide buckets per table entry */
#define MP_CUT 0x1.0p-6      /* the centre: f(k) >= MP_CUT f(mode) */
#define MP_MAX_K 2048        /* alias column from 11 bits, 53 left for u */
#define MP_HALF(lam) ((int64_t)(4 * sqrt(lam)) + 8) /* centre half-width cap */

int tr_mpois_fits(int64_t n, int k) {
  return k >= 2 && k <= MP_MAX_K && n >= 1 && n <= ((int64_t)1 << 24) &&
         n <= (int64_t)16 * k * k;
}

void tr_mpois_init(tr_mpois *m) {
  *m = (tr_mpois){.k = 0};
}

void tr_mpois_fini(tr_mpois *m) {
  if (!m)
    return;
  tr_free(m->cat);
  tr_free(m->cdf);
  tr_free(m->guide);
  tr_free(m->aprob);
  tr_free(m->athr);
  tr_free(m->alias);
  tr_mpois_init(m);
}

/* Table entries a category of mean lam may use: the centre's cap. */
static int64_t mp_width_cap(double lam) {
  return lam > 0 ? 2 * MP_HALF(lam) + 1 : 0;
}

uint64_t tr_mpois_memory(int64_t n, int k) {
  if (!tr_mpois_fits(n, k))
    return 0;
  /* sum over c of 2 (4 sqrt(lam_c) + 8) + 1 <= 8 sqrt(k n) + 17 k (Cauchy-Schwarz) */
  uint64_t entries = (uint64_t)(8 * sqrt((double)k * (double)n)) + 17 * (uint64_t)k + 1;
  uint64_t cols = 1;
  while (cols < (uint64_t)k)
    cols *= 2;
  return entries * (sizeof(double) + MP_GUIDE * sizeof(int32_t)) +
         (uint64_t)k * sizeof(tr_pcat) +
         cols * (sizeof(double) + sizeof(uint64_t) + 3 * sizeof(int32_t));
}

/* log f(m) of Poisson(lam) at m = floor(lam), lam > 0: with log m! from
 * Stirling's series, -lam + m log lam - log m! = m log1p((lam - m - 1)/(m +
 * 1)) - log(2 pi (m + 1))/2 + (m + 1 - lam) - fc(m), every term small. */
static double pois_log_mode(double lam, double m) {
  return m * log1p((lam - m - 1) / (m + 1)) - 0.5 * log(2 * M_PI * (m + 1)) + (m + 1 - lam) -
         stirling_tail(m);
}

/* Guide buckets i..bj (none when bj < i) of a table of gm buckets get
 * entry j; returns the next bucket to fill, bj + 1 (or i). How many is a
 * function of the pmf (0 in the tails, 2 or 3 at the mode): a loop over
 * them mispredicts its exit about once per entry, so 4 are written
 * without a branch, and a later entry's writes start at the returned
 * bucket and overwrite the ones past bj. The rare longer run loops. */
static inline int64_t guide_fill(int32_t *g, int64_t gm, int64_t i, int64_t bj, int32_t j) {
  if (i + 4 <= gm) {
    g[i] = g[i + 1] = g[i + 2] = g[i + 3] = j;
    int64_t next = bj + 1 > i ? bj + 1 : i;
    for (i += 4; i < next; i++)
      g[i] = j;
    return next;
  }
  for (; i <= bj; i++)
    g[i] = j;
  return i;
}

/* Category c's table into m->cdf / m->guide at *used (advanced by the
 * category's room, 2 half + 1): the mode at room[half], the left of it
 * walked down from there (f(j) = f(j + 1) (j + 1) / lam), the right of it up
 * (f(j) = f(j - 1) lam / j), each until f < MP_CUT f(mode) or half entries;
 * then one pass up turns the pmf into running sums and fills the guide. */
static void mp_table(tr_mpois *m, tr_pcat *pc, size_t *used) {
  double lam = pc->lam, mode = floor(lam), fm = exp(pois_log_mode(lam, mode));
  double cut = fm * MP_CUT, il = 1 / lam, f = fm;
  int64_t half = MP_HALF(lam), im = (int64_t)mode, nl = 0, w;
  double *room = m->cdf + *used;
  for (int64_t j = im - 1; j >= 0 && nl < half; j--) {
    f *= (double)(j + 1) * il;
    if (f < cut)
      break;
    room[half - 1 - nl++] = f;
  }
  double *cdf = room + half - nl;
  w = nl + 1;
  cdf[nl] = f = fm;
  for (int64_t j = im + 1; j - im <= half; j++) {
    f *= lam / (double)j;
    if (f < cut)
      break;
    cdf[w++] = f;
  }
  pc->lo = im - nl;
  pc->flo = cdf[0];
  pc->fhi = cdf[w - 1];
  pc->w = (int32_t)w;
  pc->off = (int64_t)*used + half - nl;
  /* guide of gm = MP_GUIDE w buckets: g[i] = the first j whose bucket
   * (int)(cdf[j] gm) reaches i; the lookup computes u's bucket the same way,
   * so the answer is never before g[bucket(u)] (the bucket is monotone in
   * u), and rarely more than two entries after it */
  int64_t gm = MP_GUIDE * w, i = 0;
  int32_t *g = m->guide + MP_GUIDE * pc->off;
  double s = 0, dgm = (double)gm;
  for (int64_t j = 0; j < w; j++) {
    cdf[j] = s += cdf[j];
    double b = s * dgm;
    int64_t bj = b >= dgm ? gm - 1 : (int64_t)b;
    i = guide_fill(g, gm, i, bj, (int32_t)j);
  }
  for (; i < gm; i++)
    g[i] = (int32_t)(w - 1);
  pc->ctot = s;
  *used += (size_t)(2 * half + 1);
}

/* Vose's alias table over w[0..k-1] padded to cols = 2^bits columns. */
static void mp_alias(tr_mpois *m, const int64_t *w, double wsum) {
  int cols = 1 << m->bits;
  int32_t *small = m->alias, *large = m->alias + cols; /* scratch: 2 cols */
  int ns = 0, nl = 0;
  for (int c = 0; c < cols; c++) {
    m->aprob[c] = c < m->k ? (double)w[c] * (double)cols / wsum : 0;
    if (m->aprob[c] < 1)
      small[ns++] = c;
    else
      large[nl++] = c;
  }
  /* pairs: a small column is topped up by a large one; the order of the
   * lists is fixed, so the table is a function of w alone */
  int32_t *al = m->alias + 2 * cols;
  for (int c = 0; c < cols; c++)
    al[c] = c;
  while (ns > 0 && nl > 0) {
    int s = small[--ns], l = large[nl - 1];
    al[s] = l;
    m->aprob[l] -= 1 - m->aprob[s];
    if (m->aprob[l] < 1) {
      nl--;
      small[ns++] = l;
    }
  }
  while (nl > 0)
    m->aprob[large[--nl]] = 1;
  /* rounding left these a hair under 1: full, but a column of weight 0
   * (impossible but by a gross rounding) stays empty, topped up by any
   * column of weight */
  int any = 0;
  while (w[any] == 0)
    any++;
  while (ns > 0) {
    int s = small[--ns];
    if (s < m->k && w[s] > 0)
      m->aprob[s] = 1;
    else
      al[s] = any;
  }
  memmove(m->alias, al, (size_t)cols * sizeof(int32_t));
  /* u53 2^-53 < aprob (u53 an integer) iff u53 < ceil(aprob 2^53), exact:
   * the draw compares integers */
  for (int c = 0; c < cols; c++)
    m->athr[c] = (uint64_t)ceil(m->aprob[c] * 0x1.0p53);
}

int tr_mpois_prepare(tr_mpois *m, int k, const int64_t *w, int64_t n) {
  if (!m || !w || !tr_mpois_fits(n, k))
    return TR_EINVAL;
  int64_t W = 0;
  for (int c = 0; c < k; c++) {
    if (w[c] < 0 || w[c] > INT64_MAX - W)
      return TR_EINVAL;
    W += w[c];
  }
  if (W == 0)
    return TR_EINVAL;
  int bits = 0;
  while ((1 << bits) < k)
    bits++;
  int cols = 1 << bits;
  double D = ceil(MP_D * sqrt((double)n)), L = (double)n - D;
  if (L < 0)
    L = 0;
  /* room: the caps of this weight vector's categories */
  size_t need = 0;
  for (int c = 0; c < k; c++)
    need += (size_t)mp_width_cap(L * ((double)w[c] / (double)W));
  if (k > m->kcap || cols > m->colcap || need > m->cap) {
    int kc = k > m->kcap ? k : m->kcap, cc = cols > m->colcap ? cols : m->colcap;
    size_t ec = need > m->cap ? need : m->cap;
    tr_pcat *cat = tr_malloc((size_t)kc * sizeof(tr_pcat));
    double *cdf = tr_malloc((ec ? ec : 1) * sizeof(double));
    int32_t *guide = tr_malloc((ec ? ec : 1) * MP_GUIDE * sizeof(int32_t));
    double *aprob = tr_malloc((size_t)cc * sizeof(double));
    uint64_t *athr = tr_malloc((size_t)cc * sizeof(uint64_t));
    int32_t *alias = tr_malloc((size_t)cc * 3 * sizeof(int32_t));
    if (!cat || !cdf || !guide || !aprob || !athr || !alias) {
      tr_free(alias);
      tr_free(athr);
      tr_free(aprob);
      tr_free(guide);
      tr_free(cdf);
      tr_free(cat);
      return TR_ENOMEM; /* m unchanged */
    }
    tr_mpois_fini(m);
    *m = (tr_mpois){.cat = cat, .cdf = cdf, .guide = guide, .aprob = aprob, .athr = athr,
                    .alias = alias, .kcap = kc, .colcap = cc, .cap = ec};
  }
  m->k = k;
  m->n = n;
  m->bits = bits;
  size_t used = 0;
  for (int c = 0; c < k; c++) {
    tr_pcat *pc = &m->cat[c];
    *pc = (tr_pcat){.lam = L * ((double)w[c] / (double)W)};
    if (pc->lam > 0)
      mp_table(m, pc, &used);
  }
  mp_alias(m, w, (double)W);
  return TR_OK;
}

/* What is left of u beyond the centre, in the tails; -1 when rounding left
 * u unspent (the caller draws a fresh u). */
static __attribute__((noinline)) int64_t pois_tail(const tr_pcat *pc, double u) {
  double lam = pc->lam, f = pc->fhi;
  for (int64_t k = pc->lo + pc->w;; k++) { /* right: k > hi > lam - 1 */
    f *= lam / (double)k;
    if (u < f)
      return k;
    u -= f;
    /* what is left beyond k is at most f lam / (k + 1 - lam) (ratios below
     * lam / (k + 1) < 1); twice that below u: not in this tail */
    if (f == 0 || 2 * f * lam < u * ((double)k + 1 - lam))
      break;
  }
  f = pc->flo;
  for (int64_t k = pc->lo - 1; k >= 0; k--) { /* left: k < lo <= lam */
    f *= (double)(k + 1) / lam;
    if (u < f)
      return k;
    u -= f;
    /* below k: at most f k / (lam - k) */
    if (f == 0 || 2 * f * (double)k < u * (lam - (double)k))
      break;
  }
  return -1;
}

/* One Poisson(lam_c) draw from c's table: the guide's entry, two steps
 * without branches (one bucket per entry: the answer is rarely more than
 * two entries past the guide's), then the rare longer search, or the tails. */
static inline int64_t pois_draw(tr_rng *r, const tr_mpois *m, const tr_pcat *pc) {
  for (;;) {
    double u = (double)(tr_rng_next(r) >> 11) * 0x1.0p-53;
    if (__builtin_expect(u < pc->ctot, 1)) {
      const double *cdf = m->cdf + pc->off;
      int64_t gm = MP_GUIDE * (int64_t)pc->w, b = (int64_t)(u * (double)gm);
      int64_t j = m->guide[MP_GUIDE * pc->off + (b < gm ? b : gm - 1)];
      j += cdf[j] <= u; /* cdf[w - 1] = ctot > u: j stays below w */
      j += cdf[j] <= u;
      while (__builtin_expect(cdf[j] <= u, 0))
        j++;
      return pc->lo + j;
    }
    int64_t k = pois_tail(pc, u - pc->ctot);
    if (k >= 0)
      return k;
  }
}

/* The completion of a row whose Poissons summed to s <= n: n - s tokens
 * from the alias table, one 64-bit draw each (the top `bits` bits pick the
 * column, the 53 below them the uniform). */
static void mp_complete(tr_rng *r, const tr_mpois *m, int64_t s, int64_t *out) {
  int bits = m->bits;
  tr_rng g = *r; /* a local copy: out[] may alias r for the compiler */
  for (int64_t d = m->n - s; d > 0; d--) {
    uint64_t x = tr_rng_next(&g);
    int col = (int)(x >> (63 - bits) >> 1);
    uint64_t u53 = (x << bits) >> 11;
    /* the alias when u53 >= athr[col], selected with a mask (the compiler
     * branches on a ?: here, and the branch is a coin flip) */
    int a = m->alias[col], keep = -(int)(u53 < m->athr[col]);
    out[a ^ ((a ^ col) & keep)]++;
  }
  *r = g;
}

/* One attempt: all k Poissons into out; their sum. */
static int64_t mp_attempt(tr_rng *r, const tr_mpois *m, int64_t *out) {
  int64_t s = 0;
  tr_rng g = *r; /* a local copy: out[] may alias r for the compiler */
  for (int c = 0; c < m->k; c++) {
    const tr_pcat *pc = &m->cat[c];
    s += out[c] = pc->lam > 0 ? pois_draw(&g, m, pc) : 0;
  }
  *r = g;
  return s;
}

void tr_mpois_row(tr_rng *r, const tr_mpois *m, int64_t *out) {
  int64_t s;
  while ((s = mp_attempt(r, m, out)) > m->n)
    ;
  mp_complete(r, m, s, out);
}

void tr_mpois_rows(tr_rng *rngs, int rows, const tr_mpois *m, int64_t *out, size_t stride) {
  /* row by row: each row's generator stays in registers (mp_attempt and
   * mp_complete copy it), which measured faster than drawing category by
   * category over the rows, whose generators then live in memory */
  for (int i = 0; i < rows; i++)
    tr_mpois_row(&rngs[i], m, out + (size_t)i * stride);
}
