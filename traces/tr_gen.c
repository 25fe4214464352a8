/*
 * tr_gen.c - synthetic routing traces (model and streams in tr_gen.h).
 *
 * The generator holds, per layer, the base profile, the AR(1) state of the
 * logits and the remaining length of each expert's burst; it produces one
 * (iteration, layer) slice at a time, so a trace of any length streams to
 * disk in constant memory.
 */
#include "traces/tr_gen.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "traces/tr_rescale.h"

struct tr_gen {
  tr_gen_config c;
  double *base, *scale, *innov, *phi, *rank_sigma, *psi; /* owned copies */
  double *vol_ratio, *vol_enter, *vol_leave, *vol_sigma; /* owned copies [L] */
  unsigned char *regime;                            /* [L] 1: burst regime */
  double *z, *v;                                    /* [L*E] logit state, velocity */
  int *burst;                                       /* [L*E] iterations left */
  int64_t *slots;                                   /* [R] slots per rank */
  double *y, *x, *p;                                /* [E] scratch */
  double *eta;                                      /* [R*E] rank noise */
  unsigned int *n;                                  /* [E] */
  size_t *perm;                                     /* [E] */
  gsl_rng *prof, **dyn, *draw;
  int64_t t;
  int l;
};

const char *const tr_gen_patterns[] = {"balanced",          "hot-experts",
                                       "spread-hot-experts", "hot-rank",
                                       "source-ragged",      "zero-expert-rank",
                                       "rotating-hotspot",   "burst",
                                       "drift",              "regime-switch",
                                       "realistic",          NULL};
const char *const tr_gen_pattern_help[] = {
    "uniform popularity, small stationary noise",
    "E/8 hot experts with contiguous ids (one GPU under static placement), 8x popular",
    "E/8 hot experts spread evenly over the ids (different GPUs)",
    "rank 0 sends half of its slots to E/8 experts the other ranks use normally",
    "ranks route different numbers of tokens (log-normal totals, sigma 0.5)",
    "rank 0 routes nothing to the upper half of the experts; the last expert gets nothing",
    "E/8 hot experts that move by one expert every 10 iterations",
    "log-normal popularity; experts burst to 16x popularity for 3 iterations",
    "log-normal popularity drifting as a random walk on the logits",
    "log-normal popularity re-shuffled every 100 iterations",
    "log-normal popularity (sigma 1) with mean-reverting fluctuation (AR(1), phi 0.95)",
    NULL};

void tr_gen_defaults(tr_gen_config *c) {
  memset(c, 0, sizeof(*c));
  c->iterations = 100;
  c->layers = 4;
  c->ranks = 8;
  c->experts = 16;
  c->top_k = 2;
  c->tokens_per_rank = 1024;
  c->seed = 1;
  c->dist = TR_DIST_UNIFORM;
  c->dist_param = 1;
  c->scale1 = 1;
  c->phi1 = 0.9;
  c->vol_ratio1 = 1;
  c->hot_boost = log(8.0);
  c->burst_boost = log(16.0);
  c->burst_len = 3;
  c->hot_rank = -1;
  c->hot_rank_share = 0.5;
  c->zero_rank = -1;
}

