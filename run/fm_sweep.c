/*
 * fm_sweep.c - a grid of simulations over worker processes or MPI ranks,
 * recorded by one process (fm_sweep.h; moved from cli/cmd_sweep.c).
 *
 * Design:
 *   - The grid is built and every point's configuration key is computed
 *     before anything runs, so a bad trace, preset or policy fails the whole
 *     sweep up front with one message.
 *   - Points whose key is already complete in the database are skipped;
 *     duplicate points in one grid run once.
 *   - jobs > 1 forks the workers before the database is opened for writing.
 *     The parent hands out point indices on one pipe per worker (a worker
 *     gets the next point when it returns a result) and reads packed outputs
 *     (fm_sim_pack) back on another; it alone records, each point in its own
 *     transaction (fm_sim_record). Workers die with the parent
 *     (PR_SET_PDEATHSIG, and EOF on their task pipe). A worker that dies
 *     loses the point it was computing; the others take the rest.
 *   - Two sweeps on one database: the store claims a point and inserts it in
 *     one transaction (st_on_duplicate ST_DUP_KEEP), so a point is stored
 *     once; the sweep also checks before handing a point out.
 *   - Under mpirun the pending points are dealt round-robin to the ranks;
 *     rank 0 computes its share too, and between its own points receives the
 *     other ranks' packed outputs and records them.
 * Invariant: at the end every pending point is DONE, FAILED, ELSEWHERE,
 * LOST or NONE (never handed out), and done + failed + elsewhere + lost =
 * pending once every point was handed out.
 */
#include "run/fm_sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexmoe_config.h"
#include "run/fm_error.h"
#include "sim/sim_cluster.h"
#include "store/st_store.h"
#include "run/fm_trace_cache.h"
#include "traces/tr_trace.h"

#if FLEXMOE_HAVE_MPI
#include <mpi.h>
#endif

#define MAX_LOAD_ROWS 2000000 /* trace_loads rows stored per trace */

static const char *const default_policies[] = {
    "static", "capacity", "fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"};
static const char *const default_clusters[] = {"dgx-h100"};
static const long default_seeds[] = {FM_DEFAULT_SEED};

typedef struct point {
  fm_sim_config cfg;
  char key[1024];
  char label[PL_SPEC_MAX + 512]; /* the spec as given, whole, and the point */
  int duplicate; /* same key as an earlier point */
  int pending;   /* to compute in this invocation */
  int outcome;   /* of a pending point: OUT_* */
  char why[512]; /* of a failed point: the simulation's sentence */
} point;

/* What became of a pending point. OUT_NONE at the end means it was never
 * computed (every worker died, or the sweep stopped on a database error):
 * like OUT_LOST it is not stored, and the next run of the same command
 * computes it. */
enum { OUT_NONE, OUT_DONE, OUT_FAILED, OUT_ELSEWHERE, OUT_LOST };

struct fm_sweep {
  fm_sweep_config cfg; /* the caller's, defaults filled in */
  char *em;            /* the caller's error buffer */
  size_t el;
  /* grid */
  point *points;
  int npoints;
  int *order; /* largest clusters first: the longest points start early */
  fm_sweep_stats st;
  double t0;
  /* The traces every point reads, each opened once (the caller's cache
   * when its base configuration carries one, else the sweep's own, freed
   * with it). Forked workers inherit it; MPI ranks open their own. */
  fm_trace_cache *cache, *own_cache;
};
typedef struct fm_sweep sweep;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* One sentence into the caller's buffer; returns code. */
static int fatal(sweep *sw, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fatal(sweep *sw, int code, const char *fmt, ...) {
  if (sw->em && sw->el) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sw->em, sw->el, fmt, ap);
    va_end(ap);
  }
  return code;
}

static void emit(sweep *sw, int kind, const char *message) {
  if (!sw->cfg.on_event)
    return;
  sw->st.wall_s = now_s() - sw->t0;
  fm_sweep_event ev = {.kind = kind, .message = message, .sweep = sw};
  sw->cfg.on_event(sw->cfg.ctx, &ev);
}

/* ---- grid ---- */

