/*
 * sim_net.c - link graph and max-min fair flows (see sim_net.h).
 *
 * Bookkeeping: each link keeps the list of its active flows and each flow
 * its index in those lists, so starting and ending a flow is O(path length).
 * Rates are recomputed lazily (once per batch of starts/ends at one instant)
 * over the links that carry flows.
 *
 * After any error other than SIM_EINVAL the network is only fit for
 * sim_net_fini (a fill may have stopped half way).
 */
#include "sim/sim_net.h"

#include <math.h>
#include <string.h>

#include "sim/sim_error.h"
#include "sim/sim_evq.h"

static int64_t us_to_ns(double us) { return (int64_t)llround(us * 1e3); }

/* The cluster ranges a link graph relies on: capacities of at least
 * 1e-6 bytes per ns and latencies that fit the clock (sim_cluster.h). */
static int check_cluster(const sim_cluster *c) {
  if (c->nodes < 1 || c->gpus_per_node < 1 ||
      (int64_t)c->nodes * c->gpus_per_node > SIM_MAX_GPUS)
    return SIM_ERANGE;
  if (!(c->intra_GBps >= SIM_BW_MIN_GBPS && c->intra_GBps <= SIM_BW_MAX_GBPS) ||
      !(c->inter_GBps >= SIM_BW_MIN_GBPS && c->inter_GBps <= SIM_BW_MAX_GBPS) ||
      !(c->intra_lat_us >= 0 && c->intra_lat_us <= SIM_LAT_MAX_US) ||
      !(c->inter_lat_us >= 0 && c->inter_lat_us <= SIM_LAT_MAX_US) ||
      !(c->oversub >= 1e-3 && c->oversub <= SIM_OVERSUB_MAX))
    return SIM_ERANGE;
  return SIM_OK;
}

int sim_net_init(sim_net *n, const sim_cluster *c) {
  memset(n, 0, sizeof(*n));
  if (check_cluster(c))
    return SIM_ERANGE;
  n->gpus = sim_cluster_gpus(c);
  n->gpn = c->gpus_per_node;
  n->nodes = c->nodes;
  n->nic_per_node = c->nic_per_node;
  n->intra_lat_ns = us_to_ns(c->intra_lat_us);
  n->inter_lat_ns = us_to_ns(c->inter_lat_us);
  int nics = c->nic_per_node ? c->nodes : n->gpus;
  n->intra_out0 = 0;
  n->intra_in0 = n->gpus;
  n->nic_out0 = 2 * n->gpus;
  n->nic_in0 = n->nic_out0 + nics;
  n->up_out0 = n->nic_in0 + nics;
  n->up_in0 = n->up_out0 + c->nodes;
  n->nlinks = n->up_in0 + c->nodes;
  n->links = sim_calloc((size_t)n->nlinks, sizeof(sim_link));
  if (!n->links) {
    sim_net_fini(n);
    return SIM_ENOMEM;
  }
  double intra = c->intra_GBps, nic = c->inter_GBps; /* GB/s = bytes per ns */
  double node_nic = c->nic_per_node ? nic : nic * c->gpus_per_node;
  for (int l = 0; l < n->nlinks; l++) {
    double cap;
    if (l < n->nic_out0)
      cap = intra;
    else if (l < n->up_out0)
      cap = nic;
    else
      cap = node_nic / c->oversub;
    n->links[l].cap = cap;
  }
  /*
   * Redundant tiers. Max-min rates depend only on the set of feasible rate
   * vectors; a link whose constraint is implied by others can be left off
   * every path without changing a rate. Per-GPU NICs: the node's uplink
   * carries exactly the flows of its gpn NICs, so with capacity >= gpn x
   * NIC (oversubscription <= 1) it never binds. One NIC per node: NIC and
   * uplink carry the same flows, so only the narrower one constrains.
   * Leaving them off keeps an all-to-all's per-GPU hose flows on links of
   * their own (components of one link) instead of one per node.
   */
  n->use_nic = n->use_up = 1;
  if (c->nodes > 1) {
    double up = n->links[n->up_out0].cap, nicc = n->links[n->nic_out0].cap;
    if (!c->nic_per_node)
      n->use_up = !(up >= nicc * n->gpn);
    else if (up <= nicc)
      n->use_nic = 0;
    else
      n->use_up = 0;
  }
  return SIM_OK;
}

