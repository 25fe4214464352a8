/*
 * cmd_sweep.c - flexmoe sweep: a grid of traces x clusters x sizes x seeds x
 * policies, computed by worker processes (or MPI ranks), written by one
 * process, one transaction per grid point.
 *
 * Design:
 *   - The grid is built and every point's configuration key is computed
 *     (fm_sim_config_key: trace content hash, resolved cluster and model,
 *     canonical policy) before anything runs, so a bad trace, preset or
 *     policy fails the whole sweep up front with one message.
 *   - Points whose key is already complete in the database are skipped: an
 *     interrupted sweep resumes where it stopped, and a finished one is a
 *     no-op. Duplicate points in one grid run once.
 *   - --jobs J > 1 forks J workers before the database is opened for
 *     writing. The parent hands out point indices on one pipe per worker
 *     (dynamic scheduling: a worker gets the next point when it returns a
 *     result) and reads packed outputs (fm_sim_pack) back on another; it
 *     alone records, each point in its own transaction (fm_sim_record).
 *     Workers die with the parent (PR_SET_PDEATHSIG, and EOF on their task
 *     pipe), so a killed sweep leaves no process behind and, thanks to the
 *     store's transactions, no partial point. A worker that dies loses the
 *     point it was computing; the others take the rest. Every pending point
 *     ends DONE, FAILED (the simulation refused it), ELSEWHERE (another
 *     process stored it first) or lost (its worker died, or it was never
 *     handed out: every worker dead, or a database error): lost points are
 *     listed and make the exit status 1, and the next run computes them.
 *   - Two sweeps on one database: the store claims a point and inserts it in
 *     one transaction (st_on_duplicate ST_DUP_KEEP), so a point is stored
 *     once; the sweep also checks before handing a point out.
 *   - Under mpirun (built with MPI, launched with OMPI_COMM_WORLD_SIZE / PMI
 *     in the environment) the pending points are dealt round-robin to the
 *     ranks; rank 0 computes its share too, and between its own points
 *     receives the other ranks' packed outputs and records them. --jobs is
 *     per machine and ignored under MPI (each rank computes sequentially).
 *   - Results do not depend on --jobs, on MPI or on interruption: a point's
 *     output is a function of its configuration only (fm_sim.h).
 * Output: a progress bar on stderr when it is a terminal, a summary on
 * stdout at the end; failed and lost points are listed on stderr (exit 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "flexmoe_config.h"
#include "sim/sim_cluster.h"
#include "run/fm_sim.h"
#include "store/st_store.h"
#include "traces/tr_trace.h"

#if FLEXMOE_HAVE_MPI
#include <mpi.h>
#endif

#define CMD "sweep"
#define MAX_LIST 64
#define MAX_SIZES 64
#define MAX_LOAD_ROWS 2000000 /* trace_loads rows stored per trace */

static const char help[] =
    "usage: flexmoe sweep --trace T [--trace T2 ...] [--policy SPEC ...]\n"
    "                     [--cluster PRESET|FILE.json ...] --gpus 8,16,...\n"
    "                     [--seeds 1,2] [--engine analytic|des] [--iterations A:B]\n"
    "                     [--gpus-per-node G] [--d-model D] [--d-ff F] [--top-k K]\n"
    "                     [--tokens-per-gpu T] [--slots S] [--profile FILE.json]\n"
    "                     [--plan-moves] [--jobs J] [--db FILE] [--lock-wait S]\n"
    "                     [--quiet]\n"
    "\n"
    "Simulates every point of the grid traces x clusters x GPU counts x seeds x\n"
    "policies and stores each as one run (one transaction) in the database.\n"
    "Points already complete in the database are skipped, so an interrupted\n"
    "sweep resumes. Compare the results with `flexmoe report`.\n"
    "\n"
    "  --trace T         routing trace (.npy or .csv); repeat for several\n"
    "  --policy SPEC     policy with options, e.g. flexmoe:threshold=1.2;\n"
    "                    repeat; default: static capacity fastermoe smartmoe\n"
    "                    eplb flexmoe oracle\n"
    "  --cluster P       preset (flexmoe clusters) or JSON file; repeat;\n"
    "                    default dgx-h100\n"
    "  --gpus LIST       cluster sizes in GPUs, e.g. 8,16,32,64,128,256,512,1024;\n"
    "                    a size below a node's GPU count is one partial node,\n"
    "                    above it must be a multiple of it\n"
    "  --seeds LIST      seeds (default 0, as every command)\n"
    "  --engine E        analytic (default) or des\n"
    "  --iterations A:B  iterations of the trace to simulate (default all)\n"
    "  --plan-moves      also store every plan's moves (plans.moves_json); by\n"
    "                    default a sweep stores each plan's move count and bytes\n"
    "  --jobs J          worker processes (default 1)\n"
    "  --db FILE         results database (default flexmoe.db)\n"
    "  --lock-wait S     seconds to wait while another process writes the\n"
    "                    database, 0 to 3600 (default 30); then it fails\n"
    "  --quiet           no progress bar\n"
    "\n"
    "Under MPI, `mpirun -n K flexmoe sweep ...` shares the grid over K ranks;\n"
    "rank 0 alone writes the database.\n"
    "\n"
    "example:\n"
    "  flexmoe sweep --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
    "      --cluster dgx-h100 --gpus 8,16,32,64,128,256,512,1024 --jobs 2\n"
    "  flexmoe report --db flexmoe.db\n";