/* Nodes and GPUs per node for `gpus` GPUs of cluster spec. */
static int split_size(const sweep *sw, const char *spec, long gpus, int *nodes,
                      int *gpn, char *msg, size_t len) {
  sim_cluster c;
  sim_errbuf err = {{0}};
  int names = sw->cfg.base.key_names;
  if (sim_cluster_resolve(spec, &c, &err) != SIM_OK) {
    snprintf(msg, len, "%s: %s", fm_key_name(FM_KEY_CLUSTER, names), err.msg);
    return FM_EUSAGE;
  }
  int per = sw->cfg.gpus_per_node ? sw->cfg.gpus_per_node : c.gpus_per_node;
  if (gpus <= per) {
    *nodes = 1;
    *gpn = (int)gpus;
    return FM_OK;
  }
  if (gpus % per != 0) {
    snprintf(msg, len, "%s: %ld is not a multiple of %d GPUs per node of cluster %s",
             fm_key_name(FM_KEY_GPUS, names), gpus, per, spec);
    return FM_EUSAGE;
  }
  *nodes = (int)(gpus / per);
  *gpn = per;
  return FM_OK;
}

static int point_gpus(const point *pt) {
  return pt->cfg.nodes * pt->cfg.gpus_per_node;
}

/* Builds the grid and every point's key. verbose: print the first error. */
static int build_grid(sweep *sw) {
  long n = (long)sw->cfg.ntraces * sw->cfg.nclusters * sw->cfg.nsizes * sw->cfg.nseeds *
           sw->cfg.npolicies;
  sw->points = calloc((size_t)n, sizeof(point));
  if (!sw->points)
    return fatal(sw, FM_EFAIL, "out of memory");
  char msg[1024];
  int k = 0;
  for (int t = 0; t < sw->cfg.ntraces; t++)
    for (int c = 0; c < sw->cfg.nclusters; c++)
      for (int g = 0; g < sw->cfg.nsizes; g++) {
        int nodes = 0, gpn = 0;
        int rc = split_size(sw, sw->cfg.clusters[c], sw->cfg.sizes[g], &nodes, &gpn,
                            msg, sizeof(msg));
        if (rc)
          return fatal(sw, rc, "%s", msg);
        for (int s = 0; s < sw->cfg.nseeds; s++)
          for (int p = 0; p < sw->cfg.npolicies; p++) {
            point *pt = &sw->points[k++];
            pt->cfg = sw->cfg.base;
            pt->cfg.traces = sw->cache;
            pt->cfg.trace_path = sw->cfg.traces[t];
            pt->cfg.cluster = sw->cfg.clusters[c];
            pt->cfg.nodes = nodes;
            pt->cfg.gpus_per_node = gpn;
            pt->cfg.seed = (uint64_t)sw->cfg.seeds[s];
            pt->cfg.policy = sw->cfg.policies[p];
            snprintf(pt->label, sizeof(pt->label),
                     "%s on %s, %ld GPUs, seed %ld, trace %s", sw->cfg.policies[p],
                     sw->cfg.clusters[c], sw->cfg.sizes[g], sw->cfg.seeds[s],
                     base_name(sw->cfg.traces[t]));
            msg[0] = '\0';
            rc = fm_sim_config_key(&pt->cfg, pt->key, sizeof(pt->key), msg,
                                    sizeof(msg));
            if (rc)
              return fatal(sw, rc, "%s", msg[0] ? msg : "bad point");
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
    return fatal(sw, FM_EFAIL, "out of memory");
  for (int i = 0; i < k; i++) {
    int j = i, g = point_gpus(&sw->points[i]);
    for (; j > 0 && point_gpus(&sw->points[sw->order[j - 1]]) < g; j--)
      sw->order[j] = sw->order[j - 1];
    sw->order[j] = i;
  }
  return FM_OK;
}

/* Per-(iteration, layer, expert) loads of every trace, for the notebooks;
 * written once per trace. Failing to read a trace here is not fatal (the
 * runner reports it per point), failing to write is. */
static int store_trace_loads(sweep *sw, st_db *db) {
  for (int t = 0; t < sw->cfg.ntraces; t++) {
    const tr_trace *tp = NULL;
    tr_error terr;
    if (fm_trace_cache_open(sw->cache, sw->cfg.traces[t], &tp, &terr) != TR_OK)
      continue;
    const tr_trace tr = *tp;
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
    st_trace_row row = {.path = tr.path, .hash = tr.hash, .iterations = tr.iterations,
                        .layers = tr.layers, .ranks = tr.ranks, .experts = tr.experts,
                        .meta_json = NULL};
    int64_t tid = 0;
    if (rc == ST_OK)
      rc = st_trace_put(db, &row, &tid);
    if (rc == ST_OK)
      rc = st_trace_loads_put(db, tid, 0, its, tr.layers, tr.experts, loads,
                              NULL);
    free(slice);
    free(loads);
    if (rc != ST_OK)
      return fatal(sw, FM_EFAIL, "%s: cannot store trace loads: %s",
                      sw->cfg.db, rc == ST_ENOMEM ? st_strerror(rc) : st_errmsg(db));
  }
  return FM_OK;
}

/* ---- progress ---- */

static void progress(sweep *sw) {
  emit(sw, FM_SWEEP_PROGRESS, NULL);
}

static void point_failed(sweep *sw, point *pt, const char *why) {
  char line[PL_SPEC_MAX + 2048];
  snprintf(line, sizeof line, "%s: %s", pt->label, why);
  emit(sw, FM_SWEEP_POINT_FAILED, line);
  snprintf(pt->why, sizeof pt->why, "%s", why);
  pt->outcome = OUT_FAILED;
  sw->st.failed++;
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

/* Records one packed output; returns FM_OK or FM_EFAIL (fatal: the
 * database could not be written). */
static int record_packed(sweep *sw, st_db *db, point *pt, const void *buf,
                         size_t len) {
  fm_sim_output *o = NULL;
  if (fm_sim_unpack(buf, len, &o) != 0) {
    point_failed(sw, pt, "worker sent a malformed result");
    return FM_OK;
  }
  char msg[1024] = "";
  int64_t id = 0;
  int rc = fm_sim_record(db, o, &id, msg, sizeof(msg));
  fm_sim_output_free(o);
  if (rc != 0 && st_errcode(db) == ST_EEXISTS) {
    /* Another sweep on this database stored the point first: the claim and
     * the insert are one transaction, so it is stored once. */
    pt->outcome = OUT_ELSEWHERE;
    sw->st.elsewhere++;
    progress(sw);
    return FM_OK;
  }
  if (rc != 0)
    return fatal(sw, FM_EFAIL, "%s: %s", sw->cfg.db, msg[0] ? msg : "cannot record a result");
  pt->outcome = OUT_DONE;
  sw->st.done++;
  progress(sw);
  return FM_OK;
}

/* Computes one point into a packed buffer; on failure *buf is a malloc'd
 * message and the return is non-zero. */
static int compute_packed(const point *pt, void **buf, size_t *len) {
  char msg[1024] = "";
  fm_sim_output *o = NULL;
  int rc = fm_sim_compute(&pt->cfg, &o, msg, sizeof(msg));
  if (rc == 0) {
    rc = fm_sim_pack(o, buf, len) == 0 ? 0 : FM_EFAIL;
    fm_sim_output_free(o);
    if (rc)
      snprintf(msg, sizeof(msg), "cannot pack the result (out of memory)");
  }
  if (rc) {
    *buf = strdup(msg[0] ? msg : "simulation failed");
    *len = *buf ? strlen(*buf) + 1 : 0;
    return rc;
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
    msg_hdr h = {.index = idx, .status = rc, .len = len};
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
  sw->st.elsewhere++;
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
static int start_workers(sweep *sw, worker *ws, int n) {
  for (int i = 0; i < n; i++)
    ws[i] = (worker){-1, -1, -1, -1};
  for (int i = 0; i < n; i++) {
    int tp[2], rp[2];
    if (pipe2(tp, O_CLOEXEC) || pipe2(rp, O_CLOEXEC)) {
      stop_workers(ws, i, 1);
      return fatal(sw, FM_EFAIL, "cannot create pipes: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      stop_workers(ws, i, 1);
      return fatal(sw, FM_EFAIL, "cannot start a worker: %s", strerror(errno));
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
  return FM_OK;
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
  char line[PL_SPEC_MAX + 2048];
  if (w->busy >= 0) {
    point *pt = &sw->points[w->busy];
    pt->outcome = OUT_LOST;
    snprintf(line, sizeof line, "%s while computing %s: that point is lost", why, pt->label);
  } else {
    snprintf(line, sizeof line, "%s", why);
  }
  emit(sw, FM_SWEEP_WORKER, line);
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
 * lost by the caller), or a database error (FM_EFAIL, already said). */
static int run_workers(sweep *sw, worker *ws, int n, st_db *db) {
  int cursor = 0, rc = FM_OK;
  struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
  if (!pf)
    return fatal(sw, FM_EFAIL, "out of memory");
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
      rc = fatal(sw, FM_EFAIL, "poll: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n && rc == FM_OK; i++) {
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
    if (rc != FM_OK)
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
      rc = FM_OK;
    }
    free(buf);
    if (rc != FM_OK)
      return rc;
  }
  return FM_OK;
}

/* Marks pending points (not duplicates, not complete in the database);
 * returns how many points were already complete through *skipped. */
static int mark_pending(sweep *sw, st_db *db, int *skipped) {
  *skipped = 0;
  sw->st.pending = 0;
  for (int i = 0; i < sw->npoints; i++) {
    point *pt = &sw->points[i];
    pt->pending = 0;
    if (pt->duplicate)
      continue;
    int exists = 0;
    int rc = st_run_exists(db, pt->key, &exists);
    if (rc != ST_OK)
      return fatal(sw, FM_EFAIL, "%s: %s", sw->cfg.db, st_errmsg(db));
    if (exists)
      (*skipped)++;
    else {
      pt->pending = 1;
      sw->st.pending++;
    }
  }
  return FM_OK;
}

/* Opens the database for recording: waits --lock-wait for other writers,
 * and a point another process stored first is counted, not stored again
 * (ST_DUP_KEEP). Says what opening did (a migration's notice). */
static int open_db(sweep *sw, st_db **db) {
  char msg[1024];
  if (st_open(db, sw->cfg.db, ST_WRITE, msg, sizeof(msg)) != ST_OK)
    return fatal(sw, FM_EFAIL, "%s", msg);
  if (st_notice(*db)[0])
    emit(sw, FM_SWEEP_NOTE, st_notice(*db));
  if (st_busy_timeout(*db, (int)(sw->cfg.lock_wait_s * 1000)) != ST_OK ||
      st_on_duplicate(*db, ST_DUP_KEEP) != ST_OK) {
    int rc = fatal(sw, FM_EFAIL, "%s: %s", sw->cfg.db, st_errmsg(*db));
    st_close(*db);
    *db = NULL;
    return rc;
  }
  return FM_OK;
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
    return fatal(sw, FM_EFAIL, "out of memory");
  MPI_Recv(buf, (int)len, MPI_BYTE, st.MPI_SOURCE, TAG_DATA, MPI_COMM_WORLD,
           MPI_STATUS_IGNORE);
  int idx = (int)hdr[0], rc = FM_OK;
  if (idx < 0 || idx >= sw->npoints) {
    free(buf);
    return fatal(sw, FM_EFAIL, "MPI rank %d sent a bad point", st.MPI_SOURCE);
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
static int run_mpi(sweep *sw, int rank, int size) {
  st_db *db = NULL;
  int rc = FM_OK;
  int32_t *pend = calloc((size_t)sw->npoints + 1, sizeof(int32_t));
  int npend = 0;
  if (rank == 0) {
    rc = open_db(sw, &db);
    if (rc == FM_OK)
      rc = mark_pending(sw, db, &sw->st.skipped);
    if (rc == FM_OK)
      rc = store_trace_loads(sw, db);
    for (int i = 0; rc == FM_OK && i < sw->npoints; i++)
      if (sw->points[sw->order[i]].pending)
        pend[npend++] = sw->order[i];
  }
  int32_t head[2] = {rc, npend};
  MPI_Bcast(head, 2, MPI_INT32_T, 0, MPI_COMM_WORLD);
  if (head[0] != FM_OK) {
    st_close(db);
    free(pend);
    return head[0];
  }
  npend = head[1];
  MPI_Bcast(pend, npend, MPI_INT32_T, 0, MPI_COMM_WORLD);
  sw->st.pending = npend;
  int theirs = 0; /* points rank 0 will receive */
  for (int j = 0; j < npend; j++)
    theirs += j % size != 0;
  for (int j = rank; j < npend && rc == FM_OK; j += size) {
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
      while (rc == FM_OK && theirs > 0 && flag) {
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
  while (rank == 0 && rc == FM_OK && theirs > 0) {
    rc = mpi_receive_one(sw, db);
    theirs--;
  }
  if (rank == 0) {
    st_close(db);
  }
  free(pend);
  if (rank == 0 && rc != FM_OK && theirs > 0)
    MPI_Abort(MPI_COMM_WORLD, rc); /* others may block sending to us */
  /* every rank returns rank 0's code and knows its failures (exit status) */
  int32_t final[2] = {rc, sw->st.failed};
  MPI_Bcast(final, 2, MPI_INT32_T, 0, MPI_COMM_WORLD);
  sw->st.failed = final[1];
  return final[0];
}
#endif

/* ---- API ---- */

/* The caller's configuration with its defaults; FM_EUSAGE for one that
 * cannot run. */
static int configure(sweep *sw, const fm_sweep_config *cfg) {
  sw->cfg = *cfg;
  int json = cfg->base.key_names == FM_NAME_JSON;
  if (cfg->ntraces < 1 || !cfg->traces)
    return fatal(sw, FM_EUSAGE, json ? "trace is required (a routing trace .npy or .csv)"
                                     : "--trace is required (see 'flexmoe sweep --help')");
  if (cfg->nsizes < 1 || !cfg->sizes)
    return fatal(sw, FM_EUSAGE,
                 json ? "gpus is required, e.g. gpus=[8, 16, 32]"
                      : "--gpus is required, e.g. --gpus 8,16,32 (see 'flexmoe sweep --help')");
  if (fm_key_check(FM_KEY_JOBS, cfg->base.key_names, cfg->jobs, sw->em, sw->el))
    return FM_EUSAGE;
  if (cfg->npolicies < 1) {
    sw->cfg.policies = default_policies;
    sw->cfg.npolicies = (int)(sizeof default_policies / sizeof *default_policies);
  }
  if (cfg->nclusters < 1) {
    sw->cfg.clusters = default_clusters;
    sw->cfg.nclusters = 1;
  }
  if (cfg->nseeds < 1) {
    sw->cfg.seeds = default_seeds;
    sw->cfg.nseeds = 1;
  }
  if (!sw->cfg.db)
    sw->cfg.db = "flexmoe.db";
  sw->st.ranks = 1;
  return FM_OK;
}

static void count_unique(sweep *sw) {
  sw->st.points = sw->npoints;
  sw->st.unique = 0;
  for (int i = 0; i < sw->npoints; i++)
    sw->st.unique += !sw->points[i].duplicate;
}

#if FLEXMOE_HAVE_MPI
/* Every rank: the grid (rank 0 validates, the others build it quietly),
 * then its share. */
static int sweep_mpi(sweep *sw) {
  int rank = 0, size = 1;
  MPI_Init(NULL, NULL);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  sw->st.rank = rank;
  sw->st.ranks = size;
  sw->st.workers = 1;
  int32_t ok = rank == 0 ? build_grid(sw) : 0;
  MPI_Bcast(&ok, 1, MPI_INT32_T, 0, MPI_COMM_WORLD);
  if (ok == FM_OK && rank != 0)
    ok = build_grid(sw);
  int rc = ok;
  if (ok == FM_OK) {
    count_unique(sw);
    rc = run_mpi(sw, rank, size);
    sw->st.lost = count_lost(sw);
  }
  MPI_Finalize();
  return rc;
}
#endif

/* Without MPI: mark, store the traces' loads, then compute inline or with
 * workers. */
static int sweep_local(sweep *sw) {
  int rc = build_grid(sw);
  if (rc != FM_OK)
    return rc;
  count_unique(sw);
  st_db *db = NULL;
  if ((rc = open_db(sw, &db)) != FM_OK)
    return rc;
  rc = mark_pending(sw, db, &sw->st.skipped);
  if (rc == FM_OK)
    rc = store_trace_loads(sw, db);
  st_close(db);
  if (rc != FM_OK)
    return rc;
  int jobs = sw->cfg.jobs;
  int nworkers = jobs < sw->st.pending ? jobs : sw->st.pending;
  if (nworkers < 1)
    nworkers = 1;
  sw->st.workers = jobs > 1 ? nworkers : 1;
  int ran = 0; /* points were handed out: what is missing is lost */
  if (sw->st.pending > 0 && jobs > 1) {
    worker ws[256];
    if ((rc = start_workers(sw, ws, nworkers)) != FM_OK)
      return rc;
    db = NULL;
    rc = open_db(sw, &db); /* after fork: no connection crosses it */
    if (rc == FM_OK) {
      ran = 1;
      rc = run_workers(sw, ws, nworkers, db);
    }
    stop_workers(ws, nworkers, rc != FM_OK);
    st_close(db);
  } else if (sw->st.pending > 0) {
    db = NULL;
    if ((rc = open_db(sw, &db)) == FM_OK) {
      ran = 1;
      rc = run_inline(sw, db);
    }
    st_close(db);
  }
  sw->st.lost = ran ? count_lost(sw) : 0;
  return rc;
}

#if FLEXMOE_HAVE_MPI
static int under_mpirun(void);
#endif

int fm_sweep_run(const fm_sweep_config *cfg, fm_sweep **out, char *errmsg, size_t errlen) {
  *out = NULL;
  sweep *sw = calloc(1, sizeof *sw);
  if (!sw) {
    if (errmsg && errlen)
      snprintf(errmsg, errlen, "out of memory");
    return FM_EFAIL;
  }
  sw->em = errmsg;
  sw->el = errlen;
  sw->t0 = now_s();
  int rc = configure(sw, cfg);
  if (rc == FM_OK && !(sw->cache = cfg->base.traces)) {
    if (fm_trace_cache_new(&sw->own_cache) != FM_OK)
      rc = fatal(sw, FM_EFAIL, "out of memory");
    sw->cache = sw->own_cache;
  }
  if (rc != FM_OK) {
    fm_sweep_free(sw);
    return rc;
  }
  signal(SIGPIPE, SIG_IGN); /* a dead worker is an error, not our death */
#if FLEXMOE_HAVE_MPI
  if (under_mpirun())
    rc = sweep_mpi(sw);
  else
#endif
    rc = sweep_local(sw);
  sw->st.wall_s = now_s() - sw->t0;
  sw->em = NULL;
  sw->el = 0;
  if (!sw->order) { /* the grid was refused */
    fm_sweep_free(sw);
    return rc;
  }
  *out = sw;
  return rc;
}

const fm_sweep_stats *fm_sweep_stats_of(const fm_sweep *sw) { return &sw->st; }

const fm_sweep_config *fm_sweep_config_of(const fm_sweep *sw) { return &sw->cfg; }

int fm_sweep_lost(const fm_sweep *sw, int i, const char **label, int *worker_died) {
  for (int k = 0; k < sw->npoints; k++) {
    const point *pt = &sw->points[sw->order[k]];
    if (!pt->pending || (pt->outcome != OUT_NONE && pt->outcome != OUT_LOST))
      continue;
    if (i-- == 0) {
      *label = pt->label;
      *worker_died = pt->outcome == OUT_LOST;
      return 0;
    }
  }
  return -1;
}

int fm_sweep_point_of(const fm_sweep *sw, int i, fm_sweep_point *out) {
  if (i < 0 || i >= sw->npoints)
    return -1;
  const point *pt = &sw->points[i];
  const char *status = pt->duplicate  ? "duplicate"
                       : !pt->pending ? "stored"
                       : pt->outcome == OUT_DONE      ? "computed"
                       : pt->outcome == OUT_ELSEWHERE ? "elsewhere"
                       : pt->outcome == OUT_FAILED    ? "failed"
                                                      : "lost";
  *out = (fm_sweep_point){.cfg = &pt->cfg, .key = pt->key, .label = pt->label,
                          .status = status, .error = pt->outcome == OUT_FAILED ? pt->why : ""};
  return 0;
}

void fm_sweep_free(fm_sweep *sw) {
  if (!sw)
    return;
  free(sw->order);
  free(sw->points);
  fm_trace_cache_free(sw->own_cache);
  free(sw);
}

int fm_sweep_sizes_of_nodes(const char *const *clusters, int nclusters, int gpus_per_node,
                            const long *nodes, int n, long *sizes, char *em, size_t el) {
  int k = 0, nc = nclusters ? nclusters : 1;
  for (int i = 0; i < nc; i++) {
    int nn = 0, per = 0;
    if (fm_cluster_size(nclusters ? clusters[i] : default_clusters[0], 0, 1, gpus_per_node, &nn,
                        &per, em, el))
      return FM_EUSAGE;
    if (k && per != k)
      return fm_fail(em, el, FM_EUSAGE,
                     "--nodes: the clusters have %d and %d GPUs per node; give --gpus, or "
                     "--gpus-per-node",
                     k, per);
    k = per;
  }
  for (int i = 0; i < n; i++)
    sizes[i] = nodes[i] * k;
  return FM_OK;
}
