/*
 * tr_fit.c - fitting the generator to a trace (method in tr_fit.h).
 *
 * Calibration runs generate one layer at a time, of the original's shape
 * (ranks, experts, top-k, tokens) and max(original length, 1000) iterations,
 * into memory, and measure it with tr_stats_compute. Updates per round, with
 * S = max/mean p50, C1, C10 = L1 change at lags 1 and 10, D = rank
 * divergence of the calibration run and S', C1', C10', D' of the target:
 *   scale  *= ((S' - 1) / (S - 1))^0.7       skew grows with the profile scale
 *   innov  *= (C1' / C1)^0.8                 step-to-step change ~ innovation
 *   1 - phi *= ((C10 / C1) / (C10' / C1'))^2 lag-10/lag-1 ratio grows with phi;
 *   psi += (C10'/C1') / (C10/C1) - 1 (halved)  once phi >= 0.97: trend
 *                                           persistence for ratios near or above
 *                                           sqrt(10), which a stationary AR(1)
 *                                           reaches only with a runaway variance;
 *                                           then, with the scale at its floor, phi
 *                                           comes down to bring the skew down
 *   rank_sigma *= D' / D                     rank divergence ~ rank noise
 * (multinomial sampling noise is part of every generated statistic, so the
 * calibration accounts for it).
 */
#include "traces/tr_fit.h"

#include <errno.h>
#include <gsl/gsl_sort.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "traces/tr_stats.h"

/* Calibration runs: a coarse phase of max(I, CAL_SHORT) iterations, then a
 * fine phase of CAL_LONG iterations from the coarse optimum. The long runs
 * matter: a layer whose skew is set by one dominant expert has a skew median
 * that wanders by ~7% between 2000-iteration runs (the AR(1) excursions of
 * that expert), and a fit tuned to one short run inherits that error. The
 * long run's buffer is capped at CAL_BYTES. */
#define CAL_SHORT 1000
#define CAL_LONG 8000
#define CAL_BYTES ((size_t)64 << 20)
#define SHORT_ROUNDS 25
#define LONG_ROUNDS 10

void tr_fit_fini(tr_fit *f) {
  if (!f)
    return;
  tr_free(f->base);
  tr_free(f->layer);
  memset(f, 0, sizeof(*f));
}

/* A tr_trace over caller-owned int64 counts (not freed by tr_close). */
static void wrap(tr_trace *t, const int64_t *counts, int64_t I, int L, int R, int E) {
  memset(t, 0, sizeof(*t));
  t->iterations = I;
  t->layers = L;
  t->ranks = R;
  t->experts = E;
  t->dtype = TR_INT64;
  t->data = (const unsigned char *)counts;
}

static void take(const tr_layer_stats *x, tr_fit_stats *s) {
  s->max_mean_p50 = x->max_mean_p50;
  s->change1 = x->change[0];
  s->change10 = x->change[1];
  s->rank_div = x->rank_divergence;
}

int tr_fit_measure(const tr_trace *t, tr_fit_stats *per_layer) {
  tr_stats s;
  int rc = tr_stats_compute(t, 0, -1, &s);
  if (rc)
    return rc;
  for (int l = 0; l < s.layers; l++)
    take(&s.layer[l], &per_layer[l]);
  tr_stats_fini(&s);
  return TR_OK;
}

static double rel(double got, double want) {
  if (!isfinite(got) || !isfinite(want))
    return isfinite(got) == isfinite(want) ? 0 : INFINITY;
  return want != 0 ? fabs(got / want - 1) : fabs(got);
}

