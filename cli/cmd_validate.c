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
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "run/fm_json.h"
#include "placement/pl_policy.h"
#include "run/fm_validate.h"

/* The options that may be given more than once (cli_getopt). */
#define REPEATS "policy"

/* "name:key=value,..." -> "name" for table columns (JSON keeps the spec),
 * "name:bg=0|1" for a policy with the background parameter, so the
 * default flexmoe and flexmoe:background=0 stay apart. */
static const char *short_name(const char *spec, char *buf, size_t len) {
  size_t n = strcspn(spec, ":");
  char bg[8];
  if (n < 40 && pl_policy_param(spec, "background", bg, sizeof bg) == 0)
    snprintf(buf, len, "%.*s:bg=%.7s", (int)n, spec, bg);
  else
    snprintf(buf, len, "%.*s", (int)n, spec);
  return buf;
}

static const char *const help =
    "usage: flexmoe validate --backend cpu|cuda|nccl --trace T [--policy SPEC]...\n"
    "                        [--partitions N] [--ranks N] [--iterations A:B] [--seed S]\n"
    "                        [--d-model D] [--d-ff F] [--top-k K] [--tokens-per-gpu T]\n"
    "                        [--slots S] [--profile P.json] [--engine analytic|des|cost]\n"
    "                        [--db FILE | --no-db] [--format table|json]\n"
    "\n"
    "Runs each policy twice on the same configuration: on the runtime backend\n"
    "(measured) and through the simulator with the calibrated profile of that\n"
    "backend (predicted), and prints predicted vs measured per phase with the\n"
    "relative error (predicted - measured) / measured. Without --profile the backend\n"
    "is calibrated first (as flexmoe calibrate), on the ranks the replay uses.\n"
    "Policies default to static, flexmoe, flexmoe:background=0 and eplb (those this\n"
    "build has). Every policy is validated at its defaults: background moves overlap\n"
    "the iteration on the runtime as in the simulator (docs/runtime.md, \"Background\n"
    "moves\"). Every policy is predicted before any is measured, so a configuration\n"
    "the simulator refuses fails at once. --ranks: at most the trace's ranks (cpu: a\n"
    "warning above the machine's cores). With --db both runs of every policy and the\n"
    "validations are stored once all are done (nothing for a validation that fails);\n"
    "--no-db (the default) stores nothing. An error is n/a where a phase was not\n"
    "measured; two phases both under a microsecond agree (0.0%).\n"
    "--engine: the simulator's analytic (default) or discrete-event engine, or 'cost':\n"
    "the placement library's cost model alone, as the planners see the run.\n"
    "\n"
    "JSON: {\"runs\": [{\"policy\", \"predicted_ms\", \"measured_ms\", \"error\", \"phases\"}],\n"
    "       \"median_abs_error\", \"p95_abs_error\", \"ranking_agrees\", \"predictor\"}\n"
    "median_abs_error: over policies, of the mean iteration time; p95_abs_error: over\n"
    "policies x phases taking >= 5% of the iteration.\n"
    "\n"
    "example:\n"
    "  flexmoe validate --backend cuda --partitions 4 --trace gpt-l6-e32-top2-aux-200.npy \\\n"
    "      --iterations 0:50 --d-model 1024 --d-ff 4096 --policy static \\\n"
    "      --policy flexmoe --policy flexmoe:background=0 --policy eplb \\\n"
    "      --profile h200-green-4.json --db flexmoe.db --format json\n";

/* The command line of validate. */
typedef struct vopts {
  fm_validate_config cfg;
  const char *policies[FM_VALIDATE_MAX_POLICIES];
  int fmt;
} vopts;

/* One option c (argument arg) into o; CLI_OK or the exit code of the
 * message printed; -1 for --help (printed). */
static int take_option(vopts *o, int c, const char *arg, const char *text) {
  int rc;
  switch (c) {
  case 'p':
    if (o->cfg.npolicies == FM_VALIDATE_MAX_POLICIES)
      return cli_fail(CLI_EUSAGE, "validate", "--policy: at most %d", FM_VALIDATE_MAX_POLICIES);
    o->policies[o->cfg.npolicies++] = arg;
    return CLI_OK;
  case 'R': o->cfg.profile_path = arg; return CLI_OK;
  case 'e':
    if (strcmp(arg, "analytic") && strcmp(arg, "des") && strcmp(arg, "cost"))
      return cli_fail(CLI_EUSAGE, "validate", "--engine: '%s' is not analytic, des or cost", arg);
    o->cfg.engine = arg;
    return CLI_OK;
  case 'B': o->cfg.db_path = arg[0] ? arg : NULL; return CLI_OK;
  case 'N': o->cfg.db_path = NULL; return CLI_OK;
  case 'F': return cli_parse_format("validate", arg, CLI_FMT_TABLE | CLI_FMT_JSON, &o->fmt);
  case 'h': cli_help(help); return -1;
  default:
    if ((rc = cli_replay_option("validate", c, arg, &o->cfg.replay)) == 0)
      return cli_bad_option("validate", text);
    return rc < 0 ? -rc : CLI_OK;
  }
}