static const char *const default_policies[] = {
    "static", "capacity", "fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"};

typedef struct point {
  fm_sim_config cfg;
  char key[1024];
  char label[PL_SPEC_MAX + 512]; /* the spec as given, whole, and the point */
  int duplicate; /* same key as an earlier point */
  int pending;   /* to compute in this invocation */
  int outcome;   /* of a pending point: OUT_* */
} point;

/* What became of a pending point. OUT_NONE at the end means it was never
 * computed (every worker died, or the sweep stopped on a database error):
 * like OUT_LOST it is not stored, and the next run of the same command
 * computes it. */
enum { OUT_NONE, OUT_DONE, OUT_FAILED, OUT_ELSEWHERE, OUT_LOST };

typedef struct sweep {
  /* options */
  const char *traces[MAX_LIST];
  int ntraces;
  const char *policies[MAX_LIST];
  int npolicies;
  const char *clusters[MAX_LIST];
  int nclusters;
  long sizes[MAX_SIZES];
  int nsizes;
  long seeds[MAX_LIST];
  int nseeds;
  fm_sim_config base;
  int gpus_per_node;
  long jobs;
  const char *db;
  long lock_wait_s; /* busy timeout of the database, seconds */
  int quiet;
  /* grid */
  point *points;
  int npoints;
  int *order; /* largest clusters first: the longest points start early */
  /* progress */
  int total_pending, done, failed;
  int elsewhere; /* pending points another process stored meanwhile */
  double t0;
  int bar; /* progress bar on stderr */
} sweep;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* ---- grid ---- */

/* Nodes and GPUs per node for `gpus` GPUs of cluster spec. */
static int split_size(const sweep *sw, const char *spec, long gpus, int *nodes,
                      int *gpn, char *msg, size_t len) {
  sim_cluster c;
  sim_errbuf err = {{0}};
  if (sim_cluster_resolve(spec, &c, &err) != SIM_OK) {
    snprintf(msg, len, "--cluster: %s", err.msg);
    return CLI_EUSAGE;
  }
  int per = sw->gpus_per_node ? sw->gpus_per_node : c.gpus_per_node;
  if (gpus <= per) {
    *nodes = 1;
    *gpn = (int)gpus;
    return CLI_OK;
  }
  if (gpus % per != 0) {
    snprintf(msg, len,
             "--gpus: %ld is not a multiple of %d GPUs per node of cluster %s",
             gpus, per, spec);
    return CLI_EUSAGE;
  }
  *nodes = (int)(gpus / per);
  *gpn = per;
  return CLI_OK;
}

static int point_gpus(const point *pt) {
  return pt->cfg.nodes * pt->cfg.gpus_per_node;
}

/* Builds the grid and every point's key. verbose: print the first error. */
static int build_grid(sweep *sw, int verbose) {
  long n = (long)sw->ntraces * sw->nclusters * sw->nsizes * sw->nseeds *
           sw->npolicies;
  sw->points = calloc((size_t)n, sizeof(point));
  if (!sw->points)
    return verbose ? cli_fail(CLI_EFAIL, CMD, "out of memory") : CLI_EFAIL;
  char msg[1024];
  int k = 0;
  for (int t = 0; t < sw->ntraces; t++)
    for (int c = 0; c < sw->nclusters; c++)
      for (int g = 0; g < sw->nsizes; g++) {
        int nodes = 0, gpn = 0;
        int rc = split_size(sw, sw->clusters[c], sw->sizes[g], &nodes, &gpn,
                            msg, sizeof(msg));
        if (rc)
          return verbose ? cli_fail(rc, CMD, "%s", msg) : rc;
        for (int s = 0; s < sw->nseeds; s++)
          for (int p = 0; p < sw->npolicies; p++) {
            point *pt = &sw->points[k++];
            pt->cfg = sw->base;
            pt->cfg.trace_path = sw->traces[t];
            pt->cfg.cluster = sw->clusters[c];
            pt->cfg.nodes = nodes;
            pt->cfg.gpus_per_node = gpn;
            pt->cfg.seed = (uint64_t)sw->seeds[s];
            pt->cfg.policy = sw->policies[p];
            snprintf(pt->label, sizeof(pt->label),
                     "%s on %s, %ld GPUs, seed %ld, trace %s", sw->policies[p],
                     sw->clusters[c], sw->sizes[g], sw->seeds[s],
                     base_name(sw->traces[t]));
            msg[0] = '\0';
            rc = fm_sim_config_key(&pt->cfg, pt->key, sizeof(pt->key), msg,
                                    sizeof(msg));
            if (rc)
              return verbose ? cli_fail(rc, CMD, "%s", msg[0] ? msg : "bad point")
                             : rc;
            for (int q = 0; q < k - 1; q++)
              if (strcmp(sw->points[q].key, pt->key) == 0) {
                pt->duplicate = 1;
                break;
              }
          }
      }
  sw->npoints = k;
  /* Hand out the largest clusters first (they take longest), so workers and
   * ranks do not wait on one long point at the end; ties keep grid order. */
  sw->order = malloc((size_t)k * sizeof(int));
  if (!sw->order)
    return verbose ? cli_fail(CLI_EFAIL, CMD, "out of memory") : CLI_EFAIL;
  for (int i = 0; i < k; i++) {
    int j = i, g = point_gpus(&sw->points[i]);
    for (; j > 0 && point_gpus(&sw->points[sw->order[j - 1]]) < g; j--)
      sw->order[j] = sw->order[j - 1];
    sw->order[j] = i;
  }
  return CLI_OK;
}

