/*
 * pl_policy.c - policy registry, spec parsing and the policy handle.
 *
 * The handle owns the current placement of every layer. Policies propose a
 * new placement; the handle checks its invariants, derives the moves with
 * pl_placement_diff (so moves always turn the old placement into the new
 * one exactly) and installs it. Policies never touch the current placement
 * directly.
 *
 * The migration protocol is the handle's too: for a policy that lists the
 * `background` parameter (PL_BACKGROUND_PARAM, pl_internal.h) the handle
 * parses it here and stamps it on every changed plan, so that every
 * re-planning policy follows one rule with one default, and the serving
 * view (pl_policy_serving) is the one place that decides which placement
 * serves an iteration.
 */
#include "placement/pl_policy.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

struct pl_policy {
  const pl_policy_ops *ops;
  void *state;
  pl_env env;
  pl_placement *cur; /* [layers] */
  /* [layers] the placement before the last plan, which serves the layer's
   * tokens while that plan's background moves are in flight (inflight) */
  pl_placement *prev;
  unsigned char *inflight;
  unsigned char *wfirst; /* [layers] the last plan is weights-first (rule 6) */
  int has_background; /* the policy lists the `background` parameter */
  int background;     /* its value: stamped on every changed plan */
  char spec[PL_SPEC_MAX + 1]; /* canonical: never cut (canonical_spec) */
};

static const pl_policy_ops *const registry[] = {
    &pl_policy_static_ops,
    &pl_policy_capacity_ops,
    &pl_policy_fastermoe_ops,
    &pl_policy_smartmoe_ops,
    &pl_policy_eplb_ops,
    &pl_policy_flexmoe_ops,
    &pl_policy_oracle_ops,
    NULL,
};

const pl_policy_ops *const *pl_policy_registry(void) { return registry; }

const pl_policy_ops *pl_policy_find(const char *name) {
  for (int i = 0; registry[i]; i++)
    if (strcmp(registry[i]->name, name) == 0)
      return registry[i];
  return NULL;
}

void pl_plan_init(pl_plan *plan) {
  memset(plan, 0, sizeof(*plan));
  plan->capacity = -1;
}

