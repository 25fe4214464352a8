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
 *
 * Padded dispatch. A capacity routing (cap >= 0) also means fixed-size
 * buffers, as DeepSpeed-MoE and GShard run them: every source sends every
 * expert replica a buffer of ceil(cap / G) token slots whether or not it has
 * that many tokens for it, and every replica computes its full buffer of
 * G x ceil(cap / G) slots. pl_route records this in r->padded and
 * r->capacity; load, gpu_load, traffic and dropped keep the real tokens
 * (balance and drop statistics), while pl_routing_wire_tokens and
 * pl_routing_compute_tokens give what the links and the GPUs really
 * carry (pl_routing_wire_sums: the same per GPU). pl_cost_layer and the
 * simulator (both engines) charge time from those.
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
  /* Appended fields. */
  int64_t capacity;  /* per-replica capacity applied, -1 = dropless */
  int padded;        /* 1: dispatch is padded to capacity (see above) */
  /* Per-GPU sums of the off-diagonal traffic, [4*G]: hose[g] intra-node
   * out, hose[G+g] intra-node in, hose[2G+g] inter-node out, hose[3G+g]
   * inter-node in (real tokens, like traffic). Always kept, with or without
   * the matrix: the analytic cost and the simulator's hose network need
   * only these. NULL in a pl_routing not made by pl_routing_init. */
  int64_t *hose;
  int64_t *acc; /* [2*E*(G+1)] pl_route's scratch (difference arrays), internal */
  unsigned char *over; /* [E] pl_route's scratch (experts over capacity), internal */
} pl_routing;

/* with_traffic = 0 skips the G*G matrix: everything but `flexmoe net`, the
 * simulator's exact network and the runtime works from the per-GPU sums
 * (r->hose), which cost O(G) memory instead of O(G^2) and make pl_route
 * O(G E) instead of O(G E + G^2). */
int pl_routing_init(pl_routing *r, int gpus, int experts, int with_traffic);
void pl_routing_fini(pl_routing *r);

/*
 * counts: [G*E] (row = source GPU), non-negative. cap: per-replica capacity
 * in tokens, or -1 for dropless. Overwrites r. Errors: PL_EINVAL on
 * mismatched dimensions or negative counts.
 */
int pl_route(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
             int64_t cap, pl_routing *r);

/* Token slots on the wire from src to dst (src != dst): r->traffic, or for
 * a padded routing nhost[dst] x ceil(capacity / G). Needs r->traffic unless
 * padded. */
int64_t pl_routing_wire_tokens(const pl_routing *r, const pl_placement *p,
                               int src, int dst);
/* Token slots GPU g computes for expert e: r->load, or for a padded routing
 * G x ceil(capacity / G) when g hosts e (0 otherwise). */
int64_t pl_routing_compute_tokens(const pl_routing *r, const pl_placement *p,
                                  int gpu, int expert);

/* Per-GPU token slots on the wire, h[4*G] in r->hose's layout (intra out,
 * intra in, inter out, inter in): r->hose (or sums of r->traffic when hose
 * is NULL), or for a padded routing the padded buffers of
 * pl_routing_wire_tokens summed per GPU. O(G). PL_EINVAL when r has
 * neither hose nor traffic and is not padded, or on mismatched sizes. */
int pl_routing_wire_sums(const pl_routing *r, const pl_placement *p, int gpus_per_node,
                         int64_t *h);

/* max GPU load / mean GPU load after routing (1.0 = perfect; 1.0 if idle). */
double pl_routing_balance(const pl_routing *r);

#ifdef __cplusplus
}
#endif
#endif
