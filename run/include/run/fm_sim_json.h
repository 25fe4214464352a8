/*
 * fm_sim_json.h - the `flexmoe sim --format json` document, built once for
 * every face that prints it (the CLI's sim, the Python package through
 * fm_api.h), so they cannot drift apart.
 * Owned by the run library authors (run/fm_sim_json.c).
 */
#ifndef FLEXMOE_RUN_FM_SIM_JSON_H
#define FLEXMOE_RUN_FM_SIM_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "run/fm_sim.h"

/* Most policies one comparison runs (`sim --policy` repeated). */
#define FM_SIM_MAX_POLICIES 32

/* A comparison of policies on one configuration: what `sim` prints. */
typedef struct fm_sim_comparison {
  int n;            /* runs asked for, in order: out[0..n) */
  int nrun;         /* n, or n + 1 when static runs only as the reference */
  int static_idx;   /* the reference run (speedup_vs_static) */
  int recorded;     /* 1: run_ids[0..n) hold the database's ids */
  const char *policies[FM_SIM_MAX_POLICIES + 1]; /* specs as given */
  fm_sim_output *out[FM_SIM_MAX_POLICIES + 1];
  int64_t run_ids[FM_SIM_MAX_POLICIES + 1];
} fm_sim_comparison;

/* Runs base once per policy spec of policies[0..npol) (npol 0: every
 * registered policy; static is added as the reference when not asked),
 * each policy's configuration resolved before any is simulated, then, when
 * db is not NULL, records the asked runs (each in its own transaction).
 * Returns FM_OK, or FM_EUSAGE / FM_EFAIL with one sentence in errmsg (the
 * first policy at fault; nothing recorded when resolving or simulating
 * failed). c is always set; release it with fm_sim_comparison_fini. The
 * specs are not copied: they must outlive c. */
int fm_sim_compare(const fm_sim_config *base, const char *const *policies, int npol,
                   st_db *db, fm_sim_comparison *c, char *errmsg, size_t errlen);
void fm_sim_comparison_fini(fm_sim_comparison *c);

/* How many runs fm_sim_compare makes of policies[0..npol): the policies
 * (every registered one when npol is 0) and static when it is not among
 * them (for a progress line). */
int fm_sim_compare_runs(const char *const *policies, int npol);

/* The comparison's document, fm_sim_json over c's runs. */
json_t *fm_sim_comparison_json(const fm_sim_comparison *c, const char *engine);

/* json_dumps flags of the document (two-space indent, keys in order, eight
 * significant digits): the CLI prints with these, fm_simulate_json too. */
#define FM_SIM_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8))

/* A comparison column over effective times (st_effective_ms): ref_ms / ms.
 * 0 when ms is +INFINITY (a policy that drops every token slot does no
 * useful work); NAN when undefined (ref_ms not finite and positive, ms NAN
 * or <= 0). The JSON writes NAN as null. */
double fm_speedup(double ref_ms, double ms);

/* {"runs": [...]}: one object per out[0..n) in order, keys policy, cluster,
 * gpus, iterations, mean_iteration_ms, speedup_vs_static (over ref's
 * effective time: ref is the static run, which need not be among out),
 * effective_iteration_ms, balance_p50, balance_p90, migrated_bytes,
 * dropped_tokens, breakdown_ms {compute, alltoall, allreduce, migration,
 * other}, engine, slots_per_gpu, and run_id when run_ids is not NULL (the
 * runs were recorded). NULL only when out of memory. The caller owns the
 * result (json_decref). */
json_t *fm_sim_json(const fm_sim_output *const *out, int n, const fm_sim_output *ref,
                    const char *engine, const int64_t *run_ids);

#endif