int tr_gen_pattern(tr_gen_config *c, const char *name) {
  int E = c->experts, hot = E / 8 > 1 ? E / 8 : 1;
  if (!name)
    return TR_EINVAL;
  if (strcmp(name, "balanced") == 0) {
    c->dist = TR_DIST_UNIFORM;
    c->innov1 = 0.02;
    c->phi1 = 0.9;
  } else if (strcmp(name, "hot-experts") == 0 || strcmp(name, "spread-hot-experts") == 0 ||
             strcmp(name, "rotating-hotspot") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.3;
    c->innov1 = 0.05;
    c->phi1 = 0.9;
    c->hot = hot;
    c->hot_boost = log(8.0);
    c->hot_layout = name[0] == 's' ? TR_HOT_SPREAD : TR_HOT_BLOCK;
    c->rotate_period = name[0] == 'r' ? 10 : 0;
  } else if (strcmp(name, "hot-rank") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.3;
    c->innov1 = 0.05;
    c->hot_rank = 0;
    c->hot_rank_experts = hot;
    c->hot_rank_share = 0.5;
  } else if (strcmp(name, "source-ragged") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.5;
    c->innov1 = 0.05;
    c->rank_total_sigma = 0.5;
  } else if (strcmp(name, "zero-expert-rank") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.5;
    c->innov1 = 0.05;
    c->zero_rank = 0;
    c->zero_experts = 1;
  } else if (strcmp(name, "burst") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.5;
    c->innov1 = 0.03;
    c->burst_prob = 0.005;
    c->burst_boost = log(16.0);
    c->burst_len = 3;
  } else if (strcmp(name, "drift") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.7;
    c->innov1 = 0.05;
    c->phi1 = 1.0;
  } else if (strcmp(name, "regime-switch") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 0.8;
    c->innov1 = 0.03;
    c->regime_period = 100;
  } else if (strcmp(name, "realistic") == 0) {
    c->dist = TR_DIST_LOGNORMAL;
    c->dist_param = 1.0;
    c->innov1 = 0.15;
    c->phi1 = 0.95;
    c->rank_sigma1 = 0.2;
  } else {
    return TR_EINVAL;
  }
  return TR_OK;
}

void tr_gen_free(tr_gen *g) {
  if (!g)
    return;
  if (g->dyn)
    for (int l = 0; l < g->c.layers; l++)
      if (g->dyn[l])
        gsl_rng_free(g->dyn[l]);
  tr_free(g->dyn);
  if (g->prof)
    gsl_rng_free(g->prof);
  if (g->draw)
    gsl_rng_free(g->draw);
  tr_free(g->base);
  tr_free(g->scale);
  tr_free(g->innov);
  tr_free(g->phi);
  tr_free(g->rank_sigma);
  tr_free(g->psi);
  tr_free(g->vol_ratio);
  tr_free(g->vol_enter);
  tr_free(g->vol_leave);
  tr_free(g->vol_sigma);
  tr_free(g->regime);
  tr_free(g->z);
  tr_free(g->v);
  tr_free(g->burst);
  tr_free(g->slots);
  tr_free(g->y);
  tr_free(g->eta);
  tr_free(g->n);
  tr_free(g->perm);
  tr_free(g);
}

static void draw_profile(tr_gen *g, double *b) {
  const tr_gen_config *c = &g->c;
  int E = c->experts;
  switch (c->dist) {
  case TR_DIST_ZIPF:
    for (int e = 0; e < E; e++)
      g->perm[e] = (size_t)e;
    gsl_ran_shuffle(g->prof, g->perm, (size_t)E, sizeof(size_t));
    for (int i = 0; i < E; i++)
      b[g->perm[i]] = -c->dist_param * log(i + 1.0);
    break;
  case TR_DIST_LOGNORMAL:
    for (int e = 0; e < E; e++)
      b[e] = gsl_ran_gaussian(g->prof, c->dist_param);
    break;
  case TR_DIST_DIRICHLET: {
    double *alpha = g->x, *theta = g->p;
    for (int e = 0; e < E; e++)
      alpha[e] = c->dist_param;
    gsl_ran_dirichlet(g->prof, (size_t)E, alpha, theta);
    for (int e = 0; e < E; e++)
      b[e] = log(theta[e] + 1e-12);
    break;
  }
  default:
    for (int e = 0; e < E; e++)
      b[e] = 0;
  }
}

static double *copy_or_fill(const double *src, int n, double v) {
  double *d = tr_malloc((size_t)n * sizeof(double));
  if (d)
    for (int i = 0; i < n; i++)
      d[i] = src ? src[i] : v;
  return d;
}

/* gsl_rng_mt19937's state (624 words and an index) and the gsl_rng around it. */
#define GEN_RNG_BYTES 5120