/* Largest relative error of the three matched statistics. */
static double fit_err(const tr_fit_stats *g, const tr_fit_stats *w) {
  double e = rel(g->max_mean_p50, w->max_mean_p50);
  double e1 = rel(g->change1, w->change1), e10 = rel(g->change10, w->change10);
  return fmax(e, fmax(e1, e10));
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One calibration run of layer l's parameters into *out. */
static int simulate(const tr_fit *f, int l, const tr_fit_layer *p, int64_t iters,
                    uint64_t seed, int64_t *buf, tr_fit_stats *out) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.iterations = iters;
  c.layers = 1;
  c.ranks = f->ranks;
  c.experts = f->experts;
  c.top_k = f->top_k;
  c.tokens_per_rank = f->tokens_per_rank;
  c.rank_total_sigma = f->rank_total_sigma;
  c.seed = seed;
  c.base = f->base + (size_t)l * f->experts;
  c.scale1 = p->scale;
  c.innov1 = p->innov;
  c.phi1 = p->phi;
  c.rank_sigma1 = p->rank_sigma;
  c.psi1 = p->psi;
  tr_gen *g;
  int rc = tr_gen_new(&c, &g);
  if (rc)
    return rc;
  size_t n = (size_t)f->ranks * f->experts;
  for (int64_t i = 0; i < c.iterations; i++)
    tr_gen_next(g, buf + (size_t)i * n);
  tr_gen_free(g);
  tr_trace t;
  wrap(&t, buf, c.iterations, 1, f->ranks, f->experts);
  tr_stats s;
  if ((rc = tr_stats_compute(&t, 0, -1, &s)))
    return rc;
  take(&s.layer[0], out);
  tr_stats_fini(&s);
  return TR_OK;
}

