/*
 * cmd_run.c - flexmoe run: replay a trace with a placement policy on a
 * runtime backend (real expert FFNs, real exchange, real migrations) and
 * record the measured iterations as runs of kind "gpu". The replay, its
 * record, check verdict and JSON are run/fm_replay.h's; this file loops over
 * the policies and prints.
 */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_keys.h"
#include "run/fm_replay.h"

/* What flexmoe run's flags say: the replay configuration (one policy at a
 * time goes into cfg.policy), the policies, the output and the database. */
typedef struct {
  fm_replay_config cfg;
  const char *policies[64];
  int npol, fmt, no_db;
  const char *db_path, *profile_path;
} run_args;

/* argv into *a (the shared replay rows, then run's own); CLI_OK, CLI_HELP
 * after --help, or CLI_EUSAGE (or the trace check's code) with one message. */
static int run_parse(int argc, char **argv, run_args *a) {
  const cli_opt own[] = {
      {.kind = CLI_O_MULTI, .to = a->policies, .to2 = &a->npol, .key = FM_KEY_RUN_POLICY,
       .hi = 64},
      {.kind = CLI_O_STR, .to = &a->profile_path, .key = FM_KEY_RUN_PROFILE},
      {.kind = CLI_O_BOOL, .to = &a->cfg.check, .key = FM_KEY_RUN_CHECK},
      {.kind = CLI_O_STR, .to = &a->db_path, .key = FM_KEY_RUN_DB},
      {.flag = "--no-db", .kind = CLI_O_BOOL, .to = &a->no_db, .key = -1,
       .help = "record nothing (the default; as --db '')"},
      CLI_FORMAT_ROW(&a->fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_replay("run", argc, argv, &a->cfg, own);
  if (rc) return rc;
  if (!a->cfg.trace_path) return cli_fail(CLI_EUSAGE, "run", "--trace is required");
  if (a->npol == 0) return cli_fail(CLI_EUSAGE, "run", "--policy is required");
  if (a->no_db || (a->db_path && !a->db_path[0]))
    a->db_path = NULL;
  return cli_replay_check("run", &a->cfg);
}

/* The calibrated profile's exchange numbers into a->cfg when --profile was
 * given, then the database opened when --db was (*db, the caller's to
 * st_close; NULL without --db); CLI_OK or CLI_EFAIL with one message. */
static int run_open(run_args *a, st_db **db) {
  char em[1024] = "";
  if (a->profile_path && fm_replay_use_profile(&a->cfg, a->profile_path, em, sizeof em))
    return cli_fail(CLI_EFAIL, "run", "%s", em);
  *db = NULL;
  if (a->db_path && st_open(db, a->db_path, ST_WRITE, em, sizeof em))
    return cli_fail(CLI_EFAIL, "run", "%s", em);
  return CLI_OK;
}

/* flexmoe run ARGS: replays the trace once per --policy, records each run
 * (owner rank only) when --db is given and prints a table or one JSON
 * document; CLI_OK, CLI_EUSAGE for a bad command line, CLI_EFAIL (one
 * message printed) for a replay, database or --check failure. */
int cmd_run(int argc, char **argv) {
  run_args a = {.cfg = FM_REPLAY_CONFIG_INIT, .fmt = CLI_FMT_TABLE};
  int rc = run_parse(argc, argv, &a);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  st_db *db = NULL;
  if ((rc = run_open(&a, &db)))
    return rc;
  fm_replay_config cfg = a.cfg;
  char em[1024] = "";
  json_t *runs = json_array();
  int json_bad = !runs; /* a value that could not be built fails the JSON output */
  int out = CLI_OK, owner = 1;
  int header = 0;
  for (int p = 0; p < a.npol && out == CLI_OK; p++) {
    cfg.policy = a.policies[p];
    fm_replay_output *o = NULL;
    if ((rc = fm_replay_compute(&cfg, &o, em, sizeof em))) {
      out = cli_fail(rc, "run", "%s", em);
      break;
    }
    owner = o->owner;
    if (p == 0 && o->warning[0]) fprintf(stderr, "flexmoe run: warning: %s\n", o->warning);
    int64_t run_id = 0;
    if (db && owner && (rc = fm_replay_record(db, o, &run_id, em, sizeof em))) {
      out = cli_fail(rc, "run", "%s: %s", a.db_path, em);
      fm_replay_output_free(o);
      break;
    }
    int check_ok = fm_replay_check_ok(&cfg, o);
    if (a.fmt == CLI_FMT_TABLE && owner)
      fm_text_replay_row(stdout, o, check_ok, &header);
    json_bad |= json_array_append_new(runs, fm_replay_doc(o, db ? &run_id : NULL, check_ok));
    fm_replay_output_free(o);
    if (!check_ok) out = cli_fail(CLI_EFAIL, "run", "--check: results depend on the placement or tokens were lost (see above)");
  }
  if (out == CLI_OK && a.fmt == CLI_FMT_JSON && owner)
    out = cli_json_print("run", json_bad ? NULL : json_pack("{s:O}", "runs", runs),
                         JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(runs);
  if (db) st_close(db);
  return out;
}
