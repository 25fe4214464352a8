/*
 * rt_calib.c - calibration through the backend interface (rt_calib.h), so
 * the same code measures the cpu reference and the GPUs.
 */
#include "runtime/rt_calib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kn_kernels.h"

void rt_calib_defaults(rt_calib_config *cfg, const rt_backend *b, int d_model, int d_ff) {
  memset(cfg, 0, sizeof *cfg);
  cfg->d_model = d_model;
  cfg->d_ff = d_ff;
  int gpu = b->ops->elem_bytes(b) == 2;
  static const int64_t gt[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
  /* cpu from 1 token: below its first point the profile charges the
   * first point's time (pl_ffn_us), and in the replay of the bundled aux
   * sample at 256 tokens a GPU, 22% of the static placement's experts get
   * under 8 tokens (12% under 4): a floor at 8 charged each of them as 8 */
  static const int64_t ct[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  const int64_t *t = gpu ? gt : ct;
  cfg->ntokens = gpu ? 11 : 10;
  memcpy(cfg->tokens, t, sizeof(int64_t) * (size_t)cfg->ntokens);
  static const int64_t gr[] = {16, 64, 256, 1024, 2048, 4096};
  /* cpu: up to 1024 rows (256 KiB a destination at d_model 64), where
   * the memcpy, not the clock, sets the time: the slope is the bandwidth */
  static const int64_t cr[] = {16, 64, 256, 1024};
  cfg->nsizes = gpu ? 6 : 4;
  memcpy(cfg->rows, gpu ? gr : cr, sizeof(int64_t) * (size_t)cfg->nsizes);
  cfg->warmup = gpu ? 3 : 1;
  cfg->reps = gpu ? 20 : 5;
  cfg->model_bytes_per_elem = 2;
  cfg->seed = 1;
}

/* A backend call of a measurement: on failure its message into err and
 * its code returned. */
#define BK(call)                                                               \
  do {                                                                         \
    rc = (call);                                                               \
    if (rc) {                                                                  \
      if (err) snprintf(err, errlen, "%s", b->ops->last_error(b));             \
      return rc;                                                               \
    }                                                                          \
  } while (0)

typedef struct cbuf {
  void *X, *P, *A, *Y, *dY, *dA, *dX, *G, *send, *recv, *out;
  int32_t *idx;
} cbuf;

/* Before a measurement: keep every rank busy for `us` so that the host
 * queues all repetitions before the first stamp (the replay keeps the host
 * ahead of the GPUs the same way), then align the ranks. */
static int head_start(rt_backend *b, double us) {
  int rc;
  if (b->ops->delay)
    for (int r = 0; r < b->ranks; r++)
      if (b->ops->owns(b, r) && (rc = b->ops->delay(b, r, us))) return rc;
  return b->ops->barrier(b);
}

/* Least squares y = a + b x; a negative intercept (noise at small sizes)
 * becomes half the smallest measurement, a floor rather than no cost. */
static void fit(const double *x, const double *y, int n, double *a, double *b) {
  double mx = 0, my = 0, sxx = 0, sxy = 0;
  for (int i = 0; i < n; i++) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  for (int i = 0; i < n; i++) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  *b = sxx > 0 ? sxy / sxx : 0;
  if (*b < 0) *b = 0;
  *a = my - *b * mx;
  if (*a <= 0) *a = n > 0 ? 0.5 * y[0] : 0;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Theil-Sen line y = a + b x through n <= RT_CALIB_MAX points: b the
 * median of the pairwise slopes (>= 0), a the median of y - b x (> 0:
 * else half the smallest y, a floor as in fit()). */
static void theil_sen(const double *x, const double *y, int n, double *a, double *b) {
  double sl[RT_CALIB_MAX * RT_CALIB_MAX / 2], r[RT_CALIB_MAX];
  int m = 0;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (x[j] != x[i]) sl[m++] = (y[j] - y[i]) / (x[j] - x[i]);
  qsort(sl, (size_t)m, sizeof *sl, cmp_dbl);
  *b = m ? (m % 2 ? sl[m / 2] : 0.5 * (sl[m / 2 - 1] + sl[m / 2])) : 0;
  if (*b < 0) *b = 0;
  for (int i = 0; i < n; i++) r[i] = y[i] - *b * x[i];
  qsort(r, (size_t)n, sizeof *r, cmp_dbl);
  *a = n % 2 ? r[n / 2] : 0.5 * (r[n / 2 - 1] + r[n / 2]);
  if (*a <= 0) *a = n > 0 ? 0.5 * y[0] : 0;
}

/* Phases of the barrier measurement, all in one run of the queues. */
#define BARRIER_REPS 16

/* BARRIER_REPS phases as a replay runs them, in one run of the queues: rank
 * 0 computes an expert FFN of n tokens (none when n is 0) and the others a
 * quarter of it, a stamp, a barrier, a stamp; *mean_us = the mean over the
 * phases of the latest release less the latest arrival. The mean, not the
 * median: a replay's mean time pays every slow wake-up (on a loaded cpu a
 * waiting rank thread loses its core and waits for one, milliseconds in a
 * few phases out of many). ms holds 2 * BARRIER_REPS * ranks entries. */
static int barrier_pass(rt_backend *b, const cbuf *cb, const rt_calib_config *cfg, int64_t n,
                        double *ms, double *mean_us) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, f = cfg->d_ff, rc;
  if ((rc = o->barrier(b))) return rc;
  for (int k = 0; k < BARRIER_REPS; k++) {
    for (int r = 0; r < G && n > 0; r++) {
      int64_t m = r == 0 ? n : (n / 4 > 0 ? n / 4 : 1);
      if (o->owns(b, r) &&
          (rc = o->ffn_fwd(b, r, cb[r].X, cb[r].P, cb[r].A, cb[r].Y, m, d, f)))
        return rc;
    }
    if ((rc = o->mark(b, 2 * k)) || (rc = o->barrier(b)) || (rc = o->mark(b, 2 * k + 1)))
      return rc;
  }
  if ((rc = o->collect(b, 2 * BARRIER_REPS, ms))) return rc;
  double sum = 0;
  for (int k = 0; k < BARRIER_REPS; k++) {
    double in = 0, outt = 0;
    for (int r = 0; r < G; r++) {
      in = fmax(in, ms[(2 * k) * G + r]);
      outt = fmax(outt, ms[(2 * k + 1) * G + r]);
    }
    sum += 1e3 * (outt - in);
  }
  *mean_us = sum / BARRIER_REPS;
  return 0;
}

/* Phases of each kind in the exchange-latency measurement. */
#define XPHASE_REPS 16

/* The exchange as a replay meets it, in one run of the queues: a layer's
 * dispatch follows a short, balanced local pass (the ranks arrive at the
 * barrier almost together) and its combine follows the expert compute,
 * where the ranks arrive apart (one waits, asleep on the cpu backend, and
 * must be woken). XPHASE_REPS pairs of phases: [permute of `rows` rows on
 * every rank, stamp, copies of `rows` rows to every other rank, barrier,
 * stamp] then [rank 0 an expert FFN of n tokens and the others a quarter
 * of it, stamp, the same copies, barrier, stamp]. *mean_us = the mean over
 * all 2 XPHASE_REPS phases of the latest stamp after less the latest stamp
 * before: how the replay measures an exchange phase (rt_exec.c, "phase
 * times"). The mean, not the median: a replay's mean time pays every slow
 * wake-up. ms holds 4 * XPHASE_REPS * ranks entries. */
static int exchange_pass(rt_backend *b, const cbuf *cb, const rt_calib_config *cfg, int64_t n,
                         int64_t rows, double *ms, double *mean_us) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, f = cfg->d_ff, rc;
  size_t chunk = (size_t)rows * d * (size_t)o->elem_bytes(b);
  if ((rc = o->barrier(b))) return rc;
  for (int k = 0; k < 2 * XPHASE_REPS; k++) {
    for (int r = 0; r < G; r++) {
      if (!o->owns(b, r)) continue;
      int64_t m = r == 0 ? n : (n / 4 > 0 ? n / 4 : 1);
      rc = k % 2 ? o->ffn_fwd(b, r, cb[r].X, cb[r].P, cb[r].A, cb[r].Y, m, d, f)
                 : o->permute(b, r, cb[r].out, cb[r].send, cb[r].idx, NULL, rows * G, d);
      if (rc) return rc;
    }
    if ((rc = o->mark(b, 2 * k)) || (rc = o->group_begin(b))) return rc;
    for (int r = 0; r < G; r++)
      for (int g = 0; g < G; g++)
        if (g != r && (rc = o->copy(b, r, (char *)cb[r].send + (size_t)g * chunk, g,
                                    (char *)cb[g].recv + (size_t)r * chunk, chunk)))
          return rc;
    if ((rc = o->group_end(b)) || (rc = o->barrier(b)) || (rc = o->mark(b, 2 * k + 1)))
      return rc;
  }
  if ((rc = o->collect(b, 4 * XPHASE_REPS, ms))) return rc;
  double sum = 0;
  for (int k = 0; k < 2 * XPHASE_REPS; k++) {
    double in = 0, outt = 0;
    for (int r = 0; r < G; r++) {
      in = fmax(in, ms[(2 * k) * G + r]);
      outt = fmax(outt, ms[(2 * k + 1) * G + r]);
    }
    sum += 1e3 * (outt - in);
  }
  *mean_us = sum / (2 * XPHASE_REPS);
  return 0;
}

/* Slowest rank's (stamp s1 - stamp s0), ms. */
static double span(const double *ms, int G, int s0, int s1) {
  double w = 0;
  for (int r = 0; r < G; r++) {
    double t = ms[s1 * G + r] - ms[s0 * G + r];
    if (t > w) w = t;
  }
  return w;
}

/* The bandwidth (GB/s) of a line's slope (us per byte) through the
 * exchange sizes out->x_bytes, x_us; with no positive slope (noise on a
 * busy host) the largest size's throughput. */
static double exchange_GBps(const rt_calib_result *out, double slope) {
  int n = out->nsizes - 1;
  return slope > 0 ? 1e-3 / slope
                   : (out->x_us[n] > 0 ? 1e-3 * out->x_bytes[n] / out->x_us[n] : 1.0);
}

/* The cpu backend's exchange numbers (rt_calib.h): the bandwidth from the
 * copies alone (no barrier: at these sizes the memcpy sets the time, and a
 * barrier per repetition would put its noise into the slope), a Theil-Sen
 * line through the sizes; the latency from the replay's own phases
 * (exchange_pass at the middle size) less their copy time. x_us keeps the
 * copy times. ms holds 4 * XPHASE_REPS * ranks entries. */
static int cpu_exchange(rt_backend *b, const cbuf *cb, const rt_calib_config *cfg,
                        rt_calib_result *out, double *ms) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, rc;
  size_t esz = (size_t)o->elem_bytes(b);
  for (int i = 0; i < cfg->nsizes; i++) {
    int64_t m = cfg->rows[i];
    size_t chunk = (size_t)m * d * esz;
    if ((rc = o->barrier(b))) return rc;
    for (int rep = -cfg->warmup; rep < 4 * cfg->reps; rep++) {
      if (rep == 0 && (rc = o->mark(b, 0))) return rc;
      for (int r = 0; r < G; r++)
        for (int g = 0; g < G; g++)
          if (g != r && (rc = o->copy(b, r, (char *)cb[r].send + (size_t)g * chunk, g,
                                      (char *)cb[g].recv + (size_t)r * chunk, chunk)))
            return rc;
    }
    if ((rc = o->mark(b, 1)) || (rc = o->collect(b, 2, ms))) return rc;
    out->x_bytes[i] = (double)m * (G - 1) * d * cfg->model_bytes_per_elem;
    out->x_us[i] = 1e3 * span(ms, G, 0, 1) / (4 * cfg->reps);
  }
  double icpt, slope; /* us, us per byte */
  theil_sen(out->x_bytes, out->x_us, cfg->nsizes, &icpt, &slope);
  out->exchange_GBps = exchange_GBps(out, slope);
  int mid = cfg->nsizes / 2;
  double mean;
  if ((rc = exchange_pass(b, cb, cfg, cfg->tokens[cfg->ntokens - 1], cfg->rows[mid], ms, &mean)))
    return rc;
  double copy = 1e-3 * out->x_bytes[mid] / out->exchange_GBps;
  out->exchange_latency_us = fmax(mean - copy, 0.5 * out->x_us[0]);
  out->barrier_us = fmax(0.0, out->exchange_latency_us - icpt);
  return 0;
}