uint64_t tr_gen_memory(const tr_gen_config *c) {
  uint64_t L = c->layers > 0 ? (uint64_t)c->layers : 0, R = c->ranks > 0 ? (uint64_t)c->ranks : 0,
           E = c->experts > 0 ? (uint64_t)c->experts : 0;
  uint64_t le = tr_mul_sat(L, E), re = tr_mul_sat(R, E);
  uint64_t need = tr_mul_sat(le, 3 * sizeof(double) + sizeof(int)); /* base, z, v, burst */
  need = tr_add_sat(need, tr_mul_sat(re, 2 * sizeof(double)));     /* eta, output slice */
  need = tr_add_sat(need, tr_mul_sat(L, 9 * sizeof(double) + 1 + sizeof(gsl_rng *) +
                                            GEN_RNG_BYTES));
  need = tr_add_sat(need, tr_mul_sat(R, sizeof(int64_t)));
  need = tr_add_sat(need, tr_mul_sat(E, 3 * sizeof(double) + sizeof(unsigned) + sizeof(size_t)));
  return tr_add_sat(need, sizeof(tr_gen) + 2 * GEN_RNG_BYTES);
}

/* The sizes of c within their physical ranges (tr_limits; tokens_per_rank
 * may also be 0: nothing routed), the model numbers of c->meta too. TR_OK
 * or TR_EINVAL with err naming the field and its range. */
static int check_sizes(const tr_gen_config *c, const char *path, tr_error *err) {
  const struct {
    tr_limit_id id;
    int64_t v, hi;
  } f[] = {{TR_LIM_ITERATIONS, c->iterations, tr_limits[TR_LIM_ITERATIONS].hi},
           {TR_LIM_LAYERS, c->layers, tr_limits[TR_LIM_LAYERS].hi},
           {TR_LIM_RANKS, c->ranks, tr_limits[TR_LIM_RANKS].hi},
           {TR_LIM_EXPERTS, c->experts, tr_limits[TR_LIM_EXPERTS].hi},
           {TR_LIM_TOP_K, c->top_k, c->experts < tr_limits[TR_LIM_TOP_K].hi && c->experts > 0
                                        ? c->experts : tr_limits[TR_LIM_TOP_K].hi},
           {TR_LIM_TOKENS_PER_RANK, c->tokens_per_rank, tr_limits[TR_LIM_TOKENS_PER_RANK].hi}};
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    int64_t lo = f[i].id == TR_LIM_TOKENS_PER_RANK ? 0 : tr_limits[f[i].id].lo;
    if (f[i].v < lo || f[i].v > f[i].hi)
      return tr_seterr(err, TR_EINVAL, path, 0,
                       "%s %" PRId64 " is out of range: it must be between %" PRId64
                       " and %" PRId64 "%s",
                       tr_limits[f[i].id].name, f[i].v, lo, f[i].hi,
                       f[i].id == TR_LIM_TOP_K && f[i].hi == c->experts ? " (the experts)" : "");
  }
  return tr_check_meta(&c->meta, c->experts, TR_EINVAL, path, err);
}

/* Whether c is a configuration tr_gen_new accepts (tr_gen.h): the sizes
 * (check_sizes) and every parameter, each layer's too, in its range. */
static int config_valid(const tr_gen_config *c) {
  if (check_sizes(c, NULL, NULL) || c->hot < 0 || c->hot > c->experts || c->zero_experts < 0 ||
      c->zero_experts >= c->experts || c->burst_prob < 0 || c->burst_prob > 1 ||
      c->hot_rank >= c->ranks || c->zero_rank >= c->ranks || c->hot_rank_experts < 0 ||
      c->hot_rank_experts > c->experts)
    return 0;
  for (int l = 0; l < c->layers; l++) {
    double phi = c->phi ? c->phi[l] : c->phi1, psi = c->psi ? c->psi[l] : c->psi1;
    double vr = c->vol_ratio ? c->vol_ratio[l] : c->vol_ratio1;
    double ve = c->vol_enter ? c->vol_enter[l] : c->vol_enter1;
    double vl = c->vol_leave ? c->vol_leave[l] : c->vol_leave1;
    double vs = c->vol_sigma ? c->vol_sigma[l] : c->vol_sigma1;
    if (!(phi >= 0 && phi <= 1) || !(psi >= 0 && psi < 1) || !(vr >= 1 && vr <= 100) ||
        !(ve >= 0 && ve <= 1) || !(vl >= 0 && vl <= 1) || !(vs >= 0 && vs <= 5))
      return 0;
  }
  return 1;
}

