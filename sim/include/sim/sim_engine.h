/*
 * sim_engine.h - the MoE training-iteration model (DESIGN.md), one schedule
 * run on two networks.
 *
 * Input per iteration: for each MoE layer its placement, its routing
 * (pl_route; the G x G traffic matrix is needed only by the exact network,
 * aggregate without SIM_AGG_ALLTOALL; the per-GPU sums r->hose serve
 * everything else), the moves of the plan that produced the placement
 * (blocking, in the background, or uncharged) and, for a policy that
 * shadows experts (FasterMoE), the owner of each shadowed expert. A
 * capacity (padded) routing is charged its padded buffers, on the wire and
 * in compute (pl_routing_wire_tokens / _wire_sums / _compute_tokens).
 *
 * The schedule (the same code for both engines):
 *   [blocking migration: the moves as transfers; the phase ends when the
 *    last one has landed]
 *   [background migration: the same transfers start at the iteration's
 *    start and share links with everything below]
 *   [weights-first migration (pl_policy.h rule 6): the weight parts start
 *    at the iteration's start instead, and the plain background moves and
 *    the state parts once the last weights-first layer's weights have
 *    landed; layer l's forward dispatch waits for layer l's weights]
 *   forward, l = 0..L-1:  other(l) | dispatch(l) | compute(l) | combine(l)
 *   backward, l = L-1..0: other(l) | dispatch-direction gradient all-to-all |
 *                         compute x bwd_ratio | combine-direction all-to-all,
 *                         then layer l's gradient synchronisation starts in
 *                         the background and overlaps the backward of the
 *                         layers below: one ring all-reduce per replicated
 *                         expert (each member sends 2(r-1)/r x gradient
 *                         bytes to its ring successor; latency 2(r-1) hops
 *                         of the ring's slowest link), and for a shadowed
 *                         expert one pipelined reduce of its gradient to
 *                         the owner along the chain of its replicas
 *   the iteration ends when the last phase and every background transfer
 *   are done.
 * Shadowed experts (sim_layer_in.shadow_owner, FasterMoE's smart schedule):
 * in the forward pass, after the dispatch, each shadow's weights are
 * broadcast from its owner by a pipelined chain over its replicas in GPU
 * order starting at the owner (each member receives the parameter bytes
 * once and passes them on; latency = the chain's hop latencies summed).
 * Each GPU computes its non-shadowed experts meanwhile and its shadowed
 * ones once their weights have arrived: the compute phase ends at
 * max over GPUs of max(start + own compute, weights arrived) + shadow
 * compute. The wait beyond the compute itself is reported as allreduce
 * (replica synchronisation). A shadow's gradient goes back by the reverse
 * chain after the layer's backward. Shadows are not moved (no migration)
 * and not all-reduced; the optimizer state stays with the owner.
 * All-to-alls are collectives: one starts when every GPU finished the previous
 * phase (a layer waits for its slowest GPU) and ends when its last transfer
 * completes. Compute phases last the slowest GPU's time. Each GPU has a
 * compute stream and a communication engine: background transfers progress
 * while it computes.
 *
 * The networks. Both carry the same hose flows: per GPU and class
 * (intra-node out / in, inter-node out / in) one flow of the phase's bytes,
 * weighted by the pair flows it stands for in max-min sharing (an all-to-all
 * hose flow by the GPUs it can send to: gpus_per_node - 1 inside the node,
 * G - gpus_per_node across; a transfer hose flow by the transfers summed in
 * it), with the latency of its largest transfer.
 *
 * SIM_ENGINE_ANALYTIC: every link a fluid server with weighted processor
 * sharing, computed in closed form link by link (sim_fluid.h). Exact for
 * hose flows whose routes are links of their own (every preset: per-GPU
 * NICs, a switch that cannot bind); with a shared tier (one NIC per node,
 * an oversubscribed uplink) a flow's own NIC is a rate cap only.
 *
 * SIM_ENGINE_DES: a discrete-event simulation on the link graph of sim_net
 * with max-min fair sharing across all links of a route (event: "next flow
 * finishes sending", rescheduled whenever flows start or end).
 * Aggregation (aggregate = SIM_AGG_ALL, the default; a bit mask):
 * SIM_AGG_ALLTOALL carries each all-to-all by hose flows (4G flows instead
 * of G(G-1)); SIM_AGG_BACKGROUND carries the transfers (rings, chains,
 * moves) the same way. Hose flows keep every component of the link graph
 * inside one node, which is what makes max-min refilling cheap at 1,024
 * GPUs. Lost: the coupling of the two ends of a (src, dst) pair (in exact
 * max-min a flow into a congested GPU also slows its sender), and an
 * all-to-all's weight is its possible peers, not those it really sends
 * to. For a uniform all-to-all, a ring on its own or moves out of one GPU
 * the two agree exactly; tests/sim and docs/simulator.md measure the gap
 * otherwise. With aggregate = 0 every GPU pair is a flow (exact, G(G-1)
 * flows per all-to-all, one per ring step, chain step and move).
 * Shortcut: an all-to-all hose flow on a link of its own with no background
 * flow on it sends at the link's capacity until it ends, so its completion
 * is computed in closed form instead of carried by the network
 * (SIM_AGG_NO_SHORTCUT turns that off; the two agree within 1 ns a flow).
 *
 * So the engines differ in detail, not in meaning: with per-GPU links of
 * their own (every preset) they agree up to integer-ns rounding; the DES
 * adds shared-tier coupling and the exact per-pair network.
 *
 * Bounds. Every time is checked against the clock (SIM_TIME_MAX, 2^62 ns):
 * a compute time, a wait or a completion past it is SIM_ETIME, never a
 * wrapped or undefined int64; the all-to-all bytes of a layer past 2^60
 * are SIM_ERANGE. The DES's work per iteration is bounded: at most
 * SIM_ENGINE_MAX_FLOWS flows and SIM_ENGINE_MAX_WORK flow rate updates
 * (sim_net's work), SIM_ELIMIT past either. The hose network of 1,024 GPUs
 * needs about 4e4 updates per iteration (real trace, 6 layers), the exact
 * network 5e7 at 64 GPUs and grows with about the fourth power of G: the
 * bound stops an exact run of several hundred GPUs (hours per iteration at
 * about 1e7 updates a second) within minutes.
 */
