/*
 * cmd_sim.c - flexmoe sim: compare placement policies on a routing trace and
 * a modelled cluster (run/fm_sim.h does the work).
 *
 * Order of work, so that bad input never touches the database: parse flags;
 * open the database (a read-only or foreign file fails here, unchanged);
 * resolve every policy's configuration (trace, cluster, model, profile,
 * slots, policy spec: any error stops here); simulate all; then record each
 * run in its own transaction and print the comparison.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "placement/pl_policy.h"
#include "run/fm_config.h"
#include "run/fm_keys.h"
#include "run/fm_sim.h"
#include "run/fm_sim_json.h"
#include "store/st_store.h"

/* The options that may be given more than once (cli_getopt). */
#define REPEATS "policy"

#define MAX_POLICIES FM_SIM_MAX_POLICIES

/* --help: this head, the help lines of the keys of a simulation (the table
 * run/fm_keys.h: flag, range, default, unit), then the command's own
 * options and an example. */
static const char help_head[] =
    "usage: flexmoe sim --trace T [--cluster PRESET|FILE.json] [--gpus G] [--nodes N]\n"
    "                   [--gpus-per-node G] [--policy SPEC]... [--engine analytic|des]\n"
    "                   [--iterations A:B] [--seed S] [--d-model D] [--d-ff F]\n"
    "                   [--top-k K] [--tokens-per-gpu T] [--slots S] [--profile F.json]\n"
    "                   [--network hose|exact] [--threads 1|2] [--db FILE | --no-db]\n"
    "                   [--strict] [--allow-empty] [--format table|json]\n"
    "\n"
    "Simulates MoE training on a routing trace with each placement policy and\n"
    "prints the comparison: mean iteration time, effective time (iteration\n"
    "time / (1 - dropped share of token slots): a policy that drops tokens\n"
    "pays for the work it skips), speedup over static in effective time, load\n"
    "balance (max/mean GPU load, worst layer) p50/p90, bytes migrated, tokens\n"
    "dropped, and the time breakdown. Each run goes into the results database.\n"
    "\n";
static const char help_tail[] =
    "  --gpus G            GPUs in all: G/N per node with --nodes, else nodes of\n"
    "                      --gpus-per-node (or the cluster's) GPUs; below a node's\n"
    "                      count one partial node\n"
    "  --strict            trace warnings (empty ranks or iterations, ids that look\n"
    "                      1-based, unused ranks) are errors\n"
    "  --allow-empty       simulate a trace whose counts are all 0 (refused otherwise)\n"
    "  --no-db             do not record (as --db '')\n"
    "  --format F          table (default) or json\n"
    "\n"
    "example:\n"
    "  flexmoe sim --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
    "      --cluster dgx-h100 --nodes 2 --policy static --policy capacity --engine des\n";

static const struct option sim_opts[] = {
    {"trace", required_argument, 0, 't'},     {"cluster", required_argument, 0, 'c'},
    {"nodes", required_argument, 0, 'n'},     {"gpus-per-node", required_argument, 0, 'g'},
    {"policy", required_argument, 0, 'p'},    {"engine", required_argument, 0, 'e'},
    {"iterations", required_argument, 0, 'i'}, {"seed", required_argument, 0, 's'},
    {"d-model", required_argument, 0, 'D'},   {"d-ff", required_argument, 0, 'F'},
    {"top-k", required_argument, 0, 'K'},     {"tokens-per-gpu", required_argument, 0, 'T'},
    {"slots", required_argument, 0, 'S'},     {"profile", required_argument, 0, 'P'},
    {"db", required_argument, 0, 'b'},        {"no-db", no_argument, 0, 'N'},
    {"format", required_argument, 0, 'f'},    {"help", no_argument, 0, 'h'},
    {"network", required_argument, 0, 'W'},   {"threads", required_argument, 0, 'H'},
    {"gpus", required_argument, 0, 'G'},      {"strict", no_argument, 0, 'Y'},
    {"allow-empty", no_argument, 0, 'Z'},
    {0, 0, 0, 0}};

/* What the flags say: the base configuration every policy's run starts
 * from, the policy specs (pointing into argv), the output format and the
 * database path ("" = none). */
typedef struct sim_args {
  fm_sim_config base;
  const char *policies[MAX_POLICIES];
  int npol, fmt;
  long gpus; /* --gpus, 0 when not given */
  int trace_flags; /* CLI_TRACE_*: --strict, --allow-empty */
  const char *db_path;
  int help; /* --help was printed: nothing else to do */
} sim_args;

/* A numeric flag of the key table (c its short option) into a->base;
 * CLI_OK, CLI_EUSAGE after the parser's message naming the flag and its
 * range, or -1 when c is no such flag. */
