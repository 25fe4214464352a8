/*
 * fm_api.h - flexmoe for other languages: JSON in, JSON out, one sentence on
 * error (the Python package binds these through cffi; any FFI can).
 *
 * Built into libflexmoe (every library of flexmoe in one shared object,
 * installed with the package and with `meson install`). Strings are UTF-8
 * and NUL-terminated; a result string is malloc'd by the library and
 * released with fm_free. Every call returns FM_OK, FM_EUSAGE (a key of the
 * request is wrong: the sentence names it and its range) or FM_EFAIL (an
 * input or operation failed: the sentence names the file), the CLI's exit
 * codes (run/fm_error.h). On error *result is NULL and errmsg (errlen
 * bytes, 1024 is enough) holds the sentence, without "flexmoe sim: ".
 * Thread-safe across calls that use different databases.
 * Owned by the run library authors (run/fm_api.c).
 */
#ifndef FLEXMOE_RUN_FM_API_H
#define FLEXMOE_RUN_FM_API_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version text of the library, e.g. "0.1.0". */
const char *fm_version(void);

/*
 * `flexmoe sim --format json` as a call. request is a JSON object with the
 * keys (null or absent: the CLI's default):
 *   trace (string, required), cluster (preset or .json file, "dgx-h100"),
 *   nodes, gpus_per_node (1 to 65536; the preset's), policies (array of
 *   specs, or one spec; empty or absent: every registered policy), engine
 *   ("analytic" or "des"), network ("hose" or "exact", des only),
 *   iterations ("A:B", or [A, B] with B null for the end: [A, B) of the
 *   trace), seed (0 to 2^63 - 1, 0), d_model (1 to 2^20), d_ff (1 to 2^22),
 *   top_k (1 to 64), tokens_per_gpu (1 to 2^40), slots (1 to 2^31 - 1),
 *   profile (compute profile .json), threads (1 or 2: same results), db
 *   (results database to record the runs in; absent or null: not recorded,
 *   unlike the CLI, whose default is flexmoe.db).
 * *result: exactly what `flexmoe sim --format json` prints for the same
 * configuration, without the final newline ({"runs": [...]}, run_id keys
 * when recorded).
 */
int fm_simulate_json(const char *request, char **result, char *errmsg, size_t errlen);

/*
 * The results database db_path (read only; a missing file is an error) as
 * {"runs": T, "iterations": T, "validations": T}, each table T =
 * {"columns": [names], "rows": [[values]...]}: runs = the complete runs
 * (st_runs_list: id, kind, policy, cluster, engine, trace, trace_hash,
 * config_key, gpus, seed, started, finished, iterations, mean_ms,
 * compute_ms, alltoall_ms, allreduce_ms, migration_ms, other_ms,
 * balance_mean, bytes_alltoall, bytes_migrated, tokens_dropped,
 * tokens_total, effective_ms, gpus_per_node, params_json), iterations = every iteration row of those
 * runs (run_id first), validations = predicted vs measured runs with their
 * relative errors. Numbers that are not finite are null.
 */
int fm_results_json(const char *db_path, char **result, char *errmsg, size_t errlen);

/*
 * `flexmoe report --format json` as a call: the policy comparison of the
 * results database db_path (read only; a missing file is an error), of
 * complete runs of kind ("sim" or "gpu"; NULL or "": both), run/fm_report.h.
 * *result: {"database", "runs", "rows": [...], "notes": [...]}, each row the
 * keys of the command's rows (its configuration among them: seed,
 * gpus_per_node, params, config, group, family) plus "trace_hash", "name"
 * (the table's short policy name) and "run_ids" (the runs it averages);
 * numbers that are not finite are null.
 */
int fm_report_json(const char *db_path, const char *kind, char **result, char *errmsg,
                   size_t errlen);

/*
 * The per-(iteration, layer, expert) token loads `flexmoe sweep` stores for
 * each trace it runs (table trace_loads, summed over ranks), of db_path
 * (read only) as one table {"columns": [trace, trace_hash, iteration, layer,
 * expert, tokens], "rows": [...]} ordered by trace, iteration, layer,
 * expert; no rows when none are stored.
 */
int fm_trace_loads_json(const char *db_path, char **result, char *errmsg, size_t errlen);

/*
 * The table of configuration keys (run/fm_keys.h) as JSON text: a list of
 * {"name", "flag", "type", "min", "max", "default", "choices", "unit",
 * "scope", "help"}, one per key, in table order; the request keys of
 * fm_simulate_json (scope "sim") and fm_sweep_json ("sweep"). malloc'd:
 * release with fm_free; NULL when out of memory.
 */
char *fm_keys_json(void);

/*
 * The table of commands (run/fm_commands.h) as JSON text: a list of
 * {"name", "summary", "usage", "tail"}, one per command of the CLI ("" is
 * flexmoe itself), in table order. malloc'd: release with fm_free; NULL
 * when out of memory.
 */
char *fm_commands_json(void);

/*
 * `flexmoe sweep` as a call (run/fm_sweep.h): every point of the grid
 * traces x clusters x gpus x seeds x policies simulated and recorded in the
 * results database, points already stored there skipped. request keys
 * (fm_keys_json, scope "sweep"): trace (a path or a list, required), gpus
 * (an integer or a list, required), db (required), cluster (a name or a
 * list), policies, seeds (an integer or a list), gpus_per_node, engine,
 * iterations, d_model, d_ff, top_k, tokens_per_gpu, slots, profile, jobs
 * (worker processes, forked), lock_wait, plan_moves.
 * *result: {"points": T, "summary": {points, unique, computed, stored,
 * elsewhere, failed, lost, workers, wall_s}}, T = {"columns", "rows"} with
 * one row per grid point in grid order: its configuration (trace, cluster,
 * gpus, nodes, gpus_per_node, seed, policy as given), status ("computed",
 * "stored" already, "elsewhere", "duplicate", "failed", "lost"), error (a
 * failed point's sentence, else null) and its stored run's summary (run_id,
 * iterations, mean_ms, effective_ms, compute_ms, ..., balance_mean,
 * bytes_migrated, tokens_dropped, tokens_total; null when not stored).
 * A point that fails does not fail the call: its status says so.
 */
int fm_sweep_json(const char *request, char **result, char *errmsg, size_t errlen);

/* Releases a result string (accepts NULL). */
void fm_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
