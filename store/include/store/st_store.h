/*
 * st_store.h - the SQLite results store.
 *
 * One file (default flexmoe.db), WAL mode, schema version in
 * PRAGMA user_version (migrations run on open), prepared statements with
 * bound parameters. A run and all its rows are written in one transaction:
 * it is visible complete or not at all. Opening a file that is not a flexmoe
 * database (or is newer than this build understands) fails without touching
 * it; so does a read-only file when writing is asked for.
 *
 * A flexmoe database carries PRAGMA application_id = ST_APPLICATION_ID.
 * Schema versions (docs/results.md lists every table and column):
 *   1  traces, clusters, profiles, runs, iterations, gpu_stats, plans,
 *      validations
 *   2  trace_loads (per iteration, layer, expert token slots summed over
 *      ranks: the notebooks' heatmaps) and layer_iterations (per iteration
 *      and layer balance of a run)
 *   3  at most one complete run per non-empty config_key (a partial unique
 *      index); earlier duplicates become status 'superseded', the latest
 *      complete run of each configuration kept
 * Unsigned 64-bit values (seed) are stored bit-for-bit in SQLite's signed
 * INTEGER and read back unchanged; content hashes are 16 hex digits.
 */
#ifndef FLEXMOE_ST_STORE_H
#define FLEXMOE_ST_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "placement/pl_placement.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_SCHEMA_VERSION 3
#define ST_APPLICATION_ID 0x464D4F45 /* "FMOE" */

#define ST_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(EOPEN, -3, "cannot open database")                                         \
  X(ENOTDB, -4, "not a flexmoe database")                                      \
  X(EVERSION, -5, "database schema is newer than this flexmoe")                \
  X(EREADONLY, -6, "database is read-only")                                    \
  X(ESQL, -7, "database error")                                                \
  X(EBUSY, -8, "database is locked by another process")                       \
  X(ENOTFOUND, -9, "no such row")                                              \
  X(EFULL, -10, "disk is full or the file size limit was reached")             \
  X(EIO, -11, "input/output error on the database file")                       \
  X(ECORRUPT, -12, "database file is damaged")                                \
  X(EEXISTS, -13, "a complete run of this configuration is already stored")

typedef enum st_err {
#define ST_ERR_ENUM(name, value, msg) ST_##name = (value),
  ST_ERRNO_MAP(ST_ERR_ENUM)
#undef ST_ERR_ENUM
} st_err;

const char *st_strerror(int code);

typedef struct st_db st_db; /* opaque */

enum { ST_READ = 0, ST_WRITE = 1 };
/* Opens (creating when mode is ST_WRITE) and migrates. errmsg (may be NULL)
 * gets a sentence naming the file and the problem. */
int st_open(st_db **out, const char *path, int mode, char *errmsg, size_t errlen);
void st_close(st_db *db);
/* The sentence of the last failure on db (the cause, e.g. "disk is full or
 * the file size limit was reached: File too large (disk I/O error)", not
 * the rollback that followed it); SQLite's last message if nothing failed. */
const char *st_errmsg(const st_db *db);
/* The ST_ code of the last failure on db (ST_OK if none). */
int st_errcode(const st_db *db);

typedef struct st_trace_row {
  const char *path;
  uint64_t hash;
  int64_t iterations;
  int layers, ranks, experts;
  const char *meta_json; /* may be NULL */
} st_trace_row;

typedef struct st_run_row {
  const char *kind;        /* "sim" or "gpu" */
  const char *policy;      /* canonical spec */
  const char *cluster;     /* preset or file name */
  const char *cluster_json;/* full cluster description */
  const char *engine;      /* "analytic", "des", backend name for gpu */
  const char *params_json; /* model shape, iterations range, ... */
  int gpus;
  uint64_t seed;
  const char *rng;         /* generator name, e.g. "mt19937" */
  const char *code_version;
  double started;          /* unix seconds */
  double finished;
  const char *status;      /* "complete" */
  const char *config_key;  /* identity of the configuration, for sweeps */
} st_run_row;

typedef struct st_iter_row {
  int64_t iteration;
  double time_ms;
  double compute_ms, alltoall_ms, allreduce_ms, migration_ms, other_ms;
  double balance;          /* max/mean GPU load after routing, worst layer */
  int64_t bytes_alltoall;
  int64_t bytes_migrated;
  int64_t tokens_dropped;
  int64_t tokens_total;
} st_iter_row;

/* A run being written: begin (opens the transaction), add rows, commit.
 * st_run_abort (or closing the db) rolls everything back. */
