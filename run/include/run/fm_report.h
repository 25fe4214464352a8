/*
 * fm_report.h - the policy comparison of a results database, as `flexmoe
 * report` prints it and the Python package returns it (flexmoe.report).
 *
 * Aggregation rules (docs/results.md):
 *   - only complete runs count; a configuration stored more than once (same
 *     config_key) counts once, its latest run; runs without a config_key
 *     count each;
 *   - runs are compared only inside a group: one configuration but the
 *     policy, i.e. the same kind, trace (path and content), cluster (name,
 *     description and size: gpus, gpus per node), engine, iteration range,
 *     seed and stored parameters (model shape, tokens per GPU, slots,
 *     profile, network, ...: the run's params_json). A family is a group
 *     without its size (the lines of a sweep). Runs of different
 *     configurations can never share a row or a peer;
 *   - a row is (group, policy): its times are the means over its runs (more
 *     than one only for runs stored without a config_key) of each run's
 *     means, its effective time the mean of each run's st_effective_ms (+inf
 *     when a run drops every slot);
 *   - speedup = static's effective time / the row's in the same group (the
 *     first static spec when several exist), oracle gap = the row's / the
 *     oracle's - 1; NAN when the peer was not run, and NAN for a row that
 *     drops token slots (the oracle processes every token: it bounds the
 *     dropless policies only). A dropless row below its oracle (an oracle
 *     with a limited search) keeps its gap and is counted in nbeaten, for
 *     the faces to say so.
 * Rows are ordered by family, size, then policy (static first, the oracle
 * last).
 * Owned by the run library authors (run/fm_report.c).
 */
#ifndef FLEXMOE_RUN_FM_REPORT_H
#define FLEXMOE_RUN_FM_REPORT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/st_store.h"

/* One row of the comparison: its runs are runs[run0, run0 + runs). */
typedef struct fm_report_row {
  const st_run_summary *first; /* group identity and policy */
  size_t run0;
  int runs;
  int64_t iterations;
  double mean_ms, effective_ms, compute_ms, alltoall_ms, allreduce_ms, migration_ms, other_ms,
      balance;
  double migrated_bytes, dropped_tokens, total_tokens;
  double speedup;    /* NAN when there is no static peer */
  double oracle_gap; /* NAN when there is no oracle peer or the row drops */
  int group;         /* index of the row's group (0, 1, ... in row order) */
  int family;        /* index of its family (a group without the size) */
  int drops;         /* whether the row drops token slots */
  /* the family's configuration in words: trace, cluster, engine,
   * iterations, seed, d_model, d_ff, top_k, and the parameters whose values
   * differ between the report's families of its kind */
  char config[768];
} fm_report_row;

typedef struct fm_report {
  st_run_summary *runs; /* the runs that count, sorted by group and policy */
  size_t nruns;
  fm_report_row *rows;
  size_t nrows;
  int nbeaten; /* dropless rows below their group's oracle (see above) */
} fm_report;

/* Reads the complete runs of db (of `kind` unless NULL) and builds the
 * comparison into *out (release with fm_report_fini; zeroed on failure).
 * FM_OK, or FM_EFAIL with one sentence in errmsg naming db_path. */
int fm_report_build(st_db *db, const char *db_path, const char *kind, fm_report *out,
                    char *errmsg, size_t errlen);
void fm_report_fini(fm_report *r);

/* The table's short name of row i's policy into out: its base name plus
 * only the parameters that differ between the specs of that base among the
 * report's rows (canonical specs list every parameter). */
void fm_report_short_name(const fm_report *r, size_t i, char *out, size_t len);

/* The table's size label of row i into out: its GPU count, or NODESxGPN
 * when another group of its family has the same count (two shapes of one
 * size). */
void fm_report_gpus_label(const fm_report *r, size_t i, char *out, size_t len);

/* The sentence the faces print when r->nbeaten > 0 (else ""), into out. */
void fm_report_beaten_note(const fm_report *r, char *out, size_t len);

/* `flexmoe report --format json`'s document: {"database", "runs", "rows",
 * "notes"}; each row carries the group's configuration ("seed",
 * "gpus_per_node", "params": the stored parameters as an object or null,
 * "config": the family in words, "group" and "family" indices) beside its
 * numbers; "notes" is a list of sentences (a dropless row below its
 * oracle). With detail, each row also carries "trace_hash", "name" (the
 * short name) and "run_ids" (its runs). NULL when out of memory. */
json_t *fm_report_doc(const char *db_path, const fm_report *r, int detail);

#endif
