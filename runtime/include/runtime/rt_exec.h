/*
 * rt_exec.h - the replay executor: iterations of a routing trace through
 * real expert FFNs on a backend, with a placement policy of placement/.
 *
 * Per iteration i (DESIGN.md, "The MoE iteration model"):
 *   1. plan: for every layer pl_policy_plan(i, l); the moves of a changed
 *      plan are executed by really copying expert parameters and optimizer
 *      state between ranks (replicate, migrate; drop frees the slot);
 *   2. route: pl_policy_route gives each (rank, expert) load; the split of
 *      every (source, expert) over the replicas is pl_route's, so the
 *      runtime sends exactly the traffic the simulator charges;
 *   3. forward, layer by layer: dispatch (permute tokens by destination
 *      replica, exchange, regroup by expert), expert FFN, combine (return,
 *      weighted top-k sum); backward in reverse order (gradients of the
 *      outputs generated from the seed, weighted, dispatched, FFN backward,
 *      returned and summed); replica gradient all-reduce (reduce-scatter to
 *      one chunk owner per replica, all-gather back); then
 *      pl_policy_observe(i, l).
 * Token activations, output gradients, top-k weights and expert parameters
 * are generated from the seed (kn_value), so the run is reproducible and the
 * results can be checked against a single-device reference computed on the
 * host (rt_exec_check). Input generation happens before the iteration's
 * first time stamp and is not part of the measured time. Parameters are
 * not updated (no optimizer step): replicas stay identical, which is what
 * the checksums check.
 *
 * Token layout of source rank r at (i, l): counts c[e] from the trace give
 * S = sum c slots, expert-major; slot j belongs to token j mod T, T =
 * ceil(S / top_k), and carries weight w_j in [0.5, 1).
 */
#ifndef FLEXMOE_RT_EXEC_H
#define FLEXMOE_RT_EXEC_H

#include <stdint.h>

#include "placement/pl_policy.h"
#include "runtime/rt_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_exec_config {
  int layers, experts, top_k;
  int d_model, d_ff;
  int slots;                       /* expert slots per rank per layer */
  int64_t max_slots_per_rank;      /* token slots a rank routes per layer (max) */
  double optimizer_bytes_per_param;/* migrated with each expert (e.g. 12) */
  int model_bytes_per_elem;        /* for byte counts (2 = bf16) */
  uint64_t seed;
  int64_t warm_tokens;             /* warm-up: run the expert FFN at every
                                      token count 1..warm_tokens before timing
                                      (cuBLAS chooses and loads a kernel per
                                      GEMM size on first use). GPU backends
                                      add a 1.25x ladder up to the receive
                                      capacity; the cpu backend warms up only
                                      when this is > 0 */
} rt_exec_config;

/* Phases of the measured time. DISPATCH and COMBINE are the exchanges
 * alone (copies or NCCL send/recv and the wait for every rank); LOCAL is
 * the token movement on each rank around them (permute by destination,
 * regroup by expert, the inverse, the weighted top-k combine). */
enum rt_phase {
  RT_PH_DISPATCH = 0,
  RT_PH_COMPUTE,
  RT_PH_COMBINE,
  RT_PH_ALLREDUCE,
  RT_PH_MIGRATION,
  RT_PH_LOCAL,
  RT_PH_COUNT
};

typedef struct rt_iter_result {
  int64_t iteration;
  double time_ms;
  double phase_ms[RT_PH_COUNT];
  double balance;        /* max/mean rank load after routing, worst layer */
  int64_t bytes_alltoall;/* remote bytes of dispatch + combine, fwd + bwd */
  int64_t bytes_migrated;
  int64_t tokens_total;
  int64_t tokens_dropped;
  int nmoves;
} rt_iter_result;

typedef struct rt_exec rt_exec;

/*
 * b and policy stay owned by the caller and must outlive the executor.
 * The policy's current placement is laid out on the ranks (parameters and
 * optimizer state allocated and generated). err gets a sentence on failure.
 */
int rt_exec_create(rt_exec **out, rt_backend *b, pl_policy *policy,
                   const pl_env *env, const rt_exec_config *cfg, char *err,
                   size_t errlen);
void rt_exec_destroy(rt_exec *x); /* accepts NULL */

/* One iteration; counts: [layers][ranks][experts] token slots. The first
 * call's plan is the initial placement: its moves are made before the
 * first time stamp (not charged), as the simulator does. */
int rt_exec_iteration(rt_exec *x, int64_t iteration, const int64_t *counts,
                      rt_iter_result *res, char *err, size_t errlen);

/* Per-rank busy time (expert compute) and total time summed over the
 * iterations so far, ms. */
void rt_exec_rank_time(const rt_exec *x, int rank, double *busy_ms,
                       double *total_ms);

/* Moves of the last iteration's plans (owned by x, valid until the next
 * iteration). */
const pl_move *rt_exec_moves(const rt_exec *x, int *nmoves);

typedef struct rt_check {
  double out_err;   /* ||out - ref|| / ||ref|| over all layers and ranks */
  double din_err;   /* same for the input gradients */
  double grad_err;  /* same for the expert parameter gradients */
  int64_t tokens_checked;
  int64_t tokens_missing; /* kept token slots whose result did not come back */
  int replicas_checked;
  int checksum_mismatches;/* replicas whose parameters or optimizer state differ from the expert's original */
  int moved_checked;      /* of replicas_checked: arrived in the background in the last iteration
                             (plain or weights-first) */
} rt_check;

/* Compares the last iteration with a single-device reference computed on
 * the host in float (kernels/ CPU twins, inputs rounded as the backend
 * stores them) and checks every replica's checksum. Downloads everything:
 * meant for small shapes. */
int rt_exec_check(rt_exec *x, rt_check *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
