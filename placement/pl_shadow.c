/*
 * pl_shadow.c - temporaries on the iteration's own counts (see
 * pl_shadow.h for the model and the greedy decision).
 *
 * The model's state: per (node, expert) the tokens the node's sources send
 * the expert (ns), those of its sources that hold a copy (lh) and its
 * copies (rn); per expert the tokens from nodes without a copy (rem); per
 * GPU its wire tokens (h, pl_routing's hose layout, fractional), the
 * forward compute of its planned copies (own) and of its temporaries
 * (tmp), and the temporaries' weight bytes in and out. A copy of x on GPU
 * g in node n receives
 *   counts[g][x] + (ns[n][x] - lh[n][x]) / rn[n][x] + rem[x] / copies(x),
 * its own tokens, its share of its node's and its share of the rest.
 * A trial (x to d) changes the copies of x, d, and when d's node had no
 * copy of x the sources of d's node (their tokens of x stay inside the
 * node): those GPUs get new values in the trial arrays (marked with the
 * trial's stamp). The maxima over the GPUs are taken without a scan (1,024
 * GPUs made the scan 75% of a simulation): the marked GPUs one by one,
 * the others from orders of the committed state ("orders"); trials on a
 * node already holding the expert share one "base" of its copies
 * elsewhere, trials on one node without a copy another ("trials on a
 * base"); the weights' arrivals are kept per GPU and a trial recomputes
 * those it changes. Each GPU's value is the same double a scan computes
 * and a maximum does not depend on the order it is taken in, so the
 * decisions are those of the scan, bit for bit (tests/run/golden and
 * test_shadow's recomputation from scratch). Every sum runs in a fixed
 * order: the same inputs give the same temporaries, bit for bit.
 */
#include "placement/pl_shadow.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"

/* The orders of the committed state (see "orders" below). */
enum { ORD_C, ORD_A, ORD_F, NORD };

void pl_temps_fini(pl_temps *t) {
  if (!t)
    return;
  pl_free(t->temp);
  pl_placement_fini(&t->placement);
  pl_free(t->ns);
  pl_free(t->rn);
  pl_free(t->hosts);
  pl_free(t->h);
  pl_free(t->rep);
  pl_free(t->nrep);
  pl_free(t->freeslots);
  pl_free(t->ord);
  pl_free(t->tnext);
  pl_free(t->isum);
  pl_free(t->nfree);
  pl_free(t->nval);
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
  /* N <= G nodes: [N*E] arrays get G*E room */
  s.temp = pl_calloc(E * G, sizeof(pl_temp));
  s.ns = pl_calloc(2 * E * G + E, sizeof(double)); /* ns, lh, rem */
  s.rn = pl_calloc(E * G, sizeof(int));
  s.hosts = pl_calloc(E * G, 1);
  s.h = pl_calloc(30 * G, sizeof(double)); /* h, nh, the 19 [G] doubles, okey */
  s.rep = pl_calloc(E * G, sizeof(int));
  s.nrep = pl_calloc(E, sizeof(int));
  s.freeslots = pl_calloc(8 * G, sizeof(int));
  s.tnext = pl_calloc(2 * E * G, sizeof(int));
  s.ord = pl_calloc((NORD + 2) * G, sizeof(int)); /* the orders, then [2G] scratch */
  s.isum = pl_calloc(2 * E, sizeof(int64_t));
  s.nfree = pl_calloc(6 * G, sizeof(int)); /* nfree, nok, narg, gnode */
  s.nval = pl_calloc(5 * G, sizeof(double));
  if (!s.temp || !s.ns || !s.rn || !s.hosts || !s.h || !s.rep || !s.nrep || !s.freeslots ||
      !s.ord || !s.tnext || !s.isum || !s.nfree || !s.nval) {
    pl_temps_fini(&s);
    return PL_ENOMEM;
  }
  s.lh = s.ns + E * G;
  s.rem = s.ns + 2 * E * G;
  s.nh = s.h + 4 * G;
  s.okey = s.h + 27 * G; /* after the 19 [G] doubles */
  double *d = s.h + 8 * G;
  double **v[] = {&s.own,  &s.tmp,  &s.nown, &s.ntmp, &s.oin, &s.oout, &s.xin,
                  &s.xout, &s.arr,  &s.a2a,  &s.na2a, &s.carr, &s.wus,
                  &s.base[0].own, &s.base[0].tmp, &s.base[0].a2a,
                  &s.base[1].own, &s.base[1].tmp, &s.base[1].a2a};
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
    *v[i] = d + i * G;
  s.sent = s.freeslots + G;
  s.mark = s.freeslots + 2 * G;
  s.chg = s.freeslots + 3 * G;
  s.amark = s.freeslots + 4 * G;
  s.amk = s.freeslots + 5 * G;
  s.hto = s.freeslots + 6 * G;
  s.hfrom = s.freeslots + 7 * G;
  s.ordtmp = s.ord + NORD * G;
  s.nok = s.nfree + 2 * G;
  s.narg = s.nfree + 3 * G;
  s.gnode = s.nfree + 5 * G;
  *t = s;
  return PL_OK;
}

/* ------------------------------------------------------------- model --- */

/* The numbers the model reads, fixed for one decision. */
typedef struct model {
  const pl_cluster *c;
  const pl_profile *prof;
  const int64_t *counts;
  int G, E, gpn;
  const int *node;  /* [G] each GPU's node, g / gpn (pl_temps.gnode) */
  double tb;        /* bytes of one token slot */
  double pbytes;    /* bytes of one expert's weights */
  double inter_Bps; /* NIC share over the oversubscription */
  double bwd;
  double hide_us;   /* pl_temps_cfg.grad_hide_us */
} model;

static model model_of(pl_temps *t, const pl_cluster *c, const pl_model *m,
                      const pl_profile *prof, const int64_t *counts, int experts,
                      double hide_us) {
  for (int g = 0; g < c->gpus; g++)
    t->gnode[g] = g / c->gpus_per_node;
  return (model){.c = c, .prof = prof, .counts = counts, .G = c->gpus, .node = t->gnode,
                 .E = experts, .gpn = c->gpus_per_node, .tb = (double)pl_token_bytes(m),
                 .pbytes = (double)pl_expert_params(m) * m->bytes_per_elem,
                 .inter_Bps = c->inter_Bps / c->oversub, .bwd = prof->bwd_ratio,
                 .hide_us = hide_us};
}

/* One all-to-all's time (us) of a GPU with wire tokens io (intra out, intra
 * in, inter out, inter in): both links at once, each max(out, in) plus
 * its latency. */
static double a2a_us(const model *md, double io, double ii, double xo, double xi) {
  double intra = io > ii ? io : ii, inter = xo > xi ? xo : xi;
  double a = intra > 0 ? md->c->intra_lat_s + intra * md->tb / md->c->intra_Bps : 0;
  double b = inter > 0 ? md->c->inter_lat_s + inter * md->tb / md->inter_Bps : 0;
  return (a > b ? a : b) * 1e6;
}

static double gpu_a2a(const model *md, const double *h, int g) {
  int G = md->G;
  return a2a_us(md, h[g], h[G + g], h[2 * G + g], h[3 * G + g]);
}

/* Tokens a copy of x on node n receives from the node's other sources,
 * and from the nodes without a copy. */
static double share_node(const pl_temps *t, int x, int n) {
  size_t i = (size_t)n * t->experts + x;
  return t->rn[i] ? (t->ns[i] - t->lh[i]) / t->rn[i] : 0;
}

static double share_rest(const pl_temps *t, int x) {
  return t->nrep[x] ? t->rem[x] / t->nrep[x] : 0;
}

/* Copy time (us, no latency) of the bytes a GPU sends or receives. */
static double link_us(const model *md, double intra, double inter) {
  double a = intra / md->c->intra_Bps, b = inter / md->inter_Bps;
  return (a > b ? a : b) * 1e6;
}

/* The temporaries' weight arrivals for temp[0..n) from scratch: the
 * committed arrivals carr and their latest, crmax (the gradients' way
 * back, the same bytes reversed), and the lists of temporaries by
 * destination and by holder. */
static void arrivals_all(pl_temps *t, const model *md, const pl_temp *temp, int n) {
  t->crmax = 0;
  for (int k = 0; k < n; k++)
    t->carr[temp[k].to] = 0;
  for (int k = 0; k < n; k++) {
    int a = temp[k].from, b = temp[k].to;
    double lat = (md->node[a] != md->node[b] ? md->c->inter_lat_s : md->c->intra_lat_s) * 1e6;
    double in = link_us(md, t->oin[b], t->xin[b]), out = link_us(md, t->oout[a], t->xout[a]);
    double at = lat + (in > out ? in : out);
    if (at > t->carr[b])
      t->carr[b] = at;
    if (at > t->crmax)
      t->crmax = at;
    t->tnext[2 * k] = t->hto[b];
    t->hto[b] = k;
    t->tnext[2 * k + 1] = t->hfrom[a];
    t->hfrom[a] = k;
  }
}

/* Arrival (us) of a temporary a -> b with the current bytes. */
static double arrival(const pl_temps *t, const model *md, int a, int b) {
  double lat = (md->node[a] != md->node[b] ? md->c->inter_lat_s : md->c->intra_lat_s) * 1e6;
  double in = link_us(md, t->oin[b], t->xin[b]), out = link_us(md, t->oout[a], t->xout[a]);
  return lat + (in > out ? in : out);
}

/* arrival(t, md, a, b) with one more copy's bytes on a's and b's links
 * (the same doubles as copy_bytes(+1), arrival, copy_bytes(-1), without
 * changing the state). */
static double arrival_with(const pl_temps *t, const model *md, int a, int b) {
  int inter = md->node[a] != md->node[b];
  double lat = (inter ? md->c->inter_lat_s : md->c->intra_lat_s) * 1e6, p = md->pbytes;
  double in = inter ? link_us(md, t->oin[b], t->xin[b] + p) : link_us(md, t->oin[b] + p, t->xin[b]);
  double out =
      inter ? link_us(md, t->oout[a], t->xout[a] + p) : link_us(md, t->oout[a] + p, t->xout[a]);
  return lat + (in > out ? in : out);
}

/* The latest arrival at b of the temporaries copied to it, at least v
 * (b's other arrival so far); each raises *rmax, the latest of all. */
