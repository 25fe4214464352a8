/*
 * sim_engine.h - the MoE training-iteration model (DESIGN.md), in two modes.
 *
 * Input per iteration: for each MoE layer its placement, its routing
 * (pl_route; the G x G traffic matrix is needed only without SIM_AGG_ALLTOALL,
 * the per-GPU sums r->hose serve the analytic engine and hose flows) and
 * the moves of the plan that produced the placement (charged before the
 * iteration, or in the background). A capacity (padded) routing is charged
 * its padded buffers by both engines, on the wire and in compute
 * (pl_routing_wire_tokens / _wire_sums / _compute_tokens).
 *
 * SIM_ENGINE_ANALYTIC: closed form per layer = pl_cost_layer (the placement
 * library's cost model: non-MoE + dispatch + slowest GPU's compute + combine,
 * forward and backward, + replica all-reduce); migration = pl_cost_moves_us
 * over the iteration's moves, added when blocking, or only the part that
 * exceeds the iteration's own time when in the background.
 *
 * SIM_ENGINE_DES: a discrete-event simulation on the link graph of sim_net.
 * Per iteration:
 *   [blocking migration: every move is a flow from->to; the phase ends when
 *    the last one completes]
 *   [background migration: the same flows start at the iteration's start and
 *    compete for links with everything below]
 *   forward, l = 0..L-1:  other(l) | dispatch(l) | compute(l) | combine(l)
 *   backward, l = L-1..0: other(l) | dispatch-direction gradient all-to-all |
 *                         compute x bwd_ratio | combine-direction all-to-all,
 *                         then the replica gradient all-reduce of layer l
 *                         starts in the background (one ring per replicated
 *                         expert: each member sends 2(r-1)/r x gradient bytes
 *                         to its ring successor) and overlaps the backward of
 *                         the layers below
 *   the iteration ends when the last phase and every background flow are done.
 * All-to-alls are collectives: one starts when every GPU finished the previous
 * phase (a layer waits for its slowest GPU), each (src, dst) with traffic is a
 * flow of tokens x d_model x bytes_per_elem bytes, and it ends when its last
 * flow completes. Compute phases last the slowest GPU's time. Each GPU has a
 * compute stream and a communication engine: background flows progress while
 * it computes.
 *
 * Aggregation (aggregate = SIM_AGG_ALL, the default; a bit mask). With
 * SIM_AGG_ALLTOALL each all-to-all is carried by "hose" flows: per GPU one
 * egress and one ingress flow inside the node (its intra out / in link,
 * bytes = everything it sends to / receives from GPUs of its node) and one
 * egress and one ingress flow across nodes (NIC out + node uplink, node
 * downlink + NIC in). That is 4G flows instead of G(G-1). With
 * SIM_AGG_BACKGROUND the replica all-reduce rings of a layer and the
 * migrations (blocking or background) are carried the same way: per GPU and
 * class (intra / inter, egress / ingress) one flow of the bytes of all its
 * ring steps (or moves), whose latency is the class latency x the largest
 * latency multiple among them (a ring of r GPUs: 2(r-1) hops). Hose flows
 * keep every component of the link graph inside one node (per-pair flows
 * across nodes join all of them into one), which is what makes max-min
 * refilling cheap at 1,024 GPUs. Kept: each GPU's own link limits, the switch
 * oversubscription, contention between foreground and background traffic.
 * Max-min fairness counts flows, so a hose flow is weighted by the pair
 * flows it stands for (sim_net_start_weighted): a ring/migration hose flow
 * by the ring steps or moves summed in it, an all-to-all hose flow by the
 * GPUs it can send to (gpus_per_node - 1 inside the node, G - gpus_per_node
 * across), so an all-to-all and background traffic split a shared link
 * about as their pair flows would. Lost: the coupling of the two ends of a
 * (src, dst) pair (in exact max-min a flow into a congested GPU also slows
 * its sender), and an all-to-all's weight is its possible peers, not those
 * it really sends to. For a uniform all-to-all, a ring on its own or moves
 * out of one GPU the two agree exactly; tests/sim and docs/simulator.md
 * measure the gap otherwise.
 * With aggregate = 0 every GPU pair is a flow (exact, G(G-1) flows per
 * all-to-all, one per ring step and per move).
 * Shortcut: an all-to-all hose flow on a link of its own (intra-node links;
 * the per-GPU NIC when the uplink cannot bind, sim_net_init) with no
 * background flow on it sends at the link's capacity until it ends, so its
 * completion is computed in closed form instead of carried by the network
 * (SIM_AGG_NO_SHORTCUT turns that off; the two agree within 1 ns a flow).
 * Without contention the DES equals the analytic engine up to integer-ns
 * rounding (at most 1 ns per phase): e.g. one node, no replicas, no moves.
 * (The analytic model adds intra- and inter-node all-to-all times of a GPU;
 * the DES runs them concurrently on their separate links, so with traffic of
 * both kinds the DES is faster or equal.)
 */
