/*
 * cmd_sweep.c - flexmoe sweep: flags into an fm_sweep_config, the progress
 * bar, the failed and lost points on stderr and the summary on stdout. The
 * grid, the worker processes, the MPI ranks and the claim/record logic are
 * the run library's (run/fm_sweep.h).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_config.h"
#include "run/fm_keys.h"
#include "run/fm_sweep.h"
#include "run/fm_text.h"

#define CMD "sweep"
#define MAX_LIST 64
#define MAX_SIZES 64

/* --help: this head, the help lines of the keys of a sweep (the table
 * run/fm_keys.h: flag, range, default, unit), then the command's own
 * options, MPI and an example. */
/* The command line: the sweep's configuration, its lists pointing into
 * the arrays here, and the command's own flags. */
typedef struct opts {
  fm_sweep_config cfg;
  const char *traces[MAX_LIST], *policies[MAX_LIST], *clusters[MAX_LIST];
  long sizes[MAX_SIZES], nodes[MAX_SIZES], seeds[MAX_LIST];
  int nnodes;
  int quiet, strict, allow_empty;
  int bar; /* progress bar on stderr */
} opts;

/* --nodes N1,N2 into the sizes in GPUs (run/fm_sweep.h). */
static int nodes_to_sizes(opts *sw) {
  char em[512];
  fm_sweep_config *c = &sw->cfg;
  if (fm_sweep_sizes_of_nodes(c->clusters, c->nclusters, c->gpus_per_node, sw->nodes,
                              sw->nnodes, sw->sizes, em, sizeof em))
    return cli_fail(CLI_EUSAGE, CMD, "%s", em);
  c->nsizes = sw->nnodes;
  return CLI_OK;
}

/* argv into sw (the flag table: the sweep keys of run/fm_keys.h in its
 * order, then the command's own; defaults: one job, flexmoe.db, 30 s lock
 * wait, no plan moves); CLI_OK, CLI_HELP after --help, or the exit code of
 * the one message printed. */
static int parse(opts *sw, int argc, char **argv) {
  fm_sweep_config *c = &sw->cfg;
  fm_sim_config *b = &c->base;
  *c = (fm_sweep_config){.traces = sw->traces, .policies = sw->policies,
                         .clusters = sw->clusters, .sizes = sw->sizes, .seeds = sw->seeds,
                         .base = FM_SIM_CONFIG_INIT, .jobs = 1, .db = "flexmoe.db",
                         .lock_wait_s = 30};
  b->plan_moves = 0;
  const cli_opt opts[] = {
      {.kind = CLI_O_MULTI, .to = sw->traces, .to2 = &c->ntraces, .key = FM_KEY_TRACE,
       .hi = MAX_LIST},
      {.kind = CLI_O_MULTI, .to = sw->clusters, .to2 = &c->nclusters, .key = FM_KEY_CLUSTER,
       .hi = MAX_LIST},
      {.kind = CLI_O_LIST, .to = sw->sizes, .to2 = &c->nsizes, .key = FM_KEY_GPUS,
       .max = MAX_SIZES},
      {.kind = CLI_O_INT, .to = &c->gpus_per_node, .key = FM_KEY_GPUS_PER_NODE},
      {.kind = CLI_O_MULTI, .to = sw->policies, .to2 = &c->npolicies, .key = FM_KEY_POLICY,
       .hi = MAX_LIST},
      {.kind = CLI_O_CHOICE, .to = &b->engine, .key = FM_KEY_ENGINE},
      {.kind = CLI_O_RANGE, .to = &b->it_begin, .to2 = &b->it_end, .key = FM_KEY_ITERATIONS},
      {.kind = CLI_O_LIST, .to = sw->seeds, .to2 = &c->nseeds, .key = FM_KEY_SEEDS,
       .max = MAX_LIST},
      CLI_SIM_MODEL_ROWS(b),
      {.kind = CLI_O_STR, .to = &c->db, .key = FM_KEY_DB},
      {.kind = CLI_O_INT, .to = &c->jobs, .key = FM_KEY_JOBS},
      {.kind = CLI_O_INT, .to = &c->lock_wait_s, .key = FM_KEY_LOCK_WAIT},
      {.kind = CLI_O_BOOL, .to = &b->plan_moves, .key = FM_KEY_PLAN_MOVES},
      {.flag = "--nodes", .kind = CLI_O_LIST, .to = sw->nodes, .to2 = &sw->nnodes,
       .key = FM_KEY_NODES, .max = MAX_SIZES, .arg = "LIST",
       .help = "cluster sizes in nodes (instead of --gpus): N x the GPUs per node "
               "(--gpus-per-node or the clusters' own)"},
      {.flag = "--seed", .kind = CLI_O_LIST, .to = sw->seeds, .to2 = &c->nseeds,
       .key = FM_KEY_SEEDS, .max = MAX_LIST, .arg = "LIST", .help = "as --seeds"},
      {.flag = "--strict", .kind = CLI_O_BOOL, .to = &sw->strict, .key = -1,
       .help = "trace warnings (empty ranks or iterations, ids that look 1-based) are errors"},
      {.flag = "--allow-empty", .kind = CLI_O_BOOL, .to = &sw->allow_empty, .key = -1,
       .help = "simulate traces whose counts are all 0 (refused otherwise)"},
      {.flag = "--quiet", .kind = CLI_O_BOOL, .to = &sw->quiet, .key = -1,
       .help = "no progress bar"},
      {.kind = CLI_O_END}};
  int rc = cli_parse_flags(CMD, argc, argv, opts);
  if (rc)
    return rc;
  if (c->ntraces == 0)
    return cli_fail(CLI_EUSAGE, CMD, "--trace is required (see 'flexmoe sweep --help')");
  if (sw->nnodes && c->nsizes)
    return cli_fail(CLI_EUSAGE, CMD, "give the sizes once: --gpus or --nodes, not both");
  if (sw->nnodes && nodes_to_sizes(sw))
    return CLI_EUSAGE;
  if (c->nsizes == 0)
    return cli_fail(CLI_EUSAGE, CMD,
                    "--gpus is required (or --nodes), e.g. --gpus 8,16,32 (see 'flexmoe sweep "
                    "--help')");
  for (int i = 0; i < c->ntraces; i++)
    if (cli_trace_check(CMD, sw->traces[i], b->it_begin, b->it_end, 0,
                        (sw->strict ? CLI_TRACE_STRICT : 0) | CLI_TRACE_REFUSE_EMPTY |
                            (sw->allow_empty ? CLI_TRACE_ALLOW_EMPTY : 0)))
      return CLI_EFAIL;
  return CLI_OK;
}

