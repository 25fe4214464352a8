/*
 * pl_internal.h - planning machinery shared by the built-in policies (not
 * installed, not part of the API): the cost-aware greedy planner that
 * `flexmoe` and `oracle` run, EPLB's replicate-and-pack used by `eplb` and
 * `oracle`, a tiny deterministic PRNG, and a max/min tournament tree.
 *
 * The greedy planner's model of a layer (pl_greedy) is pl_cost's formulas
 * applied to predicted per-expert loads instead of a full routing: an
 * expert's load is split evenly over its replicas, a GPU's all-to-all moves
 * its remote share of the tokens it computes (sources assumed uniform:
 * (gpn-1)/G of them over the intra link, (G-gpn)/G over the NIC), replica
 * groups all-reduce as in pl_cost (ring over the slowest link, serialised
 * per GPU), and the moves made so far cost pl_cost_moves_us's per-GPU
 * formula, weighted by mig_weight (1/H: amortised over the horizon), plus
 * 0.2 x the load-weighted mean GPU time as a plateau breaker. Every
 * quantity is kept per GPU and per expert and updated incrementally in
 * O(r (S + log G)) for a change to an expert with r replicas, with
 * tournament trees for the maxima, so one greedy step costs far less than
 * one routing (O(G E)); a candidate on trial costs O(r S) and no tree
 * update (pl_greedy.c "Trials"). All arithmetic is in a fixed order:
 * deterministic.
 */
#ifndef FLEXMOE_PL_INTERNAL_H
#define FLEXMOE_PL_INTERNAL_H

#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_cost.h"
#include "placement/pl_placement.h"
#include "placement/pl_policy.h"
#include "placement/pl_predict.h"

/* splitmix64: a small counter-based PRNG for policies that need randomness
 * (seeded from pl_env.seed and a stream id, never from global state). */
static inline uint64_t pl_rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Tournament tree over v[0..n): the index of the largest (max = 1) or
 * smallest value, ties to the lower index. */
typedef struct pl_seg {
  int n, P, max;
  int *t;          /* [2P] */
  const double *v; /* [n], not owned */
} pl_seg;
int pl_seg_init(pl_seg *s, int n, const double *v, int max);
void pl_seg_fini(pl_seg *s);
void pl_seg_update(pl_seg *s, int i); /* after v[i] changed */
static inline int pl_seg_top(const pl_seg *s) { return s->t[1]; }
/* Entries of a tree whose values changed since its last update (a greedy
 * trial's journal): those with stamp[i] == id, each one's value before the
 * change at old[pos[i] * stride]. */
typedef struct pl_seg_changed {
  const uint64_t *stamp;
  uint64_t id;
  const int *pos;
  const double *old;
  size_t stride;
} pl_seg_changed;
/* The larger of m and the largest value v[i] of max-tree t's entries not
 * changed (c), without updating the tree, which must be the one of the
 * values before the changes (the unchanged entries' are v's). */
double pl_seg_max_unchanged(const pl_seg *t, const double *v, const pl_seg_changed *c,
                            double m);

/* fmax as glibc's x86-64 fmax computes it (maxsd: the second operand on
 * ties, +0 and -0 included; the other one when one is NaN), inline: the
 * library call was a tenth of the greedy's refresh. */
static inline double pl_fmax(double a, double b) { return b != b ? a : a > b ? a : b; }

/* llround (halves away from zero) for |x| < 2^63, inline: x - (its
 * truncation) is exact. */
static inline int64_t pl_llround(double x) {
  int64_t i = (int64_t)x;
  double f = x - (double)i;
  return i + (f >= 0.5) - (f <= -0.5);
}

__extension__ typedef __int128 pl_i128; /* gcc, clang: exact sums of squares */

/* A divisor and its reciprocal when that divides exactly (a power of two;
 * else 0): pl_greedy.c div_by. */
typedef struct pl_divisor {
  double d, inv;
} pl_divisor;

