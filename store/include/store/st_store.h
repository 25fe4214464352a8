/*
 * st_store.h - the SQLite results store.
 *
 * One file (default flexmoe.db), WAL mode, schema version in
 * PRAGMA user_version (migrations run on open), prepared statements with
 * bound parameters. A run and all its rows are written in one transaction:
 * it is visible complete or not at all. Opening a file that is not a flexmoe
 * database (or is newer than this build understands) fails without touching
 * it; so does a read-only file when writing is asked for.
 */
#ifndef FLEXMOE_ST_STORE_H
#define FLEXMOE_ST_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ST_SCHEMA_VERSION 1

#define ST_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(EOPEN, -3, "cannot open database")                                         \
  X(ENOTDB, -4, "not a flexmoe database")                                      \
  X(EVERSION, -5, "database schema is newer than this flexmoe")                \
  X(EREADONLY, -6, "database is read-only")                                    \
  X(ESQL, -7, "database error")                                                \
  X(EBUSY, -8, "database is locked")                                           \
  X(ENOTFOUND, -9, "no such row")

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
/* Last SQLite message, for diagnostics. */
const char *st_errmsg(const st_db *db);

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

#ifdef __cplusplus
}
#endif
#endif
