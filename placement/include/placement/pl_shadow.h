/*
 * pl_shadow.h - temporaries: per-iteration extra replicas decided on the
 * iteration's own gate counts (issue 17 step 2).
 *
 * After the gate of iteration i has run and before its dispatch, the
 * counts of i are known. pl_temps_decide looks at them on the placement
 * that serves i (a policy's planned replicas) and, for the
 * experts whose load this iteration exceeds what their replicas can
 * absorb, adds temporary replicas on chosen GPUs with a free slot when the
 * predicted gain this iteration exceeds what the copies cost. A temporary
 * is the expert's weights only (parameter bytes, no optimizer state),
 * copied from one of its planned replicas (the holder) in the forward pass
 * and freed after the backward, its gradient sent once back to the holder.
 * FasterMoE's shadows (policy_fastermoe.c) are the special case "every GPU,
 * from the owner"; here they go to chosen GPUs on top of the plan.
 *
 * The model it decides with (the engines' schedule, sim_engine.h): a
 * layer's time is
 *   F + bwd x max_g C'_g + 4 x A + R
 * with C'_g GPU g's forward expert compute (pl_ffn_us summed over the
 * experts it holds, temporaries included), F = max_g (max(own_g,
 * arrival_g) + temp_g) the forward compute phase when g computes its
 * temporaries (temp_g) only once their weights have arrived and its
 * planned experts (own_g) meanwhile (the copies start after the dispatch,
 * as FasterMoE's smart schedule starts its broadcasts, and overlap what it
 * overlaps: the planned compute), A one all-to-all (the slowest GPU's max
 * of its intra-node and inter-node link time, latency included, as the
 * engines run the two links at once), and R the gradients' way back (the
 * slowest temporary's bytes over the busier of its two ends' links),
 * less what the backward of the layers below hides (`grad_hide_us`, 0:
 * charged in full): the engines send a layer's gradients with its
 * synchronisation, after its backward, and wait for them only at the
 * iteration's end, so R = max(0, R - grad_hide_us) (their sharing of the
 * links with the lower layers' all-to-all is not charged). Gain = what the balance saves, (1 + bwd) x (max C -
 * max C') + 4 x (A - A'); cost = (F - max C') + R.
 * Tokens follow pl_route's rule in expectation, without its integer
 * rounding (so that the decision needs per-node sums, not a routing): a
 * source holding x keeps its tokens of x; the others on a node holding x
 * split theirs evenly over the node's copies; the rest evenly over all
 * copies. Building the model is one pass over the counts (O(G E), sums
 * only) plus O(N E + copies) with N nodes and two orders of the GPUs
 * (O(G log G); a third of the few GPUs a temporary arrives at late). A
 * trial on a node without a copy touches its destination and the GPUs of
 * its node, the expert's copies shared by the step's trials on that node;
 * one on a node with a copy (most trials at scale) only its destination
 * and the expert's copies on that node, the copies elsewhere shared by
 * all such trials of the step; the maxima over the GPUs come from the
 * orders (O(GPUs changed)), the copies' arrivals from those to the
 * destination and from the holder; a trial that cannot beat the step's
 * best on its balance part is not costed. A commit re-sorts the GPUs it
 * changed into the orders (O(G)). The same decisions, bit for bit, as
 * rescanning every GPU per trial.
 *
 * The decision, greedy and deterministic: while the budget lasts, take the
 * GPU with the largest forward compute and the one with the longest
 * all-to-all (ties: lowest id), the expert with the most tokens on the
 * first and the two receiving the most on the second, and for each these
 * destinations with a free slot and no copy of it: the least computing
 * GPU of the node that sends it the most tokens without holding it, the
 * least computing GPU anywhere, and the GPU with the shortest all-to-all
 * of that node and of each node already holding a copy (a second copy in
 * a node splits what its copies there receive; ties: lowest id); a copy's holder is
 * the expert's planned replica on the destination's node if any, else the
 * one sending the fewest copies so far (ties: lowest id).
 * The trial with the lowest predicted layer time is taken when its gain
 * over the layer without it exceeds `margin` x its cost (margin >= 1) and
 * it lowers the predicted time; otherwise the decision stops.
 *
 * Free slots: a GPU's slots (the `slots` argument) less the experts it
 * holds in the serving placement and in the current one (a background
 * plan's arriving replicas keep their buffers), so a temporary never
 * takes memory a planned replica needs; at most one copy of an expert per
 * GPU. The planned placements are never changed.
 */