typedef struct pl_greedy {
  const pl_cluster *c;
  const pl_model *m;
  const pl_profile *prof;
  int E, G, S, gpn, K;
  double mig_weight; /* weight of the migration time in the objective */
  /* migration time T enters the objective as mig_weight x (mig_lin x T +
   * max(0, T - mig_free_us)): 1 and +inf (all of T) unless
   * pl_greedy_set_migration says otherwise */
  double mig_lin, mig_free_us;
  pl_placement *p;   /* edited in place, not owned */
  const double *load;/* [K*E] load scenarios, not owned */
  double token_bytes, grad_bytes;
  int64_t move_bytes;
  double *tok, *comp, *ar, *migt; /* [G] scenario means (tok, comp) */
  double *kfree;                  /* [G] tok if the GPU has a free slot, else +inf */
  int64_t *mio;                   /* [4G] intra out/in, inter out/in bytes */
  double *per, *ring, *khot, *kcold, *mload; /* [E] (per: mean load / replica) */
  double *sa2a, *scomp;           /* [K*G] per scenario: all-to-all, compute (us) */
  pl_seg *t_sa2a, *t_scomp;       /* [K] maxima per scenario */
  int *cnt, *knodes;              /* [E*N] replicas of e in node n; [E] nodes holding e */
  /* [K*N] load of the experts node n holds, [K] all of it, [K*E] each
   * expert's: fixed point (pl_greedy.c PL_QSCALE), exact under the +/- of
   * adds and removes (doubles drifted: a node holding every expert still
   * "sent" a rounding error over the NIC and paid its latency) */
  int64_t *cover, *total, *qload;
  int dirty[4], ndirty;           /* nodes whose cover changed, not yet refreshed */
  /* t_all: the least tok (t_tok's values, min-tree) */
  pl_seg t_tok, t_ar, t_mig, t_free, t_all, t_hot, t_cold;
  int steps;                      /* steps applied by pl_greedy_run */
  int trial;                      /* a candidate is on trial (pl_greedy.c try_ops) */
  /* [G] estimated time of each GPU, and the sums over GPUs of tq^2 and tq:
   * fixed point (1/1024 us, pl_greedy.c PL_TSCALE), so the sums do not
   * depend on the order of the changes that led to a placement */
  int64_t *tq;
  pl_i128 sq;
  int64_t sum_t;
  /* The terms of refresh_gpu's sums for a replica of expert e on a node
   * holding c of its r replicas, with kk nodes holding it: per scenario
   * the replica's ffn us, intra in and inter in, a function of (e, c, r,
   * kk) alone (not of the GPU or the node). Kept lazily per expert in two
   * ways, each for one (r, kk) and every c in [1, gpn]: way wbase[e]
   * serves the committed placement, the other a candidate on trial, so
   * trials never evict the committed terms. Same expressions on the same
   * values: a cache, the results are bit-identical to recomputing. */
  double *terms;        /* [E][2][gpn + 1][K][3] */
  int64_t *ttag;        /* [E][2] (r << 32 | kk) of the way's terms, -1: none */
  unsigned char *tfill; /* [E][2][gpn + 1] 1: the way's terms for c are filled */
  unsigned char *wbase; /* [E] the committed way */
  const double **tp;    /* [slots] refresh_gpu scratch: its experts' terms */
  double xbps;          /* the NIC's bandwidth per GPU under oversubscription */
  pl_divisor qg, kdiv;  /* PL_QSCALE x G (covered loads to tokens), K */
  /* The trial journal (pl_greedy.c "trials"): what a candidate on trial
   * changed, and the values before it, so that the revert restores them
   * instead of recomputing, and the objective's maxima come from the
   * untouched trees and the changed entries. A GPU (or expert) is in the
   * journal while its stamp equals jid. */
  uint64_t jid;                   /* the current trial's id (0: none yet) */
  uint64_t *jg, *jm, *je;         /* [G] per-GPU, [G] migration, [E] expert stamps */
  int *jgl, *jml, *jel;           /* [G], [G], [E] journaled GPUs, GPUs, experts */
  int *jgp, *jmp;                 /* [G], [G] a journaled GPU's index in jgl, jml */
  int njg, njm, nje;
  double *jgv;                    /* [G * (2K + 4)] a journaled GPU's values (jg_width) */
  int64_t *jgq;                   /* [G] a journaled GPU's tq */
  double *jmv;                    /* [G] a journaled GPU's migration time */
  double *jev;                    /* [4E] a journaled expert's per, ring, khot, kcold */
  int64_t j_sum_t;                /* sum_t and sq before the trial */
  pl_i128 j_sq;
} pl_greedy;