int tr_fit_trace(const tr_trace *t, int64_t it0, int64_t it1, uint64_t seed, tr_fit *f) {
  if (!t || !f)
    return TR_EINVAL;
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (it0 < 0 || it0 >= it1 || it1 - it0 < 12)
    return TR_EINVAL; /* lag 10 needs a few iterations */
  memset(f, 0, sizeof(*f));
  const int L = t->layers, R = t->ranks, E = t->experts;
  const int64_t I = it1 - it0;
  int rc = TR_ENOMEM;
  tr_stats st = {0};
  int64_t *slice = NULL, *buf = NULL;
  double *mean = NULL;
  f->layers = L;
  f->ranks = R;
  f->experts = E;
  f->iterations = I;
  f->meta = t->meta;
  f->hash = t->hash;
  snprintf(f->source, sizeof(f->source), "%s", t->path);
  f->base = tr_calloc((size_t)L * E, sizeof(double));
  f->layer = tr_calloc((size_t)L, sizeof(tr_fit_layer));
  slice = tr_malloc((size_t)R * E * sizeof(int64_t));
  mean = tr_calloc((size_t)E, sizeof(double));
  if (!f->base || !f->layer || !slice || !mean)
    goto fail;
  if ((rc = tr_stats_compute(t, it0, it1, &st)))
    goto fail;
  /* sizes of the model: tokens per rank from the sidecar, else the data */
  f->top_k = t->meta.top_k > 0 ? t->meta.top_k : 1;
  double slots = (double)(st.tokens_min + st.tokens_max) / 2 / R;
  double tokens = t->meta.tokens_per_rank > 0 ? (double)t->meta.tokens_per_rank
                                              : round(slots / f->top_k);
  if (!(tokens >= 1 && tokens <= (double)tr_limits[TR_LIM_TOKENS_PER_RANK].hi)) {
    rc = TR_EINVAL; /* an empty trace, or more than any rank routes: no model to fit */
    goto fail;
  }
  f->tokens_per_rank = (int64_t)tokens;
  double cv = 0;
  for (int l = 0; l < L; l++)
    cv += st.layer[l].rank_total_cv / L;
  f->rank_total_sigma = cv > 0.01 ? cv : 0;
  /* base profiles: log of the mean share */
  for (int l = 0; l < L; l++) {
    memset(mean, 0, (size_t)E * sizeof(double));
    int64_t used = 0;
    for (int64_t it = it0; it < it1; it++) {
      tr_slice(t, it, l, slice);
      double tot = 0;
      for (int k = 0; k < R * E; k++)
        tot += (double)slice[k];
      if (tot <= 0)
        continue;
      used++;
      for (int r = 0; r < R; r++)
        for (int e = 0; e < E; e++)
          mean[e] += (double)slice[(size_t)r * E + e] / tot;
    }
    double avg = 0, *b = f->base + (size_t)l * E;
    for (int e = 0; e < E; e++) {
      b[e] = log(fmax(mean[e] / (used ? used : 1), 1e-6));
      avg += b[e] / E;
    }
    for (int e = 0; e < E; e++)
      b[e] -= avg;
    take(&st.layer[l], &f->layer[l].target);
  }
  int64_t per_iter = (int64_t)R * E * (int64_t)sizeof(int64_t);
  int64_t short_iters = I > CAL_SHORT ? I : CAL_SHORT;
  int64_t long_iters = (int64_t)(CAL_BYTES / (size_t)per_iter);
  if (long_iters > CAL_LONG)
    long_iters = CAL_LONG;
  if (long_iters < short_iters)
    long_iters = short_iters;
  f->cal_iterations = long_iters;
  buf = tr_malloc((size_t)long_iters * (size_t)per_iter);
  if (!buf) {
    rc = TR_ENOMEM;
    goto fail;
  }
  for (int l = 0; l < L; l++) {
    tr_fit_layer *fl = &f->layer[l];
    const tr_fit_stats *w = &fl->target;
    tr_fit_layer p = {.scale = 1, .innov = 0.1, .phi = 0.9, .rank_sigma = 0.1};
    tr_fit_layer best = p;
    int rounds = 0;
    for (int phase = 0; phase < 2; phase++) {
      int64_t iters = phase == 0 ? short_iters : long_iters;
      int max_rounds = phase == 0 ? SHORT_ROUNDS : LONG_ROUNDS;
      double best_err = INFINITY, gain = 1, done = phase == 0 ? 0.02 : 0.01;
      p = best;
      for (int round = 0; round < max_rounds; round++, rounds++) {
        tr_fit_stats g;
        if ((rc = simulate(f, l, &p, iters, seed, buf, &g)))
          goto fail;
        double err = fit_err(&g, w);
        if (err < best_err) {
          best_err = err;
          best = p;
          best.fitted = g;
        }
        if (err < done && rel(g.rank_div, w->rank_div) < 0.05)
          break;
        if (err > 1.5 * best_err) { /* diverging: restart from the best, smaller steps */
          p = best;
          g = best.fitted;
          gain *= 0.5;
        }
        if (g.max_mean_p50 > 1.0001 && w->max_mean_p50 > 1)
          p.scale *= pow((w->max_mean_p50 - 1) / (g.max_mean_p50 - 1), 0.7 * gain);
        if (g.change1 > 0 && w->change1 > 0)
          p.innov *= pow(w->change1 / g.change1, 0.8 * gain);
        if (g.change1 > 0 && w->change1 > 0 && g.change10 > 0 && w->change10 > 0) {
          /* The lag-10/lag-1 ratio: phi up to 0.99 (AR(1)), then trend
           * persistence psi once phi is high (raising phi further inflates the
           * stationary variance and with it the skew). */
          double ratio = (g.change10 / g.change1) / (w->change10 / w->change1);
          if (p.psi > 0 || (p.phi >= 0.97 && ratio < 1)) {
            p.psi = clampd(p.psi + 0.5 * gain * (1 / ratio - 1), 0, 0.9);
            /* the profile scale at its floor cannot lower the skew: lower the
             * logits' stationary variance through phi, psi keeps the ratio */
            if (p.scale <= 0.05 && g.max_mean_p50 > w->max_mean_p50 && w->max_mean_p50 > 1)
              p.phi = 1 - clampd((1 - p.phi) * pow((g.max_mean_p50 - 1) / (w->max_mean_p50 - 1),
                                                   gain),
                                 0.01, 1.0);
          } else {
            double u = (1 - p.phi) * pow(ratio, 2.0 * gain);
            p.phi = 1 - clampd(u, 0.01, 1.0);
          }
        }
        if (g.rank_div > 0 && w->rank_div > 0)
          p.rank_sigma *= pow(w->rank_div / g.rank_div, gain);
        p.scale = clampd(p.scale, 0.02, 20);
        p.innov = clampd(p.innov, 1e-4, 5);
        p.rank_sigma = clampd(p.rank_sigma, 1e-4, 5);
      }
    }
    if (rounds > f->rounds)
      f->rounds = rounds;
    fl->scale = best.scale;
    fl->innov = best.innov;
    fl->phi = best.phi;
    fl->rank_sigma = best.rank_sigma;
    fl->psi = best.psi;
    fl->fitted = best.fitted;
  }
  rc = TR_OK;
fail:
  tr_stats_fini(&st);
  tr_free(buf);
  tr_free(mean);
  tr_free(slice);
  if (rc)
    tr_fit_fini(f);
  return rc;
}