void pl_plan_fini(pl_plan *plan) {
  if (!plan)
    return;
  pl_placement_fini(&plan->placement);
  pl_free(plan->moves);
  pl_plan_init(plan);
}

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) {
  if (!errbuf || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
}

/* Optimal string alignment distance of a[la] and b[lb] (both at most 63
 * bytes; longer words are not slips of each other: returns 99). */
static int slip_distance(const char *a, size_t la, const char *b, size_t lb) {
  if (la > 63 || lb > 63)
    return 99;
  int d[64][64];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best)
        best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

const char *pl_nearest(const char *word, const char *const *cands, int n) {
  size_t lw = word ? strlen(word) : 0;
  if (!lw)
    return NULL;
  int limit = lw <= 4 ? 1 : lw <= 8 ? 2 : 3, best = limit + 1;
  const char *pick = NULL;
  for (int i = 0; i < n; i++) {
    if (!cands[i])
      continue;
    size_t lc = strlen(cands[i]);
    int dist = lw >= 3 && lc > lw && strncmp(cands[i], word, lw) == 0
                   ? 1
                   : slip_distance(word, lw, cands[i], lc);
    if (dist < best) {
      best = dist;
      pick = cands[i];
    }
  }
  return pick;
}

/* " (did you mean NAME?)" into out when word is a slip of one of the
 * names[n] (pl_nearest), else "". */
static void did_you_mean(const char *word, const char *const *names, int n, char *out,
                         size_t len) {
  const char *pick = pl_nearest(word, names, n);
  snprintf(out, len, pick ? " (did you mean '%s'?)" : "%s", pick ? pick : "");
}

static const pl_param_desc *find_param(const pl_policy_ops *ops, const char *key) {
  for (const pl_param_desc *d = ops->params; d && d->key; d++)
    if (strcmp(d->key, key) == 0)
      return d;
  return NULL;
}

/* "name:k=v,k=v" -> name, kv. Every limit of pl_policy.h is checked here,
 * with a message naming it: nothing is cut. A fragment of the spec is
 * quoted in a message at most 40 bytes long, so the message fits the
 * caller's buffer and names the part at fault. */
static int parse_spec(const char *spec, char *name, size_t namelen, pl_kv *kv,
                      int *nkv, char *errbuf, size_t errlen) {
  size_t total = strlen(spec);
  if (total > PL_SPEC_MAX) {
    set_err(errbuf, errlen,
            "policy spec '%.40s...' is %zu bytes, over the limit of %d bytes", spec, total,
            PL_SPEC_MAX);
    return PL_EPARAM;
  }
  for (size_t i = 0; i < total; i++) {
    unsigned char c = (unsigned char)spec[i];
    if (c <= ' ' || c >= 0x7f) {
      set_err(errbuf, errlen,
              "policy spec: byte %zu is 0x%02x; a spec is printable ASCII without spaces "
              "(name:key=value,...)",
              i + 1, c);
      return PL_EPARAM;
    }
  }
  const char *colon = strchr(spec, ':');
  size_t n = colon ? (size_t)(colon - spec) : total;
  if (n == 0) {
    set_err(errbuf, errlen, "policy spec '%.40s' has no policy name before ':'", spec);
    return PL_EPOLICY;
  }
  if (n >= namelen) {
    set_err(errbuf, errlen, "unknown policy '%.40s...' (see 'flexmoe policies')", spec);
    return PL_EPOLICY;
  }
  memcpy(name, spec, n);
  name[n] = '\0';
  *nkv = 0;
  if (!colon)
    return PL_OK;
  const char *s = colon + 1;
  while (*s) {
    const char *end = strchr(s, ',');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    const char *eq = memchr(s, '=', len);
    int show = len > 40 ? 40 : (int)len;
    if (!eq || eq == s) {
      set_err(errbuf, errlen, "policy '%s': '%.*s%s' is not key=value", name, show, s,
              len > 40 ? "..." : "");
      return PL_EPARAM;
    }
    size_t klen = (size_t)(eq - s), vlen = len - klen - 1;
    int kshow = klen > 40 ? 40 : (int)klen;
    if (*nkv >= PL_KV_MAX) {
      set_err(errbuf, errlen, "policy '%s': more than %d key=value pairs", name, PL_KV_MAX);
      return PL_EPARAM;
    }
    if (klen > PL_KEY_MAX) {
      set_err(errbuf, errlen, "policy '%s': key '%.*s...' is %zu bytes, over the limit of %d",
              name, kshow, s, klen, PL_KEY_MAX);
      return PL_EPARAM;
    }
    if (vlen == 0) {
      set_err(errbuf, errlen, "policy '%s': %.*s= has no value", name, kshow, s);
      return PL_EPARAM;
    }
    if (vlen > PL_VALUE_MAX) {
      set_err(errbuf, errlen,
              "policy '%s': the value of %.*s is %zu bytes, over the limit of %d", name,
              kshow, s, vlen, PL_VALUE_MAX);
      return PL_EPARAM;
    }
    pl_kv *p = &kv[(*nkv)++];
    memcpy(p->key, s, klen);
    p->key[klen] = '\0';
    memcpy(p->value, eq + 1, vlen);
    p->value[vlen] = '\0';
    s += len;
    if (*s == ',')
      s++;
  }
  return PL_OK;
}

static const char *kv_get(const pl_kv *kv, int nkv, const char *key) {
  for (int i = nkv - 1; i >= 0; i--)
    if (strcmp(kv[i].key, key) == 0)
      return kv[i].value;
  return NULL;
}

/* A spec parsed without an environment (pl_policy_param, pl_policy_label):
 * its name, key=value pairs and the policy's ops; PL_EPOLICY for a name
 * that is not registered. */
typedef struct spec_view {
  char name[64];
  pl_kv kv[PL_KV_MAX];
  int nkv;
  const pl_policy_ops *ops;
} spec_view;

static int view_spec(const char *spec, spec_view *v) {
  v->nkv = 0;
  int rc = parse_spec(spec, v->name, sizeof(v->name), v->kv, &v->nkv, NULL, 0);
  if (rc)
    return rc;
  v->ops = pl_policy_find(v->name);
  return v->ops ? PL_OK : PL_EPOLICY;
}

int pl_policy_param(const char *spec, const char *key, char *buf, size_t len) {
  if (!spec || !key || !buf || len == 0)
    return PL_EINVAL;
  spec_view sv;
  int rc = view_spec(spec, &sv);
  if (rc)
    return rc;
  const pl_policy_ops *ops = sv.ops;
  pl_kv *kv = sv.kv;
  int nkv = sv.nkv;
  const pl_param_desc *d = find_param(ops, key);
  if (!d)
    return PL_EPARAM;
  const char *v = kv_get(kv, nkv, key);
  if (!v)
    v = d->defval;
  if (strlen(v) >= len)
    return PL_EINVAL;
  memcpy(buf, v, strlen(v) + 1);
  return PL_OK;
}

/* Whether a spec's value v says the same as the default d: the same text,
 * or the same finite number written another way ("1.0" and "1"). */
static int same_value(const char *v, const char *d) {
  if (strcmp(v, d) == 0)
    return 1;
  char *ev, *ed;
  double x = strtod(v, &ev), y = strtod(d, &ed);
  return ev != v && ed != d && !*ev && !*ed && isfinite(x) && x == y;
}

int pl_policy_label(const char *spec, char *buf, size_t len) {
  if (!spec || !buf || len == 0)
    return PL_EINVAL;
  spec_view sv;
  int rc = view_spec(spec, &sv);
  if (rc)
    return rc;
  const pl_policy_ops *ops = sv.ops;
  const pl_kv *kv = sv.kv;
  const char *name = sv.name;
  int nkv = sv.nkv;
  for (int i = 0; i < nkv; i++)
    if (!find_param(ops, kv[i].key))
      return PL_EPARAM;
  size_t off = (size_t)snprintf(buf, len, "%s", name);
  for (const pl_param_desc *d = ops->params; d && d->key && off < len; d++) {
    const char *v = kv_get(kv, nkv, d->key);
    if (v && !same_value(v, d->defval))
      off += (size_t)snprintf(buf + off, len - off, "%c%s=%s", off == strlen(name) ? ':' : ',',
                              d->key, v);
  }
  return off < len ? PL_OK : PL_EINVAL;
}

int pl_kv_double(const pl_kv *kv, int nkv, const char *key, double def,
                 double lo, double hi, double *out) {
  const char *v = kv_get(kv, nkv, key);
  if (!v) {
    *out = def;
    return PL_OK;
  }
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || *end || end == v || !isfinite(d) || d < lo || d > hi)
    return PL_EPARAM;
  *out = d;
  return PL_OK;
}

