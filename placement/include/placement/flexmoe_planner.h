/*
 * flexmoe_planner.h - the stable C API of the flexmoe placement planner, for
 * training frameworks (C, C++, or Python through ctypes; link
 * libflexmoe_placement.so or the static library).
 *
 * A planner wraps one placement policy (static, capacity, fastermoe,
 * smartmoe, eplb, flexmoe, oracle: `flexmoe policies` lists them) for a
 * model with `layers` MoE layers of `experts` experts on `gpus` GPUs.
 * Per training iteration i, per MoE layer l, the framework calls
 *
 *   pl_planner_plan(p, i, l, upcoming, &changed, &nmoves)
 *       -> the placement to use for iteration i; when changed, fetch the
 *          moves (pl_planner_moves) and execute them: copy / drop / migrate
 *          expert parameters and optimizer state between GPUs;
 *   ... run the layer with that placement (pl_planner_placement says which
 *       GPUs hold each expert) ...
 *   pl_planner_observe(p, i, l, counts)
 *       -> counts[g * experts + e]: token slots GPU g's gate sent to expert
 *          e in iteration i (a token routed to k experts counts k times).
 *
 * `upcoming` is this iteration's counts when the framework knows them before
 * planning (after the gate); only clairvoyant policies (oracle, and
 * fastermoe, which decides after the gate) read it; pass NULL otherwise.
 * Iteration 0's plan is the initial placement (nothing to move).
 *
 * Guarantees: plans are a pure function of the configuration, the policy
 * spec and the counts observed (two planners fed the same calls give the
 * same plans, bit for bit); every expert keeps at least one replica, no GPU
 * holds more than `slots` experts of a layer or two replicas of one expert,
 * and the moves turn the previous placement into the new one exactly.
 * A planner is not thread-safe; use one per thread or lock around it.
 *
 * Errors: every function returning int gives 0 or a negative code;
 * pl_planner_strerror names it, and pl_planner_create writes a sentence
 * naming the bad parameter into err. Versioning: PL_PLANNER_API_VERSION
 * changes only when an existing function changes meaning; functions are
 * only ever added.
 */
#ifndef FLEXMOE_PL_PLANNER_H
#define FLEXMOE_PL_PLANNER_H

#include <stddef.h>
#include <stdint.h>

#include "placement/pl_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PL_PLANNER_API_VERSION 1

typedef struct pl_planner pl_planner; /* opaque */

/* PL_PLANNER_API_VERSION of the library actually loaded. */
int pl_planner_api_version(void);
/* Library version text, e.g. "0.1.0". */
const char *pl_planner_version(void);
const char *pl_planner_strerror(int code);

/*
 * From a full environment (C callers). spec: "name" or
 * "name:key=value,...". On error *out is NULL and err (if non-NULL) holds
 * one sentence.
 */
int pl_planner_create(pl_planner **out, const char *spec, const pl_env *env,
                      char *err, size_t errlen);

/*
 * From key=value text (scripting callers), comma-separated, e.g.
 *   "layers=12,experts=64,gpus=16,gpus_per_node=8,slots=6,d_model=2048,
 *    d_ff=8192,top_k=2"
 * Keys and defaults: layers (1), experts (required), gpus (required),
 * gpus_per_node (8, or gpus if smaller), slots (ceil(experts/gpus) + 1),
 * intra_GBps (450), inter_GBps (50), intra_lat_us (2), inter_lat_us (5),
 * oversub (1), d_model (2048), d_ff (8192), top_k (2), bytes_per_elem (2),
 * optimizer_bytes (12, per parameter), bwd_ratio (2.1), nonmoe_us (0),
 * seed (0), profile: forward expert-FFN times as "tokens:us/tokens:us/..."
 * (default: the H200 bf16 measurements of d_model 2048, d_ff 8192, times
 * scaled by d_model x d_ff / (2048 x 8192)).
 */
int pl_planner_create_kv(pl_planner **out, const char *spec, const char *env_kv,
                         char *err, size_t errlen);
void pl_planner_destroy(pl_planner *p); /* accepts NULL */

/* Canonical policy spec with every parameter, e.g. "flexmoe:threshold=1.1,...". */
const char *pl_planner_spec(const pl_planner *p);

/* Feeds iteration's counts [gpus * experts] of a layer. */
int pl_planner_observe(pl_planner *p, int iteration, int layer,
                       const int64_t *counts);

/* Plans iteration `iteration` of `layer`: *changed = 1 if the placement
 * changed, *nmoves = number of moves (0 when unchanged). */
int pl_planner_plan(pl_planner *p, int iteration, int layer,
                    const int64_t *upcoming, int *changed, int *nmoves);