/* ---- Ctrl-C: what was stored and how to resume ---------------------------- */

/* Set before the sweep starts, read by the handler (async-signal-safe:
 * it only formats into its own buffer and write()s). */
static char resume_cmd[4096];
static const char *resume_db;
static pid_t sweep_pid;
static volatile sig_atomic_t points_stored, points_before;

/* SIGINT / SIGTERM: workers leave quietly (the parent speaks); the parent
 * says what is stored and the command that resumes, then exits 130. A
 * point being computed was not committed: its transaction never happened. */
static void on_interrupt(int sig) {
  if (getpid() != sweep_pid)
    _exit(128 + sig);
  char msg[5120];
  size_t at = fm_text_sweep_interrupted(msg, sizeof msg, (long)points_stored, (long)points_before,
                                        resume_db, resume_cmd);
  ssize_t w = write(2, msg, at);
  (void)w;
  _exit(128 + sig);
}

static void catch_interrupts(int argc, char **argv, const char *db) {
  fm_text_shell_words("flexmoe sweep", argc - 1, argv + 1, resume_cmd, sizeof resume_cmd);
  resume_db = db;
  sweep_pid = getpid();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* Draws the bar (a terminal only) and says what the sweep reports. */
static void on_event(void *ctx, const fm_sweep_event *ev) {
  const opts *o = ctx;
  const fm_sweep_stats *s = fm_sweep_stats_of(ev->sweep);
  points_stored = s->done;
  points_before = s->skipped + s->elsewhere;
  if (ev->kind == FM_SWEEP_NOTE) {
    fprintf(stderr, "flexmoe %s: note: %s\n", CMD, ev->message);
    return;
  }
  if (!o->bar || s->pending == 0)
    goto say;
  if (ev->kind != FM_SWEEP_PROGRESS) {
    fputc('\n', stderr);
    goto say;
  }
  fm_text_sweep_bar(stderr, s);
  fflush(stderr);
say:
  if (ev->kind != FM_SWEEP_PROGRESS)
    cli_fail(CLI_EFAIL, CMD, "%s", ev->message);
}

/* Lists the lost points on stderr (the first 64, then how many more). */
static void list_lost(const fm_sweep *sw) {
  int n = fm_sweep_stats_of(sw)->lost;
  if (!n)
    return;
  cli_fail(CLI_EFAIL, CMD,
           "%d point%s not computed and not stored (run the same command again "
           "to compute %s):",
           n, n == 1 ? "" : "s", n == 1 ? "it" : "them");
  fm_text_sweep_lost(stderr, sw);
}

int cmd_sweep(int argc, char **argv) {
  opts o;
  memset(&o, 0, sizeof(o));
  int rc = parse(&o, argc, argv);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  o.bar = !o.quiet && isatty(2);
  catch_interrupts(argc, argv, o.cfg.db);
  o.cfg.on_event = on_event;
  o.cfg.ctx = &o;
  char em[2048] = "";
  fm_sweep *sw = NULL;
  rc = fm_sweep_run(&o.cfg, &sw, em, sizeof em);
  if (rc != CLI_OK && em[0]) /* MPI ranks other than 0 have nothing to say */
    cli_fail(rc, CMD, "%s", em);
  if (!sw)
    return rc;
  const fm_sweep_stats *s = fm_sweep_stats_of(sw);
  if (s->rank == 0) {
    list_lost(sw);
    if (rc == CLI_OK || s->failed || s->lost)
      fm_text_sweep(stdout, fm_sweep_config_of(sw), s);
  }
  if (rc == CLI_OK && (s->failed || s->lost))
    rc = CLI_EFAIL;
  fm_sweep_free(sw);
  return rc;
}