int pl_kv_int(const pl_kv *kv, int nkv, const char *key, int def, int lo,
              int hi, int *out) {
  const char *v = kv_get(kv, nkv, key);
  if (!v) {
    *out = def;
    return PL_OK;
  }
  char *end;
  errno = 0;
  long l = strtol(v, &end, 10);
  if (errno || *end || end == v || l < lo || l > hi)
    return PL_EPARAM;
  *out = (int)l;
  return PL_OK;
}

int pl_kv_choice(const pl_kv *kv, int nkv, const char *key,
                 const char *const *choices, int def, int *out) {
  const char *v = kv_get(kv, nkv, key);
  if (!v) {
    *out = def;
    return PL_OK;
  }
  for (int i = 0; choices[i]; i++)
    if (strcmp(choices[i], v) == 0) {
      *out = i;
      return PL_OK;
    }
  return PL_EPARAM;
}

/* The canonical spec of ops with kv: every parameter in the policy's order,
 * the spec's value (the last given) or the default. Writes it into
 * buf[len] only when it fits; returns its length (without the NUL), so the
 * caller refuses a spec whose canonical form is over PL_SPEC_MAX instead of
 * storing a cut one, which would make two different specs one run key. */
static size_t canonical_spec(const pl_policy_ops *ops, const pl_kv *kv, int nkv, char *buf,
                             size_t len) {
  size_t need = strlen(ops->name);
  for (const pl_param_desc *d = ops->params; d && d->key; d++) {
    const char *v = kv_get(kv, nkv, d->key);
    need += 2 + strlen(d->key) + strlen(v ? v : d->defval);
  }
  if (need >= len)
    return need;
  size_t off = (size_t)snprintf(buf, len, "%s", ops->name);
  char sep = ':';
  for (const pl_param_desc *d = ops->params; d && d->key; d++) {
    const char *v = kv_get(kv, nkv, d->key);
    off += (size_t)snprintf(buf + off, len - off, "%c%s=%s", sep, d->key, v ? v : d->defval);
    sep = ',';
  }
  return need;
}

