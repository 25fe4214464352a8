/*
 * pl_eplb.c - DeepSeek EPLB's replicate-and-pack (see pl_internal.h).
 *
 * Replication: E experts get R >= E copies, one each and then one at a time
 * to the expert with the highest load per copy (tournament tree: O(R log E)).
 * Packing: copies sorted by load per copy (descending; ties by expert id),
 * each to the lightest GPU with fewer than `slots` copies and no copy of
 * the same expert (tournament tree; an expert's run of copies takes the
 * run's length of lightest GPUs at once: O(R log G)). Upstream's packing checks only the copy count and can
 * put two copies of one expert on one GPU; here such a GPU is never chosen.
 * If every GPU with room already holds the expert (possible only near the
 * end, when light multi-copy experts come last), the copy goes to a GPU Q
 * without it and one of Q's copies of another expert moves to a GPU with
 * room that lacks it; some such pair exists whenever a legal packing does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"
#include "pl_internal.h"

typedef struct item {
  double w;
  int e;
} item;

static int item_cmp(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (x->w != y->w)
    return x->w > y->w ? -1 : 1;
  return (x->e > y->e) - (x->e < y->e);
}

/* Repair when every GPU with room in [g0, g0+ng) already hosts e. */
static int place_by_swap(pl_placement *p, int e, int g0, int ng, int slots,
                         double *gw, const double *per) {
  for (int q = g0; q < g0 + ng; q++) {
    if (pl_placement_has(p, e, q))
      continue;
    const int *host = p->host + (size_t)q * p->slots;
    for (int j = 0; j < p->nhost[q]; j++) {
      int x = host[j];
      for (int f = g0; f < g0 + ng; f++) {
        if (p->nhost[f] >= slots || pl_placement_has(p, x, f))
          continue;
        int rc = pl_placement_remove(p, x, q);
        if (!rc)
          rc = pl_placement_add(p, x, f);
        if (!rc)
          rc = pl_placement_add(p, e, q);
        if (rc)
          return rc;
        gw[q - g0] += per[e] - per[x];
        gw[f - g0] += per[x];
        return PL_OK;
      }
    }
  }
  return PL_EINVARIANT;
}

/* Replicates experts ex[0..ne) into R copies (at most ng each) and packs
 * them onto GPUs [g0, g0+ng), `slots` each. */
static int pack_set(pl_placement *p, const double *load, const int *ex, int ne,
                    int g0, int ng, int slots) {
  int R = ng * slots;
  if (R < ne)
    return PL_ESLOTS;
  int rc = PL_ENOMEM;
  int *nrep = pl_calloc((size_t)ne, sizeof(int));
  double *key = pl_calloc((size_t)ne, sizeof(double));
  double *per = pl_calloc((size_t)p->experts, sizeof(double));
  double *gw = pl_calloc((size_t)ng, sizeof(double));
  double *gk = pl_calloc((size_t)ng, sizeof(double));
  item *items = pl_calloc((size_t)R, sizeof(item));
  pl_seg te = {0}, tg = {0};
  if (!nrep || !key || !per || !gw || !gk || !items)
    goto done;
  for (int i = 0; i < ne; i++) {
    nrep[i] = 1;
    key[i] = ng > 1 ? load[ex[i]] : -INFINITY;
  }
  if ((rc = pl_seg_init(&te, ne, key, 1)) != 0)
    goto done;
  int extra = R - ne;
  for (int k = 0; k < extra; k++) {
    int i = pl_seg_top(&te);
    if (!(key[i] > -INFINITY))
      break; /* every expert on every GPU: the rest of the slots stay empty */
    nrep[i]++;
    key[i] = nrep[i] < ng ? load[ex[i]] / nrep[i] : -INFINITY;
    pl_seg_update(&te, i);
  }
  int n = 0;
  for (int i = 0; i < ne; i++) {
    per[ex[i]] = load[ex[i]] / nrep[i];
    for (int r = 0; r < nrep[i]; r++)
      items[n++] = (item){per[ex[i]], ex[i]};
  }
  qsort(items, (size_t)n, sizeof(item), item_cmp);
  if ((rc = pl_seg_init(&tg, ng, gk, 0)) != 0)
    goto done;
  /* Copies of one expert are adjacent in the order (same load per copy)
   * and none of them is placed yet when its run starts, so placing them one
   * by one on "the lightest GPU with room that lacks e" is the same as
   * taking the run's length of lightest GPUs with room at once: pop them
   * from the tree, then put them back with their new weight. O(r log G)
   * per expert instead of O(r^2 log G) with masking. */
  int *pick = pl_calloc((size_t)ng, sizeof(int));
  if (!pick) {
    rc = PL_ENOMEM;
    goto done;
  }
  for (int k = 0; k < n;) {
    int e = items[k].e, run = 0;
    while (k + run < n && items[k + run].e == e)
      run++;
    int got = 0;
    while (got < run) {
      int best = pl_seg_top(&tg);
      if (!(gk[best] < INFINITY))
        break;
      pick[got++] = best;
      gk[best] = INFINITY;
      pl_seg_update(&tg, best);
    }
    for (int i = 0; i < got && !rc; i++) {
      rc = pl_placement_add(p, e, g0 + pick[i]);
      gw[pick[i]] += items[k].w;
    }
    for (int i = got; i < run && !rc; i++) /* every GPU with room has e */
      rc = place_by_swap(p, e, g0, ng, slots, gw, per);
    if (rc) {
      pl_free(pick);
      goto done;
    }
    if (got < run) { /* swaps touched arbitrary GPUs: refresh all keys */
      got = ng;
      for (int u = 0; u < ng; u++)
        pick[u] = u;
    }
    for (int i = 0; i < got; i++) {
      int u = pick[i];
      gk[u] = p->nhost[g0 + u] < slots ? gw[u] : INFINITY;
      pl_seg_update(&tg, u);
    }
    k += run;
  }
  pl_free(pick);
  rc = PL_OK;
done:
  pl_seg_fini(&te);
  pl_seg_fini(&tg);
  pl_free(nrep);
  pl_free(key);
  pl_free(per);
  pl_free(gw);
  pl_free(gk);
  pl_free(items);
  return rc;
}