/* A generator of c with its own copies of c's per-layer arrays (filled
 * from the scalars where c has none), its state and scratch allocated and
 * its generators seeded; NULL when out of memory. */
static tr_gen *gen_alloc(const tr_gen_config *c) {
  int L = c->layers, R = c->ranks, E = c->experts;
  tr_gen *g = tr_calloc(1, sizeof(*g));
  if (!g)
    return NULL;
  g->c = *c;
  g->c.base = g->c.scale = g->c.innov = g->c.phi = g->c.rank_sigma = g->c.psi = NULL;
  g->c.vol_ratio = g->c.vol_enter = g->c.vol_leave = g->c.vol_sigma = NULL;
  g->base = tr_malloc((size_t)L * E * sizeof(double));
  g->scale = copy_or_fill(c->scale, L, c->scale1);
  g->innov = copy_or_fill(c->innov, L, c->innov1);
  g->phi = copy_or_fill(c->phi, L, c->phi1);
  g->rank_sigma = copy_or_fill(c->rank_sigma, L, c->rank_sigma1);
  g->psi = copy_or_fill(c->psi, L, c->psi1);
  g->vol_ratio = copy_or_fill(c->vol_ratio, L, c->vol_ratio1);
  g->vol_enter = copy_or_fill(c->vol_enter, L, c->vol_enter1);
  g->vol_leave = copy_or_fill(c->vol_leave, L, c->vol_leave1);
  g->vol_sigma = copy_or_fill(c->vol_sigma, L, c->vol_sigma1);
  g->regime = tr_calloc((size_t)L, 1);
  g->z = tr_calloc((size_t)L * E, sizeof(double));
  g->v = tr_calloc((size_t)L * E, sizeof(double));
  g->burst = tr_calloc((size_t)L * E, sizeof(int));
  g->slots = tr_malloc((size_t)R * sizeof(int64_t));
  g->y = tr_malloc((size_t)E * 3 * sizeof(double));
  g->eta = tr_calloc((size_t)R * E, sizeof(double));
  g->n = tr_malloc((size_t)E * sizeof(unsigned int));
  g->perm = tr_malloc((size_t)E * sizeof(size_t));
  g->dyn = tr_calloc((size_t)L, sizeof(gsl_rng *));
  g->prof = gsl_rng_alloc(gsl_rng_mt19937);
  g->draw = gsl_rng_alloc(gsl_rng_mt19937);
  if (!g->base || !g->scale || !g->innov || !g->phi || !g->rank_sigma || !g->psi || !g->vol_ratio ||
      !g->vol_enter || !g->vol_leave || !g->vol_sigma || !g->regime || !g->z || !g->v || !g->burst ||
      !g->slots || !g->y || !g->eta || !g->n || !g->perm || !g->dyn || !g->prof || !g->draw)
    goto nomem;
  g->x = g->y + E;
  g->p = g->y + 2 * E;
  for (int l = 0; l < L; l++) {
    g->dyn[l] = gsl_rng_alloc(gsl_rng_mt19937);
    if (!g->dyn[l])
      goto nomem;
    gsl_rng_set(g->dyn[l], (unsigned long)tr_stream_seed(c->seed, 2, (uint64_t)l));
  }
  gsl_rng_set(g->prof, (unsigned long)tr_stream_seed(c->seed, 1, 0));
  return g;
nomem:
  tr_gen_free(g);
  return NULL;
}

/* The stationary start of each layer's regime chain and AR(1) state (a
 * random walk starts at 0). */
