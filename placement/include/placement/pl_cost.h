/*
 * pl_cost.h - the analytical cost model the planners use (the oracle, the
 * benches; flexmoe's greedy keeps an incremental copy of the same formulas).
 *
 * It is a per-layer, contention-free estimate: it adds a GPU's intra- and
 * inter-node all-to-all times and serialises the replica all-reduce on the
 * critical path. The simulator's engines (sim_engine.h) run the iteration
 * with the overlaps (intra and inter links concurrently, all-reduce behind
 * the backward of lower layers, background moves sharing links), so a
 * layer's simulated time is at most about this estimate; they share its
 * building blocks (pl_ffn_us, pl_routing_wire_sums, pl_expert_move_bytes).
 *
 * A compute profile is a table of measured expert-FFN forward times at
 * increasing token counts for one (d_model, d_ff, dtype); pl_ffn_us
 * interpolates piecewise-linearly in tokens (0 tokens cost 0; below the first
 * point the first point's time is charged, since a kernel launch costs that
 * much whatever the size; above the last point it extrapolates with the last
 * segment's slope). Backward = bwd_ratio x forward.
 *
 * Layer time (one MoE layer, forward + backward, as DESIGN.md's iteration
 * model): for each direction, non-MoE time + dispatch all-to-all + slowest
 * GPU's expert compute + combine all-to-all. The all-to-all time of a GPU is
 * max(bytes out, bytes in) over its link (intra-node bytes over the intra
 * link, inter-node bytes over its NIC share divided by oversubscription)
 * plus latency; the layer waits for the slowest GPU. Replica gradient
 * all-reduce: ring 2(r-1)/r x expert parameter bytes over the group's
 * slowest link, per expert with r > 1 replicas, serialised per GPU.
 * A padded routing (capacity policy, see pl_route.h) is charged its padded
 * buffers: wire and compute tokens come from pl_routing_wire_tokens and
 * pl_routing_compute_tokens, not from the real token counts.
 *
 * Migration: a plan's moves take pl_cost_moves_us; blocking moves add that
 * time to the iteration, background moves overlap the next iteration and
 * add only what exceeds it, uncharged (oracle) moves add nothing
 * (pl_cost_exposed_us); weights-first moves add what their weight copies
 * exceed of the window before the layer's forward and what the rest
 * exceeds of the iteration (pl_cost_weights_first_us).
 */
#ifndef FLEXMOE_PL_COST_H
#define FLEXMOE_PL_COST_H

#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_placement.h"
#include "placement/pl_route.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pl_profile {
  int npoints;
  const double *tokens; /* [npoints] ascending, > 0 */
  const double *us;     /* [npoints] forward microseconds */
  double bwd_ratio;     /* backward / forward, e.g. 2.1 */
  double nonmoe_us;     /* non-MoE work per layer per direction (attention...) */
} pl_profile;

typedef struct pl_model {
  int d_model;
  int d_ff;
  int top_k;
  int bytes_per_elem;          /* activations and parameters, e.g. 2 (bf16) */
  double optimizer_bytes_per_param; /* migrated with the expert, e.g. 12 (Adam fp32 m, v, master) */
} pl_model;

/* Parameters of one expert (two matrices d_model x d_ff). */
int64_t pl_expert_params(const pl_model *m);
/* Bytes moved to migrate one expert: params x (bytes_per_elem + optimizer). */
int64_t pl_expert_move_bytes(const pl_model *m);
/* Bytes of one expert's parameters alone, params x bytes_per_elem: the
 * part of pl_expert_move_bytes a forward pass reads (bf16 with Adam state:
 * 2 of 14 bytes per parameter, 1/7), the first part of a weights-first
 * move (pl_move.weight_bytes). */
int64_t pl_expert_weight_bytes(const pl_model *m);
/* Activation bytes of one token slot. */
int64_t pl_token_bytes(const pl_model *m);

double pl_ffn_us(const pl_profile *p, double tokens);
int pl_profile_check(const pl_profile *p);

typedef struct pl_cost {
  double compute_us;   /* slowest GPU's expert compute, fwd + bwd */
  double alltoall_us;  /* dispatch + combine, fwd + bwd */
  double allreduce_us; /* replica gradient all-reduce */
  double other_us;     /* non-MoE work, fwd + bwd */
  double total_us;     /* sum of the above */
} pl_cost;

/* Predicted time of one layer for placement p and routing r (any routing
 * from pl_route: the all-to-all needs only the per-GPU sums r->hose, not
 * the G x G matrix). O(G E + G). PL_ENOMEM, PL_EINVAL. */
int pl_cost_layer(const pl_cluster *c, const pl_model *m, const pl_profile *prof,
                  const pl_placement *p, const pl_routing *r, pl_cost *out);

/* Time to execute a list of moves over the network, microseconds (each GPU's
 * in/out bytes over its links; the slowest GPU sets the time). */
double pl_cost_moves_us(const pl_cluster *c, const pl_move *moves, int nmoves);

/* Time moves lasting moves_us add to an iteration: all of it when blocking;
 * max(0, moves_us - overlap_us) when background (overlap_us: the compute of
 * the iteration they overlap); 0 when uncharged. */
double pl_cost_exposed_us(double moves_us, int background, int uncharged,
                          double overlap_us);

/* Time weights-first moves add to an iteration (pl_policy.h rule 6): the
 * weight copies, lasting weights_us, must land within window_us (the link
 * time before the layer's forward needs them), what exceeds it delays the
 * forward; the rest of the bytes, lasting rest_us, follow behind the
 * iteration and add what exceeds overlap_us (as a background move). */
double pl_cost_weights_first_us(double weights_us, double window_us, double rest_us,
                                double overlap_us);

#ifdef __cplusplus
}
#endif
#endif