#ifndef FLEXMOE_PL_SHADOW_H
#define FLEXMOE_PL_SHADOW_H

#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_cost.h"
#include "placement/pl_placement.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One temporary replica: expert's weights copied from `from` (a planned
 * replica, the holder) to `to`, for one iteration. */
typedef struct pl_temp {
  int expert;
  int from;
  int to;
} pl_temp;

typedef struct pl_temps_cfg {
  double margin;  /* take a temporary when gain > margin x cost; >= 1 */
  int max_temps;  /* per layer and iteration, 0: as free slots allow */
  /* appended (issue 17, gap): backward time of the layers below that the
   * gradients' way back overlaps (us, >= 0; 0: R charged in full) */
  double grad_hide_us;
  /* appended (issue 17 step 5): the candidates of each greedy step
   * (PL_TEMPS_SEARCH_*; 0, the zero value, is the full search above) */
  int search;
} pl_temps_cfg;

/* pl_temps_cfg.search: which trials one greedy step evaluates (same
 * model, acceptance rule, free slots and holders). FULL: the candidates
 * above (about 15 trials a step at 64 GPUs). LEAN: the hottest expert of
 * the most computing GPU and the one the slowest all-to-all GPU receives
 * most, each on its compute destinations only (the least computing free
 * GPU of the node sending it most without a copy, and anywhere): at most 4
 * trials a step, about 3.5x cheaper at 64 GPUs; it stops sooner (fewer
 * temporaries, slower iterations). LAZY: a LEAN step, and a FULL step
 * when LEAN's best is not taken; it stops only where FULL stops, so it
 * takes more temporaries than FULL (faster iterations on the aux trace at
 * 16 and 64 GPUs, a dearer decision). FAST: no trial evaluates the
 * model; each step takes the best of at most 10 candidates scored in
 * closed form on the model's shares, and the best of the other critical
 * GPU's candidates too when it is another expert on another GPU with a
 * positive score (one or two copies a step): the most computing GPU gm's
 * hottest expert (most tokens over the links) and the one the longest
 * all-to-all GPU ga receives most, each on the least computing and the
 * shortest all-to-all free GPU of that GPU's node, the least computing
 * free GPU of the node sending the expert most without a copy, and the
 * least computing (gm) / shortest all-to-all (ga) free GPU anywhere; and
 * the expert ga sends most over its busier link, on ga (else its node).
 * A candidate's score: the balance part with gm, ga and the destination
 * after the copy (its shares: the node's split over one more copy where
 * the destination's node holds the expert, the rest's over one more copy
 * and without the node's tokens where it held none) against every other
 * GPU's largest, less the copy's weights arriving past the forward
 * phase and returning past the latest return. Destinations prefer GPUs
 * no copy is sent to yet (a second copy on a link delays both). After
 * each step one scan of the GPUs predicts the whole set on the model
 * above; the set taken is the prefix with the lowest predicted time (a
 * longer one only when 0.2% lower) whose gain over no temporaries exceeds
 * margin x its cost, none if no prefix does. It stops when no candidate
 * is left, the budget is spent, or 3 + G/32 steps running (at most 11)
 * predict no better (more GPUs near the maximum need more copies before
 * it falls). O(G E) to build the model (as FULL), O(G + E + copies of the
 * expert) a step; on the real traces' model about 2x cheaper than FULL at
 * 64 GPUs, 2.6x at 256, 3.7x at 1,024, as dear at 8 (bench_pl_shadow). */
