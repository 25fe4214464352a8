/*
 * policy_util.c - what the built-in policies share: the slots and
 * background parameters, the per-layer load monitor (one predictor per
 * layer), source sums and the even-split balance estimate (see
 * pl_internal.h).
 */
#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "pl_internal.h"

int pl_param_slots(const pl_env *env, const pl_kv *kv, int nkv, int def,
                   int *out) {
  int E = env->experts, G = env->cluster.gpus;
  int need = (E + G - 1) / G;
  int v, rc = pl_kv_int(kv, nkv, "slots", 0, 0, 1 << 20, &v);
  if (rc)
    return rc;
  if (v == 0)
    v = def;
  if (v < need || v > env->cluster.slots)
    return PL_EPARAM;
  *out = v;
  return PL_OK;
}

int pl_param_background(const pl_kv *kv, int nkv, int *out) {
  return pl_kv_int(kv, nkv, "background", PL_BACKGROUND_DEFAULT, 0, 1, out);
}

#define WINDOW_MAX 100000 /* the window parameter's range: 0 to this */

int pl_monitor_init(pl_monitor *mon, const pl_env *env, const pl_kv *kv,
                    int nkv, int def_kind, int def_window) {
  memset(mon, 0, sizeof(*mon));
  int kind, window, rc;
  double alpha;
  if ((rc = pl_kv_choice(kv, nkv, "predictor", pl_predictor_names, def_kind, &kind)) ||
      (rc = pl_kv_double(kv, nkv, "alpha", 0.5, 1e-6, 1.0, &alpha)) ||
      (rc = pl_kv_int(kv, nkv, "window", 0, 0, WINDOW_MAX, &window)))
    return rc;
  /* a default taken from the period keeps to the window's own range: eplb's
   * period=1073741824 must not ask for a window of 2^30 iterations */
  if (window == 0)
    window = def_window < WINDOW_MAX ? def_window : WINDOW_MAX;
  mon->layers = env->layers;
  mon->experts = env->experts;
  mon->gpus = env->cluster.gpus;
  mon->pred = pl_calloc((size_t)env->layers, sizeof(pl_predictor));
  mon->sum = pl_calloc((size_t)env->experts, sizeof(int64_t));
  if (!mon->pred || !mon->sum) {
    pl_monitor_fini(mon);
    return PL_ENOMEM;
  }
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_predictor_init(&mon->pred[l], (pl_predictor_kind)kind,
                                env->experts, alpha, window)) != 0) {
      pl_monitor_fini(mon);
      return rc;
    }
  return PL_OK;
}

void pl_monitor_fini(pl_monitor *mon) {
  if (!mon)
    return;
  if (mon->pred)
    for (int l = 0; l < mon->layers; l++)
      pl_predictor_fini(&mon->pred[l]);
  pl_free(mon->pred);
  pl_free(mon->sum);
  memset(mon, 0, sizeof(*mon));
}

int pl_monitor_observe(pl_monitor *mon, int layer, const int64_t *counts) {
  if (layer < 0 || layer >= mon->layers)
    return PL_EINVAL;
  int E = mon->experts;
  memset(mon->sum, 0, sizeof(int64_t) * (size_t)E);
  for (int s = 0; s < mon->gpus; s++)
    for (int e = 0; e < E; e++) {
      int64_t v = counts[(size_t)s * E + e];
      if (v < 0)
        return PL_EINVAL;
      mon->sum[e] += v;
    }
  pl_predictor_observe(&mon->pred[layer], mon->sum);
  return PL_OK;
}

const double *pl_monitor_estimate(const pl_monitor *mon, int layer) {
  if (layer < 0 || layer >= mon->layers || mon->pred[layer].seen == 0)
    return NULL;
  return pl_predictor_estimate(&mon->pred[layer]);
}

void pl_sum_sources(const int64_t *counts, int gpus, int experts, double *out) {
  for (int e = 0; e < experts; e++)
    out[e] = 0;
  for (int s = 0; s < gpus; s++)
    for (int e = 0; e < experts; e++)
      out[e] += (double)counts[(size_t)s * experts + e];
}

