/*
 * pl_route.c - locality-first split of each source's tokens over an
 * expert's replicas (see pl_route.h for the rule).
 */
#include "placement/pl_route.h"

#include <string.h>

#include "placement/pl_error.h"

int pl_routing_init(pl_routing *r, int gpus, int experts, int with_traffic) {
  if (!r || gpus < 1 || experts < 1)
    return PL_EINVAL;
  pl_routing t = {gpus, experts, NULL, NULL, NULL, 0, 0, -1, 0, NULL, NULL, NULL};
  t.load = pl_calloc((size_t)gpus * (size_t)experts, sizeof(int64_t));
  t.gpu_load = pl_calloc((size_t)gpus, sizeof(int64_t));
  t.hose = pl_calloc(4 * (size_t)gpus, sizeof(int64_t));
  t.acc = pl_calloc(2 * (size_t)experts * ((size_t)gpus + 1), sizeof(int64_t));
  t.over = pl_calloc((size_t)experts, 1);
  if (with_traffic)
    t.traffic = pl_calloc((size_t)gpus * (size_t)gpus, sizeof(int64_t));
  if (!t.load || !t.gpu_load || !t.hose || !t.acc || !t.over || (with_traffic && !t.traffic)) {
    pl_routing_fini(&t);
    return PL_ENOMEM;
  }
  *r = t;
  return PL_OK;
}

void pl_routing_fini(pl_routing *r) {
  if (!r)
    return;
  pl_free(r->load);
  pl_free(r->gpu_load);
  pl_free(r->traffic);
  pl_free(r->hose);
  pl_free(r->acc);
  pl_free(r->over);
  memset(r, 0, sizeof(*r));
}

/* First index in sorted a[0..n) with a[i] >= v. */
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

/* Gives `tokens` from src to replica GPU dst of expert e, within capacity.
 * inter: dst is on another node than src. */
static void deliver(pl_routing *r, int src, int dst, int inter, int e, int64_t tokens,
                    int64_t cap) {
  int64_t *slot = &r->load[(size_t)dst * r->experts + e];
  int64_t take = tokens;
  if (cap >= 0 && *slot + take > cap)
    take = cap > *slot ? cap - *slot : 0;
  *slot += take;
  r->gpu_load[dst] += take;
  r->dropped += tokens - take;
  if (dst != src) {
    size_t G = (size_t)r->gpus;
    if (r->hose) {
      r->hose[2 * G * (size_t)inter + (size_t)src] += take;
      r->hose[2 * G * (size_t)inter + G + (size_t)dst] += take;
    }
    if (r->traffic)
      r->traffic[(size_t)src * G + dst] += take;
  }
}

/*
 * Dropless routing without the matrix, the same result as the general loop
 * in O(G E + sum of replicas) instead of O(sum over (src, e) of the
 * replicas sharing it) - with data-parallel layouts at 1,024 GPUs (16 or
 * more replicas per expert, mostly on other nodes) that was 1M deliveries
 * per layer. An even split hands `base` to a contiguous range of e's
 * replica list and one more token to a cyclic sub-range of it; both are
 * range additions, recorded in O(1) in a difference array per expert (one
 * for intra-node shares, one for inter-node shares, so the per-GPU in sums
 * stay split) and summed once per expert at the end. Integer arithmetic:
 * bit-identical to delivering share by share. Experts with skip[e] set
 * (skip may be NULL) are left out entirely.
 */