/* A policy's init refused a value (PL_EPARAM): names the parameter with
 * its help text, which states its range, e.g. "policy 'capacity': bad value
 * cf=0 (cf: capacity factor ..., 0.01 to 1000)"; for `slots`, whose range
 * depends on the job, the range of this job too. The parameter is the last
 * of the shortest prefix kv[0..i] that init refuses too (init is a pure
 * function of its parameters; this runs only on the error path, with the
 * failing handle's placements as scratch). When init refuses the defaults
 * alone (no prefix to blame), the message names the job they do not fit. */
static void bad_value_err(char *errbuf, size_t errlen, const pl_policy_ops *ops,
                          const pl_env *env, const char *spec, const pl_kv *kv, int nkv,
                          pl_placement *scratch) {
  if (!errbuf || !errlen)
    return;
  for (int i = 0; i < nkv; i++) {
    void *state = NULL;
    for (int l = 0; l < env->layers; l++)
      pl_placement_clear(&scratch[l]);
    int rc = ops->init(&state, env, kv, i + 1, scratch);
    if (rc == PL_OK && ops->fini)
      ops->fini(state);
    const pl_param_desc *d = find_param(ops, kv[i].key);
    if (rc == PL_EPARAM && d) {
      int G = env->cluster.gpus;
      if (strcmp(d->key, "slots") == 0)
        set_err(errbuf, errlen, "policy '%s': bad value %s=%s (%s: %s: here 0 or %d to %d)",
                ops->name, kv[i].key, kv[i].value, d->key, d->help,
                (env->experts + G - 1) / G, env->cluster.slots);
      else
        set_err(errbuf, errlen, "policy '%s': bad value %s=%s (%s: %s)", ops->name, kv[i].key,
                kv[i].value, d->key, d->help);
      return;
    }
  }
  set_err(errbuf, errlen,
          "policy '%s': the parameters of '%.200s' do not fit %d experts on %d GPUs (%d per "
          "node) with %d slots each; see 'flexmoe policies' for each parameter's range",
          ops->name, spec, env->experts, env->cluster.gpus, env->cluster.gpus_per_node,
          env->cluster.slots);
}

/* PL_EPOLICY for a name no policy has: the message lists them all, with
 * the nearest as a hint. */