int sim_net_inter_half(const sim_net *n, int g, int in, int *path) {
  int node = g / n->gpn, nic = n->nic_per_node ? node : g, k = 0;
  if (!in) {
    if (n->use_nic)
      path[k++] = n->nic_out0 + nic;
    if (n->use_up)
      path[k++] = n->up_out0 + node;
  } else {
    if (n->use_up)
      path[k++] = n->up_in0 + node;
    if (n->use_nic)
      path[k++] = n->nic_in0 + nic;
  }
  return k;
}

void sim_net_fini(sim_net *n) {
  if (!n)
    return;
  if (n->links)
    for (int l = 0; l < n->nlinks; l++)
      sim_free(n->links[l].flows);
  sim_free(n->links);
  sim_free(n->dirty);
  sim_free(n->comp_links);
  sim_free(n->comp_flows);
  sim_free(n->heap);
  sim_free(n->sh);
  sim_free(n->flows);
  sim_free(n->freelist);
  sim_free(n->hpos);
  sim_free(n->active);
  memset(n, 0, sizeof(*n));
}

void sim_net_path(const sim_net *n, int src, int dst, int *path, int *plen,
                  int64_t *lat_ns) {
  int sn = src / n->gpn, dn = dst / n->gpn;
  if (src == dst) {
    *plen = 0;
    *lat_ns = 0;
  } else if (sn == dn) {
    path[0] = n->intra_out0 + src;
    path[1] = n->intra_in0 + dst;
    *plen = 2;
    *lat_ns = n->intra_lat_ns;
  } else {
    int k = sim_net_inter_half(n, src, 0, path);
    *plen = k + sim_net_inter_half(n, dst, 1, path + k);
    *lat_ns = n->inter_lat_ns;
  }
}

/* arr with room for one more element (len used of *cap, each elem bytes,
 * doubling from `first`): arr itself when there is room, the grown array,
 * or NULL when out of memory (arr is then unchanged). */
static void *grow(void *arr, int len, int *cap, size_t elem, int first) {
  if (len < *cap)
    return arr;
  int nc = *cap ? *cap * 2 : first;
  void *na = sim_realloc(arr, (size_t)nc * elem);
  if (na)
    *cap = nc;
  return na;
}

static int push_int_grow(int **arr, int *len, int *cap, int v) {
  int *na = grow(*arr, *len, cap, sizeof(int), 16);
  if (!na)
    return SIM_ENOMEM;
  *arr = na;
  na[(*len)++] = v;
  return SIM_OK;
}

/* Appends v to *arr (len used of *cap), growing it when full; SIM_ENOMEM
 * leaves it unchanged. The common case, room left, is inlined. */
static inline int push_int(int **arr, int *len, int *cap, int v) {
  if (*len < *cap) {
    (*arr)[(*len)++] = v;
    return SIM_OK;
  }
  return push_int_grow(arr, len, cap, v);
}

/* ---- indexed heap of projected finish times (ties: lower flow id first) --
 * Every active flow with a finite projected finish has exactly one entry
 * (its position in f->hpos, -1 when none), updated in place when its rate
 * changes: no stale entries to skip, and the heap holds at most the active
 * flows. */

static inline int fin_before(const sim_finq *a, const sim_finq *b) {
  return a->fin < b->fin || (a->fin == b->fin && a->flow < b->flow);
}

static inline void heap_place(sim_net *n, int i, sim_finq e) {
  n->heap[i] = e;
  n->hpos[e.flow] = i;
}

static void heap_up(sim_net *n, int i, sim_finq e) {
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!fin_before(&e, &n->heap[p]))
      break;
    heap_place(n, i, n->heap[p]);
    i = p;
  }
  heap_place(n, i, e);
}

static void heap_down(sim_net *n, int i, sim_finq e) {
  int m = n->nheap;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= m)
      break;
    if (c + 1 < m && fin_before(&n->heap[c + 1], &n->heap[c]))
      c++;
    if (!fin_before(&n->heap[c], &e))
      break;
    heap_place(n, i, n->heap[c]);
    i = c;
  }
  heap_place(n, i, e);
}