static double latest_arrival(const pl_temps *t, const model *md, int b, double v,
                             double *rmax) {
  for (int k = t->hto[b]; k >= 0; k = t->tnext[2 * k]) {
    double a = arrival(t, md, t->temp[k].from, b);
    v = a > v ? a : v;
    *rmax = a > *rmax ? a : *rmax;
  }
  return v;
}

/* The arrivals of a trial copy h -> d (its bytes already added): only the
 * temporaries to d and from h change (more bytes on d's way in and h's
 * way out), so the GPUs whose arrival changes are d and the destinations
 * of h's copies (listed in amk, marked amark = stamp, their arrival in
 * arr). A temporary's arrival only grows with bytes added, so the latest
 * of all (trmax) is the larger of crmax and the changed ones: what a
 * scan of every temporary gives, bit for bit. */
static void trial_arrivals(pl_temps *t, const model *md, int h, int d) {
  double at = arrival(t, md, h, d), rmax = at > t->crmax ? at : t->crmax;
  t->arr[d] = latest_arrival(t, md, d, at > 0 ? at : 0, &rmax);
  t->amark[d] = t->stamp;
  t->amk[0] = d;
  t->namk = 1;
  for (int k = t->hfrom[h]; k >= 0; k = t->tnext[2 * k + 1]) {
    int b = t->temp[k].to;
    if (t->amark[b] == t->stamp)
      continue;
    t->arr[b] = latest_arrival(t, md, b, 0, &rmax);
    t->amark[b] = t->stamp;
    t->amk[t->namk++] = b;
  }
  t->trmax = rmax;
}

/* ------------------------------------------------------------ orders --- */

/* The GPUs in orders of the committed state, each by value descending,
 * then id ascending: forward compute own + tmp (ORD_C) and one
 * all-to-all a2a (ORD_A), all G GPUs; the forward phase max(own, carr) +
 * tmp (ORD_F) only of the nf GPUs whose forward phase exceeds their
 * compute (a temporary arrives after their planned compute), for every
 * other GPU it equals its ORD_C key. The first entry is the scan's argmax
 * (lowest id among the largest); the first entry a trial has not marked
 * is the largest value of the GPUs it leaves alone, so predict() reads
 * the maxima of G GPUs in O(GPUs the trial changes) instead of O(G) (the
 * forward phase's as the larger of ORD_C's and ORD_F's: each is at most
 * the maximum, and the GPU that has it is in one of them with that value).
 * A commit re-sorts only the GPUs it changed and merges them back (O(G);
 * ORD_F O(nf + GPUs changed)). */

static double ord_value(const pl_temps *t, int which, int g) {
  if (which == ORD_C)
    return t->own[g] + t->tmp[g];
  if (which == ORD_A)
    return t->a2a[g];
  return (t->own[g] > t->carr[g] ? t->own[g] : t->carr[g]) + t->tmp[g];
}

/* Whether GPU a comes before b in order `which` (by the keys kv). */
static inline int ord_before(const double *kv, int a, int b) {
  return kv[a] > kv[b] || (kv[a] == kv[b] && a < b);
}

/* Merges a[0..na) and b[0..nb), each in kv's order, into out (b's entry
 * first only when it comes before a's); returns na + nb. */
static inline int merge_two(const double *kv, const int *a, int na, const int *b, int nb,
                            int *out) {
  int i = 0, j = 0, m = 0;
  while (i < na && j < nb)
    out[m++] = ord_before(kv, b[j], a[i]) ? b[j++] : a[i++];
  while (i < na)
    out[m++] = a[i++];
  while (j < nb)
    out[m++] = b[j++];
  return m;
}

/* Sorts idx[0..n) by keys kv (tmp [n] scratch): insertion sort of runs
 * of 16, then merges back and forth, two runs already in order copied
 * without a merge (a commit's GPUs come in their old order, which their
 * new keys mostly keep). The order is total (ids differ), so the result
 * does not depend on the method. */
static void ord_sort(const double *kv, int *idx, int n, int *tmp) {
  enum { RUN = 16 };
  for (int lo = 0; lo < n; lo += RUN) {
    int hi = lo + RUN < n ? lo + RUN : n;
    for (int i = lo + 1; i < hi; i++) {
      int v = idx[i], j = i;
      while (j > lo && ord_before(kv, v, idx[j - 1])) {
        idx[j] = idx[j - 1];
        j--;
      }
      idx[j] = v;
    }
  }
  int *src = idx, *dst = tmp;
  for (int w = RUN; w < n; w *= 2) {
    for (int lo = 0; lo < n; lo += 2 * w) {
      int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      if (mid < hi && ord_before(kv, src[mid], src[mid - 1]))
        merge_two(kv, src + lo, mid - lo, src + mid, hi - mid, dst + lo);
      else
        memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(int));
    }
    int *sw = src;
    src = dst;
    dst = sw;
  }
  if (src != idx)
    memcpy(idx, src, (size_t)n * sizeof(int));
}

/* Merges the kept o[0..k) and the sorted moved[0..nm) (both in kv's
 * order) through out back into o; returns k + nm. */
static int ord_merge(const double *kv, int *o, int k, const int *moved, int nm, int *out) {
  int m = merge_two(kv, o, k, moved, nm, out);
  memcpy(o, out, (size_t)m * sizeof(int));
  return m;
}

/* Rebuilds ORD_F from its unmarked entries (their keys unchanged, still
 * in order) and the GPUs chg[0..n) whose key now exceeds their ORD_C key;
 * every key of chg refreshed. */
static void ord_f_update(pl_temps *t, const int *chg, int n) {
  int G = t->gpus, k = 0, nm = 0;
  int *o = t->ord + (size_t)ORD_F * G, *moved = t->ordtmp + G, *out = t->ordtmp;
  double *kc = t->okey + (size_t)ORD_C * G, *kv = t->okey + (size_t)ORD_F * G;
  for (int i = 0; i < t->nf; i++)
    if (t->mark[o[i]] != t->stamp)
      o[k++] = o[i];
  for (int i = 0; i < n; i++) {
    int g = chg[i];
    kv[g] = ord_value(t, ORD_F, g);
    if (kv[g] != kc[g])
      moved[nm++] = g;
  }
  ord_sort(kv, moved, nm, out);
  t->nf = ord_merge(kv, o, k, moved, nm, out);
}

/* The orders and their keys from scratch (after build; ORD_F after the
 * arrivals). */
static void orders_build(pl_temps *t) {
  int G = t->gpus;
  for (int w = ORD_C; w <= ORD_A; w++) {
    int *o = t->ord + (size_t)w * G;
    double *kv = t->okey + (size_t)w * G;
    for (int g = 0; g < G; g++) {
      o[g] = g;
      kv[g] = ord_value(t, w, g);
    }
    ord_sort(kv, o, G, t->ordtmp);
  }
  t->nf = 0;
  t->stamp++; /* nothing marked */
  ord_f_update(t, t->ord + (size_t)ORD_C * G, G);
}

/* Puts the GPUs chg[0..n) (marked with the current stamp, a commit's:
 * their committed values changed) back in place in every order. In
 * ORD_C and ORD_A only those whose key changed move (a source's compute
 * does not change, nor does an arrival change a GPU's compute or
 * all-to-all): one pass takes them out in their old order, and they are
 * sorted and merged back. */
static void orders_update(pl_temps *t, const int *chg, int n) {
  int G = t->gpus;
  int *moved = t->ordtmp + G; /* [G] */
  for (int w = ORD_C; w <= ORD_A; w++) {
    int *o = t->ord + (size_t)w * G, *out = t->ordtmp, k = 0, nm = 0;
    double *kv = t->okey + (size_t)w * G;
    for (int i = 0; i < G; i++) {
      int g = o[i];
      if (t->mark[g] == t->stamp) {
        double v = ord_value(t, w, g);
        int same = v == kv[g];
        kv[g] = v;
        if (!same) {
          moved[nm++] = g;
          continue;
        }
      }
      o[k++] = g;
    }
    if (nm == 0)
      continue;
    ord_sort(kv, moved, nm, out);
    ord_merge(kv, o, k, moved, nm, out);
  }
  ord_f_update(t, chg, n);
}

/* The first GPU of order `which` that the current trial has not marked
 * (-1 when it marked all). */
static int ord_first_unmarked(const pl_temps *t, int which) {
  const int *o = t->ord + (size_t)which * t->gpus;
  for (int i = 0; i < (which == ORD_F ? t->nf : t->gpus); i++)
    if (t->mark[o[i]] != t->stamp)
      return o[i];
  return -1;
}

/* Predicted layer time for the state with the trial's values where
 * mark[g] == stamp (the GPUs chg[0..nchg)) and temporaries temp[0..n)
 * (pl_shadow.h's formula), split into its balance part (bal) and the
 * copies' cost (cost). The maxima over the GPUs: the marked ones and the
 * temporaries' destinations (their arrivals) one by one, the others from
 * the orders; every GPU's value is the same double as in a scan, and a
 * maximum does not depend on the order it is taken in, so the result is
 * the scan's bit for bit. The balance part needs only the marked GPUs
 * (an unmarked GPU's compute and all-to-all are its keys in the orders);
 * when it is not below `cut` the cost (>= 0: the forward phase is at
 * least the compute maximum) is not computed and bal is returned, *cost
 * = 0: a trial that cannot beat the best so far is not finished. */