static int unknown_policy_err(const char *name, char *errbuf, size_t errlen) {
  const char *names[16];
  int n = 0;
  char hint[96], all[256] = "";
  for (size_t off = 0; registry[n] && n < 16; n++) {
    names[n] = registry[n]->name;
    off += (size_t)snprintf(all + off, off < sizeof all ? sizeof all - off : 0, "%s%s",
                            n ? ", " : "", names[n]);
  }
  did_you_mean(name, names, n, hint, sizeof hint);
  set_err(errbuf, errlen, "unknown policy '%s'%s; the policies: %s (see 'flexmoe policies')",
          name, hint, all);
  return PL_EPOLICY;
}

/* Every key of the spec is one of the policy's parameters; PL_EPARAM
 * naming the first that is not, its nearest and all of them. */
static int known_params(const pl_policy_ops *ops, const char *name, const pl_kv *kv, int nkv,
                        char *errbuf, size_t errlen) {
  for (int i = 0; i < nkv; i++) {
    if (find_param(ops, kv[i].key))
      continue;
    char keys[256] = "", hint[96] = "";
    const char *names[64];
    int n = 0;
    size_t off = 0;
    for (const pl_param_desc *d = ops->params; d && d->key && off < sizeof keys; d++) {
      off += (size_t)snprintf(keys + off, sizeof keys - off, "%s%s", off ? ", " : "", d->key);
      if (n < 64)
        names[n++] = d->key;
    }
    did_you_mean(kv[i].key, names, n, hint, sizeof hint);
    set_err(errbuf, errlen, "policy '%s' has no parameter '%s'%s (%s%s)", name, kv[i].key,
            hint, keys[0] ? "its parameters: " : "it has none", keys);
    return PL_EPARAM;
  }
  return PL_OK;
}

/* A new policy of ops for env with its per-layer placements (and
 * whether it has, and what is, its background parameter); NULL when out
 * of memory (*rc = PL_ENOMEM) or a placement cannot be made (*rc its
 * code). */
static pl_policy *policy_alloc(const pl_policy_ops *ops, const pl_env *env, int has_background,
                               int background, int *rc) {
  pl_policy *p = pl_calloc(1, sizeof(*p));
  *rc = PL_ENOMEM;
  if (!p)
    return NULL;
  p->ops = ops;
  p->env = *env;
  p->has_background = has_background;
  p->background = background;
  p->cur = pl_calloc((size_t)env->layers, sizeof(pl_placement));
  p->prev = pl_calloc((size_t)env->layers, sizeof(pl_placement));
  p->inflight = pl_calloc((size_t)env->layers, 1);
  p->wfirst = pl_calloc((size_t)env->layers, 1);
  if (p->cur && p->prev && p->inflight && p->wfirst) {
    *rc = PL_OK;
    for (int l = 0; l < env->layers && !*rc; l++)
      if ((*rc = pl_placement_init(&p->cur[l], env->experts, env->cluster.gpus,
                                   env->cluster.slots)) == 0)
        *rc = pl_placement_init(&p->prev[l], env->experts, env->cluster.gpus,
                                env->cluster.slots);
  }
  if (*rc) {
    pl_policy_destroy(p);
    return NULL;
  }
  return p;
}