typedef struct st_run st_run;
int st_run_begin(st_db *db, const st_trace_row *trace, const st_run_row *run,
                 st_run **out);
int st_run_iteration(st_run *r, const st_iter_row *row);
int st_run_plan(st_run *r, int64_t iteration, int layer, int nmoves,
                int64_t bytes, const char *moves_json);
/* Per-GPU totals over the run (busy = computing or communicating). */
int st_run_gpu(st_run *r, int gpu, double busy_ms, double idle_ms);
int st_run_commit(st_run *r, int64_t *run_id); /* frees r */
void st_run_abort(st_run *r);                  /* frees r; accepts NULL */

/* Whether a complete run with this config_key exists (sweeps resume). */
int st_run_exists(st_db *db, const char *config_key, int *exists);

/* What st_run_begin does with a complete run (status "complete", non-empty
 * config_key) when a complete run of the same config_key is already stored;
 * the check and the insert are in one IMMEDIATE transaction, and a unique
 * index backs it, so no two complete runs ever share a key:
 *   ST_DUP_SUPERSEDE (default): the stored run's status becomes
 *     "superseded" and the new run is the complete one (the latest wins, as
 *     `flexmoe report` always counted: `sim --db` run twice);
 *   ST_DUP_KEEP: nothing is written and st_run_begin returns ST_EEXISTS
 *     (sweeps: another sweep stored the point while this one computed it).
 * Per connection. */
enum { ST_DUP_SUPERSEDE = 0, ST_DUP_KEEP = 1 };
int st_on_duplicate(st_db *db, int what);

/* What st_open did that the user should hear about (a sentence naming the
 * file), "" if nothing: migrating to schema 3 marks runs stored twice under
 * one configuration as superseded, and says how many. */
const char *st_notice(const st_db *db);

/* ---- Additions (store authors): traces, profiles, validations, queries ---- */

/* How long a write waits for another process's write lock before
 * ST_EBUSY (default 30000 ms). */
int st_busy_timeout(st_db *db, int ms);

/* Schema version of an open database (ST_SCHEMA_VERSION after migrations). */
int st_schema_version(const st_db *db);

/* The SQL of migration step `version` (1..ST_SCHEMA_VERSION), for tests and
 * tooling that need an older schema; NULL if there is no such step. */
const char *st_migration_sql(int version);

/* Finds or inserts a trace (identity: path + content hash), in its own
 * transaction. Not allowed while a run is being written (ST_EBUSY). */
int st_trace_put(st_db *db, const st_trace_row *trace, int64_t *trace_id);
/* Per-(iteration, layer, expert) token slots summed over ranks,
 * loads[(i * layers + l) * experts + e] for iterations [it_begin,
 * it_begin + iterations). Written once per trace in one transaction: if the
 * trace already has loads, nothing changes and *written (may be NULL) is 0. */
int st_trace_loads_put(st_db *db, int64_t trace_id, int64_t it_begin,
                       int64_t iterations, int layers, int experts,
                       const int64_t *loads, int *written);

/* Per-layer detail of one iteration of a run (optional; for notebooks). */
int st_run_layer(st_run *r, int64_t iteration, int layer, double balance,
                 double time_ms);

/* Compute profiles as JSON text by name; put replaces. get: *json is
 * malloc'd (caller frees); ST_ENOTFOUND if there is none by that name. */
int st_profile_put(st_db *db, const char *name, const char *json);
int st_profile_get(st_db *db, const char *name, char **json);

/* Predicted (sim) vs measured (gpu) run: relative error per phase,
 * (predicted - measured) / measured; NAN where a phase was not measured. */
typedef struct st_validation_row {
  int64_t predicted_run;
  int64_t measured_run;
  double err_time, err_compute, err_alltoall, err_allreduce, err_migration,
      err_other;
  const char *detail_json; /* may be NULL */
} st_validation_row;
int st_validation_add(st_db *db, const st_validation_row *v, int64_t *id);