/* Rank r's buffers (tmax tokens, xrows exchange rows) allocated in c and
 * filled: the inputs and weights seeded as the replay makes them, the
 * identity index uploaded from hidx. */
static int calib_buffers(rt_backend *b, const rt_calib_config *cfg, int r, cbuf *c,
                         const int32_t *hidx, int64_t tmax, int64_t xrows, char *err,
                         size_t errlen) {
  const rt_backend_ops *o = b->ops;
  int d = cfg->d_model, f = cfg->d_ff, rc;
  size_t esz = (size_t)o->elem_bytes(b);
  c->X = o->alloc(b, r, (size_t)tmax * d * esz);
  c->P = o->alloc(b, r, 2 * (size_t)d * f * esz);
  c->A = o->alloc(b, r, (size_t)tmax * f * esz);
  c->Y = o->alloc(b, r, (size_t)tmax * d * esz);
  c->dY = o->alloc(b, r, (size_t)tmax * d * esz);
  c->dA = o->alloc(b, r, (size_t)tmax * f * esz);
  c->dX = o->alloc(b, r, (size_t)tmax * d * esz);
  c->G = o->alloc(b, r, 2 * (size_t)d * f * esz);
  c->send = o->alloc(b, r, (size_t)xrows * d * esz);
  c->recv = o->alloc(b, r, (size_t)xrows * d * esz);
  c->out = o->alloc(b, r, (size_t)xrows * d * esz);
  c->idx = o->alloc(b, r, (size_t)xrows * 4);
  if (!c->X || !c->P || !c->A || !c->Y || !c->dY || !c->dA || !c->dX || !c->G || !c->send ||
      !c->recv || !c->out || !c->idx) {
    if (err) snprintf(err, errlen, "calibration: out of memory: %s", o->last_error(b));
    return RT_ENOMEM;
  }
  BK(o->fill(b, r, c->X, (size_t)tmax * d, kn_seed(cfg->seed, 7, (uint64_t)r, 0, 0), 1.0f));
  BK(o->fill(b, r, c->dY, (size_t)tmax * d, kn_seed(cfg->seed, 7, (uint64_t)r, 1, 0), 1.0f));
  /* W1 | W2 scaled as the replay makes its experts (rt_exec.c,
   * gen_expert): the cpu backward's time depends on the values (measured
   * in thread cpu time at d_model 64, d_ff 128: W2 at 1/sqrt(d_model)
   * made it 1.67-1.77x the forward, at 1/sqrt(d_ff) 1.32-1.41x), so a
   * profile measured on other weights mispredicts the replay's. */
  size_t df = (size_t)d * f;
  BK(o->fill(b, r, c->P, df, kn_seed(cfg->seed, 7, (uint64_t)r, 2, 0), 1.0f / sqrtf((float)d)));
  BK(o->fill(b, r, (char *)c->P + df * esz, df, kn_seed(cfg->seed, 7, (uint64_t)r, 2, 1),
             1.0f / sqrtf((float)f)));
  BK(o->fill(b, r, c->send, (size_t)xrows * d, kn_seed(cfg->seed, 7, (uint64_t)r, 3, 0), 1.0f));
  BK(o->upload(b, r, c->idx, hidx, (size_t)xrows * 4));
  return 0;
}

