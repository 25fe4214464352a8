/*
 * pl_route.h - which replica serves which source GPU's tokens.
 *
 * Given a placement and the observed counts[src][e] (token slots that source
 * GPU src routes to expert e), split each (src, e) over e's replicas,
 * locality first:
 *   1. a replica on src itself takes all of them;
 *   2. else the replicas on src's node share them evenly;
 *   3. else all replicas share them evenly.
 * Even integer splits hand the remainder one token each to replicas starting
 * at index (src mod n), so totals are conserved exactly and no replica is
 * favoured systematically. Pure function of its inputs.
 *
 * Capacity dropping (DeepSpeed/GShard) is applied on top when cap >= 0: each
 * replica accepts at most cap tokens in source order; the rest are dropped
 * and counted.
 */
#ifndef FLEXMOE_PL_ROUTE_H
#define FLEXMOE_PL_ROUTE_H

#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_placement.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pl_routing {
  int gpus, experts;
  int64_t *load;     /* [G*E] tokens expert e computes on GPU g */
  int64_t *gpu_load; /* [G] sum over e of load */
  int64_t *traffic;  /* [G*G] tokens sent src -> dst (dst != src), or NULL */
  int64_t dropped;   /* tokens dropped by capacity */
  int64_t total;     /* tokens routed (sum of counts) */
} pl_routing;

/* with_traffic = 0 skips the G*G matrix (large clusters, balance only). */
int pl_routing_init(pl_routing *r, int gpus, int experts, int with_traffic);
void pl_routing_fini(pl_routing *r);

/*
 * counts: [G*E] (row = source GPU), non-negative. cap: per-replica capacity
 * in tokens, or -1 for dropless. Overwrites r. Errors: PL_EINVAL on
 * mismatched dimensions or negative counts.
 */
int pl_route(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
             int64_t cap, pl_routing *r);

/* max GPU load / mean GPU load after routing (1.0 = perfect; 1.0 if idle). */
double pl_routing_balance(const pl_routing *r);

#ifdef __cplusplus
}
#endif
#endif
