/*
 * flexmoe_planner.c - the stable C API over the policy handle (see
 * flexmoe_planner.h). A planner owns its pl_policy, the last plan, the last
 * temporaries (made on first use) and, for the key=value constructor, the
 * profile arrays its env points to.
 */
#include "placement/flexmoe_planner.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"

#ifndef PL_LIBRARY_VERSION
#define PL_LIBRARY_VERSION "unknown"
#endif

#define MAX_POINTS 64

struct pl_planner {
  pl_policy *policy;
  pl_env env;
  pl_plan plan;
  pl_routing routing; /* lazily initialised by pl_planner_route */
  pl_temps temps;     /* lazily initialised by pl_planner_temporaries */
  double tokens[MAX_POINTS], us[MAX_POINTS];
};

int pl_planner_api_version(void) { return PL_PLANNER_API_VERSION; }
const char *pl_planner_version(void) { return PL_LIBRARY_VERSION; }
const char *pl_planner_strerror(int code) { return pl_strerror(code); }

static void say(char *err, size_t errlen, const char *fmt, const char *a) {
  if (err && errlen)
    snprintf(err, errlen, fmt, a);
}

static int create_with(pl_planner *p, const char *spec, char *err, size_t errlen,
                       pl_planner **out) {
  int rc = pl_policy_create(&p->policy, spec, &p->env, err, errlen);
  if (rc) {
    pl_free(p);
    return rc;
  }
  pl_plan_init(&p->plan);
  *out = p;
  return PL_OK;
}

int pl_planner_create(pl_planner **out, const char *spec, const pl_env *env,
                      char *err, size_t errlen) {
  if (!out)
    return PL_EINVAL;
  *out = NULL;
  if (!spec || !env || env->size < sizeof(pl_env)) {
    say(err, errlen, "%s", "missing spec or environment (or env.size too small)");
    return PL_EINVAL;
  }
  if (pl_profile_check(&env->profile) != 0 || env->profile.npoints > MAX_POINTS) {
    say(err, errlen, "%s", "invalid compute profile (points must be positive and ascending)");
    return PL_EINVAL;
  }
  pl_planner *p = pl_calloc(1, sizeof(*p));
  if (!p)
    return PL_ENOMEM;
  p->env = *env;
  memcpy(p->tokens, env->profile.tokens, sizeof(double) * (size_t)env->profile.npoints);
  memcpy(p->us, env->profile.us, sizeof(double) * (size_t)env->profile.npoints);
  p->env.profile.tokens = p->tokens;
  p->env.profile.us = p->us;
  return create_with(p, spec, err, errlen, out);
}

/* H200 bf16 expert FFN forward, d_model 2048, d_ff 8192 (calibration
 * 2026-11-28). */
static const double h200_tokens[] = {16, 64, 256, 1024, 4096, 16384, 65536};
static const double h200_us[] = {27.30, 28.10, 36.51, 93.27, 332.14, 1295.43, 5458.08};

static int parse_num(const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi)
    return PL_EPARAM;
  *out = d;
  return PL_OK;
}

static int parse_profile(const char *v, double *tok, double *us, int *n) {
  *n = 0;
  const char *s = v;
  while (*s) {
    char *end;
    if (*n >= MAX_POINTS)
      return PL_EPARAM;
    errno = 0;
    tok[*n] = strtod(s, &end);
    if (errno || end == s || *end != ':')
      return PL_EPARAM;
    s = end + 1;
    us[*n] = strtod(s, &end);
    if (errno || end == s || (*end && *end != '/'))
      return PL_EPARAM;
    (*n)++;
    s = *end ? end + 1 : end;
  }
  return *n ? PL_OK : PL_EPARAM;
}

/* pl_planner_create_kv's environment keys, each value NAN until given. */
enum { LAYERS, EXPERTS, GPUS, GPN, SLOTS, INTRA, INTER, INTRA_LAT, INTER_LAT,
       OVERSUB, DMODEL, DFF, TOPK, BPE, OPT, BWD, NONMOE, SEED, NKEYS };