/* Per-(iteration, layer, expert) loads of every trace, for the notebooks;
 * written once per trace. Failing to read a trace here is not fatal (the
 * runner reports it per point), failing to write is. */
static int store_trace_loads(sweep *sw, st_db *db) {
  for (int t = 0; t < sw->ntraces; t++) {
    tr_trace tr;
    tr_error terr;
    if (tr_open(&tr, sw->traces[t], &terr) != TR_OK)
      continue;
    int64_t per_it = (int64_t)tr.layers * tr.experts;
    int64_t its = tr.iterations;
    if (per_it > 0 && its * per_it > MAX_LOAD_ROWS)
      its = MAX_LOAD_ROWS / per_it;
    int64_t *loads = calloc((size_t)(its * per_it) + 1, sizeof(int64_t));
    int64_t *slice = calloc((size_t)tr.ranks * tr.experts + 1, sizeof(int64_t));
    int rc = loads && slice ? ST_OK : ST_ENOMEM;
    for (int64_t i = 0; rc == ST_OK && i < its; i++)
      for (int l = 0; l < tr.layers; l++) {
        tr_slice(&tr, i, l, slice);
        int64_t *row = loads + (i * tr.layers + l) * tr.experts;
        for (int r = 0; r < tr.ranks; r++)
          for (int e = 0; e < tr.experts; e++)
            row[e] += slice[(int64_t)r * tr.experts + e];
      }
    st_trace_row row = {tr.path, tr.hash, tr.iterations, tr.layers, tr.ranks,
                        tr.experts, NULL};
    int64_t tid = 0;
    if (rc == ST_OK)
      rc = st_trace_put(db, &row, &tid);
    if (rc == ST_OK)
      rc = st_trace_loads_put(db, tid, 0, its, tr.layers, tr.experts, loads,
                              NULL);
    free(slice);
    free(loads);
    tr_close(&tr);
    if (rc != ST_OK)
      return cli_fail(CLI_EFAIL, CMD, "%s: cannot store trace loads: %s",
                      sw->db, rc == ST_ENOMEM ? st_strerror(rc) : st_errmsg(db));
  }
  return CLI_OK;
}

/* ---- progress ---- */

static void progress(sweep *sw) {
  if (!sw->bar)
    return;
  int n = sw->done + sw->failed + sw->elsewhere, total = sw->total_pending;
  double el = now_s() - sw->t0;
  int width = 30, fill = total ? n * width / total : width;
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[width] = '\0';
  double eta = n ? el / n * (total - n) : 0;
  fprintf(stderr, "\r[%s] %d/%d points  %.1f s  eta %.0f s%s ", bar, n, total,
          el, eta, sw->failed ? "  (failures)" : "");
  if (n == total)
    fputc('\n', stderr);
  fflush(stderr);
}

static void point_failed(sweep *sw, point *pt, const char *why) {
  if (sw->bar)
    fputc('\n', stderr);
  cli_fail(CLI_EFAIL, CMD, "%s: %s", pt->label, why);
  pt->outcome = OUT_FAILED;
  sw->failed++;
}

/* Pending points that are not stored and did not fail: lost with a worker
 * or never started. */
static int count_lost(const sweep *sw) {
  int n = 0;
  for (int i = 0; i < sw->npoints; i++)
    n += sw->points[i].pending && (sw->points[i].outcome == OUT_NONE ||
                                   sw->points[i].outcome == OUT_LOST);
  return n;
}

/* Lists the lost points on stderr (the first 64, then how many more). */
static void list_lost(const sweep *sw) {
  int n = count_lost(sw), shown = 0;
  if (!n)
    return;
  if (sw->bar)
    fputc('\n', stderr);
  cli_fail(CLI_EFAIL, CMD,
           "%d point%s not computed and not stored (run the same command again "
           "to compute %s):",
           n, n == 1 ? "" : "s", n == 1 ? "it" : "them");
  for (int k = 0; k < sw->npoints; k++) {
    const point *pt = &sw->points[sw->order[k]];
    if (!pt->pending || (pt->outcome != OUT_NONE && pt->outcome != OUT_LOST))
      continue;
    if (shown++ < 64)
      fprintf(stderr, "  %s%s\n", pt->label,
              pt->outcome == OUT_LOST ? " (its worker died)" : "");
  }
  if (shown > 64)
    fprintf(stderr, "  ... and %d more\n", shown - 64);
}

/* Records one packed output; returns CLI_OK or CLI_EFAIL (fatal: the
 * database could not be written). */
static int record_packed(sweep *sw, st_db *db, point *pt, const void *buf,
                         size_t len) {
  fm_sim_output *o = NULL;
  if (fm_sim_unpack(buf, len, &o) != 0) {
    point_failed(sw, pt, "worker sent a malformed result");
    return CLI_OK;
  }
  char msg[1024] = "";
  int64_t id = 0;
  int rc = fm_sim_record(db, o, &id, msg, sizeof(msg));
  fm_sim_output_free(o);
  if (rc != 0 && st_errcode(db) == ST_EEXISTS) {
    /* Another sweep on this database stored the point first: the claim and
     * the insert are one transaction, so it is stored once. */
    pt->outcome = OUT_ELSEWHERE;
    sw->elsewhere++;
    progress(sw);
    return CLI_OK;
  }
  if (rc != 0) {
    if (sw->bar)
      fputc('\n', stderr);
    return cli_fail(CLI_EFAIL, CMD, "%s: %s", sw->db,
                    msg[0] ? msg : "cannot record a result");
  }
  pt->outcome = OUT_DONE;
  sw->done++;
  progress(sw);
  return CLI_OK;
}

