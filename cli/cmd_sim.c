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
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_config.h"
#include "run/fm_keys.h"
#include "run/fm_sim.h"
#include "run/fm_sim_json.h"
#include "store/st_store.h"

#define MAX_POLICIES FM_SIM_MAX_POLICIES

/* --help: this head, the help lines of the keys of a simulation (the table
 * run/fm_keys.h: flag, range, default, unit), then the command's own
 * options and an example. */
/* What the flags say: the base configuration every policy's run starts
 * from, the policy specs (pointing into argv), the output format and the
 * database path ("" = none). */
typedef struct sim_args {
  fm_sim_config base;
  const char *policies[MAX_POLICIES];
  int npol, fmt;
  long gpus;                     /* --gpus, 0 when not given */
  int strict, allow_empty, no_db; /* --strict, --allow-empty, --no-db */
  const char *network;            /* --network hose|exact */
  const char *db_path;
} sim_args;

/* The command line into a (the flag table below: keys of run/fm_keys.h in
 * its order, then the command's own), then no operands, a trace, the sizes;
 * CLI_OK, CLI_HELP after --help, or CLI_EUSAGE after one message. */
static int sim_parse(int argc, char **argv, sim_args *a) {
  fm_sim_config *b = &a->base;
  const cli_opt opts[] = {
      {.kind = CLI_O_STR, .to = &b->trace_path, .key = FM_KEY_TRACE},
      {.kind = CLI_O_STR, .to = &b->cluster, .key = FM_KEY_CLUSTER},
      {.kind = CLI_O_INT, .to = &b->nodes, .key = FM_KEY_NODES},
      {.kind = CLI_O_INT, .to = &b->gpus_per_node, .key = FM_KEY_GPUS_PER_NODE},
      {.kind = CLI_O_MULTI, .to = a->policies, .to2 = &a->npol, .key = FM_KEY_POLICY,
       .hi = MAX_POLICIES},
      {.kind = CLI_O_CHOICE, .to = &b->engine, .key = FM_KEY_ENGINE},
      {.kind = CLI_O_CHOICE, .to = &a->network, .key = FM_KEY_NETWORK},
      {.kind = CLI_O_RANGE, .to = &b->it_begin, .to2 = &b->it_end, .key = FM_KEY_ITERATIONS},
      {.kind = CLI_O_I64, .to = &b->seed, .key = FM_KEY_SEED},
      CLI_SIM_MODEL_ROWS(b),
      {.kind = CLI_O_INT, .to = &b->threads, .key = FM_KEY_THREADS},
      {.kind = CLI_O_STR, .to = &a->db_path, .key = FM_KEY_DB},
      {.flag = "--gpus", .kind = CLI_O_LONG, .to = &a->gpus, .key = FM_KEY_GPUS, .arg = "G",
       .help = "GPUs in all: G/N per node with --nodes, else nodes of --gpus-per-node (or "
               "the cluster's) GPUs; below a node's count one partial node"},
      {.flag = "--strict", .kind = CLI_O_BOOL, .to = &a->strict, .key = -1,
       .help = "trace warnings (empty ranks or iterations, ids that look 1-based, unused "
               "ranks) are errors"},
      {.flag = "--allow-empty", .kind = CLI_O_BOOL, .to = &a->allow_empty, .key = -1,
       .help = "simulate a trace whose counts are all 0 (refused otherwise)"},
      {.flag = "--no-db", .kind = CLI_O_BOOL, .to = &a->no_db, .key = -1,
       .help = "do not record (as --db '')"},
      CLI_FORMAT_ROW(&a->fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_flags("sim", argc, argv, opts);
  if (rc)
    return rc;
  if (!b->trace_path)
    return cli_fail(CLI_EUSAGE, "sim", "--trace is required (see 'flexmoe sim --help')");
  b->exact_net = a->network && strcmp(a->network, "exact") == 0;
  if (a->no_db)
    a->db_path = "";
  char em[512];
  if (a->gpus && fm_cluster_size(b->cluster, a->gpus, b->nodes, b->gpus_per_node, &b->nodes,
                                 &b->gpus_per_node, em, sizeof em))
    return cli_fail(CLI_EUSAGE, "sim", "%s", em);
  return CLI_OK;
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

int cmd_sim(int argc, char **argv) {
  sim_args a = {.base = FM_SIM_CONFIG_INIT, .npol = 0, .fmt = CLI_FMT_TABLE, .gpus = 0,
                .db_path = "flexmoe.db", .network = NULL};
  a.base.threads = fm_sim_default_threads(); /* every core: same results, sooner */
  int rc = sim_parse(argc, argv, &a);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  int nodes = 0, gpn = 0;
  char err[1024];
  if (fm_cluster_size(a.base.cluster, 0, a.base.nodes, a.base.gpus_per_node, &nodes, &gpn, err,
                      sizeof err))
    nodes = gpn = 0; /* the simulation names a bad cluster itself */
  if ((rc = cli_trace_check("sim", a.base.trace_path, a.base.it_begin, a.base.it_end,
                            nodes * gpn, (a.strict ? CLI_TRACE_STRICT : 0) |
                                CLI_TRACE_REFUSE_EMPTY |
                                (a.allow_empty ? CLI_TRACE_ALLOW_EMPTY : 0))))
    return rc;
  st_db *db = NULL;
  if (a.db_path[0] && st_open(&db, a.db_path, ST_WRITE, err, sizeof(err)) != 0)
    return cli_fail(CLI_EFAIL, "sim", "%s", err);
  fm_sim_comparison cmp;
  sim_progress prog = {.run = 0, .runs = fm_sim_compare_runs(a.policies, a.npol), .started = 0};
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
    fm_text_sim(stdout, &cmp, a.base.trace_path, a.base.engine, db ? a.db_path : NULL);
  fm_sim_comparison_fini(&cmp);
  st_close(db);
  return rc;
}