static const char *const env_names[NKEYS] = {
    "layers", "experts", "gpus", "gpus_per_node", "slots", "intra_GBps",
    "inter_GBps", "intra_lat_us", "inter_lat_us", "oversub", "d_model", "d_ff",
    "top_k", "bytes_per_elem", "optimizer_bytes", "bwd_ratio", "nonmoe_us", "seed"};

/* One key=value item of the environment text: a number into val[key], or
 * the profile's points into p (*npoints). PL_EPARAM with the message. */
static int env_item(char *item, double *val, pl_planner *p, int *npoints, char *err,
                    size_t errlen) {
  char *eq = strchr(item, '=');
  if (!eq) {
    say(err, errlen, "environment: '%s' is not key=value", item);
    return PL_EPARAM;
  }
  *eq = '\0';
  const char *key = item, *v = eq + 1;
  if (strcmp(key, "profile") == 0) {
    if (parse_profile(v, p->tokens, p->us, npoints)) {
      say(err, errlen, "environment: profile '%s' is not tokens:us/tokens:us/...", v);
      return PL_EPARAM;
    }
    return PL_OK;
  }
  int k = 0;
  while (k < NKEYS && strcmp(env_names[k], key) != 0)
    k++;
  if (k == NKEYS) {
    say(err, errlen, "environment: unknown key '%s'", key);
    return PL_EPARAM;
  }
  if (parse_num(v, 0, 1e18, &val[k])) {
    say(err, errlen, "environment: bad value for '%s'", key);
    return PL_EPARAM;
  }
  return PL_OK;
}

/* The comma-separated items of env_kv (env_item each). */
static int env_items(const char *env_kv, double *val, pl_planner *p, int *npoints, char *err,
                     size_t errlen) {
  char item[256];
  const char *s = env_kv;
  int rc = PL_OK;
  while (*s && !rc) {
    const char *end = strchr(s, ',');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    if (len == 0 || len >= sizeof(item)) {
      say(err, errlen, "environment: malformed item near '%s'", s);
      return PL_EPARAM;
    }
    memcpy(item, s, len);
    item[len] = '\0';
    s += len + (end ? 1 : 0);
    rc = env_item(item, val, p, npoints, err, errlen);
  }
  return rc;
}

/* The environment of the given values, the defaults elsewhere (a DGX
 * H100-like node, the H200 profile scaled to the model when no profile
 * was given: into p's points). */
static pl_env env_of(const double *val, pl_planner *p, int npoints) {
#define GET(k, d) (isnan(val[k]) ? (d) : val[k])
  pl_env env = PL_ENV_INIT;
  env.layers = (int)GET(LAYERS, 1);
  env.experts = (int)val[EXPERTS];
  int G = (int)val[GPUS];
  int gpn = (int)GET(GPN, G < 8 ? G : 8);
  int need = G > 0 ? (env.experts + G - 1) / G : 0;
  env.cluster = (pl_cluster){G, gpn, (int)GET(SLOTS, need + 1 > env.experts ? env.experts : need + 1),
                             GET(INTRA, 450) * 1e9, GET(INTRA_LAT, 2) * 1e-6,
                             GET(INTER, 50) * 1e9, GET(INTER_LAT, 5) * 1e-6,
                             GET(OVERSUB, 1)};
  env.model = (pl_model){(int)GET(DMODEL, 2048), (int)GET(DFF, 8192), (int)GET(TOPK, 2),
                         (int)GET(BPE, 2), GET(OPT, 12)};
  env.seed = (uint64_t)GET(SEED, 0);
#undef GET
  if (npoints == 0) {
    double scale = (double)env.model.d_model * env.model.d_ff / (2048.0 * 8192.0);
    npoints = (int)(sizeof(h200_tokens) / sizeof(h200_tokens[0]));
    for (int i = 0; i < npoints; i++) {
      p->tokens[i] = h200_tokens[i];
      p->us[i] = h200_us[i] * scale;
    }
  }
  env.profile = (pl_profile){npoints, p->tokens, p->us, isnan(val[BWD]) ? 2.1 : val[BWD],
                             isnan(val[NONMOE]) ? 0.0 : val[NONMOE]};
  return env;
}