/* Builds the model of placement p (valid, slots limited to S <= p->slots)
 * under `scenarios` load vectors load[k*E + e]: the layer time is the mean
 * over the scenarios (1 scenario: a point prediction). p and load must
 * outlive g. */
int pl_greedy_init(pl_greedy *g, const pl_cluster *c, const pl_model *m,
                   const pl_profile *prof, pl_placement *p, const double *load,
                   int scenarios, int S, double mig_weight);
void pl_greedy_fini(pl_greedy *g);
/* Objective: estimated layer time + mig_weight x migration time + 0.2 x
 * sum(t_g^2) / sum(t_g) over per-GPU estimated times (us). */
double pl_greedy_objective(const pl_greedy *g);
/* Estimated layer time alone, and the migration time of the moves so far. */
double pl_greedy_layer_us(const pl_greedy *g);
double pl_greedy_migration_us(const pl_greedy *g);
/* The all-to-all part of pl_greedy_layer_us (4 passes, scenario mean). */
double pl_greedy_alltoall_us(const pl_greedy *g);
/* Migration as the engines charge background moves: bytes `base` ([4G]
 * intra out/in, inter out/in per GPU, or NULL) already committed by other
 * layers' plans of the same iteration count towards every GPU's move time
 * T (the worst GPU's), and T costs lin x T (contention with the
 * iteration's traffic) + max(0, T - free_us) (what the iteration cannot
 * hide) in the objective, x mig_weight. O(G). */
void pl_greedy_set_migration(pl_greedy *g, const int64_t *base, double lin, double free_us);
/* max / mean estimated GPU load (1.0 when idle). */
double pl_greedy_balance(const pl_greedy *g);
/* Runs up to max_steps expand / shrink / migrate steps, each the best of its
 * candidates and taken only when it lowers the objective. */
int pl_greedy_run(pl_greedy *g, int max_steps);

/*
 * r: the dropless routing (pl_route with cap -1, no traffic matrix) of
 * placement `from` for counts [G*E]; makes it the routing of `to` for the
 * same counts, bit for bit what pl_route(to, c, counts, -1, r) gives, by
 * re-routing only the experts whose replica lists differ: O(E + G x
 * changed) instead of O(G E). Falls back to pl_route when r is not such a
 * routing or when half the experts or more differ. Errors as pl_route.
 */
int pl_route_change(const pl_placement *from, const pl_placement *to, const pl_cluster *c,
                    const int64_t *counts, pl_routing *r);

/*
 * What one pl_route_change_delta changed, for pl_cost_inc_update: the
 * experts whose replica lists differ (es) and every GPU whose load row,
 * gpu_load, hose sums or host list may differ (gs: those experts'
 * replicas under either placement, and every GPU of a node that holds one
 * of them under one placement only, whose sources switch between the
 * intra and the inter sums); all = 1 when it routed from scratch (every
 * GPU may differ; es and gs then unused). Caller-owned: init / fini.
 */