/* Sets flow id's entry to fin (inserting it if absent). */
static int heap_set(sim_net *n, int id, double fin) {
  sim_finq e = {fin, id, 0};
  int i = n->hpos[id];
  if (i < 0) {
    sim_finq *nh = grow(n->heap, n->nheap, &n->capheap, sizeof(sim_finq), 256);
    if (!nh)
      return SIM_ENOMEM;
    n->heap = nh;
    heap_up(n, n->nheap++, e);
    return SIM_OK;
  }
  if (fin_before(&e, &n->heap[i]))
    heap_up(n, i, e);
  else
    heap_down(n, i, e);
  return SIM_OK;
}

/* Removes flow id's entry, if any. The root (the usual case: the flow that
 * finishes next) is removed bottom-up: the hole walks down along the smaller
 * children to a leaf (one comparison per level) and the last entry rises
 * from there, which is rarely more than a level or two. */
static void heap_remove(sim_net *n, int id) {
  int i = n->hpos[id];
  if (i < 0)
    return;
  n->hpos[id] = -1;
  sim_finq last = n->heap[--n->nheap];
  if (i == n->nheap)
    return;
  if (i == 0) {
    int m = n->nheap;
    for (;;) {
      int c = 2 * i + 1;
      if (c >= m)
        break;
      if (c + 1 < m && fin_before(&n->heap[c + 1], &n->heap[c]))
        c++;
      heap_place(n, i, n->heap[c]);
      i = c;
    }
    heap_up(n, i, last);
    return;
  }
  if (fin_before(&last, &n->heap[i]))
    heap_up(n, i, last);
  else
    heap_down(n, i, last);
}

static int mark_dirty(sim_net *n, int l) {
  if (n->links[l].dirty)
    return SIM_OK;
  n->links[l].dirty = 1;
  return push_int(&n->dirty, &n->ndirty, &n->capdirty, l);
}

/* ---- progressive filling over one connected component ---- */

/* Records that link b froze flow f (b = -1: none), keeping each link's count
 * of the flows it froze. */
static inline void set_bott(sim_net *n, sim_flow *f, int b) {
  if (f->bott == b)
    return;
  if (f->bott >= 0)
    n->links[f->bott].nbott--;
  if (b >= 0)
    n->links[b].nbott++;
  f->bott = b;
}

typedef struct share_ent {
  double share;
  int link;
  uint32_t ver;
} share_ent;

static inline int share_before(const share_ent *a, const share_ent *b) {
  return a->share < b->share || (a->share == b->share && a->link < b->link);
}

static int sh_push(sim_net *n, double share, int link) {
  share_ent *nsh = grow(n->sh, n->nsh, &n->capsh, sizeof(share_ent), 256);
  if (!nsh)
    return SIM_ENOMEM;
  n->sh = nsh;
  share_ent e = {share, link, n->links[link].hver};
  int i = n->nsh++;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!share_before(&e, &n->sh[p]))
      break;
    n->sh[i] = n->sh[p];
    i = p;
  }
  n->sh[i] = e;
  return SIM_OK;
}

static void sh_pop(sim_net *n) {
  share_ent last = n->sh[--n->nsh];
  int i = 0, m = n->nsh;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= m)
      break;
    if (c + 1 < m && share_before(&n->sh[c + 1], &n->sh[c]))
      c++;
    if (!share_before(&n->sh[c], &last))
      break;
    n->sh[i] = n->sh[c];
    i = c;
  }
  if (m)
    n->sh[i] = last;
}

/*
 * Max-min rates of the component in comp_links/comp_flows at time now.
 * Progressive filling with a heap of links keyed by their fair share
 * rem / unfrozen: the smallest share saturates its link, whose unfrozen
 * flows freeze at that rate; a link's share never decreases when flows
 * freeze elsewhere at a smaller rate, so stale heap entries are skipped by
 * version. O((links + flows x path) log links).
 */