int pl_policy_create(pl_policy **out, const char *spec, const pl_env *env,
                     char *errbuf, size_t errlen) {
  if (!out || !spec || !env || env->size < sizeof(pl_env) || env->layers < 1 ||
      env->experts < 1)
    return PL_EINVAL;
  char name[64];
  pl_kv kv[PL_KV_MAX];
  int nkv = 0, rc = parse_spec(spec, name, sizeof(name), kv, &nkv, errbuf, errlen);
  if (rc)
    return rc;
  const pl_policy_ops *ops = pl_policy_find(name);
  if (!ops)
    return unknown_policy_err(name, errbuf, errlen);
  if ((rc = known_params(ops, name, kv, nkv, errbuf, errlen)) != 0)
    return rc;
  char canon[PL_SPEC_MAX + 1];
  size_t clen = canonical_spec(ops, kv, nkv, canon, sizeof(canon));
  if (clen > PL_SPEC_MAX) {
    set_err(errbuf, errlen,
            "policy '%s': the spec with every parameter written out (its canonical form, "
            "the run's key) is %zu bytes, over the limit of %d bytes: shorten its values",
            name, clen, PL_SPEC_MAX);
    return PL_EPARAM;
  }
  int has_background = find_param(ops, "background") != NULL, background = 0;
  if (has_background && pl_param_background(kv, nkv, &background) != PL_OK) {
    if (errbuf && errlen)
      snprintf(errbuf, errlen,
               "policy '%s': background must be 0 (blocking) or 1 (moves overlap the "
               "iteration), not '%s'",
               name, kv_get(kv, nkv, "background"));
    return PL_EPARAM;
  }
  if ((rc = pl_cluster_check(&env->cluster)) != 0) {
    set_err(errbuf, errlen, "invalid cluster for policy '%s'%s", name, "");
    return rc;
  }
  if ((int64_t)env->cluster.gpus * env->cluster.slots < env->experts) {
    set_err(errbuf, errlen, "fewer expert slots than experts for policy '%s'%s", name, "");
    return PL_ESLOTS;
  }
  pl_policy *p = policy_alloc(ops, env, has_background, background, &rc);
  if (!p)
    return rc;
  if ((rc = ops->init(&p->state, &p->env, kv, nkv, p->cur)) != 0) {
    p->state = NULL;
    if (rc == PL_EPARAM)
      bad_value_err(errbuf, errlen, ops, &p->env, spec, kv, nkv, p->cur);
    else
      set_err(errbuf, errlen, "policy '%s': %s", name, pl_strerror(rc));
    goto fail;
  }
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_check(&p->cur[l])) != 0) {
      set_err(errbuf, errlen, "policy '%s': initial placement invalid%s", name, "");
      goto fail;
    }
  memcpy(p->spec, canon, clen + 1);
  *out = p;
  return PL_OK;
fail:
  pl_policy_destroy(p);
  return rc;
}

void pl_policy_destroy(pl_policy *p) {
  if (!p)
    return;
  if (p->state && p->ops->fini)
    p->ops->fini(p->state);
  for (int l = 0; l < p->env.layers; l++) {
    if (p->cur)
      pl_placement_fini(&p->cur[l]);
    if (p->prev)
      pl_placement_fini(&p->prev[l]);
  }
  pl_free(p->cur);
  pl_free(p->prev);
  pl_free(p->inflight);
  pl_free(p->wfirst);
  pl_free(p);
}

const pl_policy_ops *pl_policy_ops_of(const pl_policy *p) { return p->ops; }
const char *pl_policy_spec(const pl_policy *p) { return p->spec; }

const pl_placement *pl_policy_placement(const pl_policy *p, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return NULL;
  return &p->cur[layer];
}

/* Clears a plan's fields but keeps its buffers (the placement and the moves
 * array), so a caller reusing one plan across iterations does not allocate
 * and fault in E x G ints per plan (1 MB at 1,024 GPUs x 256 experts). */
static void plan_reset(pl_plan *plan) {
  pl_placement keep = plan->placement;
  pl_move *moves = plan->moves;
  int cap = plan->cap_moves;
  pl_plan_init(plan);
  plan->placement = keep;
  plan->moves = moves;
  plan->cap_moves = moves ? cap : 0;
}

#ifndef NDEBUG
/* The invariants a placement in use always keeps, for assert(): every
 * expert has between 1 and G replicas, no GPU hosts more than its `slots`
 * (the cluster's slot limit), and the two views count the same replicas.
 * O(E + G), so it is cheap enough after every plan; pl_placement_check is
 * the full O(replicas) check a new placement gets before it is installed. */
