/*
 * pl_policy.h - placement policies: a static registry of named ops tables.
 *
 * A policy is a pure function of its configuration, the counts it has
 * observed and its seed: two callers (simulator, GPU runtime, a framework)
 * that feed it the same inputs get the same plans, bit for bit.
 *
 * Protocol per iteration i, per layer l:
 *   pl_policy_plan(p, i, l, upcoming, &plan)   placement to use for iteration i
 *                                              (upcoming = counts of iteration i,
 *                                              read only by clairvoyant policies,
 *                                              i.e. the oracle; NULL otherwise)
 *   pl_policy_route(p, l, counts, &routing)    routes iteration i's tokens
 *                                              (pl_policy_route_serving: on the
 *                                              placement serving them while a
 *                                              background plan is in flight)
 *   pl_policy_observe(p, i, l, counts)         feeds iteration i's counts
 * The plan for iteration 0 is the initial placement (no moves charged).
 *
 * Migration protocol, one for every policy that re-plans: a policy that
 * lists the `background` parameter (0|1, default 1; `flexmoe policies`
 * shows which) gets it applied by the handle, which sets plan.background on
 * each changed plan from it. Background: plan i's moves overlap iteration
 * i, which the old placement serves (pl_policy_serving); blocking: the
 * moves land before iteration i, which the new placement serves.
 *
 * What a caller charges for a plan (the simulator's engines, the runtime):
 *   - moves: pl_cost_moves_us of the iteration's moves, added in full when
 *     blocking, only beyond the iteration's own time when plan.background,
 *     not at all when plan.uncharged (the oracle: its moves are free);
 *     replicate moves carry plan.copy_bytes when the policy set it (already
 *     written into each move's bytes by pl_policy_plan);
 *   - routing: pl_policy_route applies the policy's capacity (one per
 *     source GPU, written into the routing's r->cap); a capacity
 *     routing is padded dispatch (pl_route.h): charge the wire and compute
 *     tokens of pl_routing_wire_tokens / pl_routing_compute_tokens (as
 *     pl_cost_layer does), not the routing's real load and traffic.
 *
 * Policy specs are "name" or "name:key=value,key=value". Unknown names give
 * PL_EPOLICY, unknown keys or bad values PL_EPARAM; the error buffer of
 * pl_policy_create then names the key and its range.
 *
 * Limits (docs/placement.md "Limits"): a spec, as given and in its
 * canonical form with every default written out, is at most PL_SPEC_MAX
 * bytes of printable ASCII without spaces; a key at most PL_KEY_MAX bytes,
 * a value at most PL_VALUE_MAX, at most PL_KV_MAX key=value pairs. A spec
 * over a limit is refused with a message naming the limit, never cut, so
 * the canonical spec (pl_policy_spec) that results, run keys and stores
 * carry is always the whole of it: a buffer of PL_SPEC_MAX + 1 bytes holds
 * any.
 */
#ifndef FLEXMOE_PL_POLICY_H
#define FLEXMOE_PL_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "placement/pl_cluster.h"
#include "placement/pl_cost.h"
#include "placement/pl_placement.h"
#include "placement/pl_route.h"
#include "placement/pl_shadow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything a policy may know about the job. Starts with size/version; only
 * ever appended to. */
typedef struct pl_env {
  size_t size;  /* sizeof(pl_env) as the caller compiled it */
  int version;  /* PL_ENV_VERSION */
  int layers;   /* MoE layers */
  int experts;  /* experts per layer */
  pl_cluster cluster;
  pl_model model;
  pl_profile profile;
  uint64_t seed;
} pl_env;
#define PL_ENV_VERSION 1
#define PL_ENV_INIT {sizeof(pl_env), PL_ENV_VERSION, 0, 0, {0}, {0}, {0}, 0}

/* A parameter a policy accepts, for `flexmoe policies` and spec parsing. */
typedef struct pl_param_desc {
  const char *key;
  const char *defval; /* default, as text */
  const char *help;
} pl_param_desc;

