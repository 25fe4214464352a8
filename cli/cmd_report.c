/*
 * cmd_report.c - flexmoe report: the policy comparison stored in a results
 * database, per configuration (kind, trace, cluster, engine, iterations,
 * seed, model shape and every other stored parameter) and cluster size.
 *
 * The comparison (which runs count, rows, speedup, oracle gap) is
 * run/fm_report.h's, shared with the Python package; this file prints it.
 * The database is opened read-only and never changed.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_keys.h"
#include "run/fm_report.h"
#include "store/st_store.h"

#define CMD "report"

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* The comparison as text, one block per configuration family. */
static const cli_col table_cols[] = {
    CLI_COL("gpus", 5, "%s"),
    {.head = "policy", .width = -22, .fmt = "%s", .sep = "  "},
    CLI_COL("runs", 4, "%lld"),
    CLI_COL("iters", 6, "%lld"),
    CLI_COL("mean_ms", 10, "%.3f"),
    CLI_COL("eff_ms", 10, "%.3f"), /* "inf" when all are dropped */
    {.head = "speedup", .width = 8, .fmt = "%.2fx", .nan = "-"},
    {.head = "vs_oracle", .width = 9, .fmt = "%+.1f%%", .nan = "-"},
    CLI_COL("compute", 8, "%.3f"),
    CLI_COL("a2a", 8, "%.3f"),
    CLI_COL("allreduce", 9, "%.3f"),
    CLI_COL("migr", 7, "%.3f"),
    CLI_COL("other", 7, "%.3f"),
    CLI_COL("balance", 7, "%.2f"),
    CLI_COL("dropped", 7, "%.1f%%"),
    CLI_END_COL};

static void print_table(const char *db, const fm_report *rep) {
  const fm_report_row *rows = rep->rows;
  printf("%s: %zu complete run%s\n", db, rep->nruns, rep->nruns == 1 ? "" : "s");
  for (size_t i = 0; i < rep->nrows; i++) {
    const fm_report_row *r = &rows[i];
    if (i == 0 || r->family != rows[i - 1].family) {
      printf("\n%s runs, %s\n", r->first->kind, r->config);
      cli_table_head(table_cols, CLI_FMT_TABLE);
    }
    char name[sizeof r->first->policy], gpus[32];
    fm_report_short_name(rep, i, name, sizeof(name));
    fm_report_gpus_label(rep, i, gpus, sizeof(gpus));
    const cli_cell row[] = {
        CLI_S(gpus), CLI_S(name), CLI_I(r->runs), CLI_I(r->iterations), CLI_F(r->mean_ms),
        CLI_F(r->effective_ms), CLI_F(r->speedup), CLI_F(100 * r->oracle_gap),
        CLI_F(r->compute_ms), CLI_F(r->alltoall_ms), CLI_F(r->allreduce_ms),
        CLI_F(r->migration_ms), CLI_F(r->other_ms), CLI_F(r->balance),
        CLI_F(r->total_tokens > 0 ? 100 * r->dropped_tokens / r->total_tokens : 0.0)};
    cli_table_row(table_cols, row, CLI_FMT_TABLE);
  }
  printf("\n(times: mean ms per iteration; eff_ms = mean_ms / (1 - dropped), inf "
         "if all are dropped;\n speedup = static / policy and vs_oracle = policy / "
         "oracle - 1, both in eff_ms;\n vs_oracle is - for a policy that drops "
         "tokens (the oracle is dropless; it makes no per-iteration\n copies, so "
         "fastermoe's shadows and flexmoe's temporaries can go below it);\n dropped = share of token "
         "slots dropped (capacity); policies by name and the\n parameters that "
         "differ, in full: --format csv|json or --runs)\n");
}

