/*
 * cmd_validate.c - flexmoe validate: flags into an fm_validate_config, one
 * fm_validate call (run/fm_validate.c: the replay, the prediction, the
 * comparison and the storing), and the result as a table or JSON.
 *
 * Predictor: the simulator (analytic or des) with the calibrated profile,
 * or with --engine cost the placement library's cost model alone (the
 * numbers the planners reason with). fm_validate.h defines the errors and
 * the statistics printed.
 */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_keys.h"
#include "run/fm_validate.h"

/* The command line of validate. */
typedef struct vopts {
  fm_validate_config cfg;
  const char *policies[FM_VALIDATE_MAX_POLICIES];
  int fmt, no_db;
} vopts;

/* Parses argv into o (the shared replay rows, then validate's own); CLI_OK,
 * CLI_HELP after --help, or an exit code after one message. */
static int parse(vopts *o, int argc, char **argv) {
  *o = (vopts){.cfg = FM_VALIDATE_CONFIG_INIT, .fmt = CLI_FMT_TABLE};
  o->cfg.replay.backend = NULL;
  o->cfg.policies = o->policies;
  const cli_opt own[] = {
      {.kind = CLI_O_MULTI, .to = o->policies, .to2 = &o->cfg.npolicies,
       .key = FM_KEY_VALIDATE_POLICY, .hi = FM_VALIDATE_MAX_POLICIES},
      {.kind = CLI_O_STR, .to = &o->cfg.profile_path, .key = FM_KEY_VALIDATE_PROFILE},
      {.kind = CLI_O_CHOICE, .to = &o->cfg.engine, .key = FM_KEY_VALIDATE_ENGINE},
      {.kind = CLI_O_STR, .to = &o->cfg.db_path, .key = FM_KEY_VALIDATE_DB},
      {.flag = "--no-db", .kind = CLI_O_BOOL, .to = &o->no_db, .key = -1,
       .help = "store nothing (the default; as --db '')"},
      CLI_FORMAT_ROW(&o->fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_replay("validate", argc, argv, &o->cfg.replay, own);
  if (rc) return rc;
  if (o->no_db || (o->cfg.db_path && !o->cfg.db_path[0])) o->cfg.db_path = NULL;
  const fm_replay_config *r = &o->cfg.replay;
  if (!r->backend) return cli_fail(CLI_EUSAGE, "validate", "--backend is required (cpu, cuda or nccl)");
  if (!r->trace_path) return cli_fail(CLI_EUSAGE, "validate", "--trace is required");
  return cli_replay_check("validate", r);
}

int cmd_validate(int argc, char **argv) {
  vopts o;
  int rc = parse(&o, argc, argv);
  if (rc) return rc == CLI_HELP ? CLI_OK : rc;
  fm_validate_result res;
  char em[1024] = "";
  if ((rc = fm_validate(&o.cfg, &res, em, sizeof em))) return cli_fail(rc, "validate", "%s", em);
  if (res.warning[0]) fprintf(stderr, "flexmoe validate: warning: %s\n", res.warning);
  if (res.owner) {
    if (o.fmt == CLI_FMT_JSON)
      rc = cli_json_print("validate", fm_validate_doc(&res), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    else fm_text_validate(stdout, &res);
  }
  fm_validate_result_fini(&res);
  return rc;
}