/* A plan for one layer: the new placement and the moves that produce it. */
typedef struct pl_plan {
  int changed;            /* 0: keep the current placement */
  int background;         /* 1: moves overlap the iteration the plan is for
                             (set by the handle from the policy's
                             `background` parameter where it has one) */
  pl_placement placement; /* valid when changed (owned by the plan) */
  pl_move *moves;         /* [nmoves], owned by the plan */
  int nmoves;
  int cap_moves;
  int64_t capacity;       /* unused, -1 (capacities are per source GPU: pl_policy_ops.capacity) */
  /* Appended fields (0 after pl_plan_init). */
  int uncharged;          /* 1: the moves are free (clairvoyant oracle): report
                             their bytes but charge no time for them */
  int64_t copy_bytes;     /* bytes charged per replicate move; 0 = the full
                             pl_expert_move_bytes (fastermoe's shadows copy
                             parameters only: the owner keeps the optimizer) */
  /* Appended (issue 17). 1: a weights-first plan (the background-move
   * contract's rule 6): the policy sets it on a background plan whose
   * weight copies it expects to land before the layer's forward; the
   * handle keeps it only on a changed, charged background plan, writes
   * each move's weight_bytes, and serves the iteration from the new
   * placement. */
  int weights_first;
} pl_plan;

void pl_plan_init(pl_plan *plan);
void pl_plan_fini(pl_plan *plan);

/* bytes of a spec, as given and canonical (1,000 until flexmoe's 18th
 * parameter, weights_first; the stores' 1,024-byte buffers hold it) */
#define PL_SPEC_MAX 1023
#define PL_KEY_MAX 31     /* bytes of a key */
#define PL_VALUE_MAX 63   /* bytes of a value */
#define PL_KV_MAX 32      /* key=value pairs in a spec (flexmoe's canonical spec has 21) */

/* A parsed key=value pair of a spec. */
typedef struct pl_kv {
  char key[PL_KEY_MAX + 1];
  char value[PL_VALUE_MAX + 1];
} pl_kv;

typedef struct pl_policy pl_policy; /* opaque handle */

typedef struct pl_policy_ops {
  const char *name;
  const char *summary;
  const pl_param_desc *params; /* terminated by {NULL} */
  int clairvoyant;             /* reads `upcoming` in plan (oracle) */
  /* state: allocate and return through *state. kv: parsed parameters. */
  int (*init)(void **state, const pl_env *env, const pl_kv *kv, int nkv,
              pl_placement *initial /* [layers], initialised, to fill */);
  int (*observe)(void *state, int iteration, int layer, const int64_t *counts);
  /* current: the layer's placement now. Fill plan (changed=0 for none). */
  int (*plan)(void *state, int iteration, int layer, const pl_placement *current,
              const int64_t *upcoming, pl_plan *plan);
  /* Capacity for routing the layer's counts [G*E]: cap[src] >= 0 token
   * slots per expert for each source GPU (pl_route_caps: drops per (source,
   * expert), padded dispatch). Returns 0 or a PL_ code. May be NULL
   * (dropless, not padded). Reads the state only: the simulator routes
   * several layers at once from several threads (pl_policy_route_serving). */
  int (*capacity)(void *state, int layer, const int64_t *counts, int64_t *cap /* [G] */);
  void (*fini)(void *state);
  /* Appended. May be NULL (the policy never shadows). For a policy whose
   * extra replicas are per-iteration shadows (FasterMoE): [experts], the
   * GPU whose copy of expert e is broadcast to e's other replicas in every
   * forward pass and receives their gradients, -1 for an expert not
   * shadowed; NULL when the layer has no shadow. Valid until the next plan
   * of the layer. Shadows are synchronised, not migrated: a caller charges
   * their broadcast and reduce every iteration (sim_engine.h) instead of
   * the plan's replicate and drop moves. */
  const int *(*shadows)(void *state, int layer);
  /* Appended (issue 17 step 2). May be NULL (the policy makes no
   * temporaries). Decides layer `layer`'s temporaries of one iteration
   * into out (pl_temps_decide; the temporaries contract below) from the
   * serving and current placements and the iteration's own counts [G*E].
   * Reads the state only (layers run on several threads), except the
   * layer's own part of it (a policy may finish there work its observe of
   * the layer left, e.g. flexmoe's payback, so that the layers' work runs
   * on their threads; calls for one layer never overlap); sets out->n = 0
   * when the policy's configuration makes none. */
  int (*temporaries)(void *state, int layer, const pl_placement *serving,
                     const pl_placement *current, const int64_t *counts, pl_temps *out);
  /* Appended (issue 19). May be NULL. 1 when layer `layer`'s capacity and
   * temporaries of the iteration now planned (its plan and observe made)
   * read nothing that the plans and observations of the layers above it in
   * the same iteration write, so that it may be routed on another thread
   * while they run (pl_policy_route_ready); 0 when they may still read it.
   * Reads the state only, and only what the layers above do not write. */
  int (*route_ready)(void *state, int layer);
  /* Appended (issue 19). May be NULL. Called (pl_policy_ahead) after the
   * layer's observation of iteration `iteration` and before its next plan,
   * possibly on another thread while other layers plan, observe and route:
   * may work out parts of the layer's plan of iteration + 1 that depend
   * only on what that observation left and on `current` (the layer's
   * placement now), for the plan to take when its inputs turn out the
   * same bits. Reads only the layer's state that its own plan and
   * observation write, writes only its own ahead state; never runs at once
   * with the layer's plan, observe or temporaries. Changes no plan. */
  int (*ahead)(void *state, int iteration, int layer, const pl_placement *current);
} pl_policy_ops;