int pl_eplb_layout(pl_placement *p, const pl_cluster *c, const double *load,
                   int slots, int groups) {
  int E = p->experts, G = p->gpus, gpn = c->gpus_per_node;
  int nodes = G / gpn;
  if (slots < 1 || slots > p->slots || (int64_t)G * slots < E)
    return PL_ESLOTS;
  pl_placement_clear(p);
  int *ex = pl_calloc((size_t)E, sizeof(int));
  if (!ex)
    return PL_ENOMEM;
  int rc = PL_OK;
  if (groups <= 0) {
    for (int e = 0; e < E; e++)
      ex[e] = e;
    rc = pack_set(p, load, ex, E, 0, G, slots);
    pl_free(ex);
    return rc;
  }
  if (E % groups || groups % nodes) {
    pl_free(ex);
    return PL_EINVAL;
  }
  int per_group = E / groups, gper_node = groups / nodes;
  if (gpn * slots < per_group * gper_node) {
    pl_free(ex);
    return PL_ESLOTS;
  }
  /* groups onto nodes: heaviest group to the lightest node with room */
  item *gi = pl_calloc((size_t)groups, sizeof(item));
  double *nw = pl_calloc((size_t)nodes, sizeof(double));
  int *ncount = pl_calloc((size_t)nodes, sizeof(int));
  int *gnode = pl_calloc((size_t)groups, sizeof(int));
  if (!gi || !nw || !ncount || !gnode) {
    rc = PL_ENOMEM;
    goto done;
  }
  for (int k = 0; k < groups; k++) {
    double w = 0;
    for (int e = k * per_group; e < (k + 1) * per_group; e++)
      w += load[e];
    gi[k] = (item){w, k};
  }
  qsort(gi, (size_t)groups, sizeof(item), item_cmp);
  for (int k = 0; k < groups; k++) {
    int best = -1;
    for (int n = 0; n < nodes; n++)
      if (ncount[n] < gper_node && (best < 0 || nw[n] < nw[best]))
        best = n;
    gnode[gi[k].e] = best;
    nw[best] += gi[k].w;
    ncount[best]++;
  }
  for (int n = 0; n < nodes && !rc; n++) {
    int ne = 0;
    for (int k = 0; k < groups; k++) /* ascending group id: deterministic */
      if (gnode[k] == n)
        for (int e = k * per_group; e < (k + 1) * per_group; e++)
          ex[ne++] = e;
    rc = pack_set(p, load, ex, ne, n * gpn, gpn, slots);
  }
done:
  pl_free(gi);
  pl_free(nw);
  pl_free(ncount);
  pl_free(gnode);
  pl_free(ex);
  return rc;
}
