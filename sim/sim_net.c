/*
 * sim_net.c - link graph and max-min fair flows (see sim_net.h).
 *
 * Bookkeeping: each link keeps the list of its active flows and each flow
 * its index in those lists, so starting and ending a flow is O(path length).
 * Rates are recomputed lazily (once per batch of starts/ends at one instant)
 * over the links that carry flows.
 */
#include "sim/sim_net.h"

#include <math.h>
#include <string.h>

#include "sim/sim_error.h"

static int64_t us_to_ns(double us) { return (int64_t)llround(us * 1e3); }

int sim_net_init(sim_net *n, const sim_cluster *c) {
  memset(n, 0, sizeof(*n));
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
  return SIM_OK;
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
  sim_free(n->flows);
  sim_free(n->freelist);
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
    int si = n->nic_per_node ? sn : src, di = n->nic_per_node ? dn : dst;
    path[0] = n->nic_out0 + si;
    path[1] = n->up_out0 + sn;
    path[2] = n->up_in0 + dn;
    path[3] = n->nic_in0 + di;
    *plen = 4;
    *lat_ns = n->inter_lat_ns;
  }
}

static int push_int(int **arr, int *len, int *cap, int v) {
  if (*len == *cap) {
    int nc = *cap ? *cap * 2 : 16;
    int *na = sim_realloc(*arr, (size_t)nc * sizeof(int));
    if (!na)
      return SIM_ENOMEM;
    *arr = na;
    *cap = nc;
  }
  (*arr)[(*len)++] = v;
  return SIM_OK;
}

/* ---- heap of projected finish times (ties: lower flow id first) ---- */

static inline int fin_before(const sim_finq *a, const sim_finq *b) {
  return a->fin < b->fin || (a->fin == b->fin && a->flow < b->flow);
}

static int heap_push(sim_net *n, double fin, int flow, uint32_t ver) {
  if (n->nheap == n->capheap) {
    int nc = n->capheap ? n->capheap * 2 : 256;
    sim_finq *nh = sim_realloc(n->heap, (size_t)nc * sizeof(sim_finq));
    if (!nh)
      return SIM_ENOMEM;
    n->heap = nh;
    n->capheap = nc;
  }
  sim_finq e = {fin, flow, ver};
  int i = n->nheap++;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!fin_before(&e, &n->heap[p]))
      break;
    n->heap[i] = n->heap[p];
    i = p;
  }
  n->heap[i] = e;
  return SIM_OK;
}

static void heap_pop(sim_net *n) {
  sim_finq last = n->heap[--n->nheap];
  int i = 0, m = n->nheap;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= m)
      break;
    if (c + 1 < m && fin_before(&n->heap[c + 1], &n->heap[c]))
      c++;
    if (!fin_before(&n->heap[c], &last))
      break;
    n->heap[i] = n->heap[c];
    i = c;
  }
  if (m)
    n->heap[i] = last;
}

/* Drops stale entries from the top; 1 if a valid top remains. */
static int heap_top(sim_net *n) {
  while (n->nheap) {
    const sim_finq *t = &n->heap[0];
    const sim_flow *f = &n->flows[t->flow];
    if (f->active && f->ver == t->ver)
      return 1;
    heap_pop(n);
  }
  return 0;
}

static int mark_dirty(sim_net *n, int l) {
  if (n->links[l].dirty)
    return SIM_OK;
  n->links[l].dirty = 1;
  return push_int(&n->dirty, &n->ndirty, &n->capdirty, l);
}

/* ---- progressive filling over one connected component ---- */