/* Registry: NULL-terminated array of all policies, in listing order. */
const pl_policy_ops *const *pl_policy_registry(void);
const pl_policy_ops *pl_policy_find(const char *name);

/* Creates a policy from a spec. On error *out is untouched and, if errbuf is
 * non-NULL, a message naming the bad part is written there. */
int pl_policy_create(pl_policy **out, const char *spec, const pl_env *env,
                     char *errbuf, size_t errlen);
void pl_policy_destroy(pl_policy *p);

const pl_policy_ops *pl_policy_ops_of(const pl_policy *p);
/* Canonical spec with all parameters, e.g. "capacity:cf=1.0,min_capacity=4,drop=1":
 * at most PL_SPEC_MAX bytes (pl_policy_create refuses a spec whose
 * canonical form is longer). Owned by the handle. */
const char *pl_policy_spec(const pl_policy *p);
/* The value parameter `key` of policy `spec` takes: the spec's own (the
 * last one given) or the policy's default, as text, copied into buf[len].
 * PL_EPOLICY for an unknown policy, PL_EPARAM for a malformed spec or a key
 * the policy does not have, PL_EINVAL for a value longer than len - 1.
 * Needs no environment: the value is not range-checked (pl_policy_create
 * does that). */
int pl_policy_param(const char *spec, const char *key, char *buf, size_t len);

/* A short label of spec for tables: the policy's name, then ":key=value,..."
 * for each parameter whose value differs from the default (in the policy's
 * order), so "flexmoe:threshold=1.1,shadow=0" and the canonical spec with
 * shadow=0 both give "flexmoe:shadow=0", and a spec at its defaults gives
 * the name alone. PL_EPOLICY / PL_EPARAM as pl_policy_param; PL_EINVAL
 * when buf[len] is too small (buf then holds the label cut short). */
int pl_policy_label(const char *spec, char *buf, size_t len);
/*
 * The one of cands[n] (NULL entries skipped) that word is a slip of: the
 * fewest edits (insertions, deletions, substitutions and swaps of two
 * neighbours, each 1), at most 1 for words up to 4 letters, 2 up to 8, 3
 * beyond; a word of 3 or more letters that starts cands[i] counts as 1.
 * NULL when none is close enough (or word is NULL or empty). Ties go to the
 * first. Every "did you mean" of the project (policies, parameters, and the
 * CLI's flags, presets and keys through fm_nearest) uses it.
 */
const char *pl_nearest(const char *word, const char *const *cands, int n);
/* The layer's current placement (owned by the policy). */
const pl_placement *pl_policy_placement(const pl_policy *p, int layer);

/* Asks for the plan of iteration `iteration`, applies it to the policy's
 * current placement, and returns it (moves included) in *plan, which the
 * caller initialised with pl_plan_init and finalises. */
int pl_policy_plan(pl_policy *p, int iteration, int layer,
                   const int64_t *upcoming, pl_plan *plan);
/* Routes counts [G*E] with the current placement and the policy's capacity
 * (r made by pl_routing_init: the policy writes its per-source capacity
 * into r->cap, then pl_route_caps routes). */
int pl_policy_route(pl_policy *p, int layer, const int64_t *counts,
                    pl_routing *r);
int pl_policy_observe(pl_policy *p, int iteration, int layer,
                      const int64_t *counts);

/* The placement that serves iteration i's tokens of `layer` once plan i is
 * made: the one in place before plan i while plan i's moves are in flight
 * in the background (plan.background, charged), else the current one.
 * Background moves overlap iteration i and land by iteration i + 1, so the
 * new replicas cannot take tokens before then; blocking moves land before
 * iteration i and the oracle's are free, so both serve from the new
 * placement at once; so do weights-first moves (rule 6 of the contract
 * below), whose weights land before the layer's forward. The simulator and
 * the benches route and cost with it
 * (pl_policy_route_serving); pl_policy_route keeps routing on the current
 * placement (the runtime executes every plan's moves before the iteration). */