#ifndef FLEXMOE_SIM_ENGINE_H
#define FLEXMOE_SIM_ENGINE_H

#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_cost.h"
#include "placement/pl_placement.h"
#include "placement/pl_route.h"
#include "sim/sim_cluster.h"
#include "sim/sim_loop.h"
#include "sim/sim_net.h"

#ifdef __cplusplus
extern "C" {
#endif

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
} sim_layer_in;

typedef struct sim_iter_out {
  double time_us;
  double compute_us, alltoall_us, allreduce_us, migration_us, other_us;
  int64_t bytes_alltoall; /* all four all-to-alls of every layer */
  int64_t bytes_migrated;
  double *layer_us; /* see sim_engine_iteration_layers; NULL otherwise */
} sim_iter_out;

typedef struct sim_engine {
  sim_engine_kind kind;
  int aggregate;
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
  int ntags;
  /* flow records: endpoints for busy accounting */
  int *rec_a, *rec_b, *rec_kind;
  int nrec, caprec;
  int64_t *gpu_comm_end; /* [G] last flow completion of the current phase */
  double *gpu_us;        /* [G] scratch */
  int64_t *hose;         /* the current layer's [4*G] in hose_all */
  int64_t *hose_all;     /* [layers][4*G] per-GPU intra/inter out/in tokens */
  int hose_layers;       /* layers hose_all and comp_us have room for */
  double *comp_us;       /* [layers][G] forward expert compute of each GPU, us */
  double *agg_bytes;     /* [4*G] background hose sums (SIM_AGG_BACKGROUND) */
  int *agg_lat;          /* [4*G] their latency multiples */
  int *agg_cnt;          /* [4*G] transfers summed in each (the flow's weight) */
} sim_engine;

/* prof's arrays must outlive the engine. aggregate: SIM_AGG_* bits, see
 * above (-1 = default: SIM_AGG_ALL). */
int sim_engine_init(sim_engine *e, sim_engine_kind kind, const sim_cluster *cl,
                    const pl_cluster *pc, const pl_model *m, const pl_profile *prof,
                    int aggregate);
void sim_engine_fini(sim_engine *e);

int sim_engine_iteration(sim_engine *e, const sim_layer_in *layers, int nlayers,
                         sim_iter_out *out);
/* The same, and layer_us[nlayers] (may be NULL) receives each layer's own
 * time in microseconds: its forward and backward phases (DES) or its
 * pl_cost total (analytic). */
int sim_engine_iteration_layers(sim_engine *e, const sim_layer_in *layers, int nlayers,
                                sim_iter_out *out, double *layer_us);

/* Event counters of the DES (0 for analytic): scheduled, executed, cancelled. */
void sim_engine_events(const sim_engine *e, uint64_t *scheduled, uint64_t *executed,
                       uint64_t *cancelled);

#ifdef __cplusplus
}
#endif
#endif