/* The expert FFN's forward and backward times at each token count, all
 * ranks at once (out->tokens, fwd_us, bwd_us; ms: the stamps). */
static int measure_ffn(rt_backend *b, const rt_calib_config *cfg, const cbuf *cb, double *ms,
                       rt_calib_result *out, char *err, size_t errlen) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, f = cfg->d_ff, rc;
  out->ntokens = cfg->ntokens;
  for (int i = 0; i < cfg->ntokens; i++) {
    int64_t n = cfg->tokens[i];
    out->tokens[i] = n;
    for (int rep = -cfg->warmup; rep < cfg->reps; rep++) {
      if (rep == 0) {
        BK(head_start(b, 500.0 + 60.0 * cfg->reps));
        BK(o->mark(b, 0));
      }
      for (int r = 0; r < G; r++)
        if (o->owns(b, r)) BK(o->ffn_fwd(b, r, cb[r].X, cb[r].P, cb[r].A, cb[r].Y, n, d, f));
    }
    BK(o->mark(b, 1));
    BK(head_start(b, 500.0 + 100.0 * cfg->reps));
    BK(o->mark(b, 2));
    for (int rep = 0; rep < cfg->reps; rep++)
      for (int r = 0; r < G; r++)
        if (o->owns(b, r))
          BK(o->ffn_bwd(b, r, cb[r].X, cb[r].P, cb[r].A, cb[r].dY, cb[r].dA, cb[r].dX, cb[r].G, n,
                        d, f));
    BK(o->mark(b, 3));
    BK(o->collect(b, 4, ms));
    out->fwd_us[i] = 1e3 * span(ms, G, 0, 1) / cfg->reps;
    out->bwd_us[i] = 1e3 * span(ms, G, 2, 3) / cfg->reps;
  }
  return 0;
}