const pl_placement *pl_policy_serving(const pl_policy *p, int layer);
/* The layer's shadow owners after its last plan (pl_policy_ops.shadows),
 * or NULL when the policy does not shadow or the layer has no shadow. */
const int *pl_policy_shadows(const pl_policy *p, int layer);
/* Whether the policy shadows experts: its plans' moves are per-iteration
 * shadow copies, charged as synchronisation (pl_policy_shadows), not as
 * migrations. */
int pl_policy_shadowing(const pl_policy *p);
/* pl_policy_route on pl_policy_serving's placement. Writes only r and
 * reads only the policy, so calls for different layers (different r) may
 * run at once on several threads, as long as no plan runs meanwhile. */
int pl_policy_route_serving(pl_policy *p, int layer, const int64_t *counts,
                            pl_routing *r);

/*
 * The background-move contract (docs/runtime.md, "Background moves"), one
 * for the simulator and the runtime, decided here and nowhere else:
 *   1. Plan i of a layer is made at the boundary before iteration i. When
 *      pl_policy_inflight says so after it, plan i's moves start with
 *      iteration i and overlap it; iteration i is routed, computed and
 *      all-reduced on pl_policy_serving (the placement before plan i), and
 *      the new replicas take no token and no gradient in iteration i.
 *   2. The switch happens at the boundary after iteration i: the next
 *      pl_policy_plan call of the layer (plan i + 1) lands the moves
 *      (pl_policy_inflight becomes 0), and iteration i + 1 is served by the
 *      new placement. There is no other switch point: a move never lands
 *      within an iteration, and a layer never serves from a half-moved
 *      placement.
 *   3. A late move (one still copying when iteration i's own work is done)
 *      holds the boundary: iteration i ends when its last move has landed,
 *      and the wait beyond its own work is charged as migration (the
 *      simulator's drain tail, the runtime's fence after the all-reduce).
 *      Iteration i + 1 never starts on a placement whose copies are missing.
 *   4. While in flight, the copies share the links (simulator) or the
 *      memory system and cores (cpu runtime) with the iteration's own
 *      traffic: that slowdown is part of the iteration's phases, not of
 *      migration.
 *   5. Blocking plans (background 0) and the oracle's free plans have no
 *      in-flight state: their moves land before iteration i, which the new
 *      placement serves.
 *   6. Weights-first (a plan with plan.weights_first, which a policy sets
 *      only on a background plan, e.g. flexmoe's `weights_first`): each
 *      move has two parts with their own completion. The weights (the new
 *      replica's parameters, pl_move.weight_bytes = pl_expert_weight_bytes)
 *      start with iteration i and must land before the layer's forward of
 *      iteration i needs them (its dispatch; earlier layers' forward hides
 *      them, layer 0 only its own non-MoE work): a late weight copy holds
 *      the layer's forward, and the wait is charged as migration. The
 *      optimizer state (bytes - weight_bytes) follows behind the iteration
 *      (it starts once every weight part of the iteration has landed,
 *      together with the iteration's plain background moves: at the latest
 *      landing among them, on every source at once, whatever layer the
 *      ranks are in; not per source as soon as that source's own weights
 *      are done, which would let one source's state slow another's weights
 *      that are still due) and must land
 *      before the optimizer step: a late one holds the boundary (rule 3).
 *      Iteration i is routed, computed and all-reduced on the new placement
 *      (pl_policy_serving is the current placement, pl_policy_inflight 0,
 *      pl_policy_weights_first 1), so a plan made from the counts of
 *      iteration i - 1 serves iteration i. A replica that goes away serves
 *      no token in iteration i but stays readable until the boundary (its
 *      optimizer state is still being copied). A plan whose weights cannot
 *      arrive in time is not made weights-first by the policy: it follows
 *      rules 1-4 (served from iteration i + 1).
 * The source of a move stays readable and serving during iteration i
 * (under rule 6 readable only; a migrated expert is freed at the
 * boundary), so a rank needs, for the
 * length of one iteration, a free buffer for every replica that arrives
 * in addition to those it serves: at most the slot limit more.
 */
/* 1 when the moves of the layer's last plan are in flight (its changed
 * plan was background and charged), 0 otherwise or on bad arguments. */
int pl_policy_inflight(const pl_policy *p, int layer);
/* 1 when the layer's last plan is a weights-first plan (rule 6 above: its
 * changed plan was background, charged and weights-first; the moves' weight
 * parts are due before the layer's forward of this iteration, which the new
 * placement serves), 0 otherwise or on bad arguments. */