static void route_sums(const pl_placement *p, int gpn, const int64_t *counts,
                       const unsigned char *skip, pl_routing *r) {
  int G = p->gpus, E = p->experts;
  size_t W = (size_t)G + 1;
  int64_t *dI = r->acc, *dX = r->acc + (size_t)E * W;
  int64_t *io = r->hose, *ii = r->hose + G, *xo = r->hose + 2 * (size_t)G,
          *xi = r->hose + 3 * (size_t)G;
  for (int e = 0; e < E; e++) {
    memset(dI + (size_t)e * W, 0, ((size_t)p->nrep[e] + 1) * sizeof(int64_t));
    memset(dX + (size_t)e * W, 0, ((size_t)p->nrep[e] + 1) * sizeof(int64_t));
  }
  /* node by node, so each (node, expert) locates its replicas once */
  for (int node_lo = 0; node_lo < G; node_lo += gpn)
    for (int e = 0; e < E; e++) {
      if (skip && skip[e])
        continue;
      const int *rep = p->rep + (size_t)e * G;
      int n = p->nrep[e];
      int nlo = lower_bound(rep, n, node_lo);
      int nhi = lower_bound(rep, n, node_lo + gpn);
      int self = nlo; /* first replica >= src: src ascends, so it only moves up */
      for (int src = node_lo; src < node_lo + gpn; src++) {
        int64_t tokens = counts[(size_t)src * E + e];
        if (tokens == 0)
          continue;
        r->total += tokens;
        int lo = nlo, hi = nhi;
        while (self < hi && rep[self] < src)
          self++;
        if (self < hi && rep[self] == src) {
          r->load[(size_t)src * E + e] += tokens;
          r->gpu_load[src] += tokens;
          continue;
        }
        int inter = hi == lo;
        if (inter) {
          lo = 0;
          hi = n;
        }
        (inter ? xo : io)[src] += tokens;
        int64_t *d = (inter ? dX : dI) + (size_t)e * W;
        int k = hi - lo;
        int64_t base = tokens / k, rem = tokens % k;
        d[lo] += base;
        d[hi] -= base;
        if (rem) { /* indices lo + (a .. a + rem - 1) mod k get one more */
          int a = src % k;
          d[lo + a] += 1;
          if (a + rem <= k) {
            d[lo + a + rem] -= 1;
          } else {
            d[hi] -= 1;
            d[lo] += 1;
            d[lo + a + rem - k] -= 1;
          }
        }
      }
    }
  for (int e = 0; e < E; e++) {
    if (skip && skip[e])
      continue;
    const int *rep = p->rep + (size_t)e * G;
    const int64_t *a = dI + (size_t)e * W, *b = dX + (size_t)e * W;
    int64_t runI = 0, runX = 0;
    for (int i = 0; i < p->nrep[e]; i++) {
      runI += a[i];
      runX += b[i];
      int dst = rep[i];
      r->load[(size_t)dst * E + e] += runI + runX;
      r->gpu_load[dst] += runI + runX;
      ii[dst] += runI;
      xi[dst] += runX;
    }
  }
}

int pl_route(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
             int64_t cap, pl_routing *r) {
  if (!p || !c || !counts || !r || p->gpus != c->gpus || r->gpus != p->gpus ||
      r->experts != p->experts)
    return PL_EINVAL;
  int G = p->gpus, E = p->experts, gpn = c->gpus_per_node;
  for (size_t i = 0; i < (size_t)G * E; i++)
    if (counts[i] < 0)
      return PL_EINVAL;
  memset(r->load, 0, (size_t)G * E * sizeof(int64_t));
  memset(r->gpu_load, 0, (size_t)G * sizeof(int64_t));
  if (r->traffic)
    memset(r->traffic, 0, (size_t)G * G * sizeof(int64_t));
  if (r->hose)
    memset(r->hose, 0, 4 * (size_t)G * sizeof(int64_t));
  r->dropped = 0;
  r->total = 0;
  r->capacity = cap >= 0 ? cap : -1;
  r->padded = cap >= 0;
  const unsigned char *only = NULL; /* the general loop's experts (NULL: all) */
  int64_t reps = 0;
  for (int e = 0; e < E; e++)
    reps += p->nrep[e];
  /* With a capacity the split below pays only where experts have many
   * replicas (the general loop delivers to each of them share by share);
   * with few, one general loop is cheaper than route_sums twice. */
  if (!r->traffic && r->hose && r->acc && r->over && (cap < 0 || reps > 4 * (int64_t)E)) {
    route_sums(p, gpn, counts, NULL, r);
    if (cap < 0)
      return PL_OK;
    /* With a capacity, an expert none of whose replicas gets more than cap
     * routes as without one. Replicas fill in source order expert by
     * expert, so the others go through the general loop alone, in the same
     * order, and every replica receives exactly what it would in one loop
     * over all experts. */
    unsigned char *over = r->over;
    int any = 0;
    for (int e = 0; e < E; e++) {
      const int *rep = p->rep + (size_t)e * G;
      over[e] = 0;
      for (int i = 0; i < p->nrep[e] && !over[e]; i++)
        over[e] = r->load[(size_t)rep[i] * E + e] > cap;
      any |= over[e];
    }
    if (!any)
      return PL_OK;
    memset(r->load, 0, (size_t)G * E * sizeof(int64_t));
    memset(r->gpu_load, 0, (size_t)G * sizeof(int64_t));
    memset(r->hose, 0, 4 * (size_t)G * sizeof(int64_t));
    r->total = 0;
    route_sums(p, gpn, counts, over, r); /* the experts under capacity */
    only = over;
  }
  for (int src = 0; src < G; src++) {
    int node_lo = (src / gpn) * gpn;
    for (int e = 0; e < E; e++) {
      if (only && !only[e])
        continue;
      int64_t tokens = counts[(size_t)src * E + e];
      if (tokens == 0)
        continue;
      r->total += tokens;
      const int *rep = p->rep + (size_t)e * G;
      int n = p->nrep[e];
      int lo = lower_bound(rep, n, node_lo);
      int hi = lower_bound(rep, n, node_lo + gpn);
      int self = lower_bound(rep + lo, hi - lo, src) + lo;
      if (self < hi && rep[self] == src) {
        deliver(r, src, src, 0, e, tokens, cap);
        continue;
      }
      int inter = hi == lo;
      if (inter) { /* no replica on this node: all replicas share */
        lo = 0;
        hi = n;
      }
      int k = hi - lo;
      int64_t base = tokens / k, rem = tokens % k;
      for (int i = 0; i < k; i++) {
        int64_t share = base + (((i - src % k + k) % k) < rem ? 1 : 0);
        if (share)
          deliver(r, src, rep[lo + i], inter, e, share, cap);
      }
    }
  }
  return PL_OK;
}