enum {
  PL_TEMPS_SEARCH_FULL = 0,
  PL_TEMPS_SEARCH_LEAN = 1,
  PL_TEMPS_SEARCH_LAZY = 2,
  PL_TEMPS_SEARCH_FAST = 3
};

/* Scratch of pl_shadow.c: the values of an expert's copies shared by the
 * trials of one step on nodes holding it (node -1) or on one node
 * without a copy. */
typedef struct pl_temps_base {
  double *own, *tmp, *a2a; /* [G] */
  double v1[3], v2[3];
  int n1[3], pos[3];
  int x, node, ver;
} pl_temps_base;

/* Scratch of pl_shadow.c: a copy's forward compute on the committed
 * state, kept for FAST's other candidates of the step (fast_was). */
#define PL_TEMPS_WAS 4
typedef struct pl_temps_was {
  int x, g, ver;
  double us;
} pl_temps_was;

/* Scratch of pl_shadow.c: a trial of FULL, LEAN or LAZY's step, kept for
 * the step's repeated trials (seen_get). */
#define PL_TEMPS_SEEN 8
typedef struct pl_temps_seen {
  int x, d, h, nchg, ver, whole;
  double total, bal, cost;
} pl_temps_seen;

/* A layer's temporaries of one iteration and the decision's scratch,
 * caller-owned (pl_temps_init / pl_temps_fini). After pl_temps_decide:
 * temp[0..n) in the order taken, placement = the serving placement plus
 * them when n > 0 (not touched when n = 0), gain_us and cost_us the
 * predicted saving and cost of all of them (0 when n = 0). */
typedef struct pl_temps {
  int experts, gpus;
  int n;
  pl_temp *temp; /* [experts x gpus] room */
  pl_placement placement;
  double gain_us, cost_us;
  int trials; /* trials the last decision evaluated (its cost: cfg.search) */
  /* appended (issue 19): the last decision (made with cfg.grad_hide_us =
   * gh) is the same, bit for bit (temp, n, placement, gain_us, cost_us,
   * trials), for every grad_hide_us in [hide_lo, hide_hi], the other
   * inputs equal: [r, inf) with r the latest gradients' return it costed
   * when gh >= r (every such return hidden), else [gh, gh]; empty (lo >
   * hi) after an error */
  double hide_lo, hide_hi;
  double rcost; /* scratch: the latest return costed so far */
  /* scratch, internal (pl_shadow.c): the model's state */
  double *ns, *lh;          /* [N*E] tokens of node n's sources for x; of those holding x */
  int *rn;                  /* [N*E] copies of x on node n */
  double *rem;              /* [E] tokens of x from nodes without a copy */
  unsigned char *hosts;     /* [G*E] GPU g holds x: 1 planned, 2 temporary */
  double *h, *nh;           /* [4G] wire tokens (pl_routing's hose layout); a trial's */
  double *own, *tmp, *nown, *ntmp; /* [G] forward compute (us) of planned / temporary copies; a trial's */
  double *oin, *oout, *xin, *xout; /* [G] temporaries' weight bytes in / out, intra / inter */
  double *arr;              /* [G] their arrival (us) */
  double *a2a, *na2a;       /* [G] one all-to-all's time (us) of each GPU; a trial's */
  int *rep, *nrep;          /* [E*G] replica lists with the temporaries, [E] their length */
  int *freeslots, *sent, *mark, *chg; /* [G] */
  int stamp;
  int *ord, *ordtmp;         /* [3G] GPUs by compute, all-to-all, forward phase; [2G] */
  int nf;                    /* GPUs in the forward phase's order (pl_shadow.c) */
  double *okey;             /* [3G] the orders' keys */
  /* the bases of trials on nodes holding an expert and on one without */
  pl_temps_base base[2];
  int ver;
  /* committed arrivals and the temporaries by destination and by holder */
  double *carr;              /* [G] */
  double crmax, trmax;
  int *amark, *amk, *hto, *hfrom; /* [G] */
  int *tnext;                /* [2 E G] next temporary to the same GPU, from the same */
  int namk;
  double *wus;               /* [G] forward compute of expert wx's copies */
  int wx, wver;
  int hx, hver, hbest;        /* expert hx's holder off a node without a replica */
  int64_t *isum;             /* [2E] build's integer sums of a node, its in-node masks */
  /* appended (issue 17, the decision's cost): FAST's per-node summaries
   * (pl_shadow.c "nodes"), node n's entries at n x gpus_per_node */
  int *nfree;                /* [2G] its least free GPU by compute, by all-to-all */
  int *nok;                  /* [G] whether its entries are current */
  double *nval;              /* [5G] its largest and second compute, all-to-all; forward phase */
  int *narg;                 /* [2G] the GPU with its largest compute, all-to-all */
  int *gnode;                /* [G] each GPU's node (a table: divisions were dear) */
  pl_temps_was was[PL_TEMPS_WAS];
  int nwas;
  pl_temps_seen seen[PL_TEMPS_SEEN];
  int nseen;
  /* appended (the decision's host time): the steps FAST took in the last
   * decision (its cost, as trials are LAZY's and FULL's; pl_temps_host_us),
   * and the host time the engines charge for it between the layer's gate
   * and its dispatch (sim_layer_in.decide_us): set by the policy that asks
   * for it (flexmoe's `host`), 0 otherwise (pl_policy_temporaries clears
   * it; pl_temps_decide leaves it) */
  int steps;
  double host_us;
} pl_temps;

