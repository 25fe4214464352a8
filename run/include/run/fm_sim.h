/*
 * fm_sim.h - one simulation configuration: computed, serialised, recorded.
 *
 * Shared by `flexmoe sim`, `flexmoe sweep` (worker processes and MPI ranks
 * compute; one writer records) and `flexmoe validate`. Computing touches no
 * database; recording writes one run and all its rows in one transaction.
 * The output can be packed into a flat byte buffer and unpacked in another
 * process (same binary), so workers send results to the writer.
 * Owned by the sim authors (run/fm_sim.c).
 */
#ifndef FLEXMOE_RUN_FM_SIM_H
#define FLEXMOE_RUN_FM_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "placement/pl_policy.h"
#include "run/fm_config.h"
#include "run/fm_keys.h"
#include "store/st_store.h"

typedef struct fm_sim_config {
  const char *trace_path;
  const char *cluster;      /* preset name or JSON file */
  int nodes;                /* 0 = preset default */
  int gpus_per_node;        /* 0 = preset default */
  const char *policy;       /* policy spec, e.g. "flexmoe:threshold=1.2" */
  const char *engine;       /* "analytic" or "des" */
  int64_t it_begin, it_end; /* iterations [begin, end); end = -1: to the end */
  uint64_t seed;
  int d_model, d_ff, top_k; /* 0 = from the trace's sidecar */
  int64_t tokens_per_gpu;   /* 0 = from the trace */
  const char *profile_path; /* NULL = built-in profile of the cluster's GPU */
  int slots;                /* expert slots per GPU; 0 = from HBM and expert size */
  /* Appended (sim authors): 1 = the DES carries every GPU pair as its own
   * flow (all-to-alls, replica all-reduce ring steps, migrations: exact
   * max-min, O(G^2) flows); 0 = per-GPU hose flows for all of them
   * (default, docs/simulator.md "Aggregation"; "network":"hose-all" in the
   * run's parameters); 2 = hose all-to-alls, exact rings and migrations (as
   * the default was before, "hose" in the parameters of runs recorded then,
   * but with weighted all-to-all hose flows; "hose-alltoall"; kept to
   * measure the error of aggregating the rings and migrations). Ignored by
   * analytic. */
  int exact_net;
  /* 1 = record each plan's moves (the plans table's moves_json); 0 = only
   * its count and bytes (sweeps, where per-move rows of re-planning
   * policies dominate the database). Not part of the config key. */
  int plan_moves;
  /* 1 = draw the next iteration's rescaled counts on a second thread while
   * this one is simulated (same counts; for `sim` on a machine with more
   * than one core), 0 = one thread (sweep workers, benchmarks). */
  int prefetch;
  /* Appended (validate): a compute profile in memory, used instead of
   * profile_path and the built-in one (NULL: those). Read during
   * fm_sim_compute / fm_sim_config_key only; the caller keeps it. The run's
   * parameters name and hash it as they would the same profile read from a
   * file, so a configuration keys alike either way. */
  const struct sim_profile *sim_profile;
  /* Appended (keys): how messages name a key, FM_NAME_FLAG (0: "--top-k",
   * the CLI) or FM_NAME_JSON ("top_k", the JSON and Python faces);
   * run/fm_keys.h. Not part of the config key. */
  int key_names;
  /* Appended (issue 15): opened traces shared between calls (fm_trace_cache.h;
   * the caller owns it and keeps it alive across the calls that use it), so
   * N configurations of one trace open and hash it once. NULL = this call
   * opens the trace itself and closes it before returning. Not part of the
   * config key: a cached trace is the same file. */
  struct fm_trace_cache *traces;
  /* Appended (issue 19): threads of one run, 1 to FM_SIM_MAX_THREADS. 1 =
   * everything on the caller's thread; N >= 2 = helper threads draw the
   * next iteration's rescaled counts while one is simulated, and each
   * iteration's layers are drawn and routed on N threads (each layer's
   * result in its own slot, merged in layer order). Results are byte for
   * byte the same for any N. 0 = from prefetch (2 when set, else 1). Not
   * part of the config key. */
  int threads;
  /* Appended (issue 19): 1 = keep this run's rescaled counts in memory for
   * the next run of this process with the same trace, GPUs, slots, seed and
   * iterations (another policy of one comparison replays them instead of
   * drawing again); 0 = do not (the last run of a comparison: at 1,024 GPUs
   * the kept counts take 3 MiB per iteration, whose first writes cost page
   * faults). A kept draw is replayed either way. Not part of the config key. */
  int keep_draws;
  /* Appended (issue 18, progress): called after every simulated iteration
   * with the policy spec as given, the iterations done and their total
   * (NULL: not called). For progress lines only: it must not touch the
   * configuration. Not part of the config key. */
  void (*progress)(void *ctx, const char *policy, int64_t done, int64_t total);
  void *progress_ctx;
} fm_sim_config;