/* Per-(source, replica) share of a padded buffer. */
static int64_t pad_share(const pl_routing *r) {
  return (r->capacity + r->gpus - 1) / r->gpus;
}

int64_t pl_routing_wire_tokens(const pl_routing *r, const pl_placement *p,
                               int src, int dst) {
  if (src == dst)
    return 0;
  if (r->padded)
    return (int64_t)p->nhost[dst] * pad_share(r);
  return r->traffic ? r->traffic[(size_t)src * r->gpus + dst] : 0;
}

int64_t pl_routing_compute_tokens(const pl_routing *r, const pl_placement *p,
                                  int gpu, int expert) {
  if (r->padded)
    return pl_placement_has(p, expert, gpu) ? (int64_t)r->gpus * pad_share(r) : 0;
  return r->load[(size_t)gpu * r->experts + expert];
}

int pl_routing_wire_sums(const pl_routing *r, const pl_placement *p, int gpus_per_node,
                         int64_t *h) {
  if (!r || !p || !h || p->gpus != r->gpus || gpus_per_node < 1 ||
      r->gpus % gpus_per_node || (!r->hose && !r->traffic && !r->padded))
    return PL_EINVAL;
  size_t G = (size_t)r->gpus, gpn = (size_t)gpus_per_node;
  int64_t *io = h, *ii = h + G, *xo = h + 2 * G, *xi = h + 3 * G;
  if (r->padded) {
    /* src sends nhost[dst] x pad to every dst != src: out sums the hosts
     * of the other GPUs, in is nhost[g] x pad from each other GPU. */
    int64_t pad = pad_share(r), all = 0;
    for (size_t g = 0; g < G; g++)
      all += p->nhost[g];
    for (size_t lo = 0; lo < G; lo += gpn) {
      int64_t node = 0;
      for (size_t g = lo; g < lo + gpn; g++)
        node += p->nhost[g];
      for (size_t g = lo; g < lo + gpn; g++) {
        io[g] = (node - p->nhost[g]) * pad;
        xo[g] = (all - node) * pad;
        ii[g] = (int64_t)(gpn - 1) * p->nhost[g] * pad;
        xi[g] = (int64_t)(G - gpn) * p->nhost[g] * pad;
      }
    }
    return PL_OK;
  }
  if (r->hose) {
    memcpy(h, r->hose, 4 * G * sizeof(int64_t));
    return PL_OK;
  }
  memset(h, 0, 4 * G * sizeof(int64_t));
  for (size_t s = 0; s < G; s++)
    for (size_t d = 0; d < G; d++) {
      int64_t t = d == s ? 0 : r->traffic[s * G + d];
      int x = s / gpn != d / gpn;
      h[2 * G * (size_t)x + s] += t;
      h[2 * G * (size_t)x + G + d] += t;
    }
  return PL_OK;
}

double pl_routing_balance(const pl_routing *r) {
  int64_t max = 0, sum = 0;
  for (int g = 0; g < r->gpus; g++) {
    sum += r->gpu_load[g];
    if (r->gpu_load[g] > max)
      max = r->gpu_load[g];
  }
  if (sum == 0)
    return 1.0;
  return (double)max * r->gpus / (double)sum;
}