/* ---- FIT.json --------------------------------------------------------------- */

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *stats_obj(const tr_fit_stats *s) {
  json_t *o = json_object();
  json_object_set_new(o, "max_mean_p50", jnum(s->max_mean_p50));
  json_object_set_new(o, "change_l1_lag1", jnum(s->change1));
  json_object_set_new(o, "change_l1_lag10", jnum(s->change10));
  json_object_set_new(o, "rank_divergence_l1", jnum(s->rank_div));
  return o;
}

int tr_fit_save(const tr_fit *f, const char *path, tr_error *err) {
  json_t *o = json_object();
  json_object_set_new(o, "version", json_integer(1));
  json_object_set_new(o, "model", json_string("flexmoe-ar1-logits"));
  json_object_set_new(o, "source", json_string(f->source));
  char h[32];
  snprintf(h, sizeof(h), "%016" PRIx64, f->hash);
  json_object_set_new(o, "source_hash", json_string(h));
  json_object_set_new(o, "iterations", json_integer(f->iterations));
  json_object_set_new(o, "layers", json_integer(f->layers));
  json_object_set_new(o, "ranks", json_integer(f->ranks));
  json_object_set_new(o, "experts", json_integer(f->experts));
  json_object_set_new(o, "top_k", json_integer(f->top_k));
  json_object_set_new(o, "tokens_per_rank", json_integer(f->tokens_per_rank));
  json_object_set_new(o, "rank_total_sigma", json_real(f->rank_total_sigma));
  json_object_set_new(o, "d_model", json_integer(f->meta.d_model));
  json_object_set_new(o, "d_ff", json_integer(f->meta.d_ff));
  json_object_set_new(o, "bytes_per_elem", json_integer(f->meta.bytes_per_elem));
  json_object_set_new(o, "calibration_iterations", json_integer(f->cal_iterations));
  json_object_set_new(o, "calibration_rounds", json_integer(f->rounds));
  json_t *layers = json_array();
  for (int l = 0; l < f->layers; l++) {
    const tr_fit_layer *x = &f->layer[l];
    json_t *j = json_object();
    json_object_set_new(j, "layer", json_integer(l));
    json_object_set_new(j, "scale", json_real(x->scale));
    json_object_set_new(j, "innov", json_real(x->innov));
    json_object_set_new(j, "phi", json_real(x->phi));
    json_object_set_new(j, "rank_sigma", json_real(x->rank_sigma));
    json_object_set_new(j, "psi", json_real(x->psi));
    json_object_set_new(j, "target", stats_obj(&x->target));
    json_object_set_new(j, "fitted", stats_obj(&x->fitted));
    json_t *b = json_array();
    for (int e = 0; e < f->experts; e++)
      json_array_append_new(b, json_real(f->base[(size_t)l * f->experts + e]));
    json_object_set_new(j, "base", b);
    json_array_append_new(layers, j);
  }
  json_object_set_new(o, "per_layer", layers);
  char tmp[600];
  snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
  int rc = TR_OK;
  int fd = mkstemp(tmp);
  FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!fp) {
    if (fd >= 0) {
      close(fd);
      unlink(tmp);
    }
    rc = tr_seterr(err, TR_EWRITE, path, 0, "cannot create: %s", strerror(errno));
  } else {
    int bad = json_dumpf(o, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    bad |= fputc('\n', fp) == EOF;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path) != 0) {
      unlink(tmp);
      rc = tr_seterr(err, TR_EWRITE, path, 0, "cannot write: %s", strerror(errno));
    }
  }
  json_decref(o);
  return rc;
}

