/*
 * pl_predict.h - load predictors: the next iteration's per-expert load from
 * the loads observed so far.
 *
 * Three kinds, chosen per policy by name ("last", "ewma", "window"):
 *   last    the most recent observation;
 *   ewma    e_t = alpha x_t + (1 - alpha) e_{t-1}, e_0 = x_0;
 *   window  mean of the last `window` observations (fewer at the start),
 *           summed exactly in int64 so the mean never drifts;
 *   auto    per predictor (one per layer in the policies' monitor): the
 *           last value, the ewma, or the damped trend x_t + (x_t -
 *           x_{t-1}) / 2 (clipped at 0), whichever has had the lowest
 *           recent one-step error (EWMA, weight 0.1, of the L1 error over
 *           the total); ties go to the earlier of last, ewma, trend.
 * Before the first observation every estimate is 0. A predictor owns its
 * buffers (init/fini); it is a pure function of what it was fed.
 */
#ifndef FLEXMOE_PL_PREDICT_H
#define FLEXMOE_PL_PREDICT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pl_predictor_kind {
  PL_PRED_LAST = 0,
  PL_PRED_EWMA = 1,
  PL_PRED_WINDOW = 2,
  PL_PRED_AUTO = 3
} pl_predictor_kind;

/* The names above, NULL-terminated, in enum order (for pl_kv_choice). */
extern const char *const pl_predictor_names[];

typedef struct pl_predictor {
  pl_predictor_kind kind;
  int n;          /* values per observation (experts) */
  double alpha;   /* ewma weight of the newest observation, (0, 1] */
  int window;     /* window length, >= 1 */
  int64_t seen;   /* observations so far */
  double *est;    /* [n] current estimate */
  int64_t *hist;  /* [window * n] ring buffer (window kind only) */
  int64_t *sum;   /* [n] exact sum of the ring (window kind only) */
  double *cand;   /* auto: [3n] last, ewma, trend candidates */
  double err[3];  /* auto: their recent relative one-step errors */
  int choice;     /* auto: the candidate est follows (0 last, 1 ewma, 2 trend) */
} pl_predictor;

/* PL_EINVAL on bad numbers, PL_ENOMEM. */
int pl_predictor_init(pl_predictor *p, pl_predictor_kind kind, int n,
                      double alpha, int window);
void pl_predictor_fini(pl_predictor *p); /* accepts NULL and zeroed */
/* Feeds one observation x[n] (non-negative). */
void pl_predictor_observe(pl_predictor *p, const int64_t *x);
/* The estimate for the next observation, [n], owned by p. */
const double *pl_predictor_estimate(const pl_predictor *p);

#ifdef __cplusplus
}
#endif
#endif