/* The FFN points measured (measure_ffn) made a profile: on the cpu (4-byte
 * elements, at least 3 points) a Theil-Sen line through them; then
 * bwd_ratio, the backward over the forward summed over the points of 256
 * tokens or more (all of them when none is). */
static void ffn_profile(const rt_calib_config *cfg, int cpu, rt_calib_result *out) {
  if (cpu && cfg->ntokens >= 3) {
    /* cpu: the FFN is plain loops, linear in tokens; a shared machine's
     * bursts land on single points (one run measured 4.1 ms at 64 tokens
     * and 0.25 ms at 32), and the simulator's piecewise-linear profile
     * turns such a jump into a cliff that rewards splitting tokens over
     * replicas. The points become a Theil-Sen line through them (median
     * of the pairwise slopes, median intercept): a burst on a few points
     * moves it little, where a least-squares line followed the largest
     * points' bursts (+50..90% on the replay's compute at load 16). */
    double xs[RT_CALIB_MAX];
    for (int i = 0; i < cfg->ntokens; i++) xs[i] = (double)cfg->tokens[i];
    for (int pass = 0; pass < 2; pass++) {
      double *y = pass == 0 ? out->fwd_us : out->bwd_us, a, s1;
      theil_sen(xs, y, cfg->ntokens, &a, &s1);
      for (int i = 0; i < cfg->ntokens; i++) y[i] = a + s1 * xs[i];
    }
  }
  double sf = 0, sb = 0;
  for (int i = 0; i < cfg->ntokens; i++)
    if (cfg->tokens[i] >= 256) {
      sf += out->fwd_us[i];
      sb += out->bwd_us[i];
    }
  if (sf <= 0)
    for (int i = 0; i < cfg->ntokens; i++) {
      sf += out->fwd_us[i];
      sb += out->bwd_us[i];
    }
  out->bwd_ratio = sf > 0 ? sb / sf : 2.0;
}

