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
 * Capacity (DeepSpeed-MoE, docs/baselines.md): pl_route_caps takes a
 * capacity per source GPU, cap[src] >= 0 token slots per expert. Source src
 * keeps min(counts[src][e], cap[src]) of its slots for expert e and drops
 * the rest (counted in r->dropped), then the kept slots are routed as
 * above, dropless: drops are per (source, expert), whatever the replicas.
 *
 * Padded dispatch. A capacity routing also means fixed-size buffers, as
 * DeepSpeed-MoE runs them: source src sends every expert a buffer of
 * cap[src] slots whether or not it has that many tokens for it (its whole
 * buffer is E x cap[src]), and every replica computes all the buffers it
 * receives, its own included. With several replicas of an expert the
 * buffer is split over them by the same locality-first rule as real
 * tokens (1.-3. above): a replica on src takes it whole, else the replicas
 * on src's node share it evenly, else all do. pl_route records this in
 * r->padded and r->cap; load, gpu_load, traffic, hose and dropped keep the
 * real (kept) tokens (balance and drop statistics), while
 * pl_routing_wire_tokens and pl_routing_compute_tokens give what the links
 * and the GPUs really carry (pl_routing_wire_sums: the same per GPU).
 * pl_cost_layer and the simulator (both engines) charge time from those.
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
  int64_t capacity;  /* the largest per-source capacity applied, -1 = dropless */
  int padded;        /* 1: dispatch is padded to capacity (see above) */
  /* Per-GPU sums of the off-diagonal traffic, [4*G]: hose[g] intra-node
   * out, hose[G+g] intra-node in, hose[2G+g] inter-node out, hose[3G+g]
   * inter-node in (real tokens, like traffic). Always kept, with or without
   * the matrix: the analytic cost and the simulator's hose network need
   * only these. NULL in a pl_routing not made by pl_routing_init. */
  int64_t *hose;
  int64_t *acc; /* [2*E*(G+1)] pl_route's scratch (difference arrays), internal */
  /* [G] capacity per source GPU of the last pl_route, each -1 when
   * dropless; pl_policy_route has the policy write it (NULL in a pl_routing
   * not made by pl_routing_init) */
  int64_t *cap;
  /* Padded routings only (padded = 1), allocated by the first one: [G*E]
   * token slots GPU g computes for expert e, and [4*G] the padded per-GPU
   * wire sums in hose's layout. */
  int64_t *pad_load;
  int64_t *pad_hose;
  int gpus_per_node; /* of the cluster of the last pl_route */
} pl_routing;

/* with_traffic = 0 skips the G*G matrix: everything but `flexmoe net`, the
 * simulator's exact network and the runtime works from the per-GPU sums
 * (r->hose), which cost O(G) memory instead of O(G^2) and make pl_route
 * O(G E) instead of O(G E + G^2). */
int pl_routing_init(pl_routing *r, int gpus, int experts, int with_traffic);
void pl_routing_fini(pl_routing *r);

/*
 * counts: [G*E] (row = source GPU), non-negative. cap: the capacity of every
 * source GPU (pl_route_caps with cap[src] = cap for all src), or -1 for
 * dropless. Overwrites r. Errors: PL_EINVAL on mismatched dimensions or
 * negative counts, PL_ENOMEM (a padded routing's buffers).
 */
int pl_route(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
             int64_t cap, pl_routing *r);

/*
 * pl_route with a capacity per source GPU: cap [G], each >= 0 (token slots
 * per expert; see the header), or NULL for dropless. cap may be r->cap
 * itself. Needs a routing made by pl_routing_init. Errors as pl_route;
 * PL_EINVAL also for a negative capacity.
 */
int pl_route_caps(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
                  const int64_t *cap, pl_routing *r);

/* Token slots on the wire from src to dst (src != dst): r->traffic, or for
 * a padded routing the parts of src's padded buffers (cap[src] per expert)
 * that the locality rule sends to dst's replicas: nhost[dst] x cap[src] when
 * every expert has one replica. Needs r->traffic unless padded. O(nhost[dst]
 * log replicas) for a padded routing. */
int64_t pl_routing_wire_tokens(const pl_routing *r, const pl_placement *p,
                               int src, int dst);
/* Token slots GPU g computes for expert e: r->load, or for a padded routing
 * the padded buffers it receives for e (r->pad_load; the sum of cap[src]
 * over all sources when e has one replica, 0 where g does not host e). */
int64_t pl_routing_compute_tokens(const pl_routing *r, const pl_placement *p,
                                  int gpu, int expert);

/* Per-GPU token slots on the wire, h[4*G] in r->hose's layout (intra out,
 * intra in, inter out, inter in): r->hose (or sums of r->traffic when hose
 * is NULL), or for a padded routing the padded buffers of
 * pl_routing_wire_tokens summed per GPU (r->pad_hose). O(G). PL_EINVAL when
 * r has neither hose nor traffic and is not padded, or on mismatched sizes
 * (gpus_per_node must be the one the routing was made with). */
int pl_routing_wire_sums(const pl_routing *r, const pl_placement *p, int gpus_per_node,
                         int64_t *h);

/* max GPU load / mean GPU load after routing (1.0 = perfect; 1.0 if idle). */
double pl_routing_balance(const pl_routing *r);

#ifdef __cplusplus
}
#endif
#endif
