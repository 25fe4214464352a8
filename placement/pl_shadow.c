/*
 * pl_shadow.c - temporaries on the iteration's own counts (see
 * pl_shadow.h for the model and the greedy decision).
 *
 * The decision keeps, per GPU, the forward compute of its planned copies
 * (own) and of its temporaries (tmp), the all-to-all wire tokens (hose, in
 * pl_routing's layout) and the temporaries' copy bytes in and out per link
 * class; per expert an augmented replica list (planned + temporaries,
 * ascending). An expert's tokens are routed by pl_route's rule (a replica
 * on the source; else those on its node, evenly; else all, evenly; the
 * remainder from index src mod k), one expert at a time, so a trial
 * re-routes only the expert it copies. Every sum runs in a fixed order:
 * the same inputs give the same temporaries, bit for bit.
 */
#include "placement/pl_shadow.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"

void pl_temps_fini(pl_temps *t) {
  if (!t)
    return;
  pl_free(t->temp);
  pl_placement_fini(&t->placement);
  pl_free(t->load);
  pl_free(t->col);
  pl_free(t->hose);
  pl_free(t->own);
  pl_free(t->freeslots);
  pl_free(t->rep);
  pl_free(t->nrep);
  memset(t, 0, sizeof(*t));
}

int pl_temps_init(pl_temps *t, int experts, int gpus, int slots) {
  if (!t || experts < 1 || gpus < 1 || slots < 1)
    return PL_EINVAL;
  size_t E = (size_t)experts, G = (size_t)gpus;
  pl_temps s = {.experts = experts, .gpus = gpus};
  int rc = pl_placement_init(&s.placement, experts, gpus, slots);
  if (rc)
    return rc;
  s.temp = pl_calloc(E * G, sizeof(pl_temp));
  s.load = pl_calloc(E * G, sizeof(int64_t));
  s.col = pl_calloc(G, sizeof(int64_t));
  s.hose = pl_calloc(8 * G, sizeof(int64_t));
  s.own = pl_calloc(9 * G, sizeof(double)); /* one block for the [G] doubles, carved below */
  s.freeslots = pl_calloc(5 * G, sizeof(int));
  s.rep = pl_calloc(E * G, sizeof(int));
  s.nrep = pl_calloc(E, sizeof(int));
  if (!s.temp || !s.load || !s.col || !s.hose || !s.own || !s.freeslots || !s.rep || !s.nrep) {
    pl_temps_fini(&s);
    return PL_ENOMEM;
  }
  s.those = s.hose + 4 * G;
  s.tmp = s.own + G;
  s.town = s.own + 2 * G;
  s.ttmp = s.own + 3 * G;
  s.oin = s.own + 4 * G;
  s.oout = s.own + 5 * G;
  s.xin = s.own + 6 * G;
  s.xout = s.own + 7 * G;
  s.arr = s.own + 8 * G;
  s.sent = s.freeslots + G;
  s.cand = s.freeslots + 2 * G;
  s.trep = s.freeslots + 3 * G;
  *t = s;
  return PL_OK;
}

/* ------------------------------------------------ routing, one expert --- */