static void gen_start(tr_gen *g) {
  int E = g->c.experts;
  for (int l = 0; l < g->c.layers; l++) {
    double sd = g->innov[l];
    if (g->vol_ratio[l] != 1) {
      double enter = g->vol_enter[l], leave = g->vol_leave[l];
      double pi1 = enter + leave > 0 ? enter / (enter + leave) : 0;
      g->regime[l] = gsl_rng_uniform(g->dyn[l]) < pi1;
      sd *= sqrt(1 - pi1 + pi1 * g->vol_ratio[l] * g->vol_ratio[l]);
    }
    if (g->vol_sigma[l] > 0) /* E[factor^2] = exp(vol_sigma^2) */
      sd *= exp(g->vol_sigma[l] * g->vol_sigma[l] / 2);
    if (g->phi[l] < 1 && g->innov[l] > 0)
      for (int e = 0; e < E; e++)
        g->z[(size_t)l * E + e] = gsl_ran_gaussian(g->dyn[l], sd / sqrt(1 - g->phi[l] * g->phi[l]));
  }
}

int tr_gen_new(const tr_gen_config *c, tr_gen **out) {
  if (!c || !out || !config_valid(c))
    return TR_EINVAL;
  if (tr_gen_memory(c) > tr_max_memory(c->max_memory))
    return TR_EBUDGET;
  int L = c->layers, R = c->ranks, E = c->experts;
  tr_gen *g = gen_alloc(c);
  if (!g)
    return TR_ENOMEM;
  for (int l = 0; l < L; l++) {
    if (c->base)
      memcpy(g->base + (size_t)l * E, c->base + (size_t)l * E, (size_t)E * sizeof(double));
    else
      draw_profile(g, g->base + (size_t)l * E);
  }
  for (int r = 0; r < R; r++) {
    double w = c->rank_total_sigma > 0
                   ? exp(gsl_ran_gaussian(g->prof, c->rank_total_sigma) -
                         c->rank_total_sigma * c->rank_total_sigma / 2)
                   : 1.0;
    double tokens = (double)c->tokens_per_rank * w;
    if (!(tokens * c->top_k <= 0x1p62)) { /* a ragged factor of 10^4 on 2^40 x 2^20 */
      tr_gen_free(g);
      return TR_EINVAL;
    }
    g->slots[r] = (int64_t)llround(tokens) * c->top_k;
  }
  gen_start(g);
  *out = g;
  return TR_OK;
}

/* Caps every p[e] at cap (water-filling: the excess goes to the uncapped
 * entries in proportion), sum stays 1. */
static void cap_probs(double *p, int E, double cap) {
  for (int round = 0; round < E; round++) {
    double excess = 0, free_mass = 0;
    for (int e = 0; e < E; e++) {
      if (p[e] > cap) {
        excess += p[e] - cap;
        p[e] = cap;
      } else if (p[e] < cap) {
        free_mass += p[e];
      }
    }
    if (excess <= 1e-15 || free_mass <= 0)
      return;
    for (int e = 0; e < E; e++)
      if (p[e] < cap)
        p[e] += excess * p[e] / free_mass;
  }
}

/* Layer l's dynamics, one step at iteration t: the burst regime chain and
 * this iteration's log-normal factor on the innovation, the AR(1) logits
 * (and their momentum) for t > 0, the popularity re-shuffled every
 * regime_period, and each expert's burst countdown. */
static void gen_dynamics(tr_gen *g, int l, int64_t t) {
  const tr_gen_config *c = &g->c;
  const int E = c->experts;
  gsl_rng *dyn = g->dyn[l];
  double *base = g->base + (size_t)l * E, *z = g->z + (size_t)l * E;
  double *vel = g->v + (size_t)l * E;
  int *burst = g->burst + (size_t)l * E;
  if (t > 0) {
    double innov = g->innov[l];
    if (g->vol_ratio[l] != 1) { /* the regime chain, one step */
      double u = gsl_rng_uniform(dyn);
      g->regime[l] = g->regime[l] ? u >= g->vol_leave[l] : u < g->vol_enter[l];
      innov *= g->regime[l] ? g->vol_ratio[l] : 1;
    }
    if (g->vol_sigma[l] > 0) { /* this iteration's log-normal factor, mean 1 */
      double sg = g->vol_sigma[l];
      innov *= exp(sg * gsl_ran_gaussian(dyn, 1.0) - sg * sg / 2);
    }
    if (innov > 0)
      for (int e = 0; e < E; e++) {
        vel[e] = g->psi[l] * vel[e] + gsl_ran_gaussian(dyn, innov);
        z[e] = g->phi[l] * z[e] + vel[e];
      }
    if (c->regime_period > 0 && t % c->regime_period == 0)
      gsl_ran_shuffle(dyn, base, (size_t)E, sizeof(double));
  }
  if (c->burst_prob > 0)
    for (int e = 0; e < E; e++) {
      if (burst[e] > 0)
        burst[e]--;
      if (burst[e] == 0 && gsl_rng_uniform(dyn) < c->burst_prob)
        burst[e] = c->burst_len;
    }
}