/* The comparison as CSV: every row with its configuration, in full. */
#define CSV_COL(name_, fmt_) {.name = (name_), .fmt = (fmt_), .in = CLI_IN_CSV}
static const cli_col csv_cols[] = {
    CSV_COL("kind", "%s"), CSV_COL("trace", "%s"), CSV_COL("cluster", "%s"),
    CSV_COL("engine", "%s"), CSV_COL("first_iteration", "%lld"),
    CSV_COL("end_iteration", "%lld"), CSV_COL("gpus", "%lld"), CSV_COL("policy", "%s"),
    CSV_COL("runs", "%lld"), CSV_COL("iterations", "%lld"),
    CSV_COL("mean_iteration_ms", "%.6f"), CSV_COL("speedup_vs_static", "%.6f"),
    CSV_COL("oracle_gap", "%.6f"), CSV_COL("compute_ms", "%.6f"),
    CSV_COL("alltoall_ms", "%.6f"), CSV_COL("allreduce_ms", "%.6f"),
    CSV_COL("migration_ms", "%.6f"), CSV_COL("other_ms", "%.6f"),
    CSV_COL("balance_mean", "%.6f"), CSV_COL("migrated_bytes", "%.0f"),
    CSV_COL("dropped_tokens", "%.0f"),
    CSV_COL("effective_iteration_ms", "%.6f"), /* "inf" when every slot is dropped */
    CSV_COL("seed", "%lld"), CSV_COL("gpus_per_node", "%lld"), CSV_COL("group", "%lld"),
    CSV_COL("config", "%s"), CLI_END_COL};

static void print_csv(const fm_report_row *rows, size_t nr) {
  cli_table_head(csv_cols, CLI_FMT_CSV);
  for (size_t i = 0; i < nr; i++) {
    const fm_report_row *r = &rows[i];
    const st_run_summary *f = r->first;
    const cli_cell row[] = {
        CLI_S(f->kind), CLI_S(f->trace), CLI_S(f->cluster), CLI_S(f->engine),
        CLI_I(f->it_first), CLI_I(f->it_last + 1), CLI_I(f->gpus), CLI_S(f->policy),
        CLI_I(r->runs), CLI_I(r->iterations), CLI_F(r->mean_ms), CLI_F(r->speedup),
        CLI_F(r->oracle_gap), CLI_F(r->compute_ms), CLI_F(r->alltoall_ms),
        CLI_F(r->allreduce_ms), CLI_F(r->migration_ms), CLI_F(r->other_ms), CLI_F(r->balance),
        CLI_F(r->migrated_bytes), CLI_F(r->dropped_tokens), CLI_F(r->effective_ms),
        CLI_I(f->seed), CLI_I(f->gpus_per_node), CLI_I(r->group), CLI_S(r->config)};
    cli_table_row(csv_cols, row, CLI_FMT_CSV);
  }
}

/* --runs: one line (or object) per stored run, in id order; the trace in
 * full in CSV and JSON, its base name last in the table. */
static const cli_col runs_cols[] = {
    CLI_COL("id", 6, "%lld"), CLI_COL("kind", -4, "%s"), CLI_COL("policy", -22, "%s"),
    {.head = "cluster", .width = -12, .fmt = "%s", .key = CLI_KEY(CLUSTER)},
    {.head = "engine", .width = -9, .fmt = "%s", .key = CLI_KEY(ENGINE)},
    {.head = "gpus", .width = 5, .fmt = "%lld", .key = CLI_KEY(GPUS)},
    {.fmt = "%s", .key = CLI_KEY(TRACE), .in = CLI_IN_CSV | CLI_IN_JSON},
    {.fmt = "%lld", .key = CLI_KEY(SEED), .in = CLI_IN_CSV | CLI_IN_JSON},
    {.head = "iters", .width = 6, .fmt = "%lld", .name = "iterations"},
    {.head = "mean_ms", .width = 10, .fmt = "%.3f", .csv = "%.6f", .name = "mean_iteration_ms"},
    {.head = "eff_ms", .width = 10, .fmt = "%.3f", .csv = "%.6f", .name = "effective_iteration_ms"},
    {.head = "trace", .fmt = "%s", .sep = "  ", .in = CLI_IN_TEXT},
    {.fmt = "%s", .name = "config_key", .in = CLI_IN_JSON}, CLI_END_COL};