/* Computes one point into a packed buffer; on failure *buf is a malloc'd
 * message and the return is non-zero. */
static int compute_packed(const point *pt, void **buf, size_t *len) {
  char msg[1024] = "";
  fm_sim_output *o = NULL;
  int rc = fm_sim_compute(&pt->cfg, &o, msg, sizeof(msg));
  if (rc == 0) {
    rc = fm_sim_pack(o, buf, len) == 0 ? 0 : CLI_EFAIL;
    fm_sim_output_free(o);
    if (rc)
      snprintf(msg, sizeof(msg), "cannot pack the result (out of memory)");
  }
  if (rc) {
    *buf = strdup(msg[0] ? msg : "simulation failed");
    *len = *buf ? strlen(*buf) + 1 : 0;
    return rc ? rc : CLI_EFAIL;
  }
  return 0;
}

/* ---- pipes ---- */

typedef struct msg_hdr {
  int32_t index;
  int32_t status; /* 0: payload is a packed output; else an error message */
  uint64_t len;
} msg_hdr;

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* 1: read all, 0: EOF before anything, -1: error or EOF part-way. */
static int read_all_fd(int fd, void *buf, size_t len) {
  char *p = buf;
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, p + got, len - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      return got == 0 ? 0 : -1;
    got += (size_t)n;
  }
  return 1;
}

static void worker_main(const sweep *sw, int task_fd, int result_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int32_t idx;
  while (read_all_fd(task_fd, &idx, sizeof(idx)) == 1) {
    if (idx < 0 || idx >= sw->npoints)
      _exit(3);
    void *buf = NULL;
    size_t len = 0;
    int rc = compute_packed(&sw->points[idx], &buf, &len);
    msg_hdr h = {idx, rc, len};
    if (write_all(result_fd, &h, sizeof(h)) || write_all(result_fd, buf, len))
      _exit(4);
    free(buf);
  }
  _exit(0);
}

typedef struct worker {
  pid_t pid;
  int task_fd, result_fd;
  int busy; /* point index in flight, or -1 */
} worker;

/* Whether another process stored pt since the sweep started (a second
 * sweep on the same database): then it is not computed again. A failed
 * check says no; recording settles it (ST_EEXISTS). */
static int stored_elsewhere(sweep *sw, st_db *db, point *pt) {
  int exists = 0;
  if (st_run_exists(db, pt->key, &exists) != ST_OK || !exists)
    return 0;
  pt->outcome = OUT_ELSEWHERE;
  sw->elsewhere++;
  progress(sw);
  return 1;
}

static int next_pending(sweep *sw, st_db *db, int *cursor) {
  while (*cursor < sw->npoints) {
    int idx = sw->order[(*cursor)++];
    if (sw->points[idx].pending && !stored_elsewhere(sw, db, &sw->points[idx]))
      return idx;
  }
  return -1;
}

static int give(worker *w, int idx) {
  int32_t i = idx;
  w->busy = idx;
  return write_all(w->task_fd, &i, sizeof(i));
}

static void stop_workers(worker *ws, int n, int kill_them) {
  for (int i = 0; i < n; i++) {
    if (ws[i].task_fd >= 0)
      close(ws[i].task_fd);
    if (ws[i].result_fd >= 0)
      close(ws[i].result_fd);
    ws[i].task_fd = ws[i].result_fd = -1;
    if (kill_them && ws[i].pid > 0)
      kill(ws[i].pid, SIGKILL);
  }
  for (int i = 0; i < n; i++)
    if (ws[i].pid > 0)
      waitpid(ws[i].pid, NULL, 0);
}

