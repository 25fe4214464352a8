/*
 * cmd_calibrate.c - flexmoe calibrate: measure a backend (expert FFN time vs
 * tokens for the model shape, exchange bandwidth between ranks, launch
 * overhead) and store it as a compute profile: in the database (NAME = the
 * simulator's profile JSON, NAME.cluster = the cluster JSON) and/or as
 * files (--out P.json and P.cluster.json). The measuring and the storing
 * are the run library's (run/fm_profile.h fm_calibrate); this file parses
 * the flags and prints the measurements.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_keys.h"
#include "run/fm_profile.h"

/* What flexmoe calibrate's flags say (0 = the backend's default). */
typedef struct {
  fm_calibrate_config cfg;
  int fmt, no_db;
} calib_args;

/* argv into *a (the flag table), then the combinations checked; CLI_OK,
 * CLI_HELP after --help, or CLI_EUSAGE with one message printed. */
static int calib_parse(int argc, char **argv, calib_args *a) {
  const cli_opt opts[] = {
      {.kind = CLI_O_STR, .to = &a->cfg.backend, .key = FM_KEY_CALIBRATE_BACKEND},
      {.kind = CLI_O_INT, .to = &a->cfg.partitions, .key = FM_KEY_CALIBRATE_PARTITIONS},
      {.kind = CLI_O_INT, .to = &a->cfg.ranks, .key = FM_KEY_CALIBRATE_RANKS},
      {.kind = CLI_O_INT, .to = &a->cfg.device, .key = FM_KEY_CALIBRATE_DEVICE},
      {.kind = CLI_O_INT, .to = &a->cfg.d_model, .key = FM_KEY_CALIBRATE_D_MODEL},
      {.kind = CLI_O_INT, .to = &a->cfg.d_ff, .key = FM_KEY_CALIBRATE_D_FF},
      {.kind = CLI_O_INT, .to = &a->cfg.reps, .key = FM_KEY_CALIBRATE_REPS},
      {.kind = CLI_O_STR, .to = &a->cfg.name, .key = FM_KEY_CALIBRATE_NAME},
      {.kind = CLI_O_STR, .to = &a->cfg.db_path, .key = FM_KEY_CALIBRATE_DB},
      {.flag = "--no-db", .kind = CLI_O_BOOL, .to = &a->no_db, .key = -1,
       .help = "store nothing (the default; as --db '')"},
      {.kind = CLI_O_STR, .to = &a->cfg.out_path, .key = FM_KEY_CALIBRATE_OUT},
      CLI_FORMAT_ROW(&a->fmt),
      {.kind = CLI_O_END}};
  fm_calibrate_config *c = &a->cfg;
  int rc = cli_parse_flags("calibrate", argc, argv, opts);
  if (rc) return rc;
  if (a->no_db || (c->db_path && !c->db_path[0])) c->db_path = NULL;
  if (!c->backend) return cli_fail(CLI_EUSAGE, "calibrate", "--backend is required (cuda or cpu)");
  if (c->d_model % 8 || c->d_ff % 8) return cli_fail(CLI_EUSAGE, "calibrate", "--d-model/--d-ff must be multiples of 8");
  if (c->partitions > 0 && strcmp(c->backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, "calibrate", "--partitions needs --backend cuda");
  if (strcmp(c->backend, "nccl") == 0)
    return cli_fail(CLI_EUSAGE, "calibrate", "--backend nccl: calibrate with cuda (same kernels) and run nccl with that profile");
  return CLI_OK;
}

/* flexmoe calibrate ARGS: measures the backend, saves the profile where
 * asked and prints the measurements; CLI_OK, CLI_EUSAGE for a bad command
 * line, CLI_EFAIL (one message printed) for a backend, file or store error. */
int cmd_calibrate(int argc, char **argv) {
  calib_args a = {.fmt = CLI_FMT_TABLE};
  int rc = calib_parse(argc, argv, &a);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  fm_calibration c;
  char em[1024] = "";
  if ((rc = fm_calibrate(&a.cfg, &c, em, sizeof em)))
    return cli_fail(rc, "calibrate", "%s", em);
  if (a.fmt == CLI_FMT_JSON)
    return cli_json_print("calibrate", fm_calibration_doc(&a.cfg, &c),
                          JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  fm_text_calibration(stdout, &a.cfg, &c);
  return CLI_OK;
}