/* The barrier's cost as the replay meets it (rt_calib.h): barrier_pass
 * after an FFN of the largest token count less without one, into
 * out->barrier_us and added to the exchange latency. */
static int measure_barrier(rt_backend *b, const cbuf *cb, const rt_calib_config *cfg,
                           rt_calib_result *out, char *err, size_t errlen) {
  double *bm = rt_malloc(sizeof(double) * 2 * BARRIER_REPS * (size_t)b->ranks);
  if (!bm)
    return RT_ENOMEM;
  int64_t n = cfg->tokens[cfg->ntokens - 1];
  double mean[2];
  int rc = 0;
  for (int pass = 0; pass < 2 && !rc; pass++) {
    rc = barrier_pass(b, cb, cfg, pass == 0 ? n : 0, bm, &mean[pass]);
    if (rc && err) snprintf(err, errlen, "%s", b->ops->last_error(b));
  }
  rt_free(bm);
  if (rc)
    return rc;
  out->barrier_us = fmax(0.0, mean[0] - mean[1]);
  out->exchange_latency_us += out->barrier_us;
  return 0;
}

/* The exchange on a GPU (and on one cpu rank): a uniform all-to-all at
 * each size (copies and a barrier), a least-squares line t = latency +
 * bytes / bandwidth through the sizes, then the barrier's cost. */
