/*
 * fm_validate.h - one validation: the same configuration (trace, policy,
 * ranks, model, seed) through the runtime (measured, fm_replay) and through
 * a predictor (fm_sim with the calibrated profile, or the placement cost
 * model alone), compared per phase.
 *
 * Shared by `flexmoe validate` (which parses flags and prints) and any other
 * face. The calibrated profile is given (a P.json written by `flexmoe
 * calibrate --out`, with its .cluster.json and .runtime.json beside it) or
 * measured now on the backend. The simulator gets the profile in memory,
 * with its non-MoE factor set to the runtime's local token movement
 * (fm_profile_for_sim): nothing is written beside the user's profile.
 *
 * Errors are (predicted - measured) / measured, NAN where measured is 0 and
 * predicted is not (a phase not measured). median_abs_error is the
 * median over policies of |error| of the mean iteration time; p95_abs_error
 * the 95th percentile over policies x phases of |error| of the phases that
 * take at least 5% of the measured iteration (smaller phases are a few
 * microseconds, where a relative error means little), the iteration time
 * included; both with fm_config's nearest-rank percentile.
 * Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_VALIDATE_H
#define FLEXMOE_RUN_FM_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "placement/pl_policy.h"
#include "run/fm_replay.h"

/* Phases compared: compute, all-to-all (dispatch + combine), allreduce,
 * migration, other (local token movement), and the iteration time. */
enum {
  FM_V_COMPUTE,
  FM_V_ALLTOALL,
  FM_V_ALLREDUCE,
  FM_V_MIGRATION,
  FM_V_OTHER,
  FM_V_TIME,
  FM_V_N
};
extern const char *const fm_validate_phase_names[FM_V_N];

#define FM_VALIDATE_MAX_POLICIES 64

typedef struct fm_validate_config {
  /* backend, trace, ranks, partitions, device, iterations, seed, model,
   * tokens per GPU, slots; its policy, profile and exchange fields are set
   * by fm_validate */
  fm_replay_config replay;
  const char *const *policies; /* [npolicies]; npolicies 0: static, flexmoe,
                                  flexmoe:background=0, eplb (those this
                                  build has), each at its defaults */
  int npolicies;
  const char *profile_path;    /* NULL: calibrate the backend now (cpu, cuda;
                                  needs d_model and d_ff) */
  const char *engine;          /* "analytic" (NULL), "des" or "cost" */
  const char *db_path;         /* NULL: nothing stored; else both runs of
                                  each policy and the validation rows */
} fm_validate_config;

#define FM_VALIDATE_CONFIG_INIT                                                                   \
  {.replay = FM_REPLAY_CONFIG_INIT, .policies = NULL, .npolicies = 0, .profile_path = NULL,      \
   .engine = "analytic", .db_path = NULL}

typedef struct fm_validate_run {
  char policy[PL_SPEC_MAX + 1]; /* canonical spec, whole */
  double predicted[FM_V_N], measured[FM_V_N], error[FM_V_N]; /* mean ms; error NAN: undefined */
  int64_t iterations;           /* rows of the two arrays below */
  double *predicted_ms, *measured_ms; /* [iterations]: per iteration time */
  double measured_nonmoe_us;    /* the replay's profile: non-MoE us per layer and direction */
  double predicted_nonmoe_us;   /* the simulator's (NAN for the cost engine) */
  int64_t predicted_id, measured_id; /* stored run ids, 0 without a database */
  int64_t npredicted;           /* rows of predicted_ms */
} fm_validate_run;

typedef struct fm_validate_result {
  int nruns;
  fm_validate_run *runs;        /* [nruns], one per policy in the given order */
  double median_abs_error, p95_abs_error;
  int ranking_agrees;           /* every pair of policies ordered alike */
  char predictor[64];           /* "simulator (analytic)", "simulator (des)",
                                   "placement cost model" */
  char profile[1024];           /* the path, or "calibrated now" */
  char backend[16];
  int owner;                    /* 0: an MPI rank other than 0 (nccl):
                                   runs, statistics and storing are rank 0's */
  char warning[256];            /* "" or one sentence for the user (more cpu
                                   ranks than cores); kept on failure too */
} fm_validate_result;

/* Runs the validation of cfg into *res (caller-owned, filled on success;
 * release with fm_validate_result_fini; res->warning is set even on
 * failure). Returns FM_OK, FM_EUSAGE for a
 * configuration a user fixes (more ranks than the trace has, slots below
 * the experts, nccl without a profile, a missing model shape), checked
 * before anything is measured, or FM_EFAIL; errmsg gets one sentence naming the
 * policy, file or value at fault. *res is left empty on failure. */
int fm_validate(const fm_validate_config *cfg, fm_validate_result *res, char *errmsg,
                size_t errlen);

/* Frees what fm_validate allocated in res; accepts NULL and an empty res. */
void fm_validate_result_fini(fm_validate_result *res);

/* The result as the JSON document of `flexmoe validate --format json`:
 * {"runs": [{"policy", "predicted_ms", "measured_ms", "error", "phases":
 * {PHASE: {"predicted_ms", "measured_ms", "error"}}}], "median_abs_error",
 * "p95_abs_error", "ranking_agrees", "predictor", "profile", "backend"}. An
 * error that is not defined (a phase not measured) is null, never a number
 * JSON cannot hold or a made-up 0. NULL when out of memory. */
struct json_t;
struct json_t *fm_validate_doc(const fm_validate_result *res);

#endif