static double predict(pl_temps *t, const model *md, int h, int d, int nchg, double cut,
                      double *bal, double *cost) {
  int G = t->gpus;
  double cmax = 0, amax = 0, f = 0;
  for (int k = 0; k < nchg; k++) {
    int g = t->chg[k];
    double own = t->nown[g], tmp = t->ntmp[g], a = t->na2a[g];
    cmax = own + tmp > cmax ? own + tmp : cmax;
    amax = a > amax ? a : amax;
  }
  int gc = ord_first_unmarked(t, ORD_C), ga = ord_first_unmarked(t, ORD_A);
  if (gc >= 0) {
    double v = t->okey[gc], a = t->okey[G + ga];
    cmax = v > cmax ? v : cmax;
    amax = a > amax ? a : amax;
  }
  *bal = (1 + md->bwd) * cmax + 4 * amax;
  *cost = 0;
  t->namk = 0;
  if (!(*bal < cut))
    return *bal;
  double rmax = t->crmax;
  if (d >= 0) {
    trial_arrivals(t, md, h, d);
    rmax = t->trmax;
  }
  for (int k = 0; k < nchg + t->namk; k++) {
    int g = k < nchg ? t->chg[k] : t->amk[k - nchg];
    int tr = t->mark[g] == t->stamp;
    double own = tr ? t->nown[g] : t->own[g], tmp = tr ? t->ntmp[g] : t->tmp[g];
    double arr = d >= 0 && t->amark[g] == t->stamp ? t->arr[g] : t->carr[g];
    double ready = own > arr ? own : arr;
    f = ready + tmp > f ? ready + tmp : f;
  }
  /* an unmarked GPU whose arrival the trial does not change has ready +
   * tmp = ORD_F's key; one whose arrival it changes was taken above with
   * a value at least as large (arrivals only grow) */
  int gf = ord_first_unmarked(t, ORD_F);
  if (gc >= 0)
    f = t->okey[gc] > f ? t->okey[gc] : f;
  if (gf >= 0)
    f = t->okey[2 * G + gf] > f ? t->okey[2 * G + gf] : f;
  t->rcost = rmax > t->rcost ? rmax : t->rcost;
  *cost = (f - cmax) + fmax(0.0, rmax - md->hide_us);
  return *bal + *cost;
}

/* ------------------------------------------------------ building it --- */

/* The model of placement p (every copy planned): ns, lh, rn, rem, hosts,
 * the replica lists, wire tokens and compute; no temporaries. PL_EINVAL
 * for a negative count (the model is then unusable; unbuild still
 * applies), else 0. */
static int build(pl_temps *t, const model *md, const pl_placement *p) {
  int G = md->G, E = md->E, gpn = md->gpn, N = G / gpn;
  const int64_t *counts = md->counts;
  int neg = 0;
  memset(t->lh, 0, (size_t)N * E * sizeof(double));
  memset(t->rem, 0, (size_t)E * sizeof(double));
  memset(t->rn, 0, (size_t)N * E * sizeof(int));
  for (int g = 0; g < G; g++) {
    const int *host = p->host + (size_t)g * p->slots;
    size_t nb = (size_t)(g / gpn) * E;
    for (int j = 0; j < p->nhost[g]; j++) {
      int x = host[j];
      t->hosts[(size_t)g * E + x] = 1;
      t->rn[nb + x]++;
      t->lh[nb + x] += (double)counts[(size_t)g * E + x];
    }
  }
  /* per node: integer sums of its sources' counts (exact, so ns is the
   * sum in doubles in any order) and each source's tokens to experts
   * with a copy on the node (mask), less those it holds: its intra-node
   * out; the rest of its tokens go across. Loops without branches. */
  int64_t *sum = t->isum, *mask = t->isum + E;
  for (int s = 0; s < G; s++) {
    const int64_t *row = counts + (size_t)s * E;
    const int *rn = t->rn + (size_t)(s / gpn) * E;
    if (s % gpn == 0)
      for (int x = 0; x < E; x++) {
        sum[x] = 0;
        mask[x] = rn[x] ? -1 : 0;
      }
    int64_t tot = 0, in = 0, mine = 0, bad = 0;
    for (int x = 0; x < E; x++) {
      int64_t v = row[x];
      bad |= v;
      sum[x] += v;
      tot += v;
      in += v & mask[x];
    }
    neg |= bad < 0;
    for (int j = 0; j < p->nhost[s]; j++)
      mine += row[p->host[(size_t)s * p->slots + j]];
    if (s % gpn == gpn - 1) {
      double *ns = t->ns + (size_t)(s / gpn) * E;
      for (int x = 0; x < E; x++)
        ns[x] = (double)sum[x];
    }
    t->h[s] = (double)(in - mine);
    t->h[2 * G + s] = (double)(tot - in);
    t->h[G + s] = t->h[3 * G + s] = 0;
    t->own[s] = t->tmp[s] = 0;
    t->oin[s] = t->oout[s] = t->xin[s] = t->xout[s] = t->arr[s] = t->carr[s] = 0;
    t->mark[s] = t->amark[s] = 0;
    t->hto[s] = t->hfrom[s] = -1;
  }
  for (int n = 0; n < N; n++)
    for (int x = 0; x < E; x++)
      t->rem[x] += t->rn[(size_t)n * E + x] ? 0 : t->ns[(size_t)n * E + x];
  for (int x = 0; x < E; x++) {
    const int *rep = p->rep + (size_t)x * G;
    memcpy(t->rep + (size_t)x * G, rep, (size_t)p->nrep[x] * sizeof(int));
    t->nrep[x] = p->nrep[x];
    double rest = share_rest(t, x);
    for (int i = 0; i < p->nrep[x]; i++) {
      int g = rep[i];
      double node = share_node(t, x, md->node[g]);
      t->h[G + g] += node;
      t->h[3 * G + g] += rest;
      t->own[g] += pl_ffn_us(md->prof, (double)counts[(size_t)g * E + x] + node + rest);
    }
  }
  for (int g = 0; g < G; g++)
    t->a2a[g] = gpu_a2a(md, t->h, g);
  t->stamp = 1;
  t->crmax = 0;
  return neg ? PL_EINVAL : PL_OK;
}

/* Clears what build set in hosts (the only array it does not overwrite). */
static void unbuild(pl_temps *t, const model *md) {
  int G = md->G, E = md->E;
  for (int x = 0; x < E; x++)
    for (int i = 0; i < t->nrep[x]; i++)
      t->hosts[(size_t)t->rep[(size_t)x * G + i] * E + x] = 0;
}

/* ---------------------------------------------------------- decision --- */

typedef struct trial {
  int x, d, h;
  double total, bal, cost;
  int nchg; /* GPUs it changes (t->chg) */
} trial;

/* Gives GPU g trial values (a copy of its current ones) once per trial. */
static void touch(pl_temps *t, int g, int *nchg) {
  if (t->mark[g] == t->stamp)
    return;
  int G = t->gpus;
  t->mark[g] = t->stamp;
  for (int c = 0; c < 4; c++)
    t->nh[c * G + g] = t->h[c * G + g];
  t->nown[g] = t->own[g];
  t->ntmp[g] = t->tmp[g];
  t->chg[(*nchg)++] = g;
}

/* Whether GPU g's copy of x is planned (in sv), not a temporary: build
 * marks planned copies 1 in hosts, commit marks temporaries 2 (O(1), where
 * a search of sv's replica list showed at 1,024 GPUs). */
static int planned(const pl_temps *t, int x, int g) {
  return t->hosts[(size_t)g * t->experts + x] == 1;
}

/* The forward compute (us) of each copy of x on the committed state
 * (wus[g], the "was" of every trial of x), once per expert and step: the
 * same expression as a trial's, so the same doubles. */
static void was_build(pl_temps *t, const model *md, int x) {
  int G = md->G, E = md->E;
  const int *rep = t->rep + (size_t)x * G;
  double rest = share_rest(t, x);
  for (int i = 0; i < t->nrep[x]; i++) {
    int g = rep[i];
    double c0 = (double)md->counts[(size_t)g * E + x];
    t->wus[g] = pl_ffn_us(md->prof, c0 + share_node(t, x, md->node[g]) + rest);
  }
  t->wx = x;
  t->wver = t->ver;
}

static const double *was_us(pl_temps *t, const model *md, int x) {
  if (t->wx != x || t->wver != t->ver)
    was_build(t, md, x);
  return t->wus;
}

/* A trial's change to x's copy on g: it now computes `now` tokens (was
 * wg us), and its hose's node and rest shares move by dnode and drest; the
 * compute's change goes to g's own or its temporaries' time. */
static void shift_copy(pl_temps *t, const model *md, int x, int g, double now, double dnode,
                       double drest, double wg, int *nchg) {
  int G = md->G;
  touch(t, g, nchg);
  if (dnode != 0.0)
    t->nh[G + g] += dnode;
  t->nh[3 * G + g] += drest;
  double delta = pl_ffn_us(md->prof, now) - wg;
  if (planned(t, x, g))
    t->nown[g] += delta;
  else
    t->ntmp[g] += delta;
}

/* The end of a trial of tr->x on tr->d: d's hose and compute with its copy
 * (cd own tokens plus the new shares), the trial's replica counts of node
 * ix taken back, and the all-to-all of every GPU the trial changed. */
static void trial_close(pl_temps *t, const model *md, trial *tr, size_t ix, double cd,
                        double new_node, double new_rest, int nchg) {
  int G = md->G, d = tr->d, x = tr->x;
  t->nh[G + d] += new_node;
  t->nh[3 * G + d] += new_rest;
  t->ntmp[d] += pl_ffn_us(md->prof, cd + new_node + new_rest);
  t->rn[ix]--;
  t->lh[ix] -= cd;
  t->nrep[x]--;
  for (int k = 0; k < nchg; k++)
    t->na2a[t->chg[k]] = gpu_a2a(md, t->nh, t->chg[k]);
  tr->nchg = nchg;
}

/* The trial values of copying x to d: its copies' shares and compute
 * (with copies = 0 not computed: base[1] holds them), d's node's sources'
 * wire tokens. The model's own state is left as it was (rn, lh, rem,
 * nrep are changed and put back). */
static void trial_values(pl_temps *t, const model *md, trial *tr, int copies) {
  int G = md->G, E = md->E, gpn = md->gpn, x = tr->x, d = tr->d, nd = md->node[d];
  const int64_t *counts = md->counts;
  size_t ix = (size_t)nd * E + x;
  int had = t->rn[ix];
  const double *wus = was_us(t, md, x);
  int nchg = 0;
  t->stamp++;
  /* sources: d keeps its own tokens; without a copy on the node before,
   * the node's other sources send theirs inside it instead of across */
  touch(t, d, &nchg);
  double cd = (double)counts[(size_t)d * E + x];
  t->nh[(had ? 0 : 2 * G) + d] -= cd;
  if (!had)
    for (int s = nd * gpn; s < (nd + 1) * gpn; s++) {
      if (s == d || t->hosts[(size_t)s * E + x])
        continue;
      double v = (double)counts[(size_t)s * E + x];
      if (v == 0)
        continue;
      touch(t, s, &nchg);
      t->nh[2 * G + s] -= v;
      t->nh[s] += v;
    }
  /* copies: old shares out, new shares in */
  double old_rest = share_rest(t, x);
  double old_node = share_node(t, x, nd);
  const int *rep = t->rep + (size_t)x * G;
  int n = t->nrep[x];
  t->rn[ix]++;
  t->lh[ix] += cd;
  t->nrep[x]++;
  double rem0 = t->rem[x];
  if (!had)
    t->rem[x] -= t->ns[ix];
  double new_rest = share_rest(t, x), new_node = share_node(t, x, nd);
  for (int i = 0; i < (copies ? n : 0); i++) {
    int g = rep[i], same = md->node[g] == nd;
    /* was: c0 + (its node's share) + old_rest, as was_build computed it */
    double now = (double)counts[(size_t)g * E + x] +
                 (same ? new_node : share_node(t, x, md->node[g])) + new_rest;
    shift_copy(t, md, x, g, now, same ? new_node - old_node : 0.0, new_rest - old_rest, wus[g],
               &nchg);
  }
  t->rem[x] = rem0;
  trial_close(t, md, tr, ix, cd, new_node, new_rest, nchg);
}

