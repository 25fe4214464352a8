/*
 * fm_replay.h - one runtime replay configuration: resolved, run, recorded.
 *
 * Shared by `flexmoe run` and `flexmoe validate` (and the GPU self-check).
 * Resolution mirrors the simulator's runner (fm_sim.h) so that both sides
 * see the same counts, the same policy environment and therefore the same
 * plans: GPU g replays trace rank g mod R through tr_rescale_slice with the
 * run's seed (own slot count unless --tokens-per-gpu), the policy sees
 * iterations renumbered from 0, the cluster is one node of G ranks with the
 * given slots, exchange bandwidth and latency, and the compute profile is
 * the calibrated one (or a nominal default). Owned by the runtime authors.
 */
#ifndef FLEXMOE_RUN_FM_REPLAY_H
#define FLEXMOE_RUN_FM_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "placement/pl_cost.h"
#include "placement/pl_policy.h"
#include "run/fm_config.h"
#include "runtime/rt_exec.h"
#include "store/st_store.h"

typedef struct fm_replay_config {
  const char *backend;       /* cpu, cuda, nccl */
  int ranks;                 /* 0: partitions, else trace ranks (cpu), GPUs (cuda), world (nccl) */
  int partitions;            /* cuda: SM partitions of one GPU */
  int device;
  const char *trace_path;
  const char *policy;
  int64_t it_begin, it_end;  /* [begin, end), end -1: to the end */
  uint64_t seed;
  int d_model, d_ff, top_k;  /* 0: from the sidecar */
  int64_t tokens_per_gpu;    /* 0: each rank's own slot count */
  int slots;                 /* 0: ceil(1.5 E / G) capped at E */
  double exchange_GBps;      /* cluster link for the policies' cost model */
  double exchange_lat_us;
  const char *profile_path;  /* calibrated profile P.json (its .cluster.json
                                gives the exchange numbers, .runtime.json the
                                local token movement); NULL: nominal H200
                                partition numbers */
  const pl_profile *profile; /* used when profile_path is NULL */
  int check;                 /* 1: rt_exec_check after the last iteration;
                                2: after every iteration, folded (worst
                                errors, summed counts: background moves
                                in flight are checked where they happen) */
  int quiet;                 /* no progress on stderr */
  int predict;               /* no backend: predict every iteration with
                                the placement cost model (pl_cost_layer +
                                pl_cost_moves_us), the analytic formulas of
                                the simulator, instead of running it */
} fm_replay_config;

#define FM_REPLAY_CONFIG_INIT                                                                    \
  {.backend = "cpu", .ranks = 0, .partitions = 0, .device = 0, .trace_path = NULL,               \
   .policy = "static", .it_begin = 0, .it_end = -1, .seed = FM_DEFAULT_SEED, .d_model = 0,        \
   .d_ff = 0, .top_k = 0, .tokens_per_gpu = 0, .slots = 0, .exchange_GBps = 500.0,                \
   .exchange_lat_us = 4.0, .profile_path = NULL, .profile = NULL, .check = 0, .quiet = 0,        \
   .predict = 0}

typedef struct fm_replay_output {
  char policy[PL_SPEC_MAX + 1]; /* canonical spec, whole */
  char backend[16];
  char cluster[64];
  char device[512];
  int gpus, slots, d_model, d_ff, top_k, layers, experts;
  double slots_per_gpu_mean;       /* token slots a rank routes per layer, mean */
  double nonmoe_us;                /* the profile's non-MoE time used */
  int64_t tokens_per_gpu;          /* as the simulator resolves it */
  int64_t it_begin, it_end;
  int64_t iterations;
  double mean_iteration_ms;
  double phase_ms[RT_PH_COUNT];   /* means */
  double balance_p50, balance_p90;
  int64_t migrated_bytes, dropped_tokens, bytes_alltoall;
  rt_iter_result *rows;            /* [iterations] */
  double *busy_ms, *total_ms;      /* [gpus] */
  pl_move *moves;                  /* [nmoves] every plan's moves in order of
                                      (iteration, layer) */
  int64_t *move_iteration;         /* [nmoves] the trace iteration of each */
  int64_t nmoves;
  rt_check check;
  int checked;                     /* iterations checked */
  uint64_t trace_hash;
  char trace_path[512];
  int64_t trace_iterations;
  int trace_layers, trace_ranks, trace_experts;
  double started, finished;
  int owner;                       /* this process records (rank 0) */
  char warning[256];               /* "" or one sentence for the user (more
                                      cpu ranks than cores) */
} fm_replay_output;

/* Runs cfg; on failure returns FM_EFAIL/FM_EUSAGE with one sentence in
 * errmsg. */
int fm_replay_compute(const fm_replay_config *cfg, fm_replay_output **out, char *errmsg,
                   size_t errlen);
/* Writes the run as kind "gpu" in one transaction. */
int fm_replay_record(st_db *db, const fm_replay_output *o, int64_t *run_id, char *errmsg,
                  size_t errlen);
void fm_replay_output_free(fm_replay_output *o);

/* The ranks of the trace at path (opened and closed); FM_OK or FM_EFAIL
 * with the message naming the file. */
int fm_replay_trace_ranks(const char *path, int *ranks, char *errmsg, size_t errlen);
/* One sentence into buf[len] when `ranks` cpu rank threads exceed the
 * machine's online cores (their times then measure the scheduler), else
 * "". */
void fm_replay_cores_warning(int ranks, char *buf, size_t len);

/* Short phase names, index = enum rt_phase. */
extern const char *const fm_replay_phase_names[RT_PH_COUNT];

/* ---- what `flexmoe run` adds around a replay ---- */

/* The calibrated profile at path for the policies' cost model: sets
 * cfg->profile_path and, when the profile has a cluster file, the exchange
 * numbers. FM_OK or FM_EFAIL (the profile cannot be read). */
int fm_replay_use_profile(fm_replay_config *cfg, const char *path, char *errmsg,
                          size_t errlen);

/* 1 when o was not checked, or matched the single-device reference within
 * the backend's tolerance (1e-5 on cpu, 2e-2 on GPUs) with no token lost
 * and no replica's checksum off; else 0. */
int fm_replay_check_ok(const fm_replay_config *cfg, const fm_replay_output *o);

/* One replay as the JSON object of `flexmoe run --format json`: {"policy",
 * "backend", "cluster", "device", "gpus", "iterations", "mean_iteration_ms",
 * "breakdown_ms": {phases}, "balance_p50", "balance_p90", "migrated_bytes",
 * "dropped_tokens", "alltoall_bytes", "effective_iteration_ms",
 * "nonmoe_us", "run_id" (when run_id is given), "check" (when checked, with
 * "ok": check_ok)}; NULL when out of memory. */
struct json_t;
struct json_t *fm_replay_doc(const fm_replay_output *o, const int64_t *run_id, int check_ok);

#endif