static int fill(sim_net *n, double now) {
  n->recomputes++;
  n->work += (uint64_t)n->ncf;
  if (n->work_limit && n->work > n->work_limit)
    return SIM_ELIMIT;
  for (int k = 0; k < n->ncf; k++) {
    sim_flow *f = &n->flows[n->comp_flows[k]];
    f->left -= f->rate * (now - f->t_ref);
    f->t_ref = now;
    f->frozen = 0;
  }
  if (n->ncf == 1) {
    /* a flow alone: its rate is its narrowest link */
    sim_flow *f = &n->flows[n->comp_flows[0]];
    f->rate = INFINITY;
    int b = -1;
    for (int j = 0; j < f->plen; j++)
      if (n->links[f->path[j]].cap < f->rate) {
        f->rate = n->links[f->path[j]].cap;
        b = f->path[j];
      }
    set_bott(n, f, b);
    goto project;
  }
  n->nsh = 0;
  for (int k = 0; k < n->ncl; k++) {
    int id = n->comp_links[k];
    sim_link *l = &n->links[id];
    l->rem = l->cap;
    l->unfrozen = l->nflows;
    l->wsum = l->wtot;
    l->hver++;
    if (l->unfrozen > 0 && sh_push(n, l->rem / l->wsum, id))
      return SIM_ENOMEM;
  }
  /* Exact max-min visits bottleneck shares in non-decreasing order (a
   * link's share rem / wsum cannot fall when flows freeze elsewhere at a
   * smaller rate). Rounding can leave a tied link a hair below, even at a
   * negative remainder: clamping to the previous share keeps every rate at
   * least the first share, cap / weights > 0, so no flow stalls at rate 0
   * (which would leave it without a finish time forever). */
  double floor_share = 0;
  while (n->nsh > 0) {
    share_ent top = n->sh[0];
    sh_pop(n);
    sim_link *bl = &n->links[top.link];
    if (top.ver != bl->hver || bl->unfrozen <= 0)
      continue;
    double share = top.share > floor_share ? top.share : floor_share;
    floor_share = share;
    for (int i = 0; i < bl->nflows; i++) {
      sim_flow *f = &n->flows[bl->flows[i]];
      if (f->frozen)
        continue;
      f->frozen = 1;
      f->rate = f->w == 1.0 ? share : share * f->w;
      set_bott(n, f, top.link);
      for (int j = 0; j < f->plen; j++) {
        int lid = f->path[j];
        sim_link *l = &n->links[lid];
        l->rem -= f->rate;
        l->unfrozen--;
        l->wsum -= f->w;
        if (lid != top.link) {
          l->hver++;
          if (l->unfrozen > 0 && sh_push(n, l->rem / l->wsum, lid))
            return SIM_ENOMEM;
        }
      }
    }
    bl->hver++;
  }
project:
  for (int k = 0; k < n->ncf; k++) {
    int id = n->comp_flows[k];
    sim_flow *f = &n->flows[id];
    if (f->rate == f->old_rate && isfinite(f->fin))
      continue; /* same rate: its projected finish and heap entry still hold */
    f->old_rate = f->rate;
    /* a positive rate always gets an entry, even a projection past
     * SIM_TIME_MAX (or inf): sim_net_next reports it as SIM_ETIME */
    double fin = f->rate > 0 ? now + (f->left > 0 ? f->left : 0) / f->rate : INFINITY;
    f->fin = fin;
    if (!(f->rate > 0))
      heap_remove(n, id);
    else if (heap_set(n, id, fin))
      return SIM_ENOMEM;
  }
  return SIM_OK;
}

/*
 * fill for the component of link l alone: every flow on it crosses only l
 * (the hose flows of a per-GPU link). Progressive filling then has one
 * round: the link's share cap / (weight of its flows) freezes every flow
 * at share x weight, which is what fill computes with its heaps, in the
 * same order (the link's flow list) and with the same arithmetic.
 */
static int fill_link(sim_net *n, int lid, double now) {
  sim_link *l = &n->links[lid];
  int nf = l->nflows;
  n->recomputes++;
  n->work += (uint64_t)nf;
  if (n->work_limit && n->work > n->work_limit)
    return SIM_ELIMIT;
  double share = l->cap / l->wtot;
  for (int i = 0; i < nf; i++) {
    int id = l->flows[i];
    sim_flow *f = &n->flows[id];
    f->left -= f->rate * (now - f->t_ref);
    f->t_ref = now;
    /* a flow alone takes the link's capacity (fill's one-flow case) */
    f->rate = nf == 1 ? l->cap : f->w == 1.0 ? share : share * f->w;
    set_bott(n, f, lid);
    if (f->rate == f->old_rate && isfinite(f->fin))
      continue; /* same rate: its projected finish and heap entry still hold */
    f->old_rate = f->rate;
    double fin = now + (f->left > 0 ? f->left : 0) / f->rate;
    f->fin = fin;
    if (heap_set(n, id, fin))
      return SIM_ENOMEM;
  }
  return SIM_OK;
}

/* Whether every flow on link l crosses l only. */
static int link_alone(const sim_net *n, const sim_link *l) {
  for (int i = 0; i < l->nflows; i++)
    if (n->flows[l->flows[i]].plen != 1)
      return 0;
  return 1;
}

