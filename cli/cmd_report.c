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
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_keys.h"
#include "run/fm_report.h"
#include "store/st_store.h"

#define CMD "report"

/* --runs: every complete run (of kind unless NULL), in id order. */
static int report_runs(st_db *db, const char *dbpath, const char *kind, int fmt) {
  st_run_summary *runs = NULL;
  size_t n = 0;
  if (st_runs_list(db, kind, &runs, &n) != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s: cannot read runs: %s", dbpath, st_errmsg(db));
  int rc = CLI_OK;
  if (fmt == CLI_FMT_JSON)
    rc = cli_json_print(CMD, fm_report_runs_doc(dbpath, runs, n),
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
  else
    fm_text_report_runs(stdout, runs, n, fmt == CLI_FMT_CSV);
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
    fm_text_report_csv(stdout, &rep);
  else if (rep.nrows == 0)
    printf("%s: no complete runs%s%s\n", dbpath, kind ? " of kind " : "", kind ? kind : "");
  else
    fm_text_report(stdout, dbpath, &rep);
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