/* The last plan's moves, 6 int64 per move: layer, expert, from GPU, to GPU
 * (-1 for a drop), kind (1 replicate, 2 drop, 3 migrate), bytes. Writes at
 * most max moves; returns the number written (>= 0) or a negative code. */
int pl_planner_moves(const pl_planner *p, int64_t *out, int max);

/* The last plan's flags: background (moves overlap the next iteration) and
 * uncharged (oracle: moves cost no time). Either pointer may be NULL. With
 * background set, keep serving that iteration's tokens from the placement
 * before the plan (the new replicas' parameters are still on the wire) and
 * switch once the moves have landed; flexmoe's simulator does exactly that
 * (pl_policy_serving in pl_policy.h). */
int pl_planner_plan_flags(const pl_planner *p, int *background, int *uncharged);

/* Current placement of a layer as a 0/1 matrix out[expert * gpus + g]. */
int pl_planner_placement(const pl_planner *p, int layer, int32_t *out);

/* Routes counts [gpus * experts] over the current placement of a layer
 * (locality first, the policy's capacity if any; as the iteration is
 * served, with temporaries: pl_planner_route_served): per-GPU token slots into
 * gpu_load[gpus] (may be NULL), max/mean into *balance (may be NULL) and
 * tokens dropped into *dropped (may be NULL). */
int pl_planner_route(pl_planner *p, int layer, const int64_t *counts,
                     int64_t *gpu_load, double *balance, int64_t *dropped);

/* Appended (issue 17). The placement that serves the iteration just
 * planned, as a 0/1 matrix out[expert * gpus + g] (pl_policy_serving): the
 * one before the plan while a background plan's moves are in flight, the
 * new one otherwise (blocking, free and weights-first plans). Route and
 * compute the iteration on it (plus its temporaries). */
int pl_planner_serving(const pl_planner *p, int layer, int32_t *out);
/* Appended (issue 17). 1 when the layer's last plan is weights-first
 * (pl_policy.h rule 6 of the background-move contract): a background plan
 * whose moves' weights (parameters) must land before the layer's forward of
 * the iteration just planned, which the new placement serves; the
 * optimizer state follows, by the next boundary. 0 otherwise (or on bad
 * arguments). */
int pl_planner_weights_first(const pl_planner *p, int layer);

/*
 * Appended (issue 17): a layer's temporaries of one iteration (pl_policy.h,
 * "the temporaries contract"; flexmoe's shadow=1, its default): extra
 * copies of experts the planned replicas cannot absorb this iteration,
 * decided on the iteration's own gate counts, exactly as the simulator and
 * the runtime decide them. Protocol: make iteration i's plans first (at the
 * boundary before i, every layer: pl_planner_plan), then after layer l's
 * gate of iteration i and before its dispatch call this with that layer's
 * counts [gpus * experts] of iteration i (the counts pl_planner_observe
 * gets; observe before or after, it does not change the decision). Writes
 * 3 int32 per temporary to out, at most max of them: expert, holder GPU
 * (a replica of pl_planner_serving's placement: copy the weights from it),
 * and destination GPU (a slot free in both the serving and the current
 * placement, no copy of the expert). Then for
 * iteration i only: copy the weights (parameters, no optimizer state)
 * holder -> destination, route and compute the layer with the temporaries
 * as replicas, after the layer's backward add each temporary's gradient
 * to its holder's before the replica all-reduce, and free it. The policy's
 * plans and placements never contain them.
 * Returns the number of temporaries (>= 0; 0 for policies that make none;
 * when above max, only max were written: call again with room, at most
 * experts x gpus) or a negative code (PL_EINVAL: bad layer, counts or
 * arguments). Pure function of the configuration, the plans and the
 * counts: the same calls give the same temporaries, bit for bit.
 */
int pl_planner_temporaries(pl_planner *p, int layer, const int64_t *counts, int32_t *out,
                           int max);

/* Appended (issue 17). Routes counts [gpus * experts] as the iteration is
 * served, the way the simulator's engines and the runtime route it: over
 * pl_planner_serving's placement plus the layer's temporaries of these
 * counts (the ones pl_planner_temporaries gives for them), locality first,
 * the policy's capacity if any. Outputs as pl_planner_route (each may be
 * NULL). Call it after the iteration's plans; it decides the temporaries
 * itself, so it may come before or after pl_planner_temporaries. 0 or a
 * negative code (PL_EINVAL: bad layer, counts or planner). */
int pl_planner_route_served(pl_planner *p, int layer, const int64_t *counts,
                            int64_t *gpu_load, double *balance, int64_t *dropped);

#ifdef __cplusplus
}
#endif
#endif