static int gpu_exchange(rt_backend *b, const cbuf *cb, const rt_calib_config *cfg,
                        rt_calib_result *out, double *ms, char *err, size_t errlen) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, rc;
  size_t esz = (size_t)o->elem_bytes(b);
  for (int i = 0; i < cfg->nsizes; i++) {
    int64_t m = cfg->rows[i];
    size_t chunk = (size_t)m * d * esz;
    for (int rep = -cfg->warmup; rep < cfg->reps; rep++) {
      if (rep == 0) {
        BK(head_start(b, 500.0 + 100.0 * cfg->reps));
        BK(o->mark(b, 0));
      }
      BK(o->group_begin(b));
      for (int r = 0; r < G; r++)
        for (int g = 0; g < G; g++)
          BK(o->copy(b, r, (char *)cb[r].send + (size_t)g * chunk, g,
                     (char *)cb[g].recv + (size_t)r * chunk, chunk));
      BK(o->group_end(b));
      BK(o->barrier(b));
    }
    BK(o->mark(b, 1));
    BK(o->collect(b, 2, ms));
    out->x_bytes[i] = (double)m * (G > 1 ? G - 1 : 1) * d * cfg->model_bytes_per_elem;
    out->x_us[i] = 1e3 * span(ms, G, 0, 1) / cfg->reps;
  }
  if (cfg->nsizes < 2)
    return 0;
  double icpt, slope; /* us, us per byte */
  fit(out->x_bytes, out->x_us, cfg->nsizes, &icpt, &slope);
  out->exchange_GBps = exchange_GBps(out, slope);
  out->exchange_latency_us = icpt;
  return G > 1 ? measure_barrier(b, cb, cfg, out, err, errlen) : 0;
}

/* Local token movement: a permute of rows x G rows at each size, a line
 * through them (out->local_lat_us, local_us_per_row). */
static int measure_local(rt_backend *b, const rt_calib_config *cfg, const cbuf *cb, double *ms,
                         rt_calib_result *out, char *err, size_t errlen) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, rc;
  double lx[RT_CALIB_MAX], ly[RT_CALIB_MAX];
  for (int i = 0; i < cfg->nsizes; i++) {
    int64_t rows = cfg->rows[i] * G;
    for (int rep = -cfg->warmup; rep < cfg->reps; rep++) {
      if (rep == 0) {
        BK(head_start(b, 500.0 + 30.0 * cfg->reps));
        BK(o->mark(b, 0));
      }
      for (int r = 0; r < G; r++)
        if (o->owns(b, r)) BK(o->permute(b, r, cb[r].out, cb[r].send, cb[r].idx, NULL, rows, d));
    }
    BK(o->mark(b, 1));
    BK(o->collect(b, 2, ms));
    lx[i] = (double)rows;
    ly[i] = 1e3 * span(ms, G, 0, 1) / cfg->reps;
  }
  fit(lx, ly, cfg->nsizes, &out->local_lat_us, &out->local_us_per_row);
  return 0;
}

