/*
 * fm_text.h - the results of the run library as text: the tables and lines
 * every `flexmoe` command prints on stdout, as formatters any face can call
 * with its own stream (the CLI passes stdout; a test or a notebook may pass
 * a file or an open_memstream). Each writes on out and nothing else: no
 * message, no exit, no flush; a write error shows in ferror(out). The
 * layouts are the commands' since their release (tests compare them byte
 * for byte). The tables go through run/fm_table.h; the JSON documents of
 * the same results are the modules' own (fm_*_doc), apart from the two
 * built from a table here (fm_net_flows_doc, fm_report_runs_doc).
 * Owned by the run library authors (run/fm_text.c).
 */
#ifndef FLEXMOE_RUN_FM_TEXT_H
#define FLEXMOE_RUN_FM_TEXT_H

#include <stddef.h>
#include <stdio.h>

#include "run/fm_cluster.h"
#include "run/fm_place.h"
#include "run/fm_profile.h"
#include "run/fm_replay.h"
#include "run/fm_report.h"
#include "run/fm_sim.h"
#include "run/fm_sim_json.h"
#include "run/fm_sweep.h"
#include "run/fm_trace.h"
#include "run/fm_validate.h"

/* trace info / stats: the analysed trace's header (path, shape, hash,
 * model metadata, slots); then info's brief table per layer (skew and
 * change), or stats' tables per layer (skew, change at three lags, hot-set
 * persistence, ranks; then the lag-1 change's distribution). */
void fm_text_trace_header(FILE *out, const fm_trace_analysis *a);
void fm_text_trace_info(FILE *out, const tr_stats *s);
void fm_text_trace_stats(FILE *out, const tr_stats *s);
/* trace fit: the fit f (written to path) as target vs fitted per layer,
 * then the model's parameters per layer. */
void fm_text_trace_fit(FILE *out, const tr_fit *f, const char *path);

/* trace gen, rescale, import: the one line of what was written
 * ("wrote OUT: shape, ..."): a generated trace (g as fm_trace_gen_write
 * left it), a rescaled one (shape w) and an imported one (shape o). */
void fm_text_trace_gen(FILE *out, const fm_trace_gen_config *cfg, const fm_trace_gen *g);
void fm_text_trace_rescale(FILE *out, const fm_trace_rescale_config *cfg, const fm_trace_shape *w);
void fm_text_trace_import(FILE *out, const char *path, const fm_trace_shape *o);

/* sim: the comparison cmp of the trace on engine (a heading naming db
 * when it is not NULL), one line per policy (speedup over the static run
 * in effective time) and the legend. */
void fm_text_sim(FILE *out, const fm_sim_comparison *cmp, const char *trace, const char *engine,
                 const char *db);

/* place: the result's heading, per layer its balance, drops and moves,
 * each GPU's load and experts (* replicated), the moves and temporaries. */
void fm_text_place(FILE *out, const fm_place_result *r);

/* run: one replay's table row (and its --check line), the header first
 * when *header is 0 (then counted up). */
void fm_text_replay_row(FILE *out, const fm_replay_output *o, int check_ok, int *header);

/* validate: per policy predicted vs measured iteration time, then per
 * phase, then the error statistics and the ranking verdict. */
void fm_text_validate(FILE *out, const fm_validate_result *res);

/* calibrate: the FFN and exchange measurements of c as tables, the fitted
 * numbers, and the files written (a->out_path, when set). */
void fm_text_calibration(FILE *out, const fm_calibrate_config *a, const fm_calibration *c);

/* clusters: cl[0..count) as a table, one line each. */
void fm_text_clusters(FILE *out, const sim_cluster *cl, int count);

/* net: the cluster line, one row per flow, the makespan; as JSON
 * {"makespan_us", "flows": [{"src", "dst", "bytes", "finish_us"}]} (the
 * caller's; NULL when out of memory). */
void fm_text_flows(FILE *out, const fm_net_result *r);
struct json_t *fm_net_flows_doc(const fm_net_result *r);

/* policies: every registered policy, its summary and its parameters with
 * defaults and help. */
void fm_text_policies(FILE *out);

/* report: the comparison rep of database db as text (one block per
 * configuration family, then the legend) or as CSV (every row with its
 * configuration in full). */
void fm_text_report(FILE *out, const char *db, const fm_report *rep);
void fm_text_report_csv(FILE *out, const fm_report *rep);
/* report --runs: runs[0..n) one line each as text (csv 0) or CSV (1); as
 * JSON {"database": db, "runs": [...]} (the caller's; NULL when out of
 * memory). */
void fm_text_report_runs(FILE *out, const st_run_summary *runs, size_t n, int csv);
struct json_t *fm_report_runs_doc(const char *db, const st_run_summary *runs, size_t n);

/* sweep: the summary of a finished sweep of configuration c (its grid,
 * what was computed, found, failed and lost, the wall time). */
void fm_text_sweep(FILE *out, const fm_sweep_config *c, const fm_sweep_stats *s);
/* The progress bar of a running sweep as one line that redraws itself
 * ("\r[===>   ] N/T points  W s  eta E s"; a newline once all are done). */
void fm_text_sweep_bar(FILE *out, const fm_sweep_stats *s);
/* The points the sweep lost, one line each ("  LABEL", "(its worker
 * died)"): the first 64, then how many more. */
void fm_text_sweep_lost(FILE *out, const fm_sweep *sw);
/* What an interrupted sweep says: how many points it stored in db, how
 * many were there before, and the command resume that continues it; into
 * buf (cut at len - 1 bytes, not NUL-terminated). Async-signal-safe (no
 * stdio, no allocation): a signal handler calls it. Returns the bytes
 * written. */
size_t fm_text_sweep_interrupted(char *buf, size_t len, long stored, long before, const char *db,
                                 const char *resume);

/* A command line as a shell reads it back, into buf (NUL-terminated, cut
 * at len): prefix, then each of argv[0..argc) after a space, words with
 * characters other than [A-Za-z0-9_./:,=+-] in single quotes. */
void fm_text_shell_words(const char *prefix, int argc, char **argv, char *buf, size_t len);

#endif