/* Refills every component that holds a dirty link, at time n->last. */
static int recompute(sim_net *n) {
  int rc = SIM_OK;
  double now = (double)n->last;
  for (int d = 0; d < n->ndirty && !rc; d++) {
    int l0 = n->dirty[d];
    n->links[l0].dirty = 0;
    if (n->links[l0].stamp == n->stamp + 1 || n->links[l0].nflows == 0)
      continue;
    uint32_t st = n->stamp + 1;
    n->ncl = n->ncf = 0;
    if (link_alone(n, &n->links[l0])) {
      n->links[l0].stamp = st;
      rc = fill_link(n, l0, now);
      continue;
    }
    if (n->links[l0].nflows == 1) {
      /* a flow alone on all its links (hose flows often are): no search */
      int fid = n->links[l0].flows[0];
      sim_flow *f = &n->flows[fid];
      int alone = f->stamp != st;
      for (int j = 0; j < f->plen && alone; j++)
        alone = n->links[f->path[j]].nflows == 1;
      if (alone) {
        f->stamp = st;
        for (int j = 0; j < f->plen; j++)
          n->links[f->path[j]].stamp = st;
        if ((rc = push_int(&n->comp_flows, &n->ncf, &n->capcf, fid)))
          break;
        rc = fill(n, now);
        continue;
      }
    }
    /* collect the component around l0 */
    n->links[l0].stamp = st;
    if ((rc = push_int(&n->comp_links, &n->ncl, &n->capcl, l0)))
      break;
    for (int k = 0; k < n->ncl && !rc; k++) {
      const sim_link *l = &n->links[n->comp_links[k]];
      for (int i = 0; i < l->nflows && !rc; i++) {
        int fid = l->flows[i];
        sim_flow *f = &n->flows[fid];
        if (f->stamp == st)
          continue;
        f->stamp = st;
        rc = push_int(&n->comp_flows, &n->ncf, &n->capcf, fid);
        for (int j = 0; j < f->plen && !rc; j++) {
          sim_link *m = &n->links[f->path[j]];
          if (m->stamp != st) {
            m->stamp = st;
            rc = push_int(&n->comp_links, &n->ncl, &n->capcl, f->path[j]);
          }
        }
      }
    }
    if (!rc)
      rc = fill(n, now);
  }
  n->ndirty = 0;
  n->stamp++;
  return rc;
}

int sim_net_start_path(sim_net *n, int64_t now, const int *path, int plen,
                       int64_t lat_ns, double bytes, int64_t tag) {
  return sim_net_start_weighted(n, now, path, plen, lat_ns, bytes, 1.0, tag);
}

int sim_net_start_weighted(sim_net *n, int64_t now, const int *path, int plen,
                           int64_t lat_ns, double bytes, double w, int64_t tag) {
  if (!(bytes > 0) || !isfinite(bytes) || !(w > 0) || w != floor(w) || w >= 2147483648.0 ||
      plen < 1 || plen > SIM_NET_MAXPATH || now < n->last || now > SIM_TIME_MAX)
    return SIM_EINVAL;
  int rc;
  if (now > n->last && n->ndirty && (rc = recompute(n)))
    return rc;
  n->last = now;
  int id;
  if (n->nfree)
    id = n->freelist[--n->nfree];
  else {
    if (n->nflows == n->capflows) {
      if (n->capflows >= SIM_NET_MAX_FLOWS)
        return SIM_ELIMIT;
      int nc = n->capflows ? n->capflows * 2 : 64;
      sim_flow *nf = sim_realloc(n->flows, (size_t)nc * sizeof(sim_flow));
      if (nf)
        n->flows = nf;
      int *fl = sim_realloc(n->freelist, (size_t)nc * sizeof(int));
      if (fl)
        n->freelist = fl;
      int *hp = sim_realloc(n->hpos, (size_t)nc * sizeof(int));
      if (hp)
        n->hpos = hp;
      if (!nf || !fl || !hp)
        return SIM_ENOMEM;
      n->capflows = nc;
    }
    id = n->nflows++;
    n->flows[id].stamp = 0;
  }
  sim_flow *f = &n->flows[id];
  /* every field set one by one: a memset of the whole flow (or a struct
   * literal) compiles to `rep stos`, whose start-up was a third of a
   * flow's start (path and pos are set below up to plen, read only that
   * far) */
  f->plen = plen;
  f->left = bytes;
  f->t_ref = (double)now;
  f->rate = 0;
  f->old_rate = 0;
  f->fin = INFINITY;
  f->w = w;
  f->lat_ns = lat_ns;
  f->tag = tag;
  f->frozen = 0;
  f->bott = -1;
  f->active = 1;
  n->hpos[id] = -1;
  for (int k = 0; k < plen; k++) {
    sim_link *l = &n->links[path[k]];
    f->path[k] = path[k];
    f->pos[k] = l->nflows;
    l->wtot += w;
    if (push_int(&l->flows, &l->nflows, &l->capflows, id) || mark_dirty(n, path[k]))
      return SIM_ENOMEM;
  }
  f->apos = n->nactive;
  if (push_int(&n->active, &n->nactive, &n->capactive, id))
    return SIM_ENOMEM;
  n->started++;
  return id;
}