double pl_grad_hide_us(const pl_env *env, const double *lay_us, int layer) {
  double all = 0, sum = 0;
  int known = 0, below = 1; /* below: every layer below is known */
  for (int l = 0; l < layer && below; l++)
    below = lay_us[l] >= 0;
  /* the mean of the known layers (the layers above included) only when a
   * layer below needs it: with every layer below known the result reads
   * lay_us[0..layer) alone, so a layer's temporaries may be decided while
   * the later layers' plans write their own entries (pl_policy.h,
   * route_ready); the same sum, term by term, either way */
  for (int l = 0; !below && l < env->layers; l++)
    if (lay_us[l] >= 0) {
      all += lay_us[l];
      known++;
    }
  for (int l = 0; l < layer; l++)
    sum += lay_us[l] >= 0 ? lay_us[l] : known ? all / known : 0;
  double share = fmin(0.5, env->profile.bwd_ratio / (1.0 + env->profile.bwd_ratio));
  return layer * env->profile.nonmoe_us + share * sum;
}

double pl_even_balance(const pl_placement *p, const double *load, double *out) {
  double max = 0, sum = 0;
  for (int g = 0; g < p->gpus; g++) {
    const int *host = p->host + (size_t)g * p->slots;
    double t = 0;
    for (int j = 0; j < p->nhost[g]; j++)
      t += load[host[j]] / p->nrep[host[j]];
    out[g] = t;
    sum += t;
    max = fmax(max, t);
  }
  return sum > 0 ? max * p->gpus / sum : 1.0;
}

int pl_plan_take_copy(pl_plan *plan, const pl_placement *src) {
  pl_placement *d = &plan->placement;
  int rc = PL_OK;
  if (!d->nrep || d->experts != src->experts || d->gpus != src->gpus || d->slots != src->slots) {
    pl_placement_fini(d); /* reused across plans when the shape matches */
    rc = pl_placement_init(d, src->experts, src->gpus, src->slots);
  }
  if (!rc)
    rc = pl_placement_copy(d, src);
  return rc;
}

int pl_backoff_take(pl_backoff *b) {
  if (pl_backoff_runs(b))
    return 1;
  b->skip--;
  return 0;
}

void pl_backoff_done(pl_backoff *b, int won, int cap) {
  b->miss = won ? 0 : b->miss + 1;
  b->skip = b->miss < cap ? b->miss : cap;
}

int pl_backoff_steps(const pl_backoff *b, int full, int capped) {
  return b->miss > 0 && capped > 0 ? capped : full;
}

int pl_tmemo_room(pl_tmemo *m, int n) {
  m->valid = 0;
  if (n > m->cap) {
    pl_temp *nt = pl_realloc(m->temp, (size_t)n * sizeof(pl_temp));
    if (!nt)
      return PL_ENOMEM;
    m->temp = nt;
    m->cap = n;
  }
  return PL_OK;
}

void pl_tmemo_fill(pl_tmemo *m, const pl_temps *t, int mode) {
  m->mode = mode;
  if (t->n > 0)
    memcpy(m->temp, t->temp, (size_t)t->n * sizeof(pl_temp));
  m->n = t->n;
  m->trials = t->trials;
  m->steps = t->steps;
  m->gain_us = t->gain_us;
  m->cost_us = t->cost_us;
  m->lo = t->hide_lo;
  m->hi = t->hide_hi;
  m->valid = 1;
}

void pl_tmemo_out(const pl_tmemo *m, pl_temps *out) {
  if (m->n > 0)
    memcpy(out->temp, m->temp, (size_t)m->n * sizeof(pl_temp));
  out->n = m->n;
  out->trials = m->trials;
  out->steps = m->steps;
  out->gain_us = m->gain_us;
  out->cost_us = m->cost_us;
  out->hide_lo = m->lo;
  out->hide_hi = m->hi;
}

void pl_tmemo_fini(pl_tmemo *m) {
  pl_free(m->temp);
  pl_placement_fini(&m->placement);
  memset(m, 0, sizeof(*m));
}