int pl_policy_weights_first(const pl_policy *p, int layer);
/* 1 when the policy's changed plans move in the background (its
 * `background` parameter is 1), 0 when they block or it never re-plans
 * with that protocol. */
int pl_policy_background(const pl_policy *p);

/*
 * The temporaries contract (issue 17 step 2; docs/placement.md), one for
 * the simulator's engines and the runtime, decided here and nowhere else:
 *   1. After plan i of a layer and the gate of iteration i, and before its
 *      dispatch, pl_policy_temporaries decides the layer's temporaries from
 *      iteration i's own counts and pl_policy_serving (t->n of them,
 *      t->temp[k] = expert, holder `from`, destination `to`). Pure
 *      function of the policy's configuration, the two placements and the
 *      counts: every caller gets the same temporaries, bit for bit.
 *   2. Iteration i of the layer is routed (pl_route's rule, the policy's
 *      capacity) and computed on t->placement: the serving placement plus
 *      the temporaries, each on a GPU with a free slot in both the serving
 *      and the current placement (a background move's arriving replicas
 *      keep their buffers), at most one copy of an expert per GPU.
 *   3. Forward: after the layer's dispatch each temporary's weights
 *      (parameter bytes: pl_expert_params x bytes_per_elem, no optimizer
 *      state) are copied from -> to, beside the planned experts' compute,
 *      and `to` computes the temporary's tokens once they have arrived.
 *   4. Backward: the temporary computes its gradient, sends it to -> from
 *      once after the layer's backward (added to the holder's before the
 *      replica all-reduce, which runs over the planned replicas only), and
 *      is freed. The policy never sees a temporary: plans, moves, serving
 *      and inflight stay the planned ones, and nothing is migrated.
 * With t->n = 0 the iteration is exactly what it is without temporaries.
 * A policy may also decide temporaries inside plan and observe to judge
 * its placements as they would serve (flexmoe's `shadow_net`: each
 * placement's time less what its temporaries would save, decided as its
 * `temporaries` op decides them, on counts it has observed): those are
 * its own state, never served, and change nothing above.
 */
/* Whether the policy makes temporaries (its ops have `temporaries`; its
 * configuration may still decide none). */
int pl_policy_has_temporaries(const pl_policy *p);
/* Layer `layer`'s temporaries of the iteration whose counts [G*E] these
 * are, into t (pl_temps_init with the layer's dimensions: experts, GPUs and
 * the cluster's slots): t->n = 0 when the policy makes none. Reads only
 * the policy, but for the layer's own state (layers may run at once on
 * several threads, one call per layer at a time, no plan or observe running
 * meanwhile). 0 or a PL_ code (t->n = 0). */
int pl_policy_temporaries(pl_policy *p, int layer, const int64_t *counts, pl_temps *t);
/* pl_policy_temporaries, then pl_policy_route_serving on t->placement when
 * it made any (else on the serving placement): the routing the engines and
 * the runtime serve the iteration with. */
int pl_policy_route_temporaries(pl_policy *p, int layer, const int64_t *counts, pl_temps *t,
                                pl_routing *r);
/* Whether layer `layer`'s pl_policy_route_serving and
 * pl_policy_route_temporaries of the iteration whose plan and observe of
 * the layer are made may run (on another thread) while the layers above it
 * are planned and observed, with the same result as after them: 1 for a
 * policy without capacity and temporaries ops (routing then reads only
 * the layer's own placements, which only its own plan changes), else what
 * its route_ready op says (0 without one). Reads the state only, and only
 * what later plans and observations do not write. */
int pl_policy_route_ready(const pl_policy *p, int layer);
/* The policy's ahead op for `layer` after its observation of `iteration`
 * (none: PL_OK): work for the layer's next plan done ahead of it, e.g. on
 * a helper thread (see pl_policy_ops.ahead); plans are the same bits with
 * or without it. Calls for different layers may run at once with each
 * other and with other layers' plan, observe and temporaries; 0 or a PL_
 * code (out of memory). */
int pl_policy_ahead(pl_policy *p, int iteration, int layer);

/* Helpers for policy implementations. */
int pl_kv_double(const pl_kv *kv, int nkv, const char *key, double def,
                 double lo, double hi, double *out);
int pl_kv_int(const pl_kv *kv, int nkv, const char *key, int def, int lo,
              int hi, int *out);
/* One of `choices` (NULL-terminated) by name; *out = its index, def when the
 * key is absent; PL_EPARAM for a value not in the list. */
int pl_kv_choice(const pl_kv *kv, int nkv, const char *key,
                 const char *const *choices, int def, int *out);

#ifdef __cplusplus
}
#endif
#endif