static int fill(sim_net *n, double now) {
  n->recomputes++;
  for (int k = 0; k < n->ncf; k++) {
    sim_flow *f = &n->flows[n->comp_flows[k]];
    f->left -= f->rate * (now - f->t_ref);
    f->t_ref = now;
    f->frozen = 0;
  }
  for (int k = 0; k < n->ncl; k++) {
    sim_link *l = &n->links[n->comp_links[k]];
    l->rem = l->cap;
    l->unfrozen = l->nflows;
  }
  int left = n->ncf;
  while (left > 0) {
    double share = INFINITY;
    for (int k = 0; k < n->ncl; k++) {
      const sim_link *l = &n->links[n->comp_links[k]];
      if (l->unfrozen > 0) {
        double s = l->rem / l->unfrozen;
        if (s < share)
          share = s;
      }
    }
    if (!isfinite(share))
      break;
    /* every link at the bottleneck share saturates in this round (freezing
     * one tied link's flows leaves the others' share unchanged) */
    double tie = share + fabs(share) * 1e-12;
    if (share < 0)
      share = 0;
    for (int k = 0; k < n->ncl; k++) {
      const sim_link *bl = &n->links[n->comp_links[k]];
      if (bl->unfrozen <= 0 || bl->rem / bl->unfrozen > tie)
        continue;
      for (int i = 0; i < bl->nflows; i++) {
        sim_flow *f = &n->flows[bl->flows[i]];
        if (f->frozen)
          continue;
        f->frozen = 1;
        f->rate = share;
        left--;
        for (int j = 0; j < f->plen; j++) {
          sim_link *l = &n->links[f->path[j]];
          l->rem -= share;
          l->unfrozen--;
        }
      }
    }
  }
  for (int k = 0; k < n->ncf; k++) {
    int id = n->comp_flows[k];
    sim_flow *f = &n->flows[id];
    if (f->rate == f->old_rate && isfinite(f->fin))
      continue; /* same rate: its projected finish and heap entry still hold */
    f->old_rate = f->rate;
    double fin = f->rate > 0 ? now + (f->left > 0 ? f->left : 0) / f->rate : INFINITY;
    f->fin = fin;
    f->ver++;
    if (isfinite(fin) && heap_push(n, fin, id, f->ver))
      return SIM_ENOMEM;
  }
  return SIM_OK;
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
    /* collect the component around l0 */
    uint32_t st = n->stamp + 1;
    n->ncl = n->ncf = 0;
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
  if (!(bytes > 0) || plen < 1 || plen > SIM_NET_MAXPATH || now < n->last)
    return SIM_EINVAL;
  if (now > n->last && n->ndirty && recompute(n))
    return SIM_ENOMEM;
  n->last = now;
  int id;
  if (n->nfree)
    id = n->freelist[--n->nfree];
  else {
    if (n->nflows == n->capflows) {
      int nc = n->capflows ? n->capflows * 2 : 64;
      sim_flow *nf = sim_realloc(n->flows, (size_t)nc * sizeof(sim_flow));
      if (nf)
        n->flows = nf;
      int *fl = sim_realloc(n->freelist, (size_t)nc * sizeof(int));
      if (fl)
        n->freelist = fl;
      if (!nf || !fl)
        return SIM_ENOMEM;
      n->capflows = nc;
    }
    id = n->nflows++;
    n->flows[id].ver = 0;
    n->flows[id].stamp = 0;
  }
  sim_flow *f = &n->flows[id];
  uint32_t ver = f->ver + 1, stamp = f->stamp;
  memset(f, 0, sizeof(*f));
  f->ver = ver;
  f->stamp = stamp;
  f->plen = plen;
  f->left = bytes;
  f->t_ref = (double)now;
  f->fin = INFINITY;
  f->lat_ns = lat_ns;
  f->tag = tag;
  f->active = 1;
  for (int k = 0; k < plen; k++) {
    sim_link *l = &n->links[path[k]];
    f->path[k] = path[k];
    f->pos[k] = l->nflows;
    if (push_int(&l->flows, &l->nflows, &l->capflows, id) || mark_dirty(n, path[k]))
      return SIM_ENOMEM;
  }
  f->apos = n->nactive;
  if (push_int(&n->active, &n->nactive, &n->capactive, id))
    return SIM_ENOMEM;
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
    if (mark_dirty(n, f->path[k]))
      return SIM_ENOMEM;
  }
  int lastf = n->active[--n->nactive];
  n->active[f->apos] = lastf;
  n->flows[lastf].apos = f->apos;
  f->active = 0;
  f->ver++;
  n->freelist[n->nfree++] = id;
  return SIM_OK;
}

int64_t sim_net_next(sim_net *n) {
  if (n->nactive == 0)
    return INT64_MAX;
  if (n->ndirty && recompute(n))
    return INT64_MAX;
  if (!heap_top(n))
    return INT64_MAX;
  double fin = n->heap[0].fin;
  int64_t t = (int64_t)ceil(fin - 1e-6);
  return t < n->last ? n->last : t;
}

int sim_net_advance(sim_net *n, int64_t t, int64_t *out_tag, int64_t *out_done, int max) {
  if (t < n->last)
    return SIM_EINVAL;
  if (t > n->last && n->ndirty && recompute(n))
    return SIM_ENOMEM;
  n->last = t;
  int got = 0;
  /* flows that finish sending before the next nanosecond are done now */
  while (got < max && heap_top(n) && n->heap[0].fin < (double)t + 1.0) {
    int id = n->heap[0].flow;
    heap_pop(n);
    out_tag[got] = n->flows[id].tag;
    out_done[got] = t + n->flows[id].lat_ns;
    got++;
    if (remove_flow(n, id))
      return SIM_ENOMEM;
  }
  return got;
}