static int get_num(json_t *o, const char *key, double *v) {
  json_t *x = json_object_get(o, key);
  if (!json_is_number(x))
    return -1;
  *v = json_number_value(x);
  return 0;
}

int tr_fit_load(tr_fit *f, const char *path, tr_error *err) {
  if (err)
    memset(err, 0, sizeof(*err));
  memset(f, 0, sizeof(*f));
  if (access(path, F_OK) != 0)
    return tr_seterr(err, TR_ENOENT, path, 0, "cannot open: %s", strerror(errno));
  json_error_t je;
  json_t *o = json_load_file(path, 0, &je);
  if (!o)
    return tr_seterr(err, TR_EMETA, path, je.line > 0 ? je.line : 0, "malformed JSON: %s",
                     je.text);
  int rc = TR_EMETA;
  const char *what = "";
  double v;
  json_t *pl = json_object_get(o, "per_layer");
  /* Sizes within their physical ranges (tr_limits); top_k at most experts. */
  static const tr_limit_id ints[] = {TR_LIM_LAYERS, TR_LIM_RANKS, TR_LIM_EXPERTS, TR_LIM_TOP_K,
                                     TR_LIM_TOKENS_PER_RANK, TR_LIM_ITERATIONS};
  int64_t iv[6] = {0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 6; i++) {
    const tr_limit *l = &tr_limits[ints[i]];
    int64_t hi = ints[i] == TR_LIM_TOP_K && iv[2] < l->hi ? iv[2] : l->hi;
    json_t *x = json_object_get(o, l->name);
    if (!json_is_integer(x) || json_integer_value(x) < l->lo || json_integer_value(x) > hi) {
      rc = tr_seterr(err, TR_EMETA, path, 0,
                     "not a flexmoe fit file: '%s' must be an integer between %" PRId64
                     " and %" PRId64 "%s",
                     l->name, l->lo, hi, hi < l->hi ? " (its experts)" : "");
      goto fail;
    }
    iv[i] = json_integer_value(x);
  }
  f->layers = (int)iv[0];
  f->ranks = (int)iv[1];
  f->experts = (int)iv[2];
  f->top_k = (int)iv[3];
  f->tokens_per_rank = iv[4];
  f->iterations = iv[5];
  if (!get_num(o, "rank_total_sigma", &v))
    f->rank_total_sigma = v;
  json_t *s = json_object_get(o, "source");
  if (json_is_string(s))
    snprintf(f->source, sizeof(f->source), "%s", json_string_value(s));
  const struct {
    tr_limit_id id;
    int *dst;
  } model[] = {{TR_LIM_D_MODEL, &f->meta.d_model},
               {TR_LIM_D_FF, &f->meta.d_ff},
               {TR_LIM_BYTES_PER_ELEM, &f->meta.bytes_per_elem}};
  for (size_t i = 0; i < sizeof(model) / sizeof(model[0]); i++) {
    const tr_limit *l = &tr_limits[model[i].id];
    json_t *x = json_object_get(o, l->name);
    if (!x || json_is_null(x))
      continue;
    int64_t m = json_is_integer(x) ? json_integer_value(x) : -1;
    if (m != 0 && (m < l->lo || m > l->hi)) {
      rc = tr_seterr(err, TR_EMETA, path, 0,
                     "'%s' must be an integer between %" PRId64 " and %" PRId64 " (0: unknown)",
                     l->name, l->lo, l->hi);
      goto fail;
    }
    *model[i].dst = (int)m;
  }
  if (!json_is_array(pl) || json_array_size(pl) != (size_t)f->layers) {
    what = "per_layer";
    goto bad;
  }
  f->base = tr_calloc((size_t)f->layers * f->experts, sizeof(double));
  f->layer = tr_calloc((size_t)f->layers, sizeof(tr_fit_layer));
  if (!f->base || !f->layer) {
    rc = tr_seterr(err, TR_ENOMEM, path, 0, "out of memory");
    goto fail;
  }
  for (int l = 0; l < f->layers; l++) {
    json_t *j = json_array_get(pl, (size_t)l), *b = json_object_get(j, "base");
    tr_fit_layer *fl = &f->layer[l];
    if (get_num(j, "scale", &fl->scale) || get_num(j, "innov", &fl->innov) ||
        get_num(j, "phi", &fl->phi) || get_num(j, "rank_sigma", &fl->rank_sigma) ||
        fl->innov < 0 || fl->phi < 0 || fl->phi > 1 || fl->rank_sigma < 0 ||
        (json_object_get(j, "psi") && get_num(j, "psi", &fl->psi)) || fl->psi < 0 ||
        fl->psi >= 1 ||
        !json_is_array(b) || json_array_size(b) != (size_t)f->experts) {
      what = "per_layer";
      goto bad;
    }
    for (int e = 0; e < f->experts; e++) {
      json_t *be = json_array_get(b, (size_t)e);
      if (!json_is_number(be)) {
        what = "per_layer base";
        goto bad;
      }
      f->base[(size_t)l * f->experts + e] = json_number_value(be);
    }
  }
  json_decref(o);
  return TR_OK;
bad:
  rc = tr_seterr(err, TR_EMETA, path, 0, "not a flexmoe fit file: '%s' is missing or invalid",
                 what);
fail:
  json_decref(o);
  tr_fit_fini(f);
  return rc;
}