typedef struct pl_route_delta {
  int all, ne, ng;
  int *es;        /* [E] */
  int *gs;        /* [G] */
  uint32_t *mark; /* [G] mark[g] == id: g is in gs */
  uint32_t id;
  /* pl_route.c "Kept splits": each expert's tokens split over n replicas
   * as if no node held one, for the counts at `counts` with gpn GPUs per
   * node (split_n[e * 4 + n % 4] == n: held in that row of split) */
  int gpus, experts, gpn;
  const int64_t *counts;
  int64_t *split;   /* [E * 4 * (G + 1)] */
  int *split_n;     /* [E * 4] */
  int64_t *scratch; /* [4 * (G + 1)] one expert's difference arrays */
} pl_route_delta;
int pl_route_delta_init(pl_route_delta *d, int gpus, int experts);
void pl_route_delta_fini(pl_route_delta *d); /* accepts NULL and zeroed structs */
/* Drops d's kept splits: to be called before the next change whenever the
 * counts d last saw may have changed at the same address. */
void pl_route_delta_forget(pl_route_delta *d);
/* pl_route_change, saying in *d (not NULL) what it changed; it walks only
 * the nodes that hold a changed expert under either placement, with the
 * kept splits of the counts for the others (O(E + replicas + gpn x their
 * nodes) per changed expert once its splits are kept). */
int pl_route_change_delta(const pl_placement *from, const pl_placement *to, const pl_cluster *c,
                          const int64_t *counts, pl_routing *r, pl_route_delta *d);

/*
 * pl_cost_layer's total kept term by term for a local search (the
 * oracle's trials): each GPU's expert compute, all-to-all and all-reduce
 * time and each expert's all-reduce time, so that after a routing change
 * that touched a few GPUs (pl_route_delta) only those are costed again and
 * the maxima are taken over the kept values. Every kept value is computed
 * by pl_cost_layer's own code for that GPU or expert (the same operations
 * in the same order) and a maximum does not depend on the order of its
 * operands: the total is the same double as pl_cost_layer's, bit for bit
 * (tests/placement/test_cost_inc.c). For a dropless routing with the hose
 * sums (pl_route with cap -1, or pl_route_change). Caller-owned.
 */
typedef struct pl_cost_inc {
  int gpus, experts;
  double *cu; /* [G] expert compute, us */
  double *at; /* [G] one all-to-all, s */
  double *ar; /* [G] the replica all-reduces, s */
  double *te; /* [E] an expert's all-reduce, s (0: fewer than 2 replicas) */
} pl_cost_inc;
int pl_cost_inc_init(pl_cost_inc *ci, int gpus, int experts);
void pl_cost_inc_fini(pl_cost_inc *ci); /* accepts NULL and zeroed structs */
/* *total_us: pl_cost_layer(c, m, prof, p, r).total_us, every term kept.
 * PL_EINVAL on mismatched sizes or a routing without the hose sums or
 * padded. */
int pl_cost_inc_full(pl_cost_inc *ci, const pl_cluster *c, const pl_model *m,
                     const pl_profile *prof, const pl_placement *p, const pl_routing *r,
                     double *total_us);
/* The same after r went from the routing of the placement ci last costed
 * to p's by the change d (pl_route_change_delta): O(G + what d touched). */
int pl_cost_inc_update(pl_cost_inc *ci, const pl_cluster *c, const pl_model *m,
                       const pl_profile *prof, const pl_placement *p, const pl_routing *r,
                       const pl_route_delta *d, double *total_us);

/*
 * *out: a floor under pl_cost_layer(...).total_us of placement p with the
 * dropless routing of counts [G*E] (pl_route with cap -1), without routing
 * them: O(G E) additions instead of a routing. For a judge that only needs
 * to know whether p can beat a given time (pl_cost.c says why each term is
 * a floor). Errors: PL_EINVAL on mismatched sizes, PL_ENOMEM.
 */
int pl_cost_layer_floor(const pl_cluster *c, const pl_model *m, const pl_profile *prof,
                        const pl_placement *p, const int64_t *counts, double *out);

