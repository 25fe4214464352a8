/*
 * cmd_place.c - flexmoe place: a policy's placement plan for a trace.
 *
 * The run itself is the run library's (run/fm_place.h): this file maps the
 * flags to an fm_place_config and prints the result as a table or as the
 * library's JSON document.
 *
 * JSON (one document): {"policy", "trace", "iteration", "gpus",
 * "gpus_per_node", "slots_per_gpu", "layers": [{"layer", "experts":
 * [{"expert", "gpus": [..]}], "gpu_load": [..], "balance", "dropped",
 * "background", "moves": [{"expert", "from", "to", "kind", "bytes"}]}]};
 * with --temporaries each layer also has "temporaries": [{"expert", "from",
 * "to"}].
 */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_config.h"
#include "run/fm_keys.h"
#include "run/fm_place.h"

#define CMD "place"

/* What place's flags say: the run's configuration, the nodes (resolved
 * into cfg's sizes), the output and --strict. */
typedef struct place_opts {
  fm_place_config cfg;
  int nodes, fmt, strict;
} place_opts;

/* argv into o (the flag table), then the cluster sized (--gpus, --nodes,
 * --gpus-per-node) and the trace checked; CLI_OK, CLI_HELP after --help, or
 * the exit code of the one message printed. */
static int parse(int argc, char **argv, place_opts *o) {
  fm_place_config *c = &o->cfg;
  const cli_opt opts[] = {
      {.kind = CLI_O_STR, .to = &c->trace, .key = FM_KEY_TRACE},
      {.kind = CLI_O_INT, .to = &c->gpus, .key = FM_KEY_PLACE_GPUS},
      {.kind = CLI_O_INT, .to = &o->nodes, .key = FM_KEY_PLACE_NODES},
      {.kind = CLI_O_INT, .to = &c->gpus_per_node, .key = FM_KEY_PLACE_GPUS_PER_NODE},
      {.kind = CLI_O_INT, .to = &c->slots, .key = FM_KEY_PLACE_SLOTS},
      {.kind = CLI_O_STR, .to = &c->policy, .key = FM_KEY_PLACE_POLICY},
      {.kind = CLI_O_I64, .to = &c->iteration, .key = FM_KEY_PLACE_ITERATION},
      {.kind = CLI_O_INT, .to = &c->layer, .key = FM_KEY_PLACE_LAYER},
      {.kind = CLI_O_STR, .to = &c->cluster, .key = FM_KEY_CLUSTER},
      {.kind = CLI_O_INT, .to = &c->d_model, .key = FM_KEY_D_MODEL},
      {.kind = CLI_O_INT, .to = &c->d_ff, .key = FM_KEY_D_FF},
      {.kind = CLI_O_INT, .to = &c->top_k, .key = FM_KEY_TOP_K},
      {.kind = CLI_O_I64, .to = &c->tokens_per_gpu, .key = FM_KEY_TOKENS_PER_GPU},
      {.kind = CLI_O_I64, .to = &c->seed, .key = FM_KEY_SEED},
      {.flag = "--temporaries", .kind = CLI_O_BOOL, .to = &c->temporaries, .key = -1,
       .help = "also the iteration's temporaries (flexmoe shadow=1: extra copies decided on "
               "its own counts, as the simulator does): expert, holder GPU -> destination"},
      {.flag = "--strict", .kind = CLI_O_BOOL, .to = &o->strict, .key = -1,
       .help = "trace warnings (empty ranks or iterations, ids that look 1-based, unused "
               "ranks) are errors"},
      CLI_FORMAT_ROW(&o->fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_flags(CMD, argc, argv, opts);
  if (rc)
    return rc;
  if (!c->trace)
    return cli_fail(CLI_EUSAGE, CMD, "--trace is required (see 'flexmoe place --help')");
  int n = 0, k = 0;
  char em[512];
  if (fm_cluster_size(c->cluster, c->gpus, o->nodes, c->gpus_per_node, &n, &k, em, sizeof em))
    return cli_fail(CLI_EUSAGE, CMD, "%s", em);
  c->gpus = n * k;
  c->gpus_per_node = k;
  return cli_trace_check(CMD, c->trace, 0, c->iteration < 0 ? -1 : c->iteration + 1, c->gpus,
                         o->strict ? CLI_TRACE_STRICT : 0);
}

/* flexmoe place ARGS: the flags into one configuration, the run
 * (run/fm_place) and its placement printed; CLI_OK, CLI_EUSAGE for a bad
 * command line, CLI_EFAIL (one message printed) otherwise. */
int cmd_place(int argc, char **argv) {
  place_opts o = {.cfg = {.policy = "flexmoe", .cluster = "dgx-h100", .iteration = -1,
                          .layer = -1, .seed = FM_DEFAULT_SEED},
                  .fmt = CLI_FMT_TABLE};
  int rc = parse(argc, argv, &o);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  fm_place_result r;
  char em[2048];
  if ((rc = fm_place_run(&o.cfg, &r, em, sizeof(em))))
    rc = cli_fail(rc, CMD, "%s", em);
  else if (o.fmt == CLI_FMT_JSON)
    rc = cli_json_print(CMD, fm_place_doc(&r),
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  else
    fm_text_place(stdout, &r);
  if (!rc && o.fmt != CLI_FMT_JSON && fflush(stdout))
    rc = cli_fail(CLI_EFAIL, CMD, "cannot write to stdout");
  fm_place_result_fini(&r);
  return rc;
}