/* Room for E experts on G GPUs with S slots per GPU (the placement's
 * dimensions). PL_EINVAL, PL_ESLOTS, PL_ENOMEM (t untouched on error). */
int pl_temps_init(pl_temps *t, int experts, int gpus, int slots);
void pl_temps_fini(pl_temps *t); /* accepts NULL and zeroed structs */

/*
 * Decides the temporaries of one layer for one iteration (see above).
 * serving: the placement that serves the iteration; current: the
 * policy's current placement (its buffers are reserved; NULL or serving
 * when nothing is in flight); counts [G*E] the iteration's own gate
 * counts (row = source GPU); slots: the per-GPU limit temporaries must
 * stay within (<= serving->slots). Pure function of its inputs. 0, or
 * PL_EINVAL on mismatched dimensions, bad numbers or negative counts,
 * PL_ENOMEM; on error t->n = 0.
 */
int pl_temps_decide(pl_temps *t, const pl_temps_cfg *cfg, const pl_cluster *c,
                    const pl_model *m, const pl_profile *prof, const pl_placement *serving,
                    const pl_placement *current, const int64_t *counts, int slots);

/* The last decision's time (us) on one core of the reference host (AMD
 * EPYC, family 23, the machine docs/placement.md measured it on), from
 * what it did: FAST's steps, each reading per-node summaries over the
 * GPUs, and LAZY's and FULL's trials,
 *   steps x (2.56 + 0.0298 G) + trials x 1.16
 * (a least-squares fit over 8 to 64 GPUs, both real traces and the three
 * searches: within 16% of every measured decision, 8% rms). A function of
 * t's counts alone: the same decision gives the same time on every machine. */
double pl_temps_host_us(const pl_temps *t);

/* t->placement := serving plus t's temporaries temp[0..n) in order, as
 * pl_temps_decide leaves it (for a decision kept or rebuilt elsewhere);
 * nothing when t->n = 0. 0 or a PL_ code (PL_ENOMEM, PL_ESLOTS). */
int pl_temps_place(pl_temps *t, const pl_placement *serving);

/* The predicted layer time (us) of the model above for placement p (which
 * may hold temporaries temp[0..n), n = 0 for none) and counts: what the
 * decision minimises, for tests and benches. Needs a t made for p's
 * dimensions (its scratch is used; its decision is lost). */
int pl_temps_predict_us(pl_temps *t, const pl_cluster *c, const pl_model *m,
                        const pl_profile *prof, const pl_placement *p, const pl_temp *temp,
                        int n, const int64_t *counts, double *us);

#ifdef __cplusplus
}
#endif
#endif