/* The most threads one run uses (the key table's range of "threads"). */
#define FM_SIM_MAX_THREADS 256

/* The faces' default for threads: the machine's online cores, 1 to
 * FM_SIM_MAX_THREADS. */
int fm_sim_default_threads(void);

#define FM_SIM_CONFIG_INIT                                                                       \
  {.trace_path = NULL, .cluster = "dgx-h100", .nodes = 0, .gpus_per_node = 0,                   \
   .policy = "static", .engine = "analytic", .it_begin = 0, .it_end = -1,                       \
   .seed = FM_DEFAULT_SEED, .d_model = 0, .d_ff = 0, .top_k = 0, .tokens_per_gpu = 0,           \
   .profile_path = NULL, .slots = 0, .exact_net = 0, .plan_moves = 1, .prefetch = 0,             \
   .sim_profile = NULL, .key_names = 0, .traces = NULL, .threads = 0,                        \
   .keep_draws = 1, .progress = NULL, .progress_ctx = NULL}

/* Summary of one run (the `sim --format json` keys). */
typedef struct fm_sim_summary {
  char policy[PL_SPEC_MAX + 1]; /* canonical spec, whole (pl_policy.h limits) */
  char cluster[128];
  int gpus;
  int64_t iterations;
  double mean_iteration_ms;
  double balance_p50, balance_p90;
  int64_t migrated_bytes;
  int64_t dropped_tokens;
  double compute_ms, alltoall_ms, allreduce_ms, migration_ms, other_ms; /* means */
  /* Appended: token slots routed (sum of the rows' tokens_total) and the
   * time per iteration of useful work, st_effective_ms(mean_iteration_ms,
   * dropped_tokens, total_tokens): +INFINITY when every slot is dropped. */
  int64_t total_tokens;
  double effective_iteration_ms;
  int slots_per_gpu; /* expert copies a GPU can hold (--slots or from HBM): a
                        policy's slots=0 means these */
} fm_sim_summary;

typedef struct fm_sim_output fm_sim_output; /* opaque: summary + all rows */

/* Runs cfg. On failure returns FM_EFAIL or FM_EUSAGE and writes one
 * sentence naming the file/flag/value at fault into errmsg. */
int fm_sim_compute(const fm_sim_config *cfg, fm_sim_output **out,
                    char *errmsg, size_t errlen);
const fm_sim_summary *fm_sim_summary_of(const fm_sim_output *o);
/* Events the DES handled in the run: queue events executed plus each
 * network flow's start and end (0 for the analytic engine, and for an
 * output unpacked by fm_sim_unpack, which does not carry it): the
 * benchmarks' events per second. */
uint64_t fm_sim_events(const fm_sim_output *o);
/* The run's per-iteration rows (*rows points into o) and their count. */
int64_t fm_sim_iteration_rows(const fm_sim_output *o, const st_iter_row **rows);
/* The run's parameters as stored (JSON text owned by o): model, tokens,
 * slots, engine, profile name and hash, nonmoe_us, network. */
const char *fm_sim_params_json(const fm_sim_output *o);
/* Writes the run (kind "sim") in one transaction; *run_id set on success. */
int fm_sim_record(st_db *db, const fm_sim_output *o, int64_t *run_id,
                   char *errmsg, size_t errlen);
void fm_sim_output_free(fm_sim_output *o);

/* Flat byte image of an output (malloc'd, caller frees) and back. */
int fm_sim_pack(const fm_sim_output *o, void **buf, size_t *len);
int fm_sim_unpack(const void *buf, size_t len, fm_sim_output **out);

/* Stable identity of a configuration (policy canonicalised, cluster and
 * model resolved, trace content hash): equal keys = same results. Used by
 * sweeps to skip points already complete in the database. */
int fm_sim_config_key(const fm_sim_config *cfg, char *buf, size_t len,
                       char *errmsg, size_t errlen);

#endif