/*
 * EPLB (DeepSeek): give `replicas` >= E physical copies to the experts (one
 * each, then repeatedly one more to the expert with the highest load per
 * replica, at most G each), then pack them onto G GPUs, heaviest first, each
 * on the least-loaded GPU that has fewer than `slots` copies and no copy of
 * that expert (upstream's packing may put two copies of one expert on a
 * GPU; this one never does). Writes p (cleared first). With groups > 0
 * (hierarchical), experts are cut into `groups` contiguous groups, groups are
 * packed onto nodes (groups/nodes per node, heaviest group to the lightest
 * node), and each node replicates and packs its own experts onto its GPUs
 * with replicas/nodes copies. Needs replicas == G x slots.
 * PL_EINVAL when the numbers do not divide; PL_EINVARIANT if packing finds
 * no legal GPU (cannot happen when slots <= E, see pl_eplb.c).
 */
int pl_eplb_layout(pl_placement *p, const pl_cluster *c, const double *load,
                   int slots, int groups);


/* ---- parameters and helpers shared by the policy files (policy_util.c) -- */

/* The `slots` parameter: replicas per GPU a policy may use. 0 (default)
 * means def; the value must lie in [ceil(E/G), cluster slots]. */
int pl_param_slots(const pl_env *env, const pl_kv *kv, int nkv, int def,
                   int *out);
/* The monitor parameters predictor / alpha / window of a policy, and one
 * predictor per layer built from them. */
typedef struct pl_monitor {
  int layers, experts, gpus;
  pl_predictor *pred; /* [layers] */
  int64_t *sum;       /* [experts] scratch: counts summed over sources */
} pl_monitor;
int pl_monitor_init(pl_monitor *mon, const pl_env *env, const pl_kv *kv,
                    int nkv, int def_kind, int def_window);
void pl_monitor_fini(pl_monitor *mon);
/* Feeds counts[G*E] of one layer (summed over source GPUs). */
int pl_monitor_observe(pl_monitor *mon, int layer, const int64_t *counts);
/* Estimate for the next iteration, or NULL before any observation. */
const double *pl_monitor_estimate(const pl_monitor *mon, int layer);
/* Global per-expert load of counts[G*E] into out[E] (doubles). */
void pl_sum_sources(const int64_t *counts, int gpus, int experts, double *out);
/* Estimated GPU loads of p with each expert's load split evenly over its
 * replicas: out[G]; returns max / mean (1.0 when idle). */
double pl_even_balance(const pl_placement *p, const double *load, double *out);
/* The backward time of the layers below `layer` (us), which the way back
 * of its temporaries' gradients overlaps (pl_temps_cfg.grad_hide_us): per
 * layer below, its non-MoE backward plus half its layer time lay_us[l]
 * (a layer with lay_us < 0, not known, counts as the mean of those known;
 * none: their non-MoE work only). Half undercounts the backward: it holds
 * two of the four all-to-alls and bwd_ratio / (1 + bwd_ratio) >= 1/2 of the
 * compute (bwd_ratio >= 1), so a return judged hidden is. The temporaries
 * of flexmoe (estimated layer times) and of the oracle (its exact ones). */
double pl_grad_hide_us(const pl_env *env, const double *lay_us, int layer);
/* Makes plan->placement a copy of src (initialising it). */
int pl_plan_take_copy(pl_plan *plan, const pl_placement *src);

/*
 * The migration protocol of every policy that re-plans (DESIGN.md "one
 * protocol"): a policy declares it by listing PL_BACKGROUND_PARAM among its
 * parameters, and the policy handle (pl_policy.c) then parses the value
 * with pl_param_background and sets plan.background on every changed plan
 * itself; the policy neither reads the parameter nor sets the flag. One
 * default for all of them: 1, the moves overlap the iteration the plan is
 * made for, which is served from the old placement until they land
 * (pl_policy_serving); 0 executes them before that iteration, blocking.
 */