/* Layer l's logits of iteration t into g->y: profile x scale, the AR(1)
 * term, bursts and the (rotating) hot set. */
static void gen_logits(tr_gen *g, int l, int64_t t) {
  const tr_gen_config *c = &g->c;
  const int E = c->experts;
  const double *base = g->base + (size_t)l * E, *z = g->z + (size_t)l * E;
  const int *burst = g->burst + (size_t)l * E;
  double *y = g->y;
  for (int e = 0; e < E; e++)
    y[e] = g->scale[l] * base[e] + z[e] + (burst[e] > 0 ? c->burst_boost : 0);
  if (c->hot > 0) {
    int64_t off = c->rotate_period > 0 ? (t / c->rotate_period) % E : 0;
    for (int j = 0; j < c->hot; j++) {
      int64_t e = c->hot_layout == TR_HOT_SPREAD ? off + (int64_t)j * E / c->hot : off + j;
      y[e % E] += c->hot_boost;
    }
  }
}

/* Rank noise of layer l into g->eta, zero-sum over the ranks: it moves
 * routing between ranks without moving the layer's aggregate (which the
 * AR(1) term owns). Draws from g->draw, already seeded for (t, l). */
static void gen_rank_noise(tr_gen *g, int l) {
  const int E = g->c.experts, R = g->c.ranks;
  double *eta = g->eta;
  if (!(g->rank_sigma[l] > 0 && R > 1))
    return;
  for (int k = 0; k < R * E; k++)
    eta[k] = gsl_ran_gaussian(g->draw, g->rank_sigma[l]);
  for (int e = 0; e < E; e++) {
    double mu = 0;
    for (int r = 0; r < R; r++)
      mu += eta[(size_t)r * E + e] / R;
    for (int r = 0; r < R; r++)
      eta[(size_t)r * E + e] -= mu;
  }
}

/* Whether rank r routes nothing to expert e (zero_experts, zero_rank). */
static int gen_zero(const tr_gen_config *c, int r, int e) {
  return e >= c->experts - c->zero_experts || (r == c->zero_rank && e >= c->experts / 2);
}

/* Rank r's expert probabilities into g->p: softmax of the logits plus its
 * noise over the experts it may route to (uniform over the allowed ones
 * when none is left), the hot rank's share, each capped at 1 / top_k. */
static void gen_rank_probs(tr_gen *g, int r) {
  const tr_gen_config *c = &g->c;
  const int E = c->experts;
  double *x = g->x, *p = g->p, m = -INFINITY, s = 0;
  for (int e = 0; e < E; e++) {
    x[e] = g->y[e] + g->eta[(size_t)r * E + e];
    if (x[e] > m)
      m = x[e];
  }
  for (int e = 0; e < E; e++) {
    p[e] = gen_zero(c, r, e) ? 0 : exp(x[e] - m);
    s += p[e];
  }
  if (s <= 0) { /* everything excluded: fall back to the allowed uniform */
    for (int e = 0; e < E - c->zero_experts; e++)
      p[e] = 1;
    s = E - c->zero_experts;
  }
  for (int e = 0; e < E; e++)
    p[e] /= s;
  if (r == c->hot_rank && c->hot_rank_experts > 0) {
    for (int e = 0; e < E; e++)
      p[e] *= 1 - c->hot_rank_share;
    for (int j = 0; j < c->hot_rank_experts; j++)
      p[(E / 2 + j) % E] += c->hot_rank_share / c->hot_rank_experts;
  }
  cap_probs(p, E, 1.0 / c->top_k);
}