/* ------------------------------------------------- trials on a base --- */

/* A trial that copies x to a node already holding a copy (most of a
 * step's trials at scale: one per node holding x) changes x's copies on
 * other nodes the same way whichever node it is: their share of the
 * nodes without a copy drops from rem/r to rem/(r + 1). A trial on a node
 * nd without a copy changes every copy of x the same way for every
 * destination on nd: their share drops to (rem - ns[nd][x])/(r + 1)
 * (a step tries nd more than once: the least computing and the shortest
 * all-to-all GPU of the node sending x the most). A "base" holds those
 * values once per expert, step and kind (base[0]: nodes holding x,
 * base[1]: node nd; own, tmp, a2a for x's copies, built from the
 * committed state exactly as trial_values() would build them) and, per
 * order, the largest value over x's copies and the largest over the
 * copies off that node (so a trial on node n reads the largest over the
 * copies off n in O(1)), and where in each order the first GPU without a
 * copy of x is. A trial then computes only d and x's copies on d's node,
 * or d and its node's sources. Any commit changes the committed state: a
 * base is keyed by the number of commits. */
static void base_build(pl_temps *t, const model *md, pl_temps_base *b, int x, int nd) {
  int G = md->G, E = md->E, n = t->nrep[x];
  const int *rep = t->rep + (size_t)x * G;
  const double *wus = was_us(t, md, x);
  double old_rest = share_rest(t, x), rem0 = t->rem[x];
  if (nd >= 0)
    t->rem[x] -= t->ns[(size_t)nd * E + x];
  t->nrep[x]++;
  double new_rest = share_rest(t, x);
  t->nrep[x]--;
  t->rem[x] = rem0;
  for (int w = 0; w < NORD; w++) {
    b->v1[w] = b->v2[w] = -INFINITY;
    b->n1[w] = -1;
  }
  for (int i = 0; i < n; i++) {
    int g = rep[i], ng = md->node[g];
    double c0 = (double)md->counts[(size_t)g * E + x], node = share_node(t, x, ng);
    double now = c0 + node + new_rest;
    double h3 = t->h[3 * G + g];
    h3 += new_rest - old_rest;
    b->a2a[g] = a2a_us(md, t->h[g], t->h[G + g], t->h[2 * G + g], h3);
    double delta = pl_ffn_us(md->prof, now) - wus[g];
    b->own[g] = t->own[g];
    b->tmp[g] = t->tmp[g];
    if (planned(t, x, g))
      b->own[g] += delta;
    else
      b->tmp[g] += delta;
    double v[NORD] = {[ORD_C] = b->own[g] + b->tmp[g], [ORD_A] = b->a2a[g],
                      [ORD_F] = (b->own[g] > t->carr[g] ? b->own[g] : t->carr[g]) + b->tmp[g]};
    for (int w = 0; w < NORD; w++) {
      if (v[w] > b->v1[w]) {
        if (ng != b->n1[w])
          b->v2[w] = b->v1[w];
        b->v1[w] = v[w];
        b->n1[w] = ng;
      } else if (ng != b->n1[w] && v[w] > b->v2[w]) {
        b->v2[w] = v[w];
      }
    }
  }
  for (int w = ORD_C; w <= ORD_A; w++) { /* ORD_F is walked from its start */
    const int *o = t->ord + (size_t)w * G;
    int i = 0;
    while (i < G && t->hosts[(size_t)o[i] * E + x])
      i++;
    b->pos[w] = i;
  }
  b->x = x;
  b->node = nd;
  b->ver = t->ver;
}

/* trial_values() for a d whose node holds x: d and x's copies on d's
 * node get trial values (marked); x's other copies have the base's. */
static void trial_values_had(pl_temps *t, const model *md, trial *tr) {
  int G = md->G, E = md->E, gpn = md->gpn, x = tr->x, d = tr->d, nd = md->node[d];
  const int64_t *counts = md->counts;
  size_t ix = (size_t)nd * E + x;
  const double *wus = was_us(t, md, x);
  int nchg = 0;
  t->stamp++;
  touch(t, d, &nchg);
  double cd = (double)counts[(size_t)d * E + x];
  t->nh[d] -= cd;
  double old_rest = share_rest(t, x);
  double old_node = share_node(t, x, nd);
  const int *rep = t->rep + (size_t)x * G;
  int n = t->nrep[x], lo = 0, hi = n;
  while (lo < hi) { /* the first copy on node nd (rep ascending) */
    int mid = (lo + hi) / 2;
    if (rep[mid] < nd * gpn)
      lo = mid + 1;
    else
      hi = mid;
  }
  t->rn[ix]++;
  t->lh[ix] += cd;
  t->nrep[x]++;
  double new_rest = share_rest(t, x), new_node = share_node(t, x, nd);
  for (int i = lo; i < n && rep[i] < (nd + 1) * gpn; i++) {
    int g = rep[i]; /* was: c0 + old_node + old_rest */
    double now = (double)counts[(size_t)g * E + x] + new_node + new_rest;
    shift_copy(t, md, x, g, now, new_node - old_node, new_rest - old_rest, wus[g], &nchg);
  }
  trial_close(t, md, tr, ix, cd, new_node, new_rest, nchg);
}

/* predict() for a trial on base b (trial_values_had(), or trial_values()
 * without the copies): the marked GPUs and the temporaries' destinations
 * one by one (x's unmarked copies with the base's values), x's copies off
 * d's node from the base, the GPUs without a copy of x that the trial
 * did not mark from the orders. The same values as predict()'s, so the
 * same result bit for bit. */
static double predict_base(pl_temps *t, const model *md, const pl_temps_base *b, int nchg,
                           int x, int h, int d, double cut, double *bal, double *cost) {
  int G = md->G, E = md->E, nd = md->node[d];
  /* per order: x's copies off nd (the base), then the first GPU without
   * a copy that the trial did not mark; ORD_F's also from ORD_C's */
  double m[NORD], uc = -INFINITY;
  for (int w = 0; w < NORD; w++) {
    double v = b->n1[w] != nd ? b->v1[w] : b->v2[w];
    const int *o = t->ord + (size_t)w * G;
    for (int i = w == ORD_F ? 0 : b->pos[w]; i < (w == ORD_F ? t->nf : G); i++) {
      int g = o[i];
      if (t->mark[g] == t->stamp || t->hosts[(size_t)g * E + x])
        continue;
      double u = t->okey[(size_t)w * G + g];
      uc = w == ORD_C ? u : uc;
      v = u > v ? u : v;
      break;
    }
    m[w] = w == ORD_F && uc > v ? uc : v;
  }
  double cmax = m[ORD_C] > 0 ? m[ORD_C] : 0, amax = m[ORD_A] > 0 ? m[ORD_A] : 0, f = 0;
  for (int k = 0; k < nchg; k++) {
    int g = t->chg[k];
    double own = t->nown[g], tmp = t->ntmp[g], a = t->na2a[g];
    cmax = own + tmp > cmax ? own + tmp : cmax;
    amax = a > amax ? a : amax;
  }
  *bal = (1 + md->bwd) * cmax + 4 * amax;
  *cost = 0;
  t->namk = 0;
  if (!(*bal < cut))
    return *bal;
  trial_arrivals(t, md, h, d);
  double rmax = t->trmax;
  for (int k = 0; k < nchg + t->namk; k++) {
    int g = k < nchg ? t->chg[k] : t->amk[k - nchg];
    int tr = t->mark[g] == t->stamp, base = !tr && t->hosts[(size_t)g * E + x];
    double own = tr ? t->nown[g] : base ? b->own[g] : t->own[g];
    double tmp = tr ? t->ntmp[g] : base ? b->tmp[g] : t->tmp[g];
    double arr = t->amark[g] == t->stamp ? t->arr[g] : t->carr[g];
    double ready = own > arr ? own : arr;
    f = ready + tmp > f ? ready + tmp : f;
  }
  f = m[ORD_F] > f ? m[ORD_F] : f;
  t->rcost = rmax > t->rcost ? rmax : t->rcost;
  *cost = (f - cmax) + fmax(0.0, rmax - md->hide_us);
  return *bal + *cost;
}

/* Adds (sign 1) or removes (-1) the weight bytes of a copy h -> d. */
static void copy_bytes(pl_temps *t, const model *md, int h, int d, double sign) {
  if (md->node[h] == md->node[d]) {
    t->oout[h] += sign * md->pbytes;
    t->oin[d] += sign * md->pbytes;
  } else {
    t->xout[h] += sign * md->pbytes;
    t->xin[d] += sign * md->pbytes;
  }
}

/* Evaluates copying tr->x to tr->d from tr->h: tr's predicted time and its
 * parts (its balance part alone when that is not below cut, see
 * predict()); the trial values stay marked for commit. */
static void evaluate(pl_temps *t, const model *md, trial *tr, double cut) {
  trial_values(t, md, tr, 1);
  t->temp[t->n] = (pl_temp){.expert = tr->x, .from = tr->h, .to = tr->d};
  copy_bytes(t, md, tr->h, tr->d, 1);
  tr->total = predict(t, md, tr->h, tr->d, tr->nchg, cut, &tr->bal, &tr->cost);
  copy_bytes(t, md, tr->h, tr->d, -1);
}

/* evaluate() on a base (the same result, see base_build): base[0] for a
 * d whose node holds x, base[1] for one whose node does not. */