static int lower_bound(const int *a, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (a[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Routes expert x's counts over the ascending replica list rep[0..n) by
 * pl_route's rule: adds sign x its tokens per GPU to col (if non-NULL) and
 * its wire tokens to hose [4G]. */
static void route_expert(const int64_t *counts, int G, int E, int gpn, int x, const int *rep,
                         int n, int64_t sign, int64_t *col, int64_t *hose) {
  for (int src = 0; src < G; src++) {
    int64_t tokens = counts[(size_t)src * E + x];
    if (tokens == 0)
      continue;
    int node_lo = (src / gpn) * gpn;
    int lo = lower_bound(rep, n, node_lo), hi = lower_bound(rep, n, node_lo + gpn);
    int self = lower_bound(rep + lo, hi - lo, src) + lo, inter = 0;
    if (self < hi && rep[self] == src) {
      lo = self;
      hi = self + 1;
    } else if (hi == lo) {
      lo = 0;
      hi = n;
      inter = 1;
    }
    int k = hi - lo;
    for (int i = 0; i < k; i++) {
      int64_t share = tokens / k + (((i - src % k + k) % k) < tokens % k ? 1 : 0);
      int dst = rep[lo + i];
      if (!share)
        continue;
      if (col)
        col[dst] += sign * share;
      if (dst != src) {
        hose[2 * (size_t)G * inter + (size_t)src] += sign * share;
        hose[2 * (size_t)G * inter + (size_t)G + (size_t)dst] += sign * share;
      }
    }
  }
}

/* ------------------------------------------------------------- model --- */

/* The numbers the model reads, fixed for one decision. */
typedef struct model {
  const pl_cluster *c;
  const pl_profile *prof;
  double tb;         /* bytes of one token slot */
  double pbytes;     /* bytes of one expert's weights */
  double inter_Bps;  /* NIC share over the oversubscription */
  double bwd;
} model;

/* One all-to-all's time (us) of the slowest GPU for wire tokens h [4G]:
 * intra and inter links at once, each max(out, in) plus its latency. */
static double a2a_us(const model *md, const int64_t *h, int G) {
  double worst = 0;
  for (int g = 0; g < G; g++) {
    int64_t intra = h[g] > h[G + g] ? h[g] : h[G + g];
    int64_t inter = h[2 * G + g] > h[3 * G + g] ? h[2 * G + g] : h[3 * G + g];
    double a = intra ? md->c->intra_lat_s + (double)intra * md->tb / md->c->intra_Bps : 0;
    double b = inter ? md->c->inter_lat_s + (double)inter * md->tb / md->inter_Bps : 0;
    double t = a > b ? a : b;
    if (t > worst)
      worst = t;
  }
  return worst * 1e6;
}

/* Copy time (us, no latency) of the bytes a GPU sends or receives. */
static double link_us(const model *md, double intra, double inter) {
  double a = intra / md->c->intra_Bps, b = inter / md->inter_Bps;
  return (a > b ? a : b) * 1e6;
}

/* Predicted layer time of the state (own, tmp, hose, copy bytes,
 * temporaries temp[0..n)), split into the balance part (bal) and the
 * copies' cost (cost); returns their sum. Writes t->arr. */
static double predict(pl_temps *t, const model *md, const double *own, const double *tmp,
                      const int64_t *hose, const pl_temp *temp, int n, double *bal,
                      double *cost) {
  int G = t->gpus, gpn = md->c->gpus_per_node;
  double cmax = 0;
  for (int g = 0; g < G; g++) {
    t->arr[g] = 0;
    if (own[g] + tmp[g] > cmax)
      cmax = own[g] + tmp[g];
  }
  double rmax = 0;
  for (int k = 0; k < n; k++) {
    int a = temp[k].from, b = temp[k].to;
    double lat = (a / gpn != b / gpn ? md->c->inter_lat_s : md->c->intra_lat_s) * 1e6;
    double in = link_us(md, t->oin[b], t->xin[b]), out = link_us(md, t->oout[a], t->xout[a]);
    double at = lat + (in > out ? in : out);
    if (at > t->arr[b])
      t->arr[b] = at;
    if (at > rmax)
      rmax = at; /* the gradient's way back: the same bytes, reversed */
  }
  double f = 0;
  for (int g = 0; g < G; g++) {
    double ready = own[g] > t->arr[g] ? own[g] : t->arr[g];
    if (ready + tmp[g] > f)
      f = ready + tmp[g];
  }
  *bal = (1 + md->bwd) * cmax + 4 * a2a_us(md, hose, G);
  *cost = (f - cmax) + rmax;
  return *bal + *cost;
}

/* ---------------------------------------------------------- decision --- */

/* The state of placement p (augmented lists t->rep/nrep for every expert)
 * with no temporaries: loads, compute, wire tokens; copy bytes zero. */
static void base_state(pl_temps *t, const model *md, const pl_placement *p,
                       const int64_t *counts) {
  int G = t->gpus, E = t->experts, gpn = md->c->gpus_per_node;
  memset(t->load, 0, (size_t)G * E * sizeof(int64_t));
  memset(t->hose, 0, 4 * (size_t)G * sizeof(int64_t));
  for (int x = 0; x < E; x++) {
    memcpy(t->rep + (size_t)x * G, p->rep + (size_t)x * G, (size_t)p->nrep[x] * sizeof(int));
    t->nrep[x] = p->nrep[x];
    memset(t->col, 0, (size_t)G * sizeof(int64_t));
    route_expert(counts, G, E, gpn, x, p->rep + (size_t)x * G, p->nrep[x], 1, t->col, t->hose);
    for (int i = 0; i < p->nrep[x]; i++) {
      int g = p->rep[(size_t)x * G + i];
      t->load[(size_t)g * E + x] = t->col[g];
    }
  }
  for (int g = 0; g < G; g++) {
    double us = 0;
    for (int x = 0; x < E; x++)
      if (t->load[(size_t)g * E + x])
        us += pl_ffn_us(md->prof, (double)t->load[(size_t)g * E + x]);
    t->own[g] = us;
    t->tmp[g] = t->oin[g] = t->oout[g] = t->xin[g] = t->xout[g] = 0;
  }
}

/* The holder that sends expert x's copy to d: a planned replica on d's
 * node if any, else any planned one; the fewest copies sent, then the
 * lowest id. */
static int holder(const pl_temps *t, const pl_placement *sv, int gpn, int x, int d) {
  const int *rep = sv->rep + (size_t)x * sv->gpus;
  int best = -1, best_local = 0;
  for (int i = 0; i < sv->nrep[x]; i++) {
    int g = rep[i], local = g / gpn == d / gpn;
    if (best < 0 || local > best_local ||
        (local == best_local && t->sent[g] < t->sent[best])) {
      best = g;
      best_local = local;
    }
  }
  return best;
}

/* Adds (sign 1) or removes (-1) the weight bytes of a copy h -> d. */
static void copy_bytes(pl_temps *t, const model *md, int h, int d, double sign) {
  int gpn = md->c->gpus_per_node;
  if (h / gpn == d / gpn) {
    t->oout[h] += sign * md->pbytes;
    t->oin[d] += sign * md->pbytes;
  } else {
    t->xout[h] += sign * md->pbytes;
    t->xin[d] += sign * md->pbytes;
  }
}

typedef struct trial {
  int x, d, h;
  double total, bal, cost;
} trial;

/* Up to t->cand's room of the least computing GPUs with a free slot and no
 * copy of x, ascending (ties: lowest id): their count. */
static int candidates(pl_temps *t, int x, int want) {
  int G = t->gpus, nc = 0;
  const int *rep = t->rep + (size_t)x * G;
  for (int g = 0; g < G; g++) {
    if (t->freeslots[g] <= 0)
      continue;
    int at = lower_bound(rep, t->nrep[x], g);
    if (at < t->nrep[x] && rep[at] == g)
      continue;
    double v = t->own[g] + t->tmp[g];
    int j;
    if (nc == want) {
      int last = t->cand[want - 1];
      if (!(v < t->own[last] + t->tmp[last]))
        continue;
      j = want - 1;
    } else {
      j = nc++;
    }
    while (j > 0 && t->own[t->cand[j - 1]] + t->tmp[t->cand[j - 1]] > v) {
      t->cand[j] = t->cand[j - 1];
      j--;
    }
    t->cand[j] = g;
  }
  return nc;
}

/* Evaluates copying x to d (from holder h) without committing: the trial
 * state in town/ttmp/those and the copy bytes added then removed. */
static void evaluate(pl_temps *t, const model *md, const pl_placement *sv,
                     const int64_t *counts, trial *tr) {
  int G = t->gpus, E = t->experts, gpn = md->c->gpus_per_node, x = tr->x, d = tr->d;
  const int *rep = t->rep + (size_t)x * G;
  int n = t->nrep[x], at = lower_bound(rep, n, d);
  memcpy(t->trep, rep, (size_t)at * sizeof(int));
  t->trep[at] = d;
  memcpy(t->trep + at + 1, rep + at, (size_t)(n - at) * sizeof(int));
  memcpy(t->town, t->own, (size_t)G * sizeof(double));
  memcpy(t->ttmp, t->tmp, (size_t)G * sizeof(double));
  memcpy(t->those, t->hose, 4 * (size_t)G * sizeof(int64_t));
  for (int i = 0; i <= n; i++)
    t->col[t->trep[i]] = 0;
  route_expert(counts, G, E, gpn, x, rep, n, -1, NULL, t->those);
  route_expert(counts, G, E, gpn, x, t->trep, n + 1, 1, t->col, t->those);
  for (int i = 0; i <= n; i++) {
    int g = t->trep[i];
    int64_t was = g == d ? 0 : t->load[(size_t)g * E + x];
    double delta = pl_ffn_us(md->prof, (double)t->col[g]) - pl_ffn_us(md->prof, (double)was);
    if (g == d || !pl_placement_has(sv, x, g))
      t->ttmp[g] += delta;
    else
      t->town[g] += delta;
  }
  t->temp[t->n] = (pl_temp){.expert = x, .from = tr->h, .to = d};
  copy_bytes(t, md, tr->h, d, 1);
  tr->total = predict(t, md, t->town, t->ttmp, t->those, t->temp, t->n + 1, &tr->bal, &tr->cost);
  copy_bytes(t, md, tr->h, d, -1);
}

/* Takes trial tr: its loads, compute, wire tokens, copy bytes, replica
 * list and slot. */
static void commit(pl_temps *t, const model *md, const pl_placement *sv,
                   const int64_t *counts, const trial *tr) {
  evaluate(t, md, sv, counts, (trial *)tr); /* trial state again, for this tr */
  int G = t->gpus, E = t->experts, x = tr->x;
  int n = t->nrep[x] + 1;
  memcpy(t->rep + (size_t)x * G, t->trep, (size_t)n * sizeof(int));
  t->nrep[x] = n;
  for (int i = 0; i < n; i++)
    t->load[(size_t)t->trep[i] * E + x] = t->col[t->trep[i]];
  memcpy(t->own, t->town, (size_t)G * sizeof(double));
  memcpy(t->tmp, t->ttmp, (size_t)G * sizeof(double));
  memcpy(t->hose, t->those, 4 * (size_t)G * sizeof(int64_t));
  copy_bytes(t, md, tr->h, tr->d, 1);
  t->sent[tr->h]++;
  t->freeslots[tr->d]--;
  t->n++;
}

/* Free slots of each GPU: slots less its experts in sv and in cur. */
static void free_slots(pl_temps *t, const pl_placement *sv, const pl_placement *cur, int slots) {
  for (int g = 0; g < t->gpus; g++) {
    int used = sv->nhost[g];
    if (cur && cur != sv) {
      const int *a = sv->host + (size_t)g * sv->slots, *b = cur->host + (size_t)g * cur->slots;
      int i = 0, na = sv->nhost[g];
      for (int j = 0; j < cur->nhost[g]; j++) { /* both ascending: merge */
        while (i < na && a[i] < b[j])
          i++;
        if (i == na || a[i] != b[j])
          used++;
      }
    }
    t->freeslots[g] = slots - used;
    t->sent[g] = 0;
  }
}

/* The two most loaded experts of GPU b (load > 0), into top[]: count. */
static int hottest(const pl_temps *t, int b, int top[2]) {
  int E = t->experts, k = 0;
  const int64_t *ld = t->load + (size_t)b * E;
  top[0] = top[1] = -1;
  for (int x = 0; x < E; x++) {
    if (ld[x] <= 0)
      continue;
    if (top[0] < 0 || ld[x] > ld[top[0]]) {
      top[1] = top[0];
      top[0] = x;
    } else if (top[1] < 0 || ld[x] > ld[top[1]]) {
      top[1] = x;
    }
  }
  k = (top[0] >= 0) + (top[1] >= 0);
  return k;
}

static int check_args(const pl_temps *t, const pl_temps_cfg *cfg, const pl_cluster *c,
                      const pl_model *m, const pl_profile *prof, const pl_placement *sv,
                      const pl_placement *cur, const int64_t *counts, int slots) {
  if (!t || !t->temp || !cfg || !c || !m || !prof || !sv || !counts)
    return PL_EINVAL;
  if (sv->experts != t->experts || sv->gpus != t->gpus || c->gpus != t->gpus ||
      sv->slots != t->placement.slots || slots < 1 || slots > sv->slots)
    return PL_EINVAL;
  if (cur && (cur->experts != sv->experts || cur->gpus != sv->gpus || cur->slots != sv->slots))
    return PL_EINVAL;
  if (!(cfg->margin >= 1) || !isfinite(cfg->margin) || cfg->max_temps < 0 ||
      cfg->candidates < 1 || pl_cluster_check(c) || pl_profile_check(prof))
    return PL_EINVAL;
  for (size_t i = 0; i < (size_t)sv->gpus * sv->experts; i++)
    if (counts[i] < 0)
      return PL_EINVAL;
  return PL_OK;
}

static model model_of(const pl_cluster *c, const pl_model *m, const pl_profile *prof) {
  return (model){.c = c, .prof = prof, .tb = (double)pl_token_bytes(m),
                 .pbytes = (double)pl_expert_params(m) * m->bytes_per_elem,
                 .inter_Bps = c->inter_Bps / c->oversub, .bwd = prof->bwd_ratio};
}

int pl_temps_decide(pl_temps *t, const pl_temps_cfg *cfg, const pl_cluster *c,
                    const pl_model *m, const pl_profile *prof, const pl_placement *serving,
                    const pl_placement *current, const int64_t *counts, int slots) {
  if (t)
    t->n = 0, t->gain_us = t->cost_us = 0;
  int rc = check_args(t, cfg, c, m, prof, serving, current, counts, slots);
  if (rc)
    return rc;
  model md = model_of(c, m, prof);
  int G = t->gpus;
  free_slots(t, serving, current, slots);
  base_state(t, &md, serving, counts);
  double bal0, cost0;
  double cur = predict(t, &md, t->own, t->tmp, t->hose, t->temp, 0, &bal0, &cost0);
  double bal = bal0, cost = cost0;
  int budget = cfg->max_temps > 0 ? cfg->max_temps : t->experts * G;
  int want = cfg->candidates < G ? cfg->candidates : G;
  while (t->n < budget) {
    int b = 0;
    for (int g = 1; g < G; g++)
      if (t->own[g] + t->tmp[g] > t->own[b] + t->tmp[b])
        b = g;
    int top[2], nt = hottest(t, b, top);
    trial best = {.x = -1};
    for (int i = 0; i < nt; i++) {
      int nc = candidates(t, top[i], want);
      for (int j = 0; j < nc; j++) {
        trial tr = {.x = top[i], .d = t->cand[j]};
        tr.h = holder(t, serving, c->gpus_per_node, tr.x, tr.d);
        evaluate(t, &md, serving, counts, &tr);
        if (best.x < 0 || tr.total < best.total)
          best = tr;
      }
    }
    if (best.x < 0 || !(best.total < cur) ||
        !(bal - best.bal > cfg->margin * (best.cost - cost)))
      break;
    commit(t, &md, serving, counts, &best);
    cur = best.total;
    bal = best.bal;
    cost = best.cost;
  }
  if (t->n == 0)
    return PL_OK;
  t->gain_us = bal0 - bal;
  t->cost_us = cost - cost0;
  if ((rc = pl_placement_copy(&t->placement, serving)) != 0)
    goto fail;
  for (int k = 0; k < t->n && !rc; k++)
    rc = pl_placement_add(&t->placement, t->temp[k].expert, t->temp[k].to);
  if (rc)
    goto fail;
  return PL_OK;
fail:
  t->n = 0;
  t->gain_us = t->cost_us = 0;
  return rc;
}

int pl_temps_predict_us(pl_temps *t, const pl_cluster *c, const pl_model *m,
                        const pl_profile *prof, const pl_placement *p, const pl_temp *temp,
                        int n, const int64_t *counts, double *us) {
  pl_temps_cfg cfg = {.margin = 1, .max_temps = 0, .candidates = 1};
  int rc = check_args(t, &cfg, c, m, prof, p, NULL, counts, p ? p->slots : 1);
  if (rc || !us || n < 0 || (n && !temp) || n > t->experts * t->gpus)
    return rc ? rc : PL_EINVAL;
  model md = model_of(c, m, prof);
  base_state(t, &md, p, counts);
  /* temporaries' compute moves from own to tmp, their bytes onto the links */
  for (int k = 0; k < n; k++) {
    int x = temp[k].expert, d = temp[k].to;
    if (x < 0 || x >= t->experts || d < 0 || d >= t->gpus || temp[k].from < 0 ||
        temp[k].from >= t->gpus || !pl_placement_has(p, x, d))
      return PL_EINVAL;
    double us_d = pl_ffn_us(md.prof, (double)t->load[(size_t)d * t->experts + x]);
    t->own[d] -= us_d;
    t->tmp[d] += us_d;
    copy_bytes(t, &md, temp[k].from, d, 1);
  }
  if (n) /* copy: t->temp is the decision's, temp may be it */
    memmove(t->temp, temp, (size_t)n * sizeof(pl_temp));
  double bal, cost;
  *us = predict(t, &md, t->own, t->tmp, t->hose, t->temp, n, &bal, &cost);
  t->n = 0;
  return PL_OK;
}
