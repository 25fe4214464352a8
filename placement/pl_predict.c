/*
 * pl_predict.c - last / EWMA / sliding-window load predictors (see
 * pl_predict.h). O(n) per observation for every kind.
 */
#include "placement/pl_predict.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"

const char *const pl_predictor_names[] = {"last", "ewma", "window", "auto", NULL};

int pl_predictor_init(pl_predictor *p, pl_predictor_kind kind, int n,
                      double alpha, int window) {
  if (!p || n < 1 || kind < PL_PRED_LAST || kind > PL_PRED_AUTO)
    return PL_EINVAL;
  if ((kind == PL_PRED_EWMA || kind == PL_PRED_AUTO) && !(alpha > 0 && alpha <= 1))
    return PL_EINVAL;
  if (kind == PL_PRED_WINDOW && window < 1)
    return PL_EINVAL;
  pl_predictor t = {.kind = kind, .n = n, .alpha = alpha, .window = window > 0 ? window : 1};
  t.est = pl_calloc((size_t)n, sizeof(double));
  if (kind == PL_PRED_AUTO && !(t.cand = pl_calloc(3 * (size_t)n, sizeof(double)))) {
    pl_predictor_fini(&t);
    return PL_ENOMEM;
  }
  if (kind == PL_PRED_WINDOW) {
    t.hist = pl_calloc((size_t)n * (size_t)t.window, sizeof(int64_t));
    t.sum = pl_calloc((size_t)n, sizeof(int64_t));
  }
  if (!t.est || (kind == PL_PRED_WINDOW && (!t.hist || !t.sum))) {
    pl_predictor_fini(&t);
    return PL_ENOMEM;
  }
  *p = t;
  return PL_OK;
}

void pl_predictor_fini(pl_predictor *p) {
  if (!p)
    return;
  pl_free(p->est);
  pl_free(p->hist);
  pl_free(p->sum);
  pl_free(p->cand);
  memset(p, 0, sizeof(*p));
}

/* auto: scores each candidate's prediction of x, then updates them and
 * follows the best. */
static void observe_auto(pl_predictor *p, const int64_t *x) {
  int n = p->n;
  double *last = p->cand, *ewma = last + n, *trend = ewma + n;
  if (p->seen) {
    double tot = 0, e[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
      tot += (double)x[i];
      for (int k = 0; k < 3; k++)
        e[k] += fabs(p->cand[(size_t)k * n + i] - (double)x[i]);
    }
    for (int k = 0; k < 3 && tot > 0; k++)
      p->err[k] = p->seen == 1 ? e[k] / tot : 0.9 * p->err[k] + 0.1 * e[k] / tot;
  }
  for (int i = 0; i < n; i++) {
    double v = (double)x[i];
    ewma[i] = p->seen ? p->alpha * v + (1 - p->alpha) * ewma[i] : v;
    trend[i] = p->seen ? fmax(0.0, v + 0.5 * (v - last[i])) : v;
    last[i] = v;
  }
  int best = 0;
  for (int k = 1; k < 3; k++)
    if (p->err[k] < p->err[best])
      best = k;
  p->choice = p->seen >= 2 ? best : 0;
  memcpy(p->est, p->cand + (size_t)p->choice * n, sizeof(double) * (size_t)n);
}

void pl_predictor_observe(pl_predictor *p, const int64_t *x) {
  int n = p->n;
  switch (p->kind) {
  case PL_PRED_AUTO:
    observe_auto(p, x);
    break;
  case PL_PRED_LAST:
    for (int i = 0; i < n; i++)
      p->est[i] = (double)x[i];
    break;
  case PL_PRED_EWMA:
    for (int i = 0; i < n; i++)
      p->est[i] = p->seen ? p->alpha * (double)x[i] + (1 - p->alpha) * p->est[i]
                          : (double)x[i];
    break;
  case PL_PRED_WINDOW: {
    int64_t *row = p->hist + (size_t)(p->seen % p->window) * (size_t)n;
    int64_t filled = p->seen + 1 < p->window ? p->seen + 1 : p->window;
    for (int i = 0; i < n; i++) {
      p->sum[i] += x[i] - row[i]; /* row is zero until the ring wraps */
      row[i] = x[i];
      p->est[i] = (double)p->sum[i] / (double)filled;
    }
    break;
  }
  }
  p->seen++;
}

const double *pl_predictor_estimate(const pl_predictor *p) { return p->est; }
