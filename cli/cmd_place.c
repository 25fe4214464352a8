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
 * "background", "moves": [{"expert", "from", "to", "kind", "bytes"}]}]}.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_config.h"
#include "run/fm_place.h"
#include "sim/sim_cluster.h"

/* The options that may be given more than once (cli_getopt). */
#define REPEATS ""

#define CMD "place"

static const char help[] =
    "usage: flexmoe place --trace T [--gpus N] [--nodes M] [--gpus-per-node K] [--slots S]\n"
    "                     [--policy NAME[:key=value,...]] [--iteration I] [--layer L]\n"
    "                     [--cluster PRESET|FILE.json] [--d-model D] [--d-ff F]\n"
    "                     [--top-k K] [--tokens-per-gpu T] [--seed S]\n"
    "                     [--strict] [--format table|json]\n"
    "\n"
    "Runs a placement policy over a routing trace (rescaled to N GPUs) up to\n"
    "iteration I and prints the placement it uses there: each expert's GPUs,\n"
    "each GPU's load after routing iteration I, the balance (max/mean GPU\n"
    "load) and the moves of that iteration's plan, for layer L or all layers.\n"
    "A framework can take the JSON plan as is.\n"
    "\n"
    "  --trace T            routing trace (.npy or .csv)\n"
    "  --gpus N             GPUs to place on (any N; GPU g replays rank g mod R;\n"
    "                       default: the cluster's, nodes x GPUs per node)\n"
    "  --nodes M            nodes (with --gpus: N/M GPUs each)\n"
    "  --gpus-per-node K    GPUs per node (default: the cluster's, at most N)\n"
    "  --slots S            expert slots per GPU per layer (default: from HBM,\n"
    "                       half reserved; at most the number of experts)\n"
    "  --policy SPEC        policy and parameters (default flexmoe; see\n"
    "                       'flexmoe policies')\n"
    "  --iteration I        iteration to show (default: the last)\n"
    "  --layer L            one layer (default: all)\n"
    "  --cluster P          preset or JSON file for link numbers (default dgx-h100)\n"
    "  --d-model, --d-ff, --top-k   model shape (default: the trace's sidecar)\n"
    "  --tokens-per-gpu T   tokens per GPU per iteration (default: the trace's)\n"
    "  --seed S             rescaling seed, 0 to 2^63 - 1 (default 0)\n"
    "  --strict             trace warnings (empty ranks or iterations, ids that\n"
    "                       look 1-based, unused ranks) are errors\n"
    "  --format table|json  output (default table)\n"
    "\n"
    "example:\n"
    "  flexmoe place --trace traces/samples/gpt-l6-e32-top2-aux-200.npy --gpus 8 \\\n"
    "      --slots 6 --policy flexmoe:threshold=1.2,horizon=50 --iteration 120 --layer 0\n";

typedef struct place_opts {
  const char *trace, *policy, *cluster;
  long gpus, nodes, gpn, slots, iteration, layer, d_model, d_ff, top_k, tokens, seed;
  int fmt, strict;
} place_opts;

/* One layer shown as a table: balance, drops and moves, then per GPU its
 * load and experts (* replicated), then each move. */
static void emit_layer(const fm_place_result *r, int i) {
  const fm_place_layer *lo = &r->layers[i];
  const pl_placement *p = &lo->placement;
  printf("\nlayer %d: balance %.3f (max/mean GPU load after routing)", r->layer0 + i,
         lo->balance);
  if (lo->dropped)
    printf(", %" PRId64 " token slots dropped", lo->dropped);
  printf(", %d move%s%s\n", lo->nmoves, lo->nmoves == 1 ? "" : "s",
         lo->nmoves && lo->background ? " (background)" : "");
  printf("  %4s %10s  %s\n", "gpu", "tokens", "experts");
  for (int g = 0; g < r->gpus; g++) {
    printf("  %4d %10" PRId64 " ", g, lo->gpu_load[g]);
    for (int j = 0; j < p->nhost[g]; j++) {
      int e = p->host[(size_t)g * p->slots + j];
      printf(" %d%s", e, p->nrep[e] > 1 ? "*" : "");
    }
    printf("\n");
  }
  for (int k = 0; k < lo->nmoves; k++) {
    const pl_move *m = &lo->moves[k];
    if (m->kind == PL_MOVE_DROP)
      printf("  move: drop expert %d on GPU %d\n", m->expert, m->from);
    else
      printf("  move: %s expert %d GPU %d -> %d (%.1f MB)\n", fm_place_move_kind(m->kind),
             m->expert, m->from, m->to, (double)m->bytes / 1e6);
  }
}

static int emit_table(const fm_place_result *r) {
  printf("policy %s\n%s, iteration %" PRId64 ": %d GPUs (%d per node), %d slots per GPU\n",
         r->policy, r->trace, r->iteration, r->gpus, r->gpus_per_node, r->slots);
  for (int i = 0; i < r->nlayers; i++)
    emit_layer(r, i);
  printf("\n(* = replicated expert)\n");
  if (fflush(stdout))
    return cli_fail(CLI_EFAIL, CMD, "cannot write to stdout");
  return CLI_OK;
}