static int placement_sound(const pl_placement *p, int slots) {
  int64_t nrep = 0, nhost = 0;
  for (int e = 0; e < p->experts; e++) {
    if (p->nrep[e] < 1 || p->nrep[e] > p->gpus)
      return 0;
    nrep += p->nrep[e];
  }
  for (int g = 0; g < p->gpus; g++) {
    if (p->nhost[g] < 0 || p->nhost[g] > slots)
      return 0;
    nhost += p->nhost[g];
  }
  return nrep == nhost;
}
#endif

/* Rule 6 of the background-move contract (pl_policy.h): keeps a policy's
 * weights_first only on a charged background plan (`background_plan`) and
 * then splits each copy into its weights (the first part, due before the
 * layer's forward) and the rest; every other plan's moves are one part. */
static void weights_first(const pl_policy *p, pl_plan *plan, int background_plan) {
  plan->weights_first = plan->weights_first && background_plan;
  int64_t w = pl_expert_weight_bytes(&p->env.model);
  for (int k = 0; k < plan->nmoves; k++) {
    pl_move *m = &plan->moves[k];
    m->weight_bytes = plan->weights_first && m->bytes > 0 ? (m->bytes < w ? m->bytes : w) : 0;
  }
}

int pl_policy_plan(pl_policy *p, int iteration, int layer,
                   const int64_t *upcoming, pl_plan *plan) {
  if (!p || !plan || layer < 0 || layer >= p->env.layers || iteration < 0)
    return PL_EINVAL;
  plan_reset(plan);
  p->inflight[layer] = 0; /* the previous plan's moves have landed */
  p->wfirst[layer] = 0;
  int rc = p->ops->plan(p->state, iteration, layer, &p->cur[layer],
                        p->ops->clairvoyant ? upcoming : NULL, plan);
  if (rc || !plan->changed)
    goto done;
  if (p->has_background)
    plan->background = p->background;
  pl_placement *next = &plan->placement;
  if ((rc = pl_placement_check(next)) != 0)
    goto done;
  int n = 0;
  int64_t bytes = pl_expert_move_bytes(&p->env.model);
  int gpn = p->env.cluster.gpus_per_node;
  if ((rc = pl_placement_diff(&p->cur[layer], next, layer, gpn, bytes, NULL, &n)) != 0)
    goto done;
  if (n > plan->cap_moves || !plan->moves) {
    pl_free(plan->moves);
    plan->cap_moves = 0;
    plan->moves = pl_calloc((size_t)(n ? n : 1), sizeof(pl_move));
    if (!plan->moves) {
      rc = PL_ENOMEM;
      goto done;
    }
    plan->cap_moves = n ? n : 1;
  }
  if ((rc = pl_placement_diff(&p->cur[layer], next, layer, gpn, bytes, plan->moves, &n)) != 0)
    goto done;
  plan->nmoves = n;
  if (plan->copy_bytes > 0)
    for (int k = 0; k < n; k++)
      if (plan->moves[k].kind == PL_MOVE_REPLICATE)
        plan->moves[k].bytes = plan->copy_bytes;
  if (n == 0) {
    plan->changed = 0;
    goto done;
  }
  /* background moves are in flight during the iteration: keep what serves it
   * (unless weights-first: their weights land before the layer's forward) */
  int inflight = plan->background && !plan->uncharged;
  weights_first(p, plan, inflight);
  if (plan->weights_first)
    inflight = 0;
  if (inflight)
    rc = pl_placement_copy(&p->prev[layer], &p->cur[layer]);
  if (!rc)
    rc = pl_placement_copy(&p->cur[layer], next);
  p->inflight[layer] = !rc && inflight;
  p->wfirst[layer] = !rc && plan->weights_first;
done:
  plan->weights_first = p->wfirst[layer]; /* a plan that moves nothing is not */
  if (rc)
    pl_plan_fini(plan);
  /* whatever the policy proposed, the placement serving the layer keeps the
   * slot limit and one replica per expert */
  assert(rc || placement_sound(&p->cur[layer], p->env.cluster.slots));
  assert(rc || !p->inflight[layer] ||
         placement_sound(&p->prev[layer], p->env.cluster.slots));
  return rc;
}