static int print_runs(const char *db, const st_run_summary *runs, size_t n, int fmt) {
  json_t *arr = json_array();
  int bad = !arr;
  if (fmt != CLI_FMT_JSON)
    cli_table_head(runs_cols, fmt);
  for (size_t i = 0; i < n && !bad; i++) {
    const st_run_summary *r = &runs[i];
    const cli_cell row[] = {
        CLI_I(r->id), CLI_S(r->kind), CLI_S(r->policy), CLI_S(r->cluster), CLI_S(r->engine),
        CLI_I(r->gpus), CLI_S(r->trace), CLI_I(r->seed), CLI_I(r->iterations),
        CLI_F(r->mean_ms), CLI_F(r->effective_ms),
        CLI_S(r->trace[0] ? base_name(r->trace) : "-"), CLI_S(r->config_key)};
    if (fmt == CLI_FMT_JSON)
      bad |= json_array_append_new(arr, cli_table_object(runs_cols, row));
    else
      cli_table_row(runs_cols, row, fmt);
  }
  if (fmt != CLI_FMT_JSON) {
    json_decref(arr);
    return CLI_OK;
  }
  json_t *doc = bad ? NULL : json_pack("{s:o, s:o}", "database", fm_json_string(db), "runs", arr);
  if (bad)
    json_decref(arr);
  return cli_json_print(CMD, doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
}

/* --runs: every complete run (of kind unless NULL), in id order. */
static int report_runs(st_db *db, const char *dbpath, const char *kind, int fmt) {
  st_run_summary *runs = NULL;
  size_t n = 0;
  if (st_runs_list(db, kind, &runs, &n) != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s: cannot read runs: %s", dbpath, st_errmsg(db));
  int rc = print_runs(dbpath, runs, n, fmt);
  free(runs);
  return rc;
}

/* The comparison (run/fm_report.h) in format fmt. */
static int report_rows(st_db *db, const char *dbpath, const char *kind, int fmt) {
  char msg[1024];
  fm_report rep;
  if (fm_report_build(db, dbpath, kind, &rep, msg, sizeof(msg)) != FM_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  int rc = CLI_OK;
  if (fmt == CLI_FMT_JSON)
    rc = cli_json_print(CMD, fm_report_doc(dbpath, &rep, 0),
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
  else if (fmt == CLI_FMT_CSV)
    print_csv(rep.rows, rep.nrows);
  else if (rep.nrows == 0)
    printf("%s: no complete runs%s%s\n", dbpath, kind ? " of kind " : "", kind ? kind : "");
  else
    print_table(dbpath, &rep);
  char note[512];
  fm_report_beaten_note(&rep, note, sizeof(note));
  if (note[0])
    fprintf(stderr, "flexmoe report: note: %s\n", note);
  fm_report_fini(&rep);
  return rc;
}

/* --kind: sim or gpu (cli_opt CLI_O_FN); CLI_OK or CLI_EUSAGE. */
static int kind_opt(const char *cmd, const char *arg, void *to) {
  if (strcmp(arg, "sim") != 0 && strcmp(arg, "gpu") != 0)
    return cli_fail(CLI_EUSAGE, cmd, "--kind: '%s' is not one of sim gpu", arg);
  *(const char **)to = arg;
  return CLI_OK;
}

int cmd_report(int argc, char **argv) {
  const char *dbpath = "flexmoe.db", *kind = NULL;
  int fmt = CLI_FMT_TABLE, list_runs = 0;
  const cli_opt opts[] = {
      {.kind = CLI_O_STR, .to = &dbpath, .key = FM_KEY_DB,
       .help = "results database (default flexmoe.db)"},
      {.flag = "--format", .kind = CLI_O_FORMAT, .to = &fmt, .key = -1,
       .lo = CLI_FMT_TABLE | CLI_FMT_CSV | CLI_FMT_JSON, .arg = "F",
       .help = "table (default), csv or json"},
      {.flag = "--kind", .kind = CLI_O_FN, .to = &kind, .key = -1, .arg = "K", .fn = kind_opt,
       .help = "only simulated (sim) or measured (gpu) runs"},
      {.flag = "--runs", .kind = CLI_O_BOOL, .to = &list_runs, .key = -1,
       .help = "list every complete run instead of the comparison"},
      {.kind = CLI_O_END}};
  int c = cli_parse_flags(CMD, argc, argv, opts);
  if (c)
    return c == CLI_HELP ? CLI_OK : c;

  char msg[1024];
  st_db *db = NULL;
  if (st_open(&db, dbpath, ST_READ, msg, sizeof(msg)) != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  int rc = list_runs ? report_runs(db, dbpath, kind, fmt) : report_rows(db, dbpath, kind, fmt);
  st_close(db);
  return rc;
}