static int sim_key_flag(sim_args *a, int c, const char *arg) {
  fm_key_id id;
  switch (c) {
  case 'n': id = FM_KEY_NODES; break;
  case 'g': id = FM_KEY_GPUS_PER_NODE; break;
  case 's': id = FM_KEY_SEED; break;
  case 'D': id = FM_KEY_D_MODEL; break;
  case 'F': id = FM_KEY_D_FF; break;
  case 'K': id = FM_KEY_TOP_K; break;
  case 'T': id = FM_KEY_TOKENS_PER_GPU; break;
  case 'S': id = FM_KEY_SLOTS; break;
  case 'G': id = FM_KEY_GPUS; break;
  default: return -1;
  }
  long v;
  if (cli_parse_key("sim", id, arg, &v))
    return CLI_EUSAGE;
  fm_sim_config *b = &a->base;
  switch (c) {
  case 'n': b->nodes = (int)v; break;
  case 'g': b->gpus_per_node = (int)v; break;
  case 's': b->seed = (uint64_t)v; break;
  case 'D': b->d_model = (int)v; break;
  case 'F': b->d_ff = (int)v; break;
  case 'K': b->top_k = (int)v; break;
  case 'T': b->tokens_per_gpu = v; break;
  case 'G': a->gpus = v; break;
  default: b->slots = (int)v; break; /* 'S' */
  }
  return CLI_OK;
}

/* Any other option (c as getopt_long returned it, optarg its argument) into
 * a; CLI_OK, CLI_EUSAGE after one message naming the option, or CLI_OK with
 * a->help set after printing --help. */
static int sim_other_flag(sim_args *a, int c, char **argv) {
  const char *net = NULL;
  switch (c) {
  case 't': a->base.trace_path = optarg; return CLI_OK;
  case 'c': a->base.cluster = optarg; return CLI_OK;
  case 'P': a->base.profile_path = optarg; return CLI_OK;
  case 'b': a->db_path = optarg; return CLI_OK;
  case 'N': a->db_path = ""; return CLI_OK;
  case 'Y': a->trace_flags |= CLI_TRACE_STRICT; return CLI_OK;
  case 'Z': a->trace_flags |= CLI_TRACE_ALLOW_EMPTY; return CLI_OK;
  case 'p':
    if (a->npol == MAX_POLICIES)
      return cli_fail(CLI_EUSAGE, "sim", "--policy: at most %d policies", MAX_POLICIES);
    a->policies[a->npol++] = optarg;
    return CLI_OK;
  case 'e':
    return cli_parse_choice("sim", FM_KEY_ENGINE, optarg, &a->base.engine) ? CLI_EUSAGE : CLI_OK;
  case 'i':
    return cli_parse_range("sim", "--iterations", optarg, &a->base.it_begin, &a->base.it_end)
               ? CLI_EUSAGE
               : CLI_OK;
  case 'H':
    if (strcmp(optarg, "1") && strcmp(optarg, "2"))
      return cli_fail(CLI_EUSAGE, "sim", "--threads: '%s' is not 1 or 2", optarg);
    a->base.prefetch = optarg[0] == '2';
    return CLI_OK;
  case 'W':
    if (cli_parse_choice("sim", FM_KEY_NETWORK, optarg, &net))
      return CLI_EUSAGE;
    a->base.exact_net = strcmp(net, "exact") == 0;
    return CLI_OK;
  case 'f':
    return cli_parse_format("sim", optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &a->fmt) ? CLI_EUSAGE
                                                                                  : CLI_OK;
  case 'h':
    cli_help_keys(help_head, FM_KS_SIM, 22, help_tail);
    a->help = 1;
    return CLI_OK;
  default:
    return cli_bad_option("sim", argv[optind - 1]);
  }
}

/* The command line into a, flag by flag (the first bad one stops it with
 * its message), then no operands and a trace; CLI_OK (a->help when --help
 * was printed) or CLI_EUSAGE. */
static int sim_parse(int argc, char **argv, sim_args *a) {
  int c, rc;
  opterr = 0;
  optind = 1;
  while ((c = cli_getopt(argc, argv, ":h", sim_opts, REPEATS)) != -1) {
    if ((rc = sim_key_flag(a, c, optarg)) == -1)
      rc = sim_other_flag(a, c, argv);
    if (rc || a->help)
      return rc;
  }
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, "sim", "unexpected argument '%s'", argv[optind]);
  if (!a->base.trace_path)
    return cli_fail(CLI_EUSAGE, "sim", "--trace is required (see 'flexmoe sim --help')");
  char em[512];
  if (a->gpus && fm_cluster_size(a->base.cluster, a->gpus, a->base.nodes, a->base.gpus_per_node,
                                 &a->base.nodes, &a->base.gpus_per_node, em, sizeof em))
    return cli_fail(CLI_EUSAGE, "sim", "%s", em);
  return CLI_OK;
}

/* The comparison as the table: a heading, one line per policy (speedup over
 * the static run in effective time) and the legend. */