static void evaluate_base(pl_temps *t, const model *md, trial *tr, double cut) {
  int nd = md->node[tr->d], had = t->rn[(size_t)nd * md->E + tr->x] != 0;
  pl_temps_base *b = &t->base[!had];
  if (b->x != tr->x || b->ver != t->ver || b->node != (had ? -1 : nd))
    base_build(t, md, b, tr->x, had ? -1 : nd);
  if (had)
    trial_values_had(t, md, tr);
  else
    trial_values(t, md, tr, 0);
  t->temp[t->n] = (pl_temp){.expert = tr->x, .from = tr->h, .to = tr->d};
  copy_bytes(t, md, tr->h, tr->d, 1);
  tr->total = predict_base(t, md, b, tr->nchg, tr->x, tr->h, tr->d, cut, &tr->bal, &tr->cost);
  copy_bytes(t, md, tr->h, tr->d, -1);
}

/* The trial's values of the GPUs it changed (chg[0..nchg), marked by
 * trial_values) become the committed ones: commit, fast_apply. */
static void take_values(pl_temps *t, int G, int nchg) {
  for (int k = 0; k < nchg; k++) {
    int g = t->chg[k];
    for (int c = 0; c < 4; c++)
      t->h[c * G + g] = t->nh[c * G + g];
    t->own[g] = t->nown[g];
    t->tmp[g] = t->ntmp[g];
    t->a2a[g] = t->na2a[g];
  }
}

/* Expert x's copy on d from holder h joins the committed model: its node's
 * copies and tokens, x's replica list (ascending), the host table, the
 * links' weight bytes, the holder's count and d's free slots. The
 * temporaries list itself is the caller's: commit, fast_apply. */
static void add_copy(pl_temps *t, const model *md, int x, int h, int d) {
  int G = md->G, E = md->E;
  size_t ix = (size_t)md->node[d] * E + x;
  if (!t->rn[ix])
    t->rem[x] -= t->ns[ix];
  t->rn[ix]++;
  t->lh[ix] += (double)md->counts[(size_t)d * E + x];
  int *rep = t->rep + (size_t)x * G, n = t->nrep[x], at = n;
  while (at > 0 && rep[at - 1] > d) {
    rep[at] = rep[at - 1];
    at--;
  }
  rep[at] = d;
  t->nrep[x] = n + 1;
  t->hosts[(size_t)d * E + x] = 2; /* a temporary (planned()) */
  copy_bytes(t, md, h, d, 1);
  t->sent[h]++;
  t->freeslots[d]--;
}

/* Takes trial tr (evaluated again, so its values are the marked ones). */
static void commit(pl_temps *t, const model *md, trial *tr) {
  evaluate(t, md, tr, INFINITY);
  int G = md->G, x = tr->x, d = tr->d;
  /* the GPUs whose arrival changes change their ORD_F key */
  for (int k = 0; k < t->namk; k++) {
    int b = t->amk[k];
    if (t->mark[b] != t->stamp) {
      touch(t, b, &tr->nchg);
      t->na2a[b] = t->a2a[b];
    }
    t->carr[b] = t->arr[b];
  }
  t->crmax = t->trmax;
  t->tnext[2 * t->n] = t->hto[d];
  t->hto[d] = t->n;
  t->tnext[2 * t->n + 1] = t->hfrom[tr->h];
  t->hfrom[tr->h] = t->n;
  take_values(t, G, tr->nchg);
  orders_update(t, t->chg, tr->nchg);
  add_copy(t, md, x, tr->h, d);
  t->n++;
  t->stamp++;
  t->ver++; /* the base is stale */
}

/* The holder that sends expert x's copy to d: a planned replica on d's
 * node if any, else any planned one; the fewest copies sent, then the
 * lowest id. sv's replica list is ascending, so d's node's replicas are
 * one range of it; the choice off the node changes only with `sent`, at a
 * commit, so it is kept per expert until the next one. */
static int holder(pl_temps *t, const pl_placement *sv, int gpn, int x, int d) {
  const int *rep = sv->rep + (size_t)x * sv->gpus;
  int n = sv->nrep[x], nd = t->gnode[d], lo = 0, hi = n, best = -1;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (rep[mid] < nd * gpn)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (int i = lo; i < n && rep[i] < (nd + 1) * gpn; i++)
    if (best < 0 || t->sent[rep[i]] < t->sent[best])
      best = rep[i];
  if (best >= 0)
    return best;
  if (t->hx != x || t->hver != t->ver) {
    for (int i = 0; i < n; i++)
      if (best < 0 || t->sent[rep[i]] < t->sent[best])
        best = rep[i];
    t->hx = x;
    t->hver = t->ver;
    t->hbest = best;
  }
  return t->hbest;
}

/* GPU g's key as the searches for a destination compare GPUs: its
 * forward compute (by = 0) or its all-to-all (by = 1), us. */
static inline double gpu_key(const pl_temps *t, int g, int by) {
  return by ? t->a2a[g] : t->own[g] + t->tmp[g];
}

/* The GPU of [lo, hi) with a free slot and no copy of x with the least
 * key (gpu_key; ties: lowest id), -1 if none. */
static int least_by(const pl_temps *t, int x, int lo, int hi, int by) {
  int best = -1, E = t->experts;
  double bv = 0; /* best's key */
  for (int g = lo; g < hi; g++) {
    if (t->freeslots[g] <= 0 || t->hosts[(size_t)g * E + x])
      continue;
    double v = gpu_key(t, g, by);
    if (best < 0 || v < bv)
      best = g, bv = v;
  }
  return best;
}

/* Destinations for x: the least computing free GPU of the node sending x
 * the most tokens without a copy, and the least computing free GPU. */
static int destinations(const pl_temps *t, const model *md, int x, int out[2]) {
  int N = md->G / md->gpn, E = md->E, k = 0, bn = -1, bd = -1, any = -1;
  double av = 0; /* any's compute */
  for (int n = 0; n < N; n++) { /* least_by of all GPUs: the nodes' in node order */
    size_t i = (size_t)n * E + x;
    int d = least_by(t, x, n * md->gpn, (n + 1) * md->gpn, 0);
    if (d < 0)
      continue;
    double v = gpu_key(t, d, 0);
    if (any < 0 || v < av)
      any = d, av = v;
    if (!t->rn[i] && t->ns[i] > 0 && (bn < 0 || t->ns[i] > t->ns[(size_t)bn * E + x]))
      bn = n, bd = d;
  }
  if (bn >= 0)
    out[k++] = bd;
  if (any >= 0 && (k == 0 || any != out[0]))
    out[k++] = any;
  return k;
}

/* The expert of GPU g with the most tokens computed (by = 0) or received
 * over the links (by = 1), -1 when it has none. */
static int hottest(const pl_temps *t, const model *md, int g, int by) {
  int E = md->E, best = -1;
  double bv = 0;
  for (int x = 0; x < E; x++) {
    if (!t->hosts[(size_t)g * E + x])
      continue;
    double wire = share_node(t, x, md->node[g]) + share_rest(t, x);
    double v = by ? wire : wire + (double)md->counts[(size_t)g * E + x];
    if (v > bv) {
      bv = v;
      best = x;
    }
  }
  return best;
}

/* The expert GPU g receives the most tokens of over the links other than
 * `skip`, -1 when none. */
static int next_hottest_in(const pl_temps *t, const model *md, int g, int skip) {
  int E = md->E, best = -1;
  double bv = 0;
  for (int x = 0; x < E; x++) {
    if (x == skip || !t->hosts[(size_t)g * E + x])
      continue;
    double wire = share_node(t, x, md->node[g]) + share_rest(t, x);
    if (wire > bv) {
      bv = wire;
      best = x;
    }
  }
  return best;
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
      !(cfg->grad_hide_us >= 0) || !isfinite(cfg->grad_hide_us) ||
      cfg->search < PL_TEMPS_SEARCH_FULL || cfg->search > PL_TEMPS_SEARCH_FAST ||
      pl_cluster_check(c) || pl_profile_check(prof))
    return PL_EINVAL;
  return PL_OK; /* negative counts: build */
}

/* A trial of x on d evaluated since the last commit, into tr when it
 * decides as evaluating it again with `cut` would: the evaluation is a
 * function of the committed state, and a trial finished (its balance part
 * below the cut it had) or again not to be finished (its balance part
 * not below cut either) is kept or dropped the same way (a finished one's
 * total is at least its balance part: the cost is >= 0), its latest
 * return already in rcost. LAZY's FULL step tries its LEAN step's trials
 * again; FULL meets a destination twice. */
static int seen_get(const pl_temps *t, int x, int d, double cut, trial *tr) {
  for (int k = 0; k < PL_TEMPS_SEEN; k++) {
    const pl_temps_seen *m = &t->seen[k];
    if (m->ver == t->ver && m->x == x && m->d == d && (m->whole || !(m->bal < cut))) {
      *tr = (trial){.x = x, .d = d, .h = m->h, .total = m->total, .bal = m->bal,
                    .cost = m->cost, .nchg = m->nchg};
      return 1;
    }
  }
  return 0;
}

/* Keeps trial tr (evaluated with `cut` on the state of t->ver) for
 * seen_get. */
static void seen_put(pl_temps *t, const trial *tr, double cut) {
  t->seen[t->nseen++ % PL_TEMPS_SEEN] =
      (pl_temps_seen){.x = tr->x, .d = tr->d, .h = tr->h, .nchg = tr->nchg, .ver = t->ver,
                      .whole = tr->bal < cut, .total = tr->total, .bal = tr->bal,
                      .cost = tr->cost};
}

/* Evaluates copying x to d (from holder(); or a trial seen_get gives)
 * and keeps it in *best when it is the first or predicts a lower time. */
static void try_copy(pl_temps *t, const model *md, const pl_placement *sv, int x, int d,
                     trial *best) {
  trial tr = {.x = x, .d = d};
  t->trials++;
  double cut = best->x < 0 ? INFINITY : best->total; /* not below: not kept */
  if (!seen_get(t, x, d, cut, &tr)) {
    tr.h = holder(t, sv, md->gpn, x, d);
    evaluate_base(t, md, &tr, cut);
    seen_put(t, &tr, cut);
  }
  if (best->x < 0 || tr.total < best->total)
    *best = tr;
}

/* The all-to-all destinations of x: on each node holding a copy of x, and
 * on the node sending x the most tokens without one, the free GPU with the
 * shortest all-to-all (a second copy in a node splits the in-traffic its
 * copies receive; O(min(N, copies + 1)) trials). */