int tr_fit_apply(const tr_fit *f, tr_gen_config *c, double **owned) {
  if (!f || !c || !owned || c->layers < 1 || c->experts < 1)
    return TR_EINVAL;
  int L = c->layers, E = c->experts, FE = f->experts;
  uint64_t bytes = tr_mul_sat(tr_mul_sat((uint64_t)L, (uint64_t)E) + 5 * (uint64_t)L + (uint64_t)FE,
                              sizeof(double));
  if (tr_add_sat(bytes, tr_gen_memory(c)) > tr_max_memory(c->max_memory))
    return TR_EBUDGET; /* the model and the generator it feeds, over the budget */
  double *m = tr_malloc((size_t)bytes);
  if (!m)
    return TR_ENOMEM;
  double *base = m, *scale = base + (size_t)L * E, *innov = scale + L, *phi = innov + L,
         *rs = phi + L, *psi = rs + L, *sorted = psi + L;
  for (int l = 0; l < L; l++) {
    int fl = l % f->layers;
    const double *b = f->base + (size_t)fl * FE;
    scale[l] = f->layer[fl].scale;
    innov[l] = f->layer[fl].innov;
    phi[l] = f->layer[fl].phi;
    rs[l] = f->layer[fl].rank_sigma;
    psi[l] = f->layer[fl].psi;
    if (E == FE) {
      memcpy(base + (size_t)l * E, b, (size_t)E * sizeof(double));
      continue;
    }
    /* Another expert count: the profile's quantiles, hottest first, laid
     * over the ids with a golden-ratio stride so hot experts do not sit on
     * neighbouring ids (which static placement would put on one GPU). */
    memcpy(sorted, b, (size_t)FE * sizeof(double));
    gsl_sort(sorted, 1, (size_t)FE);
    int stride = (int)(0.618 * E) > 0 ? (int)(0.618 * E) : 1;
    while (gcd(stride, E) != 1)
      stride++;
    for (int k = 0; k < E; k++) {
      double q = (E - 1 - k + 0.5) / E * FE - 0.5; /* k = 0: the hottest */
      if (q < 0)
        q = 0;
      int i = (int)floor(q);
      double w = q - i, lo = sorted[i], hi = sorted[i + 1 < FE ? i + 1 : FE - 1];
      base[(size_t)l * E + (size_t)((int64_t)k * stride % E)] = lo + (hi - lo) * w;
    }
  }
  c->base = base;
  c->scale = scale;
  c->innov = innov;
  c->phi = phi;
  c->rank_sigma = rs;
  c->psi = psi;
  if (c->top_k <= 0)
    c->top_k = f->top_k;
  if (c->tokens_per_rank <= 0)
    c->tokens_per_rank = f->tokens_per_rank;
  c->rank_total_sigma = f->rank_total_sigma;
  *owned = m;
  return TR_OK;
}