/* Parses argv into o; CLI_OK, -1 after --help, or an exit code. */
static int parse(vopts *o, int argc, char **argv) {
  static const struct option opts[] = {
      {"backend", required_argument, 0, 'b'}, {"trace", required_argument, 0, 't'},
      {"policy", required_argument, 0, 'p'}, {"partitions", required_argument, 0, 'P'},
      {"ranks", required_argument, 0, 'r'}, {"device", required_argument, 0, 'D'},
      {"iterations", required_argument, 0, 'i'}, {"seed", required_argument, 0, 's'},
      {"d-model", required_argument, 0, 'd'}, {"d-ff", required_argument, 0, 'f'},
      {"tokens-per-gpu", required_argument, 0, 'T'}, {"slots", required_argument, 0, 'S'},
      {"profile", required_argument, 0, 'R'}, {"engine", required_argument, 0, 'e'},
      {"db", required_argument, 0, 'B'}, {"no-db", no_argument, 0, 'N'},
      {"top-k", required_argument, 0, 'k'}, {"format", required_argument, 0, 'F'},
      {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  *o = (vopts){.cfg = FM_VALIDATE_CONFIG_INIT, .fmt = CLI_FMT_TABLE};
  o->cfg.replay.backend = NULL;
  o->cfg.policies = o->policies;
  opterr = 0;
  optind = 1;
  int c, rc;
  while ((c = cli_getopt(argc, argv, ":h", opts, REPEATS)) != -1)
    if ((rc = take_option(o, c, optarg, argv[optind - 1])) != CLI_OK) return rc;
  const fm_replay_config *r = &o->cfg.replay;
  if (optind < argc) return cli_fail(CLI_EUSAGE, "validate", "unexpected argument '%s'", argv[optind]);
  if (!r->backend) return cli_fail(CLI_EUSAGE, "validate", "--backend is required (cpu, cuda or nccl)");
  if (!r->trace_path) return cli_fail(CLI_EUSAGE, "validate", "--trace is required");
  if (r->partitions > 0 && strcmp(r->backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, "validate", "--partitions needs --backend cuda");
  return cli_trace_check("validate", r->trace_path, r->it_begin, r->it_end,
                         r->partitions > 0 ? r->partitions : r->ranks, CLI_TRACE_REPLAY);
}

/* The result as JSON (help text). An error that is not defined (a phase
 * not measured: 0 ms) is null, never a number JSON cannot hold or a
 * made-up 0. */
static int print_json(const fm_validate_result *res) {
  json_t *runs = json_array();
  int bad = !runs;
  for (int p = 0; p < res->nruns && !bad; p++) {
    const fm_validate_run *r = &res->runs[p];
    json_t *ph = json_object();
    for (int q = 0; q < FM_V_TIME; q++)
      bad |= json_object_set_new(
          ph, fm_validate_phase_names[q],
          json_pack("{s:o, s:o, s:o}", "predicted_ms", fm_json_number(r->predicted[q]),
                    "measured_ms", fm_json_number(r->measured[q]), "error",
                    fm_json_number(r->error[q])));
    bad |= json_array_append_new(
        runs, json_pack("{s:o, s:o, s:o, s:o, s:o}", "policy", fm_json_string(r->policy),
                        "predicted_ms", fm_json_number(r->predicted[FM_V_TIME]), "measured_ms",
                        fm_json_number(r->measured[FM_V_TIME]), "error",
                        fm_json_number(r->error[FM_V_TIME]), "phases", ph));
  }
  json_t *doc = json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o}", "runs", runs,
                          "median_abs_error", fm_json_number(res->median_abs_error),
                          "p95_abs_error", fm_json_number(res->p95_abs_error), "ranking_agrees",
                          res->ranking_agrees, "predictor", fm_json_string(res->predictor),
                          "profile", fm_json_string(res->profile), "backend",
                          fm_json_string(res->backend));
  if (bad) {
    json_decref(doc);
    doc = NULL;
  }
  return cli_json_print("validate", doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

/* The result as a table: per policy the iteration time, then the phases. */
static void print_table(const fm_validate_result *res) {
  printf("validate: backend %s, predictor: %s\n", res->backend, res->predictor);
  printf("%-12s %-10s %12s %12s %9s\n", "policy", "phase", "predicted_ms", "measured_ms", "error");
  for (int p = 0; p < res->nruns; p++)
    for (int q = FM_V_N - 1; q >= 0; q--) {
      const fm_validate_run *r = &res->runs[p];
      double e = r->error[q];
      char sn[64], es[32];
      if (isnan(e)) snprintf(es, sizeof es, "n/a");
      else snprintf(es, sizeof es, "%.1f%%", 100.0 * e);
      printf("%-12s %-10s %12.3f %12.3f %9s\n",
             q == FM_V_TIME ? short_name(r->policy, sn, sizeof sn) : "", fm_validate_phase_names[q],
             r->predicted[q], r->measured[q], es);
    }
  printf("median |error| of iteration time %.1f%%, p95 |error| over phases %.1f%%, ranking %s\n",
         100 * res->median_abs_error, 100 * res->p95_abs_error,
         res->ranking_agrees ? "agrees" : "DIFFERS");
}

int cmd_validate(int argc, char **argv) {
  vopts o;
  int rc = parse(&o, argc, argv);
  if (rc) return rc < 0 ? CLI_OK : rc;
  fm_validate_result res;
  char em[1024] = "";
  if ((rc = fm_validate(&o.cfg, &res, em, sizeof em))) return cli_fail(rc, "validate", "%s", em);
  if (res.warning[0]) fprintf(stderr, "flexmoe validate: warning: %s\n", res.warning);
  if (res.owner) {
    if (o.fmt == CLI_FMT_JSON) rc = print_json(&res);
    else print_table(&res);
  }
  fm_validate_result_fini(&res);
  return rc;
}