static int parse(int argc, char **argv, place_opts *o) {
  enum { O_TRACE = 256, O_GPUS, O_NODES, O_GPN, O_SLOTS, O_POLICY, O_IT, O_LAYER, O_CLUSTER, O_DM,
         O_DFF, O_TOPK, O_TOK, O_SEED, O_FMT, O_HELP, O_STRICT };
  static const struct option opts[] = {
      {"trace", required_argument, NULL, O_TRACE},
      {"gpus", required_argument, NULL, O_GPUS},
      {"nodes", required_argument, NULL, O_NODES},
      {"gpus-per-node", required_argument, NULL, O_GPN},
      {"slots", required_argument, NULL, O_SLOTS},
      {"policy", required_argument, NULL, O_POLICY},
      {"iteration", required_argument, NULL, O_IT},
      {"layer", required_argument, NULL, O_LAYER},
      {"cluster", required_argument, NULL, O_CLUSTER},
      {"d-model", required_argument, NULL, O_DM},
      {"d-ff", required_argument, NULL, O_DFF},
      {"top-k", required_argument, NULL, O_TOPK},
      {"tokens-per-gpu", required_argument, NULL, O_TOK},
      {"seed", required_argument, NULL, O_SEED},
      {"format", required_argument, NULL, O_FMT},
      {"help", no_argument, NULL, O_HELP},
      {"strict", no_argument, NULL, O_STRICT},
      {NULL, 0, NULL, 0}};
  int c;
  opterr = 0;
  optind = 1;
  while ((c = cli_getopt(argc, argv, ":", opts, REPEATS)) != -1) {
    int rc = CLI_OK;
    switch (c) {
    case O_TRACE: o->trace = optarg; break;
    case O_POLICY: o->policy = optarg; break;
    case O_CLUSTER: o->cluster = optarg; break;
    case O_GPUS: rc = cli_parse_long(CMD, "--gpus", optarg, 1, SIM_MAX_GPUS, &o->gpus); break;
    case O_NODES: rc = cli_parse_long(CMD, "--nodes", optarg, 1, SIM_MAX_GPUS, &o->nodes); break;
    case O_GPN: rc = cli_parse_long(CMD, "--gpus-per-node", optarg, 1, SIM_MAX_GPUS, &o->gpn); break;
    case O_SLOTS: rc = cli_parse_long(CMD, "--slots", optarg, 1, 1 << 20, &o->slots); break;
    case O_IT: rc = cli_parse_long(CMD, "--iteration", optarg, 0, 1L << 40, &o->iteration); break;
    case O_LAYER: rc = cli_parse_long(CMD, "--layer", optarg, 0, 1 << 20, &o->layer); break;
    case O_DM: rc = cli_parse_long(CMD, "--d-model", optarg, 1, 1 << 20, &o->d_model); break;
    case O_DFF: rc = cli_parse_long(CMD, "--d-ff", optarg, 1, 1 << 22, &o->d_ff); break;
    case O_TOPK: rc = cli_parse_long(CMD, "--top-k", optarg, 1, 64, &o->top_k); break;
    case O_TOK: rc = cli_parse_long(CMD, "--tokens-per-gpu", optarg, 1, 1L << 32, &o->tokens); break;
    case O_SEED: rc = cli_parse_long(CMD, "--seed", optarg, 0, CLI_SEED_MAX, &o->seed); break;
    case O_FMT: rc = cli_parse_format(CMD, optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &o->fmt); break;
    case O_HELP: cli_help(help); return -1;
    case O_STRICT: o->strict = 1; break;
    default: return cli_bad_option(CMD, argv[optind - 1]);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, CMD, "unexpected argument '%s'", argv[optind]);
  if (!o->trace)
    return cli_fail(CLI_EUSAGE, CMD, "--trace is required (see 'flexmoe place --help')");
  int n = 0, k = 0;
  char em[512];
  if (fm_cluster_size(o->cluster, o->gpus, (int)o->nodes, (int)o->gpn, &n, &k, em, sizeof em))
    return cli_fail(CLI_EUSAGE, CMD, "%s", em);
  o->gpus = (long)n * k;
  o->gpn = k;
  return cli_trace_check(CMD, o->trace, 0, o->iteration < 0 ? -1 : o->iteration + 1,
                         (int)o->gpus, o->strict ? CLI_TRACE_STRICT : 0);
}

/* flexmoe place ARGS: the flags into one configuration, the run
 * (run/fm_place) and its placement printed; CLI_OK, CLI_EUSAGE for a bad
 * command line, CLI_EFAIL (one message printed) otherwise. */
int cmd_place(int argc, char **argv) {
  place_opts o = {.trace = NULL, .policy = "flexmoe", .cluster = "dgx-h100", .iteration = -1,
                  .layer = -1, .seed = FM_DEFAULT_SEED, .fmt = CLI_FMT_TABLE};
  int rc = parse(argc, argv, &o);
  if (rc)
    return rc < 0 ? CLI_OK : rc;
  fm_place_config cfg = {
      .trace = o.trace, .policy = o.policy, .cluster = o.cluster, .gpus = (int)o.gpus,
      .gpus_per_node = (int)o.gpn, .slots = (int)o.slots, .iteration = o.iteration,
      .layer = (int)o.layer, .d_model = (int)o.d_model, .d_ff = (int)o.d_ff,
      .top_k = (int)o.top_k, .tokens_per_gpu = o.tokens, .seed = (uint64_t)o.seed};
  fm_place_result r;
  char em[2048];
  if ((rc = fm_place_run(&cfg, &r, em, sizeof(em))))
    rc = cli_fail(rc, CMD, "%s", em);
  else if (o.fmt == CLI_FMT_JSON)
    rc = cli_json_print(CMD, fm_place_doc(&r),
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  else
    rc = emit_table(&r);
  fm_place_result_fini(&r);
  return rc;
}