#ifndef FLEXMOE_SIM_ENGINE_H
#define FLEXMOE_SIM_ENGINE_H

#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_cost.h"
#include "placement/pl_placement.h"
#include "placement/pl_route.h"
#include "placement/pl_shadow.h"
#include "sim/sim_cluster.h"
#include "sim/sim_fluid.h"
#include "sim/sim_loop.h"
#include "sim/sim_net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The DES's work bounds per iteration (see above). */
#define SIM_ENGINE_MAX_FLOWS (1 << 24)
#define SIM_ENGINE_MAX_WORK ((uint64_t)1 << 31)

/* What the DES aggregates into per-GPU hose flows (a bit mask; see above). */
#define SIM_AGG_ALLTOALL 1   /* the four all-to-alls of every layer */
#define SIM_AGG_BACKGROUND 2 /* replica all-reduce rings and migrations */
#define SIM_AGG_ALL 3
/* Not part of SIM_AGG_ALL: carry every all-to-all hose flow through the
 * network, also those alone on a link of their own, whose completion the
 * engine otherwise computes in closed form (tests compare the two). */
#define SIM_AGG_NO_SHORTCUT 4

typedef enum sim_engine_kind { SIM_ENGINE_ANALYTIC = 1, SIM_ENGINE_DES = 2 } sim_engine_kind;