int sim_net_start(sim_net *n, int64_t now, int src, int dst, double bytes, int64_t tag) {
  int path[SIM_NET_MAXPATH], plen;
  int64_t lat;
  if (src < 0 || dst < 0 || src >= n->gpus || dst >= n->gpus || src == dst)
    return SIM_EINVAL;
  sim_net_path(n, src, dst, path, &plen, &lat);
  return sim_net_start_path(n, now, path, plen, lat, bytes, tag);
}

static int remove_flow(sim_net *n, int id) {
  sim_flow *f = &n->flows[id];
  for (int k = 0; k < f->plen; k++) {
    sim_link *l = &n->links[f->path[k]];
    l->wtot -= f->w;
    int p = f->pos[k], last = l->flows[--l->nflows];
    if (last != id) {
      l->flows[p] = last;
      sim_flow *g = &n->flows[last];
      for (int j = 0; j < g->plen; j++)
        if (g->path[j] == f->path[k]) {
          g->pos[j] = p;
          break;
        }
    }
  }
  /* Only flows frozen by one of the freed links can speed up; if there are
   * none, every other flow keeps a saturated bottleneck link on which it has
   * the largest rate, so the allocation is still max-min fair as it is. */
  set_bott(n, f, -1);
  for (int k = 0; k < f->plen; k++)
    if (n->links[f->path[k]].nbott > 0 && mark_dirty(n, f->path[k]))
      return SIM_ENOMEM;
  int lastf = n->active[--n->nactive];
  n->active[f->apos] = lastf;
  n->flows[lastf].apos = f->apos;
  f->active = 0;
  heap_remove(n, id);
  n->freelist[n->nfree++] = id;
  return SIM_OK;
}

int64_t sim_net_next(sim_net *n) {
  if (n->nactive == 0)
    return INT64_MAX;
  int rc;
  if (n->ndirty && (rc = recompute(n)))
    return rc;
  if (n->nheap == 0)
    return SIM_EINVARIANT; /* active flows, none with a rate: none could end */
  double fin = n->heap[0].fin;
  if (!(fin - 1e-6 <= (double)SIM_TIME_MAX))
    return SIM_ETIME;
  int64_t t = (int64_t)ceil(fin - 1e-6);
  return t < n->last ? n->last : t;
}

int sim_net_advance(sim_net *n, int64_t t, int64_t *out_tag, int64_t *out_done, int max) {
  if (t < n->last || t > SIM_TIME_MAX)
    return SIM_EINVAL;
  int rc;
  if (t > n->last && n->ndirty && (rc = recompute(n)))
    return rc;
  n->last = t;
  int got = 0;
  /* flows that finish sending before the next nanosecond are done now
   * (fin - t, not fin < t + 1: past 2^53 ns, t + 1 rounds back to t and
   * the flow sim_net_next named would never be taken) */
  while (got < max && n->nheap && n->heap[0].fin - (double)t < 1.0) {
    int id = n->heap[0].flow;
    out_tag[got] = n->flows[id].tag;
    out_done[got] = t + n->flows[id].lat_ns;
    got++;
    if (remove_flow(n, id))
      return SIM_ENOMEM;
  }
  /* the flow that ends next, removed by this loop now or by the next call:
   * its row is a cache miss that its removal would otherwise wait for */
  if (n->nheap)
    __builtin_prefetch(&n->flows[n->heap[0].flow]);
  return got;
}