/* Routes on placement pl with the policy's per-source capacity, if any. */
static int route_on(pl_policy *p, const pl_placement *pl, int layer, const int64_t *counts,
                    pl_routing *r) {
  if (!p->ops->capacity)
    return pl_route(pl, &p->env.cluster, counts, -1, r);
  if (!r || !r->cap || !counts || r->gpus != p->env.cluster.gpus)
    return PL_EINVAL;
  int rc = p->ops->capacity(p->state, layer, counts, r->cap);
  return rc ? rc : pl_route_caps(pl, &p->env.cluster, counts, r->cap, r);
}

int pl_policy_route(pl_policy *p, int layer, const int64_t *counts,
                    pl_routing *r) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return PL_EINVAL;
  return route_on(p, &p->cur[layer], layer, counts, r);
}

const pl_placement *pl_policy_serving(const pl_policy *p, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return NULL;
  return p->inflight[layer] ? &p->prev[layer] : &p->cur[layer];
}

const int *pl_policy_shadows(const pl_policy *p, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers || !p->ops->shadows)
    return NULL;
  return p->ops->shadows(p->state, layer);
}

int pl_policy_inflight(const pl_policy *p, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return 0;
  return p->inflight[layer] != 0;
}

int pl_policy_weights_first(const pl_policy *p, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return 0;
  return p->wfirst[layer] != 0;
}

int pl_policy_background(const pl_policy *p) {
  return p && p->has_background && p->background;
}

int pl_policy_shadowing(const pl_policy *p) { return p && p->ops->shadows != NULL; }

int pl_policy_route_serving(pl_policy *p, int layer, const int64_t *counts,
                            pl_routing *r) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return PL_EINVAL;
  return route_on(p, pl_policy_serving(p, layer), layer, counts, r);
}

int pl_policy_has_temporaries(const pl_policy *p) {
  return p && p->ops->temporaries != NULL;
}

int pl_policy_temporaries(pl_policy *p, int layer, const int64_t *counts, pl_temps *t) {
  if (t)
    t->n = 0, t->host_us = 0;
  if (!p || !t || !counts || layer < 0 || layer >= p->env.layers)
    return PL_EINVAL;
  if (!p->ops->temporaries)
    return PL_OK;
  int rc = p->ops->temporaries(p->state, layer, pl_policy_serving(p, layer), &p->cur[layer],
                               counts, t);
  if (rc)
    t->n = 0;
  return rc;
}

int pl_policy_route_temporaries(pl_policy *p, int layer, const int64_t *counts, pl_temps *t,
                                pl_routing *r) {
  int rc = pl_policy_temporaries(p, layer, counts, t);
  if (rc)
    return rc;
  return route_on(p, t->n ? &t->placement : pl_policy_serving(p, layer), layer, counts, r);
}

int pl_policy_route_ready(const pl_policy *p, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers)
    return 0;
  if (!p->ops->capacity && !p->ops->temporaries)
    return 1;
  return p->ops->route_ready ? p->ops->route_ready(p->state, layer) != 0 : 0;
}
int pl_policy_ahead(pl_policy *p, int iteration, int layer) {
  if (!p || layer < 0 || layer >= p->env.layers || iteration < 0)
    return PL_EINVAL;
  return p->ops->ahead ? p->ops->ahead(p->state, iteration, layer, &p->cur[layer]) : PL_OK;
}
int pl_policy_observe(pl_policy *p, int iteration, int layer,
                      const int64_t *counts) {
  if (!p || !counts || layer < 0 || layer >= p->env.layers)
    return PL_EINVAL;
  return p->ops->observe ? p->ops->observe(p->state, iteration, layer, counts) : PL_OK;
}