#define PL_BACKGROUND_DEFAULT 1
#define PL_STR_(x) #x
#define PL_STR(x) PL_STR_(x)
#define PL_BACKGROUND_PARAM                                                    \
  {"background", PL_STR(PL_BACKGROUND_DEFAULT),                                \
   "1: moves overlap the iteration the plan is for, the old placement "       \
   "serving it until they land; 0: blocking (one protocol for all re-planning " \
   "policies); 0 or 1"}
/* The value of `background` in kv: PL_BACKGROUND_DEFAULT when absent, 0 or
 * 1; PL_EPARAM for anything else (*out untouched). */
int pl_param_background(const pl_kv *kv, int nkv, int *out);

#define PL_MONITOR_PARAMS(def_pred, def_alpha, def_window)                     \
  {"predictor", def_pred, "load predictor: last, ewma, window or auto (per layer the one of last, ewma and trend with the lowest recent error)"},             \
  {"alpha", def_alpha, "ewma weight of the newest iteration; 0.000001 to 1"},  \
  {"window", def_window, "window predictor: iterations averaged (0: the period if the policy has one, at most 100000, else 10); 0 to 100000"}

/*
 * Adaptive effort for an optional search that rarely wins (flexmoe's
 * restart greedy, restart_backoff): after `miss` runs in a row that lost,
 * the next min(miss, cap) chances go without it; a win starts over, and
 * cap 0 runs it at every chance. Deterministic: a function of the outcomes.
 */
typedef struct pl_backoff {
  int miss; /* runs lost in a row */
  int skip; /* chances still to go without */
} pl_backoff;
/* Whether the next chance runs the search, without using it up. */
static inline int pl_backoff_runs(const pl_backoff *b) { return b->skip <= 0; }
/* Whether this chance runs the search (1) or goes without (0, one of the
 * skipped chances used up). */
int pl_backoff_take(pl_backoff *b);
/* The outcome of a run: won 1 or 0. */
void pl_backoff_done(pl_backoff *b, int won, int cap);
/* The step budget of the search's next run: `capped` while its last run
 * lost (b->miss > 0) and capped > 0, else `full` (flexmoe's restart_steps:
 * the long runs that win are a layer's first ones and those after a win). */
int pl_backoff_steps(const pl_backoff *b, int full, int capped);

/* A temporaries decision kept for a caller that would decide the same
 * again (flexmoe's payback memo and the engines' last decision, the
 * oracle's chosen candidate): pl_temps_decide's outputs, the search it was
 * decided with, and a placement the caller uses as it needs (flexmoe: the
 * decision's; the oracle: the placement it was decided on). */
typedef struct pl_tmemo {
  int valid;     /* 0: none since the last observation or pay_new's change */
  int mode;      /* the search it was decided with (flexmoe's fx_state.mode, pay_mode) */
  double lo, hi; /* the decision's range of grad_hide_us (pl_temps.hide_lo, hide_hi) */
  int n, trials; /* its pl_temps outputs */
  int steps;
  double gain_us, cost_us;
  pl_temp *temp; /* [cap] its temporaries, in order */
  int cap;
  pl_placement placement;
} pl_tmemo;
/* Invalidates m and makes room for n temporaries in it; nonzero when out
 * of memory (m stays empty: a memo only saves time). */
int pl_tmemo_room(pl_tmemo *m, int n);
/* Decision t's temporaries, counts and predictions into m (room made by
 * pl_tmemo_room; its placement is the caller's), and m valid. The inverse
 * of pl_tmemo_out. */
void pl_tmemo_fill(pl_tmemo *m, const pl_temps *t, int mode);
/* m's temporaries, counts and predictions into out (its placement is the
 * caller's: pl_temps_place). */
void pl_tmemo_out(const pl_tmemo *m, pl_temps *out);
void pl_tmemo_fini(pl_tmemo *m); /* frees its temporaries and placement */

#endif