int pl_planner_create_kv(pl_planner **out, const char *spec, const char *env_kv,
                         char *err, size_t errlen) {
  if (!out)
    return PL_EINVAL;
  *out = NULL;
  if (!spec || !env_kv) {
    say(err, errlen, "%s", "missing spec or environment text");
    return PL_EINVAL;
  }
  double val[NKEYS];
  for (int k = 0; k < NKEYS; k++)
    val[k] = NAN;
  pl_planner *p = pl_calloc(1, sizeof(*p));
  if (!p)
    return PL_ENOMEM;
  int npoints = 0, rc = env_items(env_kv, val, p, &npoints, err, errlen);
  if (rc)
    goto fail;
  if (isnan(val[EXPERTS]) || isnan(val[GPUS])) {
    say(err, errlen, "%s", "environment: 'experts' and 'gpus' are required");
    rc = PL_EPARAM;
    goto fail;
  }
  pl_env env = env_of(val, p, npoints);
  if (pl_profile_check(&env.profile) || env.model.d_model < 1 || env.model.d_ff < 1 ||
      env.model.bytes_per_elem < 1 || env.model.top_k < 1) {
    say(err, errlen, "%s", "environment: invalid model or profile numbers");
    rc = PL_EPARAM;
    goto fail;
  }
  p->env = env;
  return create_with(p, spec, err, errlen, out);
fail:
  pl_free(p);
  return rc;
}

void pl_planner_destroy(pl_planner *p) {
  if (!p)
    return;
  pl_policy_destroy(p->policy);
  pl_plan_fini(&p->plan);
  pl_routing_fini(&p->routing);
  pl_temps_fini(&p->temps);
  pl_free(p);
}

const char *pl_planner_spec(const pl_planner *p) {
  return p ? pl_policy_spec(p->policy) : "";
}

int pl_planner_observe(pl_planner *p, int iteration, int layer,
                       const int64_t *counts) {
  if (!p)
    return PL_EINVAL;
  return pl_policy_observe(p->policy, iteration, layer, counts);
}

int pl_planner_plan(pl_planner *p, int iteration, int layer,
                    const int64_t *upcoming, int *changed, int *nmoves) {
  if (!p)
    return PL_EINVAL;
  int rc = pl_policy_plan(p->policy, iteration, layer, upcoming, &p->plan);
  if (rc)
    return rc;
  if (changed)
    *changed = p->plan.changed;
  if (nmoves)
    *nmoves = p->plan.changed ? p->plan.nmoves : 0;
  return PL_OK;
}

int pl_planner_moves(const pl_planner *p, int64_t *out, int max) {
  if (!p || (max > 0 && !out) || max < 0)
    return PL_EINVAL;
  int n = p->plan.changed ? p->plan.nmoves : 0;
  if (n > max)
    n = max;
  for (int k = 0; k < n; k++) {
    const pl_move *m = &p->plan.moves[k];
    int64_t *o = out + 6 * (size_t)k;
    o[0] = m->layer;
    o[1] = m->expert;
    o[2] = m->from;
    o[3] = m->to;
    o[4] = m->kind;
    o[5] = m->bytes;
  }
  return n;
}

int pl_planner_plan_flags(const pl_planner *p, int *background, int *uncharged) {
  if (!p)
    return PL_EINVAL;
  if (background)
    *background = p->plan.changed ? p->plan.background : 0;
  if (uncharged)
    *uncharged = p->plan.changed ? p->plan.uncharged : 0;
  return PL_OK;
}

