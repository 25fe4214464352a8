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
  n->alinks = sim_calloc((size_t)n->nlinks, sizeof(int));
  if (!n->links || !n->alinks) {
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
    n->links[l].active_pos = -1;
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
  sim_free(n->alinks);
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

/* Brings every active flow's remaining bytes to time t. */
static void apply(sim_net *n, int64_t t) {
  double dt = (double)(t - n->last);
  if (dt > 0)
    for (int k = 0; k < n->nactive; k++) {
      sim_flow *f = &n->flows[n->active[k]];
      f->left -= f->rate * dt;
    }
  n->last = t;
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

int sim_net_start_path(sim_net *n, int64_t now, const int *path, int plen,
                       int64_t lat_ns, double bytes, int64_t tag) {
  if (!(bytes > 0) || plen < 1 || plen > SIM_NET_MAXPATH || now < n->last)
    return SIM_EINVAL;
  apply(n, now);
  int id;
  if (n->nfree)
    id = n->freelist[--n->nfree];
  else {
    if (n->nflows == n->capflows) {
      int nc = n->capflows ? n->capflows * 2 : 64;
      sim_flow *nf = sim_realloc(n->flows, (size_t)nc * sizeof(sim_flow));
      int *fl = sim_realloc(n->freelist, (size_t)nc * sizeof(int));
      if (nf)
        n->flows = nf;
      if (fl)
        n->freelist = fl;
      if (!nf || !fl)
        return SIM_ENOMEM;
      n->capflows = nc;
    }
    id = n->nflows++;
  }
  sim_flow *f = &n->flows[id];
  memset(f, 0, sizeof(*f));
  f->plen = plen;
  f->left = bytes;
  f->lat_ns = lat_ns;
  f->tag = tag;
  f->active = 1;
  for (int k = 0; k < plen; k++) {
    sim_link *l = &n->links[path[k]];
    f->path[k] = path[k];
    f->pos[k] = l->nflows;
    if (push_int(&l->flows, &l->nflows, &l->capflows, id))
      return SIM_ENOMEM;
    if (l->active_pos < 0) {
      l->active_pos = n->nalinks;
      n->alinks[n->nalinks++] = path[k];
    }
  }
  f->apos = n->nactive;
  if (push_int(&n->active, &n->nactive, &n->capactive, id))
    return SIM_ENOMEM;
  n->dirty = 1;
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

static void remove_flow(sim_net *n, int id) {
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
    if (l->nflows == 0) {
      int ap = l->active_pos, lastl = n->alinks[--n->nalinks];
      n->alinks[ap] = lastl;
      n->links[lastl].active_pos = ap;
      l->active_pos = -1;
    }
  }
  int lastf = n->active[--n->nactive];
  n->active[f->apos] = lastf;
  n->flows[lastf].apos = f->apos;
  f->active = 0;
  n->freelist[n->nfree++] = id;
  n->dirty = 1;
}

/* Progressive filling over the links that carry flows. */
static void recompute(sim_net *n) {
  n->recomputes++;
  for (int k = 0; k < n->nalinks; k++) {
    sim_link *l = &n->links[n->alinks[k]];
    l->rem = l->cap;
    l->unfrozen = l->nflows;
  }
  for (int k = 0; k < n->nactive; k++)
    n->flows[n->active[k]].frozen = 0;
  int left = n->nactive;
  while (left > 0) {
    int best = -1;
    double share = INFINITY;
    for (int k = 0; k < n->nalinks; k++) {
      sim_link *l = &n->links[n->alinks[k]];
      if (l->unfrozen > 0) {
        double s = l->rem / l->unfrozen;
        if (s < share) {
          share = s;
          best = n->alinks[k];
        }
      }
    }
    if (best < 0)
      break;
    if (share < 0)
      share = 0;
    sim_link *bl = &n->links[best];
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
  n->dirty = 0;
}

int64_t sim_net_next(sim_net *n) {
  if (n->nactive == 0)
    return INT64_MAX;
  if (n->dirty)
    recompute(n);
  double best = INFINITY;
  for (int k = 0; k < n->nactive; k++) {
    const sim_flow *f = &n->flows[n->active[k]];
    if (f->rate > 0) {
      double d = f->left / f->rate;
      if (d < best)
        best = d;
    }
  }
  if (!isfinite(best))
    return INT64_MAX;
  if (best < 0)
    best = 0;
  return n->last + (int64_t)ceil(best - 1e-9);
}

int sim_net_advance(sim_net *n, int64_t t, int64_t *out_tag, int64_t *out_done, int max) {
  if (t < n->last)
    return SIM_EINVAL;
  apply(n, t);
  int got = 0;
  for (int k = 0; k < n->nactive && got < max;) {
    int id = n->active[k];
    sim_flow *f = &n->flows[id];
    /* sent, up to the last partial nanosecond */
    if (f->left <= f->rate * 1.0 + 1e-6) {
      out_tag[got] = f->tag;
      out_done[got] = t + f->lat_ns;
      got++;
      remove_flow(n, id); /* moves another flow into slot k */
    } else {
      k++;
    }
  }
  return got;
}