/* The launch overhead: a chain of 200 tiny kernels per rank, no head
 * start (this measures the host's launch rate; out->launch_us). */
static int measure_launch(rt_backend *b, const cbuf *cb, double *ms, rt_calib_result *out,
                          char *err, size_t errlen) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, n = 200, rc;
  BK(o->barrier(b));
  BK(o->mark(b, 0));
  for (int i = 0; i < n; i++)
    for (int r = 0; r < G; r++)
      if (o->owns(b, r)) BK(o->fill(b, r, cb[r].out, 8, 1, 1.0f));
  BK(o->mark(b, 1));
  BK(o->collect(b, 2, ms));
  out->launch_us = 1e3 * span(ms, G, 0, 1) / n;
  return 0;
}

int rt_calibrate(rt_backend *b, const rt_calib_config *cfg, rt_calib_result *out,
                 char *err, size_t errlen) {
  const rt_backend_ops *o = b->ops;
  int G = b->ranks, d = cfg->d_model, f = cfg->d_ff, rc = 0;
  if (cfg->ntokens < 1 || cfg->ntokens > RT_CALIB_MAX || cfg->nsizes < 0 ||
      cfg->nsizes > RT_CALIB_MAX || d % 8 || f % 8 || cfg->reps < 1) {
    if (err) snprintf(err, errlen, "calibration: bad configuration");
    return RT_EINVAL;
  }
  memset(out, 0, sizeof *out);
  int64_t tmax = cfg->tokens[cfg->ntokens - 1];
  int64_t rmax = 0;
  for (int i = 0; i < cfg->nsizes; i++)
    if (cfg->rows[i] > rmax) rmax = cfg->rows[i];
  int64_t xrows = rmax * G > tmax ? rmax * G : tmax;
  cbuf *cb = rt_calloc((size_t)G, sizeof *cb);
  int32_t *hidx = rt_malloc(sizeof(int32_t) * (size_t)xrows);
  double *ms = rt_malloc(sizeof(double) * (4 * XPHASE_REPS > 8 ? 4 * XPHASE_REPS : 8) * (size_t)G);
  if (!cb || !hidx || !ms) {
    rt_free(cb);
    rt_free(hidx);
    rt_free(ms);
    return RT_ENOMEM;
  }
  for (int64_t i = 0; i < xrows; i++) hidx[i] = (int32_t)i;
  for (int r = 0; r < G && !rc; r++)
    if (o->owns(b, r)) rc = calib_buffers(b, cfg, r, &cb[r], hidx, tmax, xrows, err, errlen);
  int cpu = o->elem_bytes(b) == 4;
  if (rc || (rc = measure_ffn(b, cfg, cb, ms, out, err, errlen)))
    goto done;
  ffn_profile(cfg, cpu, out);
  out->nsizes = cfg->nsizes;
  if (cpu && G > 1 && cfg->nsizes >= 2) { /* cpu: the exchange as the replay pays it (rt_calib.h) */
    if ((rc = cpu_exchange(b, cb, cfg, out, ms))) {
      if (err) snprintf(err, errlen, "%s", o->last_error(b));
      goto done;
    }
  } else if ((rc = gpu_exchange(b, cb, cfg, out, ms, err, errlen))) {
    goto done;
  }
  if (!(rc = measure_local(b, cfg, cb, ms, out, err, errlen)))
    rc = measure_launch(b, cb, ms, out, err, errlen);
done:
  for (int r = 0; r < G; r++) {
    cbuf *c = &cb[r];
    void *p[] = {c->X, c->P, c->A, c->Y, c->dY, c->dA, c->dX, c->G, c->send, c->recv, c->out, c->idx};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
      if (p[i]) o->release(b, r, p[i]);
  }
  rt_free(cb);
  rt_free(hidx);
  rt_free(ms);
  return rc;
}