typedef struct sim_layer_in {
  const pl_placement *placement;
  const pl_routing *routing; /* from pl_route; traffic needed without SIM_AGG_ALLTOALL */
  const pl_move *moves;      /* moves executed for this iteration, may be NULL */
  int nmoves;
  int background;            /* moves overlap the iteration */
  int uncharged;             /* moves are free (oracle): bytes counted, no time */
  /* [experts] or NULL: the GPU whose copy of expert e is broadcast to its
   * other replicas each forward pass and receives their gradients (a
   * FasterMoE shadow), -1 for an expert that is not shadowed */
  const int *shadow_owner;
  /* Appended (issue 17 step 2): the iteration's temporaries (pl_shadow.h,
   * the contract in pl_policy.h), temps[0..ntemps); placement and routing
   * then include them and `planned` is the placement without them (the
   * replicas whose gradients are all-reduced). Forward: each temporary's
   * weights (parameter bytes) go from -> to as a transfer that starts
   * after the dispatch, beside the compute (as shadows, above: `to`
   * computes the temporary once they have arrived, the wait is reported
   * as allreduce); backward: its gradient goes to -> from with the
   * layer's synchronisation. Nothing is migrated. ntemps = 0: none. */
  const pl_temp *temps;
  int ntemps;
  const pl_placement *planned;
  /* Appended (issue 17). 1: the moves are weights-first (pl_policy.h rule
   * 6; background and charged): each move's weight_bytes start with the
   * iteration and the layer's forward dispatch waits until they have
   * landed (the wait is migration); the rest of its bytes start, with the
   * iteration's plain background moves, once the weights of every
   * weights-first layer have landed: at the latest weight completion,
   * whatever layer the schedule is in (when that falls inside an
   * all-to-all, at its end: background flows join between foreground
   * phases, in both engines). */
  int weights_first;
  /* Appended (the decision's host time): how long (us) the policy's
   * per-iteration decision for this layer takes on the host, between the
   * layer's gate (the end of its other work) and its dispatch, which waits
   * for it (pl_temps.host_us); reported as other time. 0: none. */
  double decide_us;
} sim_layer_in;

typedef struct sim_iter_out {
  double time_us;
  double compute_us, alltoall_us, allreduce_us, migration_us, other_us;
  int64_t bytes_alltoall; /* all four all-to-alls of every layer */
  int64_t bytes_migrated;
  int64_t bytes_sync;     /* gradient all-reduce rings, shadow broadcasts and reduces */
  double *layer_us; /* see sim_engine_iteration_layers; NULL otherwise */
} sim_iter_out;

typedef struct sim_engine {
  sim_engine_kind kind;
  int aggregate;
  int max_flows;     /* DES bounds per iteration: SIM_ENGINE_MAX_FLOWS and */
  uint64_t max_work; /* SIM_ENGINE_MAX_WORK after init; tests may lower them */
  sim_cluster cl;
  pl_cluster pc;
  pl_model model;
  pl_profile prof; /* arrays owned by the caller, outlive the engine */
  int gpus;
  double *busy_us; /* [G] accumulated over iterations */
  double total_us; /* accumulated iteration time */
  /* DES state */
  sim_t sim;
  sim_net net;
  uint32_t m_net, m_eng;
  uint64_t drain_id;
  int64_t drain_t;
  int64_t pending_fg, pending_bg;
  int last_bg_kind;
  int64_t fg_last_done, bg_last_done;
  int timer_fired, phase_done;
  int64_t *tags, *dones; /* drain scratch */
  /* flow records: endpoints for busy accounting */
  int *rec_a, *rec_b, *rec_kind;
  int nrec, caprec;
  int64_t *gpu_comm_end; /* [G] last flow completion of the current phase */
  int64_t *hose;         /* the current layer's [4*G] in hose_all */
  int64_t *hose_all;     /* [layers][4*G] per-GPU intra/inter out/in tokens */
  int hose_layers;       /* layers hose_all and comp_us have room for */
  double *comp_us;       /* [layers][G] forward expert compute of each GPU, us */
  double *agg_bytes;     /* [4*G] transfer hose sums (SIM_AGG_BACKGROUND) */
  int64_t *agg_lat;      /* [4*G] their largest latency, ns */
  int *agg_cnt;          /* [4*G] transfers summed in each (the flow's weight) */
  int xkind, xany;       /* the transfer batch being built: kind, any transfer */
  double *ns_us, *sh_us; /* [G] forward compute of own / shadowed experts (scratch) */
  int cur_layer;         /* the layer the schedule is in */
  /* analytic state */
  sim_fluid fluid;
  int a2a_layer;         /* the layer whose all-to-all a2a_* hold (-1: none) */
  int64_t a2a_dur;       /* its duration, ns */
  int64_t *a2a_off;      /* [G] each GPU's last completion after its start, ns */
  /* weights-first moves (sim_layer_in.weights_first), per layer: the weight
   * flows not yet completed (DES) and the latest completion (DES); the
   * last weights-first layer of the iteration (-1: none) */
  int64_t *wf_pending, *wf_done;
  int wf_cap, wf_last;
  /* the rest of the iteration's background moves (pl_policy.h rule 6:
   * they start at the latest landing of the iteration's weight parts):
   * wf_rest 1 while they wait for it, 2 (DES) when it came during a
   * foreground phase (they start at its end); wf_left, wf_all_done: the
   * weight flows not yet completed and their latest completion (DES);
   * in_fg: the DES is running a foreground phase; fg_floor: the end of the
   * last foreground phase (analytic); wf_L, wf_nl: the iteration's layers */
  int wf_rest, in_fg;
  int64_t wf_left, wf_all_done, fg_floor;
  const sim_layer_in *wf_L;
  int wf_nl;
} sim_engine;