/* A placement as the 0/1 matrix out[expert * gpus + g]. */
static void matrix_of(const pl_placement *pl, int32_t *out) {
  memset(out, 0, sizeof(int32_t) * (size_t)pl->experts * (size_t)pl->gpus);
  for (int e = 0; e < pl->experts; e++)
    for (int i = 0; i < pl->nrep[e]; i++)
      out[(size_t)e * pl->gpus + pl->rep[(size_t)e * pl->gpus + i]] = 1;
}

/* pl (NULL for a layer out of range) as a matrix into out. */
static int matrix_out(const pl_placement *pl, int32_t *out) {
  if (!pl || !out)
    return PL_EINVAL;
  matrix_of(pl, out);
  return PL_OK;
}

int pl_planner_placement(const pl_planner *p, int layer, int32_t *out) {
  return p ? matrix_out(pl_policy_placement(p->policy, layer), out) : PL_EINVAL;
}

int pl_planner_serving(const pl_planner *p, int layer, int32_t *out) {
  return p ? matrix_out(pl_policy_serving(p->policy, layer), out) : PL_EINVAL;
}

int pl_planner_weights_first(const pl_planner *p, int layer) {
  return p ? pl_policy_weights_first(p->policy, layer) : 0;
}

/* The planner's routing and temporaries, made on first use. */
static int ensure_buffers(pl_planner *p) {
  int rc;
  if (!p->routing.load &&
      (rc = pl_routing_init(&p->routing, p->env.cluster.gpus, p->env.experts, 0)) != 0)
    return rc;
  /* the runtime's and the simulator's room: the policy's slots per GPU */
  if (!p->temps.temp &&
      (rc = pl_temps_init(&p->temps, p->env.experts, p->env.cluster.gpus,
                          pl_policy_placement(p->policy, 0)->slots)) != 0)
    return rc;
  return PL_OK;
}

/* p->routing's results into the caller's outputs (each may be NULL). */
static void routing_out(const pl_planner *p, int64_t *gpu_load, double *balance,
                        int64_t *dropped) {
  if (gpu_load)
    memcpy(gpu_load, p->routing.gpu_load, sizeof(int64_t) * (size_t)p->env.cluster.gpus);
  if (balance)
    *balance = pl_routing_balance(&p->routing);
  if (dropped)
    *dropped = p->routing.dropped;
}

int pl_planner_route(pl_planner *p, int layer, const int64_t *counts,
                     int64_t *gpu_load, double *balance, int64_t *dropped) {
  if (!p || !counts)
    return PL_EINVAL;
  int rc = ensure_buffers(p);
  if (rc == PL_OK)
    rc = pl_policy_route(p->policy, layer, counts, &p->routing);
  if (rc == PL_OK)
    routing_out(p, gpu_load, balance, dropped);
  return rc;
}

int pl_planner_route_served(pl_planner *p, int layer, const int64_t *counts,
                            int64_t *gpu_load, double *balance, int64_t *dropped) {
  if (!p || !counts || layer < 0 || layer >= p->env.layers)
    return PL_EINVAL;
  int rc = ensure_buffers(p);
  if (rc == PL_OK)
    rc = pl_policy_route_temporaries(p->policy, layer, counts, &p->temps, &p->routing);
  if (rc == PL_OK)
    routing_out(p, gpu_load, balance, dropped);
  return rc;
}

int pl_planner_temporaries(pl_planner *p, int layer, const int64_t *counts, int32_t *out,
                           int max) {
  if (!p || !counts || max < 0 || (max > 0 && !out) || layer < 0 || layer >= p->env.layers)
    return PL_EINVAL;
  int rc = ensure_buffers(p);
  if (rc != PL_OK)
    return rc;
  if ((rc = pl_policy_temporaries(p->policy, layer, counts, &p->temps)) != 0)
    return rc;
  int n = p->temps.n;
  for (int k = 0; k < n && k < max; k++) {
    const pl_temp *t = &p->temps.temp[k];
    int32_t *o = out + 3 * (size_t)k;
    o[0] = t->expert;
    o[1] = t->from;
    o[2] = t->to;
  }
  return n;
}