/* One stored run with its per-iteration means (for report and tests). */
typedef struct st_run_summary {
  int64_t id;
  char kind[8];
  char policy[1024];    /* canonical spec: holds any (PL_SPEC_MAX + 1 <= 1024) */
  char cluster[128];
  char engine[32];
  char trace[512];      /* trace path, "" if none */
  char trace_hash[17];  /* 16 hex digits, "" if none */
  char status[16];
  char config_key[2048]; /* a gpu run's key carries the whole spec */
  int gpus;
  uint64_t seed;
  double started, finished;
  int64_t iterations;   /* number of iteration rows */
  double mean_ms, compute_ms, alltoall_ms, allreduce_ms, migration_ms,
      other_ms;         /* means over the iteration rows */
  double balance_mean;
  int64_t bytes_alltoall, bytes_migrated, tokens_dropped, tokens_total; /* sums */
  int64_t it_first, it_last; /* iteration range of the rows (0, -1 if none) */
  /* Appended: st_effective_ms(mean_ms, tokens_dropped, tokens_total), from
   * the stored iterations (no column of its own: every schema version
   * already has both token columns). */
  double effective_ms;
  /* Appended: what identifies the run's configuration beside its policy,
   * trace, engine, seed and size, so that runs of different configurations
   * are never compared (run/fm_report.h). params_json is the run's as
   * stored ("" if none: model shape, iteration range, profile, ...);
   * cluster_hash is 16 hex digits of the cluster's description without its
   * size (nodes, gpus_per_node), "" if the run has no cluster;
   * gpus_per_node is the description's (0 if it has none). */
  char params_json[1024];
  char cluster_hash[17];
  int gpus_per_node;
} st_run_summary;

/* Time per iteration of useful work: mean_ms / (1 - share), share =
 * tokens_dropped / tokens_total (token slots summed over a run's
 * iterations). A policy that drops a share s of the slots needs 1 / (1 - s)
 * iterations to process what a dropless one does in one, so this prices
 * dropping as lost throughput only (not its effect on model quality).
 * Returns mean_ms when nothing is dropped or tokens_total <= 0 (no count
 * recorded), and +INFINITY when every slot is dropped (tokens_dropped >=
 * tokens_total > 0): no useful work at any speed. Faces print that as "inf"
 * in tables and null in JSON. The one definition that sim, sweep (through
 * the database), report and the notebooks' helper share. */
double st_effective_ms(double mean_ms, int64_t tokens_dropped,
                       int64_t tokens_total);

/* Complete runs (status "complete"), of `kind` unless NULL, ordered by id.
 * *rows is malloc'd (caller frees; NULL when *n is 0). */
int st_runs_list(st_db *db, const char *kind, st_run_summary **rows,
                 size_t *n);
/* A run's iteration rows in iteration order; *rows malloc'd, caller frees. */
int st_run_iterations(st_db *db, int64_t run_id, st_iter_row **rows,
                      size_t *n);
/* Number of rows of the validations table. */
int st_validations_count(st_db *db, int64_t *n);
/* The validations table by id (for the Python package's results): each
 * row's errors NAN where not measured, detail_json malloc'd or NULL. *rows
 * malloc'd (NULL when *n is 0); release with st_validations_free. */
typedef struct st_validation_entry {
  int64_t id;
  st_validation_row v;
} st_validation_entry;
int st_validations_list(st_db *db, st_validation_entry **rows, size_t *n);
void st_validations_free(st_validation_entry *rows, size_t n);

/* The traces table by id (for the Python package's trace_loads): path and
 * content hash (16 hex digits). *rows malloc'd (NULL when *n is 0). */
typedef struct st_trace_entry {
  int64_t id;
  char path[512];
  char hash[17];
} st_trace_entry;
int st_traces_list(st_db *db, st_trace_entry **rows, size_t *n);
/* The trace_loads table (token slots per iteration, layer and expert,
 * summed over ranks) ordered by trace id, iteration, layer, expert; none in
 * a database older than schema 2. *rows malloc'd (NULL when *n is 0). */
typedef struct st_trace_load {
  int64_t trace_id, iteration;
  int layer, expert;
  int64_t tokens;
} st_trace_load;
int st_trace_loads_list(st_db *db, st_trace_load **rows, size_t *n);

/* The one encoding of a plan's moves in the plans table (docs/results.md):
 * [[expert,from,to,"k"],...] with k "r" replicate, "d" drop (to -1), "m"
 * migrate, no spaces; every run kind (sim, gpu) writes its plans through
 * st_run_plan_moves, so equal plans are equal bytes. Returns a malloc'd
 * string ("[]" for none), NULL when out of memory. */
char *st_plan_moves_json(const pl_move *moves, int nmoves);
/* Writes plan (iteration, layer): its move count, the sum of the moves'
 * bytes and st_plan_moves_json of them (NULL moves_json with keep_moves
 * 0: count and bytes only, as a sweep without --plan-moves stores). */
int st_run_plan_moves(st_run *r, int64_t iteration, int layer, const pl_move *moves,
                      int nmoves, int keep_moves);

#ifdef __cplusplus
}
#endif
#endif