/* Rank r's row of slots: a multinomial over g->p, then at most one slot
 * per token and expert: clipped at tokens, the excess handed to the
 * experts with room, lowest id first (deterministic). */
static void gen_rank_row(tr_gen *g, int r, int64_t *row) {
  const tr_gen_config *c = &g->c;
  const int E = c->experts;
  for (int e = 0; e < E; e++)
    row[e] = 0;
  for (int64_t left = g->slots[r]; left > 0;) {
    unsigned int n = left > (int64_t)UINT32_MAX ? UINT32_MAX : (unsigned int)left;
    gsl_ran_multinomial(g->draw, (size_t)E, n, g->p, g->n);
    for (int e = 0; e < E; e++)
      row[e] += g->n[e];
    left -= n;
  }
  int64_t tokens = g->slots[r] / c->top_k, excess = 0;
  for (int e = 0; e < E; e++)
    if (row[e] > tokens) {
      excess += row[e] - tokens;
      row[e] = tokens;
    }
  for (int e = 0; e < E && excess > 0; e++) {
    int64_t room = gen_zero(c, r, e) ? 0 : tokens - row[e];
    int64_t give = room < excess ? room : excess;
    row[e] += give;
    excess -= give;
  }
}

int tr_gen_next(tr_gen *g, int64_t *out) {
  const tr_gen_config *c = &g->c;
  if (g->t >= c->iterations)
    return TR_EINVAL;
  const int l = g->l;
  const int64_t t = g->t;
  gen_dynamics(g, l, t); /* layer l's, advanced once per iteration */
  gen_logits(g, l, t);
  gsl_rng_set(g->draw, (unsigned long)tr_stream_seed(c->seed ^ 0x5bd1e995u, (uint64_t)t,
                                                     (uint64_t)l));
  gen_rank_noise(g, l);
  for (int r = 0; r < c->ranks; r++) {
    gen_rank_probs(g, r);
    gen_rank_row(g, r, out + (size_t)r * c->experts);
  }
  if (++g->l == c->layers) {
    g->l = 0;
    g->t++;
  }
  return TR_OK;
}

int tr_gen_write(const tr_gen_config *c, const char *path, tr_error *err) {
  tr_gen *g = NULL;
  if (!c)
    return tr_seterr(err, TR_EINVAL, path, 0, "no generator configuration");
  int rc = check_sizes(c, path, err);
  if (rc)
    return rc;
  char what[160];
  snprintf(what, sizeof(what), "generating %d layers x %d ranks x %d experts", c->layers,
           c->ranks, c->experts);
  if ((rc = tr_check_memory(tr_gen_memory(c), c->max_memory, path, what, err)))
    return rc;
  rc = tr_gen_new(c, &g);
  if (rc)
    return tr_seterr(err, rc, path, 0, "%s",
                     rc == TR_ENOMEM ? "out of memory"
                                     : "invalid generator configuration (or a rank's tokens x "
                                       "top_k x ragged factor above 2^62 slots)");
  int64_t most = 0;
  for (int r = 0; r < c->ranks; r++)
    most = g->slots[r] > most ? g->slots[r] : most;
  tr_dtype dt = most > INT32_MAX ? TR_INT64 : TR_INT32;
  tr_writer w;
  tr_meta meta = c->meta;
  meta.top_k = c->top_k;
  meta.tokens_per_rank = c->tokens_per_rank;
  int64_t *slice = tr_malloc((size_t)c->ranks * c->experts * sizeof(int64_t));
  if (!slice) {
    tr_gen_free(g);
    return tr_seterr(err, TR_ENOMEM, path, 0, "out of memory");
  }
  rc = tr_writer_open(&w, path, c->iterations, c->layers, c->ranks, c->experts, dt, &meta, err);
  for (int64_t s = 0; rc == TR_OK && s < c->iterations * c->layers; s++) {
    tr_gen_next(g, slice);
    rc = tr_writer_put(&w, slice, err);
  }
  if (rc == TR_OK)
    rc = tr_writer_commit(&w, err);
  tr_free(slice);
  tr_gen_free(g);
  return rc;
}