static void try_a2a_destinations(pl_temps *t, const model *md, const pl_placement *sv, int x,
                                 trial *best) {
  int N = md->G / md->gpn, E = md->E, bn = -1, bd = -1;
  for (int n = 0; n < N; n++) {
    size_t i = (size_t)n * E + x;
    if (!t->rn[i] && !(t->ns[i] > 0 && (bn < 0 || t->ns[i] > t->ns[(size_t)bn * E + x])))
      continue;
    int d = least_by(t, x, n * md->gpn, (n + 1) * md->gpn, 1);
    if (d < 0)
      continue;
    if (t->rn[i])
      try_copy(t, md, sv, x, d, best);
    else
      bn = n, bd = d;
  }
  if (bd >= 0)
    try_copy(t, md, sv, x, bd, best);
}

/* One greedy step's best trial (best->x = -1: none): the hottest expert of
 * the most computing GPU and the two the slowest all-to-all GPU receives
 * most, each on destinations() and try_a2a_destinations(); search other
 * than FULL (LEAN, LAZY's first try): the first two on destinations()
 * only, at most 4 trials. */
static void best_trial(pl_temps *t, const model *md, const pl_placement *sv, int search,
                       trial *best) {
  int G = md->G, bc = t->ord[(size_t)ORD_C * G], ba = t->ord[(size_t)ORD_A * G];
  int full = search == PL_TEMPS_SEARCH_FULL, nx = full ? 3 : 2;
  int xs[3] = {hottest(t, md, bc, 0), hottest(t, md, ba, 1), -1};
  if (nx > 2 && xs[1] >= 0)
    xs[2] = next_hottest_in(t, md, ba, xs[1]);
  best->x = -1;
  for (int i = 0; i < nx; i++) {
    if (xs[i] < 0 || (i > 0 && xs[i] == xs[0]) || (i > 1 && xs[i] == xs[1]))
      continue;
    int ds[2], nd = destinations(t, md, xs[i], ds);
    for (int j = 0; j < nd; j++)
      try_copy(t, md, sv, xs[i], ds[j], best);
    if (full)
      try_a2a_destinations(t, md, sv, xs[i], best);
  }
}

/* Whether the step's best trial is taken: there is one, it lowers the
 * predicted time cur and gains (over bal) more than margin x its cost
 * (over cost). */
static int takes(const trial *best, const pl_temps_cfg *cfg, double cur, double bal,
                 double cost) {
  return best->x >= 0 && best->total < cur &&
         bal - best->bal > cfg->margin * (best->cost - cost);
}

/* ------------------------------------------------ the FAST search --- */
/* Steps running without a better prefix before FAST stops: more GPUs
 * near the maximum need more copies before the maximum falls (at 256
 * GPUs a fixed 3 stopped 8-15% short of FULL's iterations); at most 11
 * (35 at 1,024 GPUs doubled the decision's cost). */
#define FAST_PATIENCE(G) ((G) < 256 ? 3 + (G) / 32 : 11)
#define FAST_EPS 0.002
#define FAST_TWO 1




/* The committed state as a step reads it: the most computing GPU gm and
 * the longest all-to-all's ga (ties: lowest id), their values, the
 * largest of every other GPU (c2, a2) and the forward phase f. */
typedef struct fast_view {
  int gm, ga;
  double cmax, c2, amax, a2, f;
} fast_view;

/* ------------------------------------------------------- FAST nodes --- */
/* FAST reads the committed state through per-node summaries instead of
 * scans of every GPU (they were half of a decision at 64 GPUs): node n's
 * largest and second largest forward compute and all-to-all, the GPU
 * with the largest (the lowest id among equals), its largest forward
 * phase (nval, narg), and its least free GPU (a free slot) by compute and
 * by all-to-all, preferring those no copy is sent to yet (nfree). A step
 * changes few GPUs (fast_apply's, and those whose arrival fast_arrivals
 * raises): their nodes are marked stale (nok = 0) and summarised again,
 * O(gpn), when next read. The least free GPU without a copy of x of a
 * node is then its summary's least free GPU when that one does not hold
 * x, else a scan of the node's, and of all GPUs the least of the nodes'
 * taken in node order by the scan's own rule (fast_acc_put); the maxima
 * of all GPUs follow from the nodes' the same way. Every value is the
 * same double the scans of every GPU read, and each choice is the least
 * of a total order (ties to the lower id, as those scans in increasing
 * id), so the choices are the scans', bit for bit. */

/* fast_least()'s running choice: the GPU so far, whether a copy is sent
 * to it, its key. */
typedef struct fast_acc {
  int best, busy;
  double bv;
} fast_acc;

static inline void fast_acc_put(fast_acc *a, int g, int b, double v) {
  if (b <= a->busy && (a->best < 0 || b < a->busy || v < a->bv))
    a->best = g, a->busy = b, a->bv = v;
}

#define FAST_ACC_NONE ((fast_acc){.best = -1, .busy = 1, .bv = 0})

/* Whether a copy is being sent to g (fast_least() prefers GPUs without). */
static inline int fast_busy(const pl_temps *t, int g) { return t->oin[g] > 0 || t->xin[g] > 0; }

/* The largest value v (GPU g) into running maxima: *m1 the largest, *arg
 * the first GPU with it, *m2 the largest of the others (taken in
 * increasing id). */
static inline void fast_max2(double v, int g, double *m1, double *m2, int *arg) {
  if (v > *m1) {
    *m2 = *m1 > *m2 ? *m1 : *m2;
    *m1 = v;
    *arg = g;
  } else {
    *m2 = v > *m2 ? v : *m2;
  }
}

/* Node n's summary from the committed state (see above). */
static void fast_node(pl_temps *t, int gpn, int n) {
  double c1 = -INFINITY, c2 = -INFINITY, a1 = -INFINITY, a2 = -INFINITY, f = -INFINITY;
  int gc = -1, ga = -1;
  fast_acc lc = FAST_ACC_NONE, la = FAST_ACC_NONE;
  const double *own = t->own, *tmp = t->tmp, *a2a = t->a2a, *carr = t->carr;
  for (int g = n * gpn; g < (n + 1) * gpn; g++) {
    double c = own[g] + tmp[g], a = a2a[g];
    double ready = own[g] > carr[g] ? own[g] : carr[g];
    fast_max2(c, g, &c1, &c2, &gc);
    fast_max2(a, g, &a1, &a2, &ga);
    f = ready + tmp[g] > f ? ready + tmp[g] : f;
    if (t->freeslots[g] > 0) {
      int b = fast_busy(t, g);
      fast_acc_put(&lc, g, b, c);
      fast_acc_put(&la, g, b, a);
    }
  }
  double *v = t->nval + 5 * (size_t)n;
  v[0] = c1, v[1] = c2, v[2] = a1, v[3] = a2, v[4] = f;
  t->narg[2 * n] = gc;
  t->narg[2 * n + 1] = ga;
  t->nfree[2 * n] = lc.best;
  t->nfree[2 * n + 1] = la.best;
  t->nok[n] = 1;
}

/* Marks GPU g's node stale (its summary is made again when read). */
static inline void fast_stale(pl_temps *t, int g) { t->nok[t->gnode[g]] = 0; }

/* GPU g's arrival grew (nothing else of it changed): its forward phase
 * grew with it, its node's largest follows without a pass. */
static void fast_later(pl_temps *t, int g) {
  double ready = t->own[g] > t->carr[g] ? t->own[g] : t->carr[g];
  double *f = t->nval + 5 * (size_t)t->gnode[g] + 4;
  *f = ready + t->tmp[g] > *f ? ready + t->tmp[g] : *f;
}

/* Node n's free GPU without a copy of x with the least key (forward
 * compute, by = 0; all-to-all, by = 1) into a (fast_acc_put): the
 * node's least free GPU when it does not hold x (the least of all is the
 * least of those without x too), else a scan of the node. */
static void fast_pick(pl_temps *t, int gpn, int x, int n, int by, fast_acc *a) {
  int E = t->experts;
  if (!t->nok[n])
    fast_node(t, gpn, n);
  int g = t->nfree[2 * n + by];
  if (g >= 0 && t->hosts[(size_t)g * E + x]) {
    const unsigned char *hs = t->hosts + x;
    for (g = n * gpn; g < (n + 1) * gpn; g++)
      if (t->freeslots[g] > 0 && !hs[(size_t)g * E])
        fast_acc_put(a, g, fast_busy(t, g), gpu_key(t, g, by));
    return;
  }
  if (g >= 0)
    fast_acc_put(a, g, fast_busy(t, g), gpu_key(t, g, by));
}

/* The GPU of node n (n < 0: of all GPUs) with a free slot and no copy of
 * x with the least key (forward compute, by = 0; all-to-all, by = 1;
 * ties: lowest id), preferring those no copy is sent to yet (a second
 * copy on a link delays both); -1 if none or no expert (x < 0: hottest()
 * found no tokens, e.g. every count 0). */
static int fast_least(pl_temps *t, int gpn, int x, int n, int by) {
  fast_acc a = FAST_ACC_NONE;
  if (x < 0)
    return -1;
  for (int m = n < 0 ? 0 : n; m < (n < 0 ? t->gpus / gpn : n + 1); m++)
    fast_pick(t, gpn, x, m, by, &a);
  return a.best;
}

/* The predicted layer time of the committed state (pl_shadow.h's
 * formula; what predict() gives without a trial, without the orders)
 * from the nodes' summaries, as a scan of the GPUs gives it: *bal its
 * balance part, *cost the copies', and the view. The arrivals carr and
 * crmax are those of temp[0..n) with the bytes of all of them
 * (fast_arrivals). */
static double fast_scan(pl_temps *t, const model *md, double *bal, double *cost,
                        fast_view *v) {
  double cmax = -1, c2 = 0, amax = -1, a2 = 0, f = 0;
  int gm = 0, ga = 0, N = md->G / md->gpn;
  for (int n = 0; n < N; n++) {
    if (!t->nok[n])
      fast_node(t, md->gpn, n);
    const double *nv = t->nval + 5 * (size_t)n;
    fast_max2(nv[0], t->narg[2 * n], &cmax, &c2, &gm);
    c2 = nv[1] > c2 ? nv[1] : c2;
    fast_max2(nv[2], t->narg[2 * n + 1], &amax, &a2, &ga);
    a2 = nv[3] > a2 ? nv[3] : a2;
    f = nv[4] > f ? nv[4] : f;
  }
  *v = (fast_view){.gm = gm, .ga = ga, .cmax = cmax, .c2 = c2, .amax = amax, .a2 = a2, .f = f};
  *bal = (1 + md->bwd) * cmax + 4 * amax;
  t->rcost = t->crmax > t->rcost ? t->crmax : t->rcost;
  *cost = (f - cmax) + fmax(0.0, t->crmax - md->hide_us);
  return *bal + *cost;
}