/* prof's arrays must outlive the engine. aggregate: SIM_AGG_* bits, see
 * above (-1 = default: SIM_AGG_ALL). */
int sim_engine_init(sim_engine *e, sim_engine_kind kind, const sim_cluster *cl,
                    const pl_cluster *pc, const pl_model *m, const pl_profile *prof,
                    int aggregate);
void sim_engine_fini(sim_engine *e);

/* One iteration; 0 or a negative code: SIM_EINVAL, SIM_ENOMEM, SIM_ETIME,
 * SIM_ERANGE, SIM_ELIMIT (see Bounds above), after which the engine is
 * only fit for sim_engine_fini. */
int sim_engine_iteration(sim_engine *e, const sim_layer_in *layers, int nlayers,
                         sim_iter_out *out);
/* The same, and layer_us[nlayers] (may be NULL) receives each layer's own
 * time in microseconds: its forward and backward phases. */
int sim_engine_iteration_layers(sim_engine *e, const sim_layer_in *layers, int nlayers,
                                sim_iter_out *out, double *layer_us);

/* The gradient synchronisation of one layer as GPU-to-GPU transfers, in
 * the schedule's order: backward = 0, the forward broadcasts of its
 * shadowed experts (a chain per shadow: replicas in ascending GPU order
 * from the owner, each passing the parameter bytes to the next); backward
 * = 1, a ring all-reduce per replicated expert that is not shadowed (each
 * member sends 2(r-1)/r x gradient bytes to its successor) and the reverse
 * chain of each shadow (its gradient reduced to the owner). Calls
 * fn(arg, src, dst, bytes, latency_ns) per transfer, stopping at a
 * non-zero return, which it returns. Latencies: a ring 2(r-1) hops of its
 * slowest link (inter-node when it spans nodes), a chain its hops summed. */
typedef int (*sim_xfer_fn)(void *arg, int src, int dst, double bytes, int64_t lat_ns);
int sim_sync_transfers(const sim_cluster *cl, const pl_model *m, const pl_placement *p,
                       const int *shadow_owner, int backward, sim_xfer_fn fn, void *arg);

/* Network flows the DES started (0 for analytic); each also ends once, not
 * as a queue event: the network model drains finished flows itself. */
uint64_t sim_engine_flows(const sim_engine *e);

/* Event counters of the DES (0 for analytic): scheduled, executed, cancelled. */
void sim_engine_events(const sim_engine *e, uint64_t *scheduled, uint64_t *executed,
                       uint64_t *cancelled);

#ifdef __cplusplus
}
#endif
#endif