static void sim_print_table(const sim_args *a, const fm_sim_comparison *cmp, const st_db *db) {
  /* comparisons are over effective time: dropping cannot look like speed */
  double ref = fm_sim_summary_of(cmp->out[cmp->static_idx])->effective_iteration_ms;
  const fm_sim_summary *s0 = fm_sim_summary_of(cmp->out[0]);
  printf("trace %s, %lld iterations, cluster %s (%d GPUs), engine %s%s%s\n",
         a->base.trace_path, (long long)s0->iterations, s0->cluster, s0->gpus, a->base.engine,
         db ? ", results in " : "", db ? a->db_path : "");
  printf("%-20s %9s %9s %7s %7s %7s %12s %9s | %8s %8s %8s %8s %8s\n", "policy", "iter_ms",
         "eff_ms", "speedup", "bal_p50", "bal_p90", "migrated_MB", "dropped", "compute",
         "alltoall", "allred", "migrate", "other");
  for (int i = 0; i < cmp->n; i++) {
    const fm_sim_summary *s = fm_sim_summary_of(cmp->out[i]);
    double sp = cli_speedup(ref, s->effective_iteration_ms);
    char speed[32] = "-";
    if (!isnan(sp))
      snprintf(speed, sizeof(speed), "%.2fx", sp);
    /* %f prints an effective time of +INFINITY (all dropped) as "inf" */
    printf("%-20s %9.3f %9.3f %7s %7.2f %7.2f %12.1f %9lld | %8.3f %8.3f %8.3f %8.3f %8.3f\n",
           cmp->policies[i], s->mean_iteration_ms, s->effective_iteration_ms, speed,
           s->balance_p50, s->balance_p90, (double)s->migrated_bytes / 1048576.0,
           (long long)s->dropped_tokens, s->compute_ms, s->alltoall_ms, s->allreduce_ms,
           s->migration_ms, s->other_ms);
  }
  printf("(times in ms per iteration; eff_ms = iter_ms / (1 - share of token slots\n"
         " dropped), inf if all are; speedup = static / policy in eff_ms, so dropping\n"
         " does not count as speed; balance = max/mean GPU load after routing, worst\n"
         " layer; policy parameters in full: --format json or flexmoe report)\n");
}

/* What the progress line needs: which of how many runs is simulated. */
typedef struct sim_progress {
  cli_progress line;
  int run, runs; /* the run being simulated (from 0) and how many there are */
  int started;   /* a run's first iteration was seen */
} sim_progress;

/* fm_sim_config.progress: one iteration of one policy's run done. */
static void on_progress(void *ctx, const char *policy, int64_t done, int64_t total) {
  sim_progress *p = ctx;
  if (done == 1 && p->started++ && p->run + 1 < p->runs)
    p->run++; /* the next run's first iteration */
  char what[96];
  snprintf(what, sizeof what, "%.40s (%d/%d), iteration %lld/%lld", policy, p->run + 1,
           p->runs, (long long)done, (long long)total);
  cli_progress_update(&p->line, (p->run + (double)done / (double)total) / p->runs, what);
}

/* How many runs fm_sim_compare makes: the policies (all registered when
 * none is named) and static when it is not among them. */
static int runs_of(const sim_args *a) {
  int n = a->npol, has_static = a->npol == 0;
  if (n == 0)
    for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++)
      n++;
  for (int i = 0; i < a->npol; i++)
    has_static |= strcmp(a->policies[i], "static") == 0;
  return n + !has_static;
}

int cmd_sim(int argc, char **argv) {
  sim_args a = {.base = FM_SIM_CONFIG_INIT, .npol = 0, .fmt = CLI_FMT_TABLE, .gpus = 0, .trace_flags = 0,
                .db_path = "flexmoe.db", .help = 0};
  a.base.prefetch = sysconf(_SC_NPROCESSORS_ONLN) > 1; /* a second core draws ahead */
  int rc = sim_parse(argc, argv, &a);
  if (rc || a.help)
    return rc;
  int nodes = 0, gpn = 0;
  char err[1024];
  if (fm_cluster_size(a.base.cluster, 0, a.base.nodes, a.base.gpus_per_node, &nodes, &gpn, err,
                      sizeof err))
    nodes = gpn = 0; /* the simulation names a bad cluster itself */
  if ((rc = cli_trace_check("sim", a.base.trace_path, a.base.it_begin, a.base.it_end,
                            nodes * gpn, a.trace_flags | CLI_TRACE_REFUSE_EMPTY)))
    return rc;
  st_db *db = NULL;
  if (a.db_path[0] && st_open(&db, a.db_path, ST_WRITE, err, sizeof(err)) != 0)
    return cli_fail(CLI_EFAIL, "sim", "%s", err);
  fm_sim_comparison cmp;
  sim_progress prog = {.run = 0, .runs = runs_of(&a), .started = 0};
  cli_progress_start(&prog.line, "sim");
  a.base.progress = on_progress;
  a.base.progress_ctx = &prog;
  rc = fm_sim_compare(&a.base, a.policies, a.npol, db, &cmp, err, sizeof(err));
  cli_progress_end(&prog.line);
  if (rc)
    cli_fail(rc, "sim", "%s", err);
  else if (a.fmt == CLI_FMT_JSON)
    rc = cli_json_print("sim", fm_sim_comparison_json(&cmp, a.base.engine), FM_SIM_JSON_FLAGS);
  else
    sim_print_table(&a, &cmp, db);
  fm_sim_comparison_fini(&cmp);
  st_close(db);
  return rc;
}