/* The arrivals of temp[0..n) with their bytes after a step took
 * temp[from..n): carr of each destination, crmax the latest; the same
 * values as from scratch (arrivals_all), in O(the temporaries sharing a
 * link with the new ones). A step adds bytes only to its copies' holders'
 * outgoing and destinations' incoming links, so only the temporaries to
 * those destinations or from those holders arrive later, and an arrival
 * never earlier (arrival() is non-decreasing in every byte count, under
 * rounding too): each maximum is its old value or one of theirs. */
static void fast_arrivals(pl_temps *t, const model *md, int from) {
  for (int k = from; k < t->n; k++) {
    int a = t->temp[k].from, b = t->temp[k].to;
    t->tnext[2 * k] = t->hto[b];
    t->hto[b] = k;
    t->tnext[2 * k + 1] = t->hfrom[a];
    t->hfrom[a] = k;
  }
  for (int k = from; k < t->n; k++)
    for (int side = 0; side < 2; side++) {
      int head = side ? t->hfrom[t->temp[k].from] : t->hto[t->temp[k].to];
      for (int j = head; j >= 0; j = t->tnext[2 * j + side]) {
        int b = t->temp[j].to;
        double at = arrival(t, md, t->temp[j].from, b);
        if (at > t->carr[b]) {
          t->carr[b] = at;
          fast_later(t, b);
        }
        t->crmax = at > t->crmax ? at : t->crmax;
      }
    }
}

/* Takes the temporary x -> d (its holder from holder()) into the committed
 * state: commit() without the evaluation's prediction and the orders. */
static void fast_apply(pl_temps *t, const model *md, const pl_placement *sv, int x, int d) {
  trial tr = {.x = x, .d = d, .h = holder(t, sv, md->gpn, x, d)};
  trial_values(t, md, &tr, 1);
  take_values(t, md->G, tr.nchg);
  for (int k = 0; k < tr.nchg; k++) /* d among them */
    fast_stale(t, t->chg[k]);
  add_copy(t, md, x, tr.h, d);
  t->temp[t->n++] = (pl_temp){.expert = x, .from = tr.h, .to = d};
  t->stamp++;
  t->ver++;
}

/* Whether d can take a copy of x: a free slot, no copy of x. */
static int fast_free(const pl_temps *t, int x, int d) {
  return t->freeslots[d] > 0 && !t->hosts[(size_t)d * t->experts + x];
}

/* The expert of g's node's sources (on g: g itself) that g sends the most
 * tokens over the link `inter` (1: to experts without a copy on g's
 * node; 0: to experts on its node that g does not hold), -1 if none. */
static int fast_sent_most(const pl_temps *t, const model *md, int g, int inter) {
  int E = md->E, best = -1;
  const int *rn = t->rn + (size_t)md->node[g] * E;
  const int64_t *row = md->counts + (size_t)g * E;
  for (int x = 0; x < E; x++) {
    if (t->hosts[(size_t)g * E + x] || (inter ? rn[x] != 0 : rn[x] == 0))
      continue;
    if (row[x] > 0 && (best < 0 || row[x] > row[best]))
      best = x;
  }
  return best;
}

/* pl_ffn_us(tokens) of x's copy on g as committed: a step scores many
 * destinations of one expert against the same most computing and
 * longest all-to-all GPUs, so the last few are kept, keyed by the
 * commits (ver) (the same function of the same double: the same bits). */
static double fast_was(pl_temps *t, const model *md, int x, int g, double tokens) {
  for (int k = 0; k < PL_TEMPS_WAS; k++) {
    const pl_temps_was *w = &t->was[k];
    if (w->ver == t->ver && w->x == x && w->g == g)
      return w->us;
  }
  double us = pl_ffn_us(md->prof, tokens);
  t->was[t->nwas++ % PL_TEMPS_WAS] = (pl_temps_was){.x = x, .g = g, .ver = t->ver, .us = us};
  return us;
}

/* GPU g's forward compute and all-to-all (us) after one more copy of x on
 * d, in closed form on the model's shares (pl_shadow.c's head): a copy of
 * x keeps its own tokens and gets its node's and the rest's shares, the
 * node's split over one more copy where d's node holds x, the rest's over
 * one more copy and, where d's node held none, without that node's
 * tokens; a source of d's node then sends x inside the node; d computes
 * its new copy and no longer sends its own tokens of x. rest2: x's share
 * of the rest after the copy (fast_score's, one per candidate). */
static void fast_after(pl_temps *t, const model *md, int x, int d, int g, double rest2,
                       double *c, double *a) {
  int G = md->G, E = md->E, nd = md->node[d], ng = md->node[g];
  size_t id = (size_t)nd * E + x;
  int had = t->rn[id] > 0, holds = t->hosts[(size_t)g * E + x];
  *c = t->own[g] + t->tmp[g];
  if (g != d && !holds && (ng != nd || had)) {
    *a = t->a2a[g]; /* unchanged: a2a_us of the same h, as build or a copy made it */
    return;
  }
  double cd = (double)md->counts[(size_t)d * E + x], cg = (double)md->counts[(size_t)g * E + x];
  double io = t->h[g], ii = t->h[G + g], xo = t->h[2 * G + g], xi = t->h[3 * G + g];
  if (g == d) {
    double nodd = had ? (t->ns[id] - t->lh[id] - cd) / (t->rn[id] + 1) : t->ns[id] - cd;
    *c += pl_ffn_us(md->prof, cd + nodd + rest2);
    ii += nodd;
    xi += rest2;
    if (had)
      io -= cd;
    else
      xo -= cd;
  } else if (holds) {
    double node = share_node(t, x, ng), rest = share_rest(t, x), node2 = node;
    if (ng == nd)
      node2 = (t->ns[id] - t->lh[id] - cd) / (t->rn[id] + 1);
    *c += pl_ffn_us(md->prof, cg + node2 + rest2) - fast_was(t, md, x, g, cg + node + rest);
    ii += node2 - node;
    xi += rest2 - rest;
  } else if (ng == nd && !had) {
    io += cg;
    xo -= cg;
  }
  *a = a2a_us(md, io, ii, xo, xi);
}

/* The predicted saving (us) of one more copy of x on d, in closed form:
 * the balance part with the most computing and the longest all-to-all GPU
 * and d after the copy (fast_after) against every other GPU's largest
 * (the view's c2, a2); less the copy's weights (from its holder, with the
 * bytes already on its links) arriving after d's own compute and past the
 * forward phase f, and returning past the latest return so far. */
static double fast_score(pl_temps *t, const model *md, const pl_placement *sv,
                         const fast_view *v, int x, int d) {
  size_t id = (size_t)md->node[d] * md->E + x; /* x's share of the rest after the copy */
  double rest2 = (t->rem[x] - (t->rn[id] > 0 ? 0 : t->ns[id])) / (t->nrep[x] + 1);
  double cm = v->c2, am = v->a2, c, a, newc = 0;
  int gs[3] = {d, v->gm, v->ga};
  for (int i = 0; i < 3; i++) {
    if ((i == 1 && d == gs[1]) || (i == 2 && (d == gs[2] || gs[1] == gs[2])))
      continue;
    fast_after(t, md, x, d, gs[i], rest2, &c, &a);
    if (i == 0) /* d is not gm or ga (they hold x... or d's new copy is counted) */
      newc = c - (t->own[d] + t->tmp[d]);
    cm = c > cm ? c : cm;
    am = a > am ? a : am;
  }
  int h = holder(t, sv, md->gpn, x, d);
  double arr = arrival_with(t, md, h, d);
  double ready = t->own[d] > arr ? t->own[d] : arr;
  double back = t->crmax > md->hide_us ? t->crmax : md->hide_us;
  t->rcost = arr > t->rcost ? arr : t->rcost;
  double gain = (1 + md->bwd) * (v->cmax - cm) + 4 * (v->amax - am);
  return gain - fmax(0.0, ready + t->tmp[d] + newc - v->f) - fmax(0.0, arr - back);
}

/* Keeps (x, d) in *bx, *bd when d is a destination and scores higher. */
static void fast_consider(pl_temps *t, const model *md, const pl_placement *sv,
                          const fast_view *v, int x, int d, int *bx, int *bd, double *bs) {
  if (x < 0 || d < 0 || (*bx == x && *bd == d))
    return;
  double sc = fast_score(t, md, sv, v, x, d);
  if (*bx < 0 || sc > *bs)
    *bx = x, *bd = d, *bs = sc;
}

/* The destinations of x for GPU g's relief: the least computing and the
 * shortest all-to-all free GPU of g's node, the least computing free GPU
 * of the node sending x the most without a copy, and the least computing
 * free GPU anywhere (or the shortest all-to-all: by). */
static void fast_try(pl_temps *t, const model *md, const pl_placement *sv, const fast_view *v,
                     int x, int g, int by, int *bx, int *bd, double *bs) {
  if (x < 0)
    return;
  int gpn = md->gpn, E = md->E, ng = md->node[g], bn = -1;
  for (int n = 0; n < md->G / gpn; n++) {
    size_t i = (size_t)n * E + x;
    if (!t->rn[i] && t->ns[i] > 0 && (bn < 0 || t->ns[i] > t->ns[(size_t)bn * E + x]))
      bn = n;
  }
  /* the four destinations first (scoring leaves the state as it was) */
  int a[4] = {fast_least(t, gpn, x, ng, 0), fast_least(t, gpn, x, ng, 1),
              bn >= 0 ? fast_least(t, gpn, x, bn, 0) : -1, fast_least(t, gpn, x, -1, by)};
  for (int k = 0; k < 4; k++) /* a destination met before scores the same: not again */
    if ((k != 2 || bn >= 0) && (k < 1 || a[k] != a[0]) && (k < 2 || a[k] != a[1]) &&
        (k < 3 || a[k] != a[2]))
      fast_consider(t, md, sv, v, x, a[k], bx, bd, bs);
}