/* Forks the workers; the database must not be open yet. */
static int start_workers(const sweep *sw, worker *ws, int n) {
  for (int i = 0; i < n; i++)
    ws[i] = (worker){-1, -1, -1, -1};
  for (int i = 0; i < n; i++) {
    int tp[2], rp[2];
    if (pipe2(tp, O_CLOEXEC) || pipe2(rp, O_CLOEXEC)) {
      stop_workers(ws, i, 1);
      return cli_fail(CLI_EFAIL, CMD, "cannot create pipes: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      stop_workers(ws, i, 1);
      return cli_fail(CLI_EFAIL, CMD, "cannot start a worker: %s",
                      strerror(errno));
    }
    if (pid == 0) {
      for (int j = 0; j < i; j++) { /* other workers' pipe ends */
        close(ws[j].task_fd);
        close(ws[j].result_fd);
      }
      close(tp[1]);
      close(rp[0]);
      worker_main(sw, tp[0], rp[1]);
    }
    close(tp[0]);
    close(rp[1]);
    ws[i] = (worker){pid, tp[1], rp[0], -1};
  }
  return CLI_OK;
}

/* What became of a worker whose result pipe ended (or that sent garbage):
 * reaps it (killing it first if it is somehow still alive after a second)
 * and says so, naming the point it was computing; that point is lost, not
 * failed: nothing is wrong with it, and the next run computes it. */
static void worker_gone(sweep *sw, worker *w) {
  int status = 0;
  pid_t got = 0;
  for (int t = 0; t < 100 && (got = waitpid(w->pid, &status, WNOHANG)) == 0; t++) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  int killed_here = 0;
  if (got == 0) {
    kill(w->pid, SIGKILL);
    got = waitpid(w->pid, &status, 0);
    killed_here = 1;
  }
  char why[160];
  if (got != w->pid)
    snprintf(why, sizeof(why), "worker %d died", (int)w->pid);
  else if (killed_here)
    snprintf(why, sizeof(why), "worker %d sent a malformed result and was stopped",
             (int)w->pid);
  else if (WIFSIGNALED(status))
    snprintf(why, sizeof(why), "worker %d was killed by signal %d (%s)",
             (int)w->pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(why, sizeof(why), "worker %d exited with status %d", (int)w->pid,
             WEXITSTATUS(status));
  if (sw->bar)
    fputc('\n', stderr);
  if (w->busy >= 0) {
    point *pt = &sw->points[w->busy];
    pt->outcome = OUT_LOST;
    cli_fail(CLI_EFAIL, CMD, "%s while computing %s: that point is lost", why,
             pt->label);
  } else {
    cli_fail(CLI_EFAIL, CMD, "%s", why);
  }
  close(w->task_fd);
  close(w->result_fd);
  w->task_fd = w->result_fd = -1;
  w->pid = -1;
  w->busy = -1;
  progress(sw);
}

/* Gives every live idle worker its next point. A worker found dead here
 * (killed while idle) puts its point back for the others. */
static void dispatch(sweep *sw, worker *ws, int n, st_db *db, int *cursor) {
  for (int i = 0; i < n; i++) {
    if (ws[i].task_fd < 0 || ws[i].busy >= 0)
      continue;
    int idx = next_pending(sw, db, cursor);
    if (idx < 0)
      return;
    if (give(&ws[i], idx) != 0) {
      ws[i].busy = -1;
      (*cursor)--; /* idx is order[*cursor - 1]: back in the queue */
      worker_gone(sw, &ws[i]);
    }
  }
}

/* The parent's loop with workers: hand out, receive, record. Runs until no
 * point is in flight: all done, every worker dead (the rest are listed as
 * lost by the caller), or a database error (CLI_EFAIL, already said). */
static int run_workers(sweep *sw, worker *ws, int n, st_db *db) {
  int cursor = 0, rc = CLI_OK;
  struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
  if (!pf)
    return cli_fail(CLI_EFAIL, CMD, "out of memory");
  dispatch(sw, ws, n, db, &cursor);
  for (;;) {
    int inflight = 0;
    for (int i = 0; i < n; i++) {
      pf[i] = (struct pollfd){ws[i].busy >= 0 ? ws[i].result_fd : -1, POLLIN, 0};
      inflight += ws[i].busy >= 0;
    }
    if (!inflight)
      break;
    if (poll(pf, (nfds_t)n, -1) < 0) {
      if (errno == EINTR)
        continue;
      rc = cli_fail(CLI_EFAIL, CMD, "poll: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n && rc == CLI_OK; i++) {
      if (ws[i].busy < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      point *pt = &sw->points[ws[i].busy];
      msg_hdr h;
      void *buf = NULL;
      int got = read_all_fd(ws[i].result_fd, &h, sizeof(h));
      if (got == 1 && h.index == ws[i].busy && h.len < ((uint64_t)1 << 40) &&
          (buf = malloc(h.len + 1)) != NULL)
        got = read_all_fd(ws[i].result_fd, buf, h.len);
      else if (got == 1)
        got = -1;
      if (got != 1) {
        /* The worker died (killed, out of memory, crashed). */
        free(buf);
        worker_gone(sw, &ws[i]);
        continue;
      }
      ws[i].busy = -1;
      /* The worker computes its next point while this one is recorded. */
      dispatch(sw, ws, n, db, &cursor);
      if (h.status == 0) {
        rc = record_packed(sw, db, pt, buf, h.len);
      } else {
        ((char *)buf)[h.len] = '\0';
        point_failed(sw, pt, (const char *)buf);
      }
      free(buf);
    }
    if (rc != CLI_OK)
      break;
    dispatch(sw, ws, n, db, &cursor);
  }
  free(pf);
  return rc;
}

static int run_inline(sweep *sw, st_db *db) {
  for (int i = 0; i < sw->npoints; i++) {
    if (!sw->points[i].pending || stored_elsewhere(sw, db, &sw->points[i]))
      continue;
    void *buf = NULL;
    size_t len = 0;
    int rc = compute_packed(&sw->points[i], &buf, &len);
    if (rc == 0)
      rc = record_packed(sw, db, &sw->points[i], buf, len);
    else {
      point_failed(sw, &sw->points[i], (const char *)buf);
      rc = CLI_OK;
    }
    free(buf);
    if (rc != CLI_OK)
      return rc;
  }
  return CLI_OK;
}

/* Marks pending points (not duplicates, not complete in the database);
 * returns how many points were already complete through *skipped. */
static int mark_pending(sweep *sw, st_db *db, int *skipped) {
  *skipped = 0;
  sw->total_pending = 0;
  for (int i = 0; i < sw->npoints; i++) {
    point *pt = &sw->points[i];
    pt->pending = 0;
    if (pt->duplicate)
      continue;
    int exists = 0;
    int rc = st_run_exists(db, pt->key, &exists);
    if (rc != ST_OK)
      return cli_fail(CLI_EFAIL, CMD, "%s: %s", sw->db, st_errmsg(db));
    if (exists)
      (*skipped)++;
    else {
      pt->pending = 1;
      sw->total_pending++;
    }
  }
  return CLI_OK;
}

/* Opens the database for recording: waits --lock-wait for other writers,
 * and a point another process stored first is counted, not stored again
 * (ST_DUP_KEEP). Says what opening did (a migration's notice). */
static int open_db(const sweep *sw, st_db **db) {
  char msg[1024];
  if (st_open(db, sw->db, ST_WRITE, msg, sizeof(msg)) != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  if (st_notice(*db)[0])
    fprintf(stderr, "flexmoe %s: note: %s\n", CMD, st_notice(*db));
  if (st_busy_timeout(*db, (int)(sw->lock_wait_s * 1000)) != ST_OK ||
      st_on_duplicate(*db, ST_DUP_KEEP) != ST_OK) {
    int rc = cli_fail(CLI_EFAIL, CMD, "%s: %s", sw->db, st_errmsg(*db));
    st_close(*db);
    *db = NULL;
    return rc;
  }
  return CLI_OK;
}

static void summary(const sweep *sw, int skipped, int workers, int ranks) {
  int unique = 0;
  for (int i = 0; i < sw->npoints; i++)
    unique += !sw->points[i].duplicate;
  double wall = now_s() - sw->t0;
  printf("sweep: %d grid points (%d trace%s x %d cluster%s x %d size%s x %d "
         "seed%s x %d polic%s)%s\n",
         unique, sw->ntraces, sw->ntraces == 1 ? "" : "s", sw->nclusters,
         sw->nclusters == 1 ? "" : "s", sw->nsizes, sw->nsizes == 1 ? "" : "s",
         sw->nseeds, sw->nseeds == 1 ? "" : "s", sw->npolicies,
         sw->npolicies == 1 ? "y" : "ies",
         unique < sw->npoints ? " after removing duplicates" : "");
  printf("  computed %d, already in %s %d, failed %d\n", sw->done, sw->db,
         skipped + sw->elsewhere, sw->failed);
  if (sw->elsewhere)
    printf("  (%d of them stored by another process while this sweep ran)\n",
           sw->elsewhere);
  int lost = count_lost(sw);
  if (lost)
    printf("  lost %d (not stored: listed on stderr; run the same command "
           "again to compute them)\n",
           lost);
  if (ranks > 1)
    printf("  wall %.2f s on %d MPI ranks\n", wall, ranks);
  else
    printf("  wall %.2f s with %d worker%s\n", wall, workers,
           workers == 1 ? "" : "s");
  printf("results: flexmoe report --db %s\n", sw->db);
}

/* ---- MPI ---- */

#if FLEXMOE_HAVE_MPI
static int under_mpirun(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") ||
         getenv("PMIX_RANK");
}

enum { TAG_HDR = 11, TAG_DATA = 12 };

static int mpi_receive_one(sweep *sw, st_db *db) {
  MPI_Status st;
  int64_t hdr[3];
  MPI_Recv(hdr, 3, MPI_INT64_T, MPI_ANY_SOURCE, TAG_HDR, MPI_COMM_WORLD, &st);
  size_t len = (size_t)hdr[2];
  char *buf = malloc(len + 1);
  if (!buf)
    return cli_fail(CLI_EFAIL, CMD, "out of memory");
  MPI_Recv(buf, (int)len, MPI_BYTE, st.MPI_SOURCE, TAG_DATA, MPI_COMM_WORLD,
           MPI_STATUS_IGNORE);
  int idx = (int)hdr[0], rc = CLI_OK;
  if (idx < 0 || idx >= sw->npoints) {
    free(buf);
    return cli_fail(CLI_EFAIL, CMD, "MPI rank %d sent a bad point", st.MPI_SOURCE);
  }
  if (hdr[1] == 0)
    rc = record_packed(sw, db, &sw->points[idx], buf, len);
  else {
    buf[len] = '\0';
    point_failed(sw, &sw->points[idx], buf);
  }
  free(buf);
  return rc;
}

/* Every rank: its share of the pending points (round-robin over the
 * pending list). Rank 0 records everything. Returns the exit code agreed by
 * all ranks. */
static int run_mpi(sweep *sw, int rank, int size, int *skipped) {
  st_db *db = NULL;
  int rc = CLI_OK;
  int32_t *pend = calloc((size_t)sw->npoints + 1, sizeof(int32_t));
  int npend = 0;
  if (rank == 0) {
    rc = open_db(sw, &db);
    if (rc == CLI_OK)
      rc = mark_pending(sw, db, skipped);
    if (rc == CLI_OK)
      rc = store_trace_loads(sw, db);
    for (int i = 0; rc == CLI_OK && i < sw->npoints; i++)
      if (sw->points[sw->order[i]].pending)
        pend[npend++] = sw->order[i];
  }
  int32_t head[2] = {rc, npend};
  MPI_Bcast(head, 2, MPI_INT32_T, 0, MPI_COMM_WORLD);
  if (head[0] != CLI_OK) {
    st_close(db);
    free(pend);
    return head[0];
  }
  npend = head[1];
  MPI_Bcast(pend, npend, MPI_INT32_T, 0, MPI_COMM_WORLD);
  sw->total_pending = npend;
  int theirs = 0; /* points rank 0 will receive */
  for (int j = 0; j < npend; j++)
    theirs += j % size != 0;
  for (int j = rank; j < npend && rc == CLI_OK; j += size) {
    point *pt = &sw->points[pend[j]];
    void *buf = NULL;
    size_t len = 0;
    int st = compute_packed(pt, &buf, &len);
    if (rank == 0) {
      if (st == 0)
        rc = record_packed(sw, db, pt, buf, len);
      else
        point_failed(sw, pt, (const char *)buf);
      /* Drain what the other ranks sent meanwhile. */
      int flag = 1;
      while (rc == CLI_OK && theirs > 0 && flag) {
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_HDR, MPI_COMM_WORLD, &flag,
                   MPI_STATUS_IGNORE);
        if (flag) {
          rc = mpi_receive_one(sw, db);
          theirs--;
        }
      }
    } else {
      int64_t hdr[3] = {pend[j], st, (int64_t)len};
      MPI_Send(hdr, 3, MPI_INT64_T, 0, TAG_HDR, MPI_COMM_WORLD);
      MPI_Send(buf, (int)len, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD);
    }
    free(buf);
  }
  while (rank == 0 && rc == CLI_OK && theirs > 0) {
    rc = mpi_receive_one(sw, db);
    theirs--;
  }
  if (rank == 0) {
    st_close(db);
    if (rc != CLI_OK && db)
      list_lost(sw); /* a database error stopped the sweep */
    if (rc == CLI_OK && sw->failed)
      rc = CLI_EFAIL;
  }
  free(pend);
  if (rank == 0 && rc != CLI_OK && theirs > 0)
    MPI_Abort(MPI_COMM_WORLD, rc); /* others may block sending to us */
  int32_t final = rc;
  MPI_Bcast(&final, 1, MPI_INT32_T, 0, MPI_COMM_WORLD);
  return final;
}
#endif

/* ---- command ---- */

static int add_item(const char **arr, int *n, const char *v, const char *flag) {
  if (*n >= MAX_LIST)
    return cli_fail(CLI_EUSAGE, CMD, "%s: more than %d values", flag, MAX_LIST);
  arr[(*n)++] = v;
  return CLI_OK;
}

static int parse(sweep *sw, int argc, char **argv, int *help_only) {
  static const struct option opts[] = {
      {"trace", required_argument, NULL, 't'},
      {"policy", required_argument, NULL, 'p'},
      {"cluster", required_argument, NULL, 'c'},
      {"gpus", required_argument, NULL, 'g'},
      {"seeds", required_argument, NULL, 's'},
      {"seed", required_argument, NULL, 's'},
      {"engine", required_argument, NULL, 'e'},
      {"iterations", required_argument, NULL, 'i'},
      {"jobs", required_argument, NULL, 'j'},
      {"db", required_argument, NULL, 'd'},
      {"lock-wait", required_argument, NULL, 'W'},
      {"gpus-per-node", required_argument, NULL, 'G'},
      {"d-model", required_argument, NULL, 'M'},
      {"d-ff", required_argument, NULL, 'F'},
      {"top-k", required_argument, NULL, 'K'},
      {"tokens-per-gpu", required_argument, NULL, 'T'},
      {"slots", required_argument, NULL, 'S'},
      {"profile", required_argument, NULL, 'P'},
      {"quiet", no_argument, NULL, 'q'},
      {"plan-moves", no_argument, NULL, 'm'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  fm_sim_config init = FM_SIM_CONFIG_INIT;
  sw->base = init;
  sw->base.plan_moves = 0;
  sw->jobs = 1;
  sw->db = "flexmoe.db";
  sw->lock_wait_s = 30;
  int c;
  long v;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int rc = CLI_OK;
    switch (c) {
    case 't':
      rc = add_item(sw->traces, &sw->ntraces, optarg, "--trace");
      break;
    case 'p':
      rc = add_item(sw->policies, &sw->npolicies, optarg, "--policy");
      break;
    case 'c':
      rc = add_item(sw->clusters, &sw->nclusters, optarg, "--cluster");
      break;
    case 'g':
      rc = cli_parse_list(CMD, "--gpus", optarg, sw->sizes, MAX_SIZES, &sw->nsizes);
      break;
    case 's':
      rc = cli_parse_list(CMD, "--seeds", optarg, sw->seeds, MAX_LIST, &sw->nseeds);
      break;
    case 'e':
      if (strcmp(optarg, "analytic") && strcmp(optarg, "des"))
        return cli_fail(CLI_EUSAGE, CMD,
                        "--engine: '%s' is not one of analytic des", optarg);
      sw->base.engine = optarg;
      break;
    case 'i':
      rc = cli_parse_range(CMD, "--iterations", optarg, &sw->base.it_begin,
                           &sw->base.it_end);
      break;
    case 'j':
      rc = cli_parse_long(CMD, "--jobs", optarg, 1, 256, &sw->jobs);
      break;
    case 'd':
      sw->db = optarg;
      break;
    case 'W':
      rc = cli_parse_long(CMD, "--lock-wait", optarg, 0, 3600, &sw->lock_wait_s);
      break;
    case 'G':
      rc = cli_parse_long(CMD, "--gpus-per-node", optarg, 1, 1024, &v);
      sw->gpus_per_node = (int)v;
      break;
    case 'M':
      rc = cli_parse_long(CMD, "--d-model", optarg, 1, 1 << 20, &v);
      sw->base.d_model = (int)v;
      break;
    case 'F':
      rc = cli_parse_long(CMD, "--d-ff", optarg, 1, 1 << 22, &v);
      sw->base.d_ff = (int)v;
      break;
    case 'K':
      rc = cli_parse_long(CMD, "--top-k", optarg, 1, 64, &v);
      sw->base.top_k = (int)v;
      break;
    case 'T':
      rc = cli_parse_long(CMD, "--tokens-per-gpu", optarg, 1, LONG_MAX, &v);
      sw->base.tokens_per_gpu = v;
      break;
    case 'S':
      rc = cli_parse_long(CMD, "--slots", optarg, 1, 1 << 16, &v);
      sw->base.slots = (int)v;
      break;
    case 'P':
      sw->base.profile_path = optarg;
      break;
    case 'q':
      sw->quiet = 1;
      break;
    case 'm':
      sw->base.plan_moves = 1;
      break;
    case 'h':
      cli_help(help);
      *help_only = 1;
      return CLI_OK;
    default:
      return cli_bad_option(CMD, argv[optind - 1]);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, CMD, "unexpected argument '%s'", argv[optind]);
  if (sw->ntraces == 0)
    return cli_fail(CLI_EUSAGE, CMD, "--trace is required (see 'flexmoe sweep --help')");
  if (sw->nsizes == 0)
    return cli_fail(CLI_EUSAGE, CMD,
                    "--gpus is required, e.g. --gpus 8,16,32 (see 'flexmoe sweep --help')");
  if (sw->npolicies == 0)
    for (size_t i = 0; i < sizeof(default_policies) / sizeof(*default_policies); i++)
      sw->policies[sw->npolicies++] = default_policies[i];
  if (sw->nclusters == 0)
    sw->clusters[sw->nclusters++] = "dgx-h100";
  if (sw->nseeds == 0)
    sw->seeds[sw->nseeds++] = FM_DEFAULT_SEED;
  return CLI_OK;
}

int cmd_sweep(int argc, char **argv) {
  sweep sw;
  memset(&sw, 0, sizeof(sw));
  int help_only = 0, rc = parse(&sw, argc, argv, &help_only);
  if (rc || help_only)
    return rc;
  sw.t0 = now_s();
  signal(SIGPIPE, SIG_IGN); /* a dead worker is an error, not our death */

#if FLEXMOE_HAVE_MPI
  if (under_mpirun()) {
    int rank = 0, size = 1;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* Rank 0 validates and speaks; the others build the same grid quietly. */
    int32_t ok = rank == 0 ? build_grid(&sw, 1) : 0;
    MPI_Bcast(&ok, 1, MPI_INT32_T, 0, MPI_COMM_WORLD);
    if (ok == CLI_OK && rank != 0)
      ok = build_grid(&sw, 0);
    if (ok != CLI_OK) {
      free(sw.order);
      free(sw.points);
      MPI_Finalize();
      return ok;
    }
    sw.bar = rank == 0 && !sw.quiet && isatty(2);
    int skipped = 0;
    rc = run_mpi(&sw, rank, size, &skipped);
    if (rank == 0 && (rc == CLI_OK || sw.failed || count_lost(&sw)))
      summary(&sw, skipped, 1, size);
    free(sw.order);
    free(sw.points);
    MPI_Finalize();
    return rc;
  }
#endif

  if ((rc = build_grid(&sw, 1)) != CLI_OK)
    goto out;
  st_db *db = NULL;
  int skipped = 0;
  if ((rc = open_db(&sw, &db)) != CLI_OK)
    goto out;
  rc = mark_pending(&sw, db, &skipped);
  if (rc == CLI_OK)
    rc = store_trace_loads(&sw, db);
  st_close(db);
  if (rc != CLI_OK)
    goto out;
  sw.bar = !sw.quiet && isatty(2) && sw.total_pending > 0;
  int nworkers = (int)(sw.jobs < sw.total_pending ? sw.jobs : sw.total_pending);
  if (nworkers < 1)
    nworkers = 1;
  int ran = 0; /* points were handed out: what is missing is listed */
  if (sw.total_pending > 0 && sw.jobs > 1) {
    worker ws[256];
    if ((rc = start_workers(&sw, ws, nworkers)) != CLI_OK)
      goto out;
    db = NULL;
    rc = open_db(&sw, &db); /* after fork: no connection crosses it */
    if (rc == CLI_OK) {
      ran = 1;
      rc = run_workers(&sw, ws, nworkers, db);
    }
    stop_workers(ws, nworkers, rc != CLI_OK);
    st_close(db);
  } else if (sw.total_pending > 0) {
    db = NULL;
    if ((rc = open_db(&sw, &db)) == CLI_OK) {
      ran = 1;
      rc = run_inline(&sw, db);
    }
    st_close(db);
    nworkers = 1;
  }
  /* A sweep that lost points (worker killed, database error) says which
   * and exits non-zero; they are not stored, so the next run computes them. */
  int lost = ran ? count_lost(&sw) : 0;
  if (lost)
    list_lost(&sw);
  if (rc == CLI_OK || sw.failed || lost)
    summary(&sw, skipped, sw.jobs > 1 ? nworkers : 1, 1);
  if (rc == CLI_OK && (sw.failed || lost))
    rc = CLI_EFAIL;
out:
  free(sw.order);
  free(sw.points);
  return rc;
}