/* One step: candidates scored in closed form (fast_score), no model
 * evaluation: the hottest expert (most tokens over the links) of the most
 * computing GPU, the one the longest all-to-all GPU receives the most,
 * each on fast_try()'s destinations, and the expert that GPU sends the
 * most over its busier link, on it (else on its node). Takes the best,
 * and the other GPU's best (FAST_TWO) when it is another expert on another
 * GPU predicted to save; returns how many were taken (0: none). */
static int fast_step(pl_temps *t, const model *md, const pl_placement *sv, const fast_view *v) {
  int G = md->G, ga = v->ga, gpn = md->gpn, na = md->node[ga], bx[2] = {-1, -1}, bd[2] = {-1, -1};
  double bs[2] = {0, 0};
  int xm = hottest(t, md, v->gm, 1), xa = ga == v->gm ? xm : hottest(t, md, ga, 1);
  fast_try(t, md, sv, v, xm, v->gm, 0, &bx[0], &bd[0], &bs[0]);
  if (ga != v->gm || xa != xm) /* else the same candidates but the last */
    fast_try(t, md, sv, v, xa, ga, 1, &bx[1], &bd[1], &bs[1]);
  else
    fast_consider(t, md, sv, v, xa, fast_least(t, gpn, xa, -1, 1), &bx[1], &bd[1], &bs[1]);
  double io = t->h[ga], xo = t->h[2 * G + ga];
  int inter = xo * md->tb / md->inter_Bps > io * md->tb / md->c->intra_Bps;
  int xs = fast_sent_most(t, md, ga, inter);
  if (xs >= 0)
    fast_consider(t, md, sv, v, xs,
                  fast_free(t, xs, ga) ? ga : fast_least(t, gpn, xs, na, 1),
                  &bx[1], &bd[1], &bs[1]);
  int first = bx[0] < 0 || (bx[1] >= 0 && bs[1] > bs[0]), took = 0;
  if (bx[first] < 0)
    return 0;
  fast_apply(t, md, sv, bx[first], bd[first]);
  took++;
  /* the other GPU's best too, when it is another expert on another GPU
   * and predicted to save (scored before the first: the scan checks) */
  int o = !first;
  if (FAST_TWO && bx[o] >= 0 && bs[o] > 0 && bx[o] != bx[first] && bd[o] != bd[first] &&
      fast_free(t, bx[o], bd[o])) {
    fast_apply(t, md, sv, bx[o], bd[o]);
    took++;
  }
  return took;
}

/* The FAST search (pl_shadow.h): one or two temporaries a step, the best
 * of a few candidates scored in closed form (fast_step); after each step one scan
 * predicts the whole set on the model; the set kept is the prefix with
 * the lowest predicted time (a later one only when FAST_EPS lower) whose
 * gain exceeds margin x its cost. Stops when no candidate is left, the
 * budget is spent, or FAST_PATIENCE(G) steps running predict no better. */
static void fast_decide(pl_temps *t, const pl_temps_cfg *cfg, const model *md,
                        const pl_placement *sv, int budget) {
  double bal0, cost0, bal, cost;
  fast_view v;
  double cur0 = fast_scan(t, md, &bal0, &cost0, &v);
  double best = cur0, bbal = bal0, bcost = cost0;
  int bn = 0, worse = 0;
  while (t->n < budget && worse < FAST_PATIENCE(md->G)) {
    int from = t->n;
    t->steps++;
    if (!fast_step(t, md, sv, &v))
      break;
    fast_arrivals(t, md, from);
    double now = fast_scan(t, md, &bal, &cost, &v);
    if (now < best - FAST_EPS * best && bal0 - bal > cfg->margin * (cost - cost0)) {
      best = now, bbal = bal, bcost = cost, bn = t->n;
      worse = 0;
    } else {
      worse++;
    }
  }
  t->n = bn;
  t->gain_us = bal0 - bbal;
  t->cost_us = bcost - cost0;
}

/* The fit's coefficients (pl_shadow.h): us a FAST step, per GPU more, and
 * us a trial, on the reference core. */
#define HOST_STEP_US 2.56
#define HOST_STEP_GPU_US 0.0298
#define HOST_TRIAL_US 1.16

double pl_temps_host_us(const pl_temps *t) {
  if (!t)
    return 0;
  return t->steps * (HOST_STEP_US + HOST_STEP_GPU_US * t->gpus) + t->trials * HOST_TRIAL_US;
}

int pl_temps_place(pl_temps *t, const pl_placement *serving) {
  if (t->n <= 0)
    return PL_OK;
  int rc = pl_placement_copy(&t->placement, serving);
  for (int k = 0; k < t->n && !rc; k++)
    rc = pl_placement_add(&t->placement, t->temp[k].expert, t->temp[k].to);
  return rc;
}

/* The range of grad_hide_us over which the decision just made with gh is
 * the same (pl_shadow.h): gh enters every search only as max(0, rmax -
 * gh) in a cost, and in FAST's scores as max(0, arr - max(crmax, gh));
 * rcost is the largest rmax, crmax and arr read beside it. With gh >=
 * rcost each such term is +0 for every value >= rcost, so every
 * comparison (FULL's cuts included), and gain_us and cost_us, are the same
 * bits: [rcost, inf). Else the terms depend on gh: [gh, gh]. */
static void hide_range(pl_temps *t, double gh) {
  t->hide_lo = gh >= t->rcost ? t->rcost : gh;
  t->hide_hi = gh >= t->rcost ? INFINITY : gh;
}

int pl_temps_decide(pl_temps *t, const pl_temps_cfg *cfg, const pl_cluster *c,
                    const pl_model *m, const pl_profile *prof, const pl_placement *serving,
                    const pl_placement *current, const int64_t *counts, int slots) {
  if (t)
    t->n = t->trials = t->steps = 0, t->gain_us = t->cost_us = 0, t->rcost = 0,
    t->hide_lo = INFINITY, t->hide_hi = -INFINITY;
  int rc = check_args(t, cfg, c, m, prof, serving, current, counts, slots);
  if (rc)
    return rc;
  model md = model_of(t, c, m, prof, counts, t->experts, cfg->grad_hide_us);
  free_slots(t, serving, current, slots);
  if (build(t, &md, serving)) {
    unbuild(t, &md);
    return PL_EINVAL;
  }
  double bal0, cost0, bal, cost;
  int budget = cfg->max_temps > 0 ? cfg->max_temps : t->experts * t->gpus;
  if (cfg->search == PL_TEMPS_SEARCH_FAST) {
    t->wx = t->hx = -1;
    for (int k = 0; k < PL_TEMPS_WAS; k++)
      t->was[k].x = -1;
    memset(t->nok, 0, (size_t)(t->gpus / c->gpus_per_node) * sizeof(int)); /* build changed all */
    fast_decide(t, cfg, &md, serving, budget);
    unbuild(t, &md);
    goto done;
  }
  orders_build(t);
  t->base[0].x = t->base[1].x = t->wx = t->hx = -1;
  for (int k = 0; k < PL_TEMPS_SEEN; k++)
    t->seen[k].x = -1;
  double cur = predict(t, &md, -1, -1, 0, INFINITY, &bal0, &cost0);
  bal = bal0;
  cost = cost0;
  while (t->n < budget) {
    trial best;
    best_trial(t, &md, serving, cfg->search, &best);
    if (cfg->search == PL_TEMPS_SEARCH_LAZY && !takes(&best, cfg, cur, bal, cost))
      best_trial(t, &md, serving, PL_TEMPS_SEARCH_FULL, &best);
    if (!takes(&best, cfg, cur, bal, cost))
      break;
    commit(t, &md, &best);
    cur = best.total;
    bal = best.bal;
    cost = best.cost;
  }
  unbuild(t, &md);
  t->gain_us = bal0 - bal;
  t->cost_us = cost - cost0;
done:
  hide_range(t, cfg->grad_hide_us);
  if (t->n == 0) {
    t->gain_us = t->cost_us = 0;
    return PL_OK;
  }
  if ((rc = pl_temps_place(t, serving)) != 0)
    goto fail;
  return PL_OK;
fail:
  t->n = 0;
  t->gain_us = t->cost_us = 0;
  t->hide_lo = INFINITY, t->hide_hi = -INFINITY;
  return rc;
}

int pl_temps_predict_us(pl_temps *t, const pl_cluster *c, const pl_model *m,
                        const pl_profile *prof, const pl_placement *p, const pl_temp *temp,
                        int n, const int64_t *counts, double *us) {
  pl_temps_cfg cfg = {.margin = 1, .max_temps = 0};
  int rc = check_args(t, &cfg, c, m, prof, p, NULL, counts, p ? p->slots : 1);
  if (rc || !us || n < 0 || (n && !temp) || n > t->experts * t->gpus)
    return rc ? rc : PL_EINVAL;
  for (int k = 0; k < n; k++)
    if (temp[k].expert < 0 || temp[k].expert >= t->experts || temp[k].to < 0 ||
        temp[k].to >= t->gpus || temp[k].from < 0 || temp[k].from >= t->gpus ||
        !pl_placement_has(p, temp[k].expert, temp[k].to))
      return PL_EINVAL;
  model md = model_of(t, c, m, prof, counts, t->experts, 0);
  if (build(t, &md, p)) {
    unbuild(t, &md);
    return PL_EINVAL;
  }
  /* a temporary's compute moves from own to tmp, its bytes onto the links */
  int E = t->experts;
  for (int k = 0; k < n; k++) {
    int x = temp[k].expert, d = temp[k].to;
    double tok = (double)counts[(size_t)d * E + x] + share_node(t, x, d / md.gpn) +
                 share_rest(t, x);
    double us_d = pl_ffn_us(prof, tok);
    t->own[d] -= us_d;
    t->tmp[d] += us_d;
    copy_bytes(t, &md, temp[k].from, d, 1);
  }
  if (n && t->temp != temp)
    memmove(t->temp, temp, (size_t)n * sizeof(pl_temp));
  double bal, cost;
  arrivals_all(t, &md, t->temp, n);
  orders_build(t);
  *us = predict(t, &md, -1, -1, 0, INFINITY, &bal, &cost);
  unbuild(t, &md);
  t->n = 0;
  return PL_OK;
}
