/* flexmoe sweep, run as a binary on the bundled sample trace: every point
 * once, resume, workers and MPI ranks give the same rows, a SIGKILL half-way
 * leaves no partial point, a progress bar only on a terminal, bad input. */
#include <dirent.h>
#include <jansson.h>
#include <pty.h>
#include <sqlite3.h>
#include <signal.h>
#include <time.h>

#include "../require.h"
#include "helpers.h"

#define SAMPLE "traces/samples/gpt-l6-e32-top2-aux-200.npy"

static char dir[256], trace[512];

static void setup(void) {
  tmp_dir(dir, sizeof(dir));
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  snprintf(trace, sizeof(trace), "%s/%s", root ? root : ".", SAMPLE);
}
static void teardown(void) { rm_tree(dir); }
TestSuite(sweep, .init = setup, .fini = teardown, .timeout = 300);

/* The bundled sample is part of the tree: without it the tree is broken. */
static void need_sample(void) {
  cr_assert_eq(access(trace, R_OK), 0, "bundled sample %s not present", trace);
}

static void db_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

/* argv for a sweep: the common grid plus extra flags (NULL-terminated). */
static int sweep_run(char **out, char **err, const char *db, const char *gpus,
                     const char *jobs, const char *const *extra) {
  const char *argv[64];
  int n = 0;
  argv[n++] = flexmoe_bin();
  argv[n++] = "sweep";
  argv[n++] = "--trace";
  argv[n++] = trace;
  argv[n++] = "--policy";
  argv[n++] = "static";
  argv[n++] = "--policy";
  argv[n++] = "capacity";
  argv[n++] = "--cluster";
  argv[n++] = "dgx-h100";
  argv[n++] = "--gpus";
  argv[n++] = gpus;
  argv[n++] = "--iterations";
  argv[n++] = "0:20";
  argv[n++] = "--jobs";
  argv[n++] = jobs;
  argv[n++] = "--db";
  argv[n++] = db;
  for (int i = 0; extra && extra[i]; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  return run_capture(dir, (char *const *)argv, out, err);
}

/* All complete runs of a database, keyed and compared by config_key. */
typedef struct snapshot {
  st_run_summary *runs;
  size_t n;
  st_iter_row **rows;
  size_t *nrows;
} snapshot;

static int by_key(const void *a, const void *b) {
  return strcmp(((const st_run_summary *)a)->config_key,
                ((const st_run_summary *)b)->config_key);
}

static snapshot take(const char *db) {
  snapshot s = {0};
  st_db *h = NULL;
  char msg[512] = "";
  cr_assert_eq(st_open(&h, db, ST_READ, msg, sizeof(msg)), ST_OK, "%s", msg);
  cr_assert_eq(st_runs_list(h, NULL, &s.runs, &s.n), ST_OK);
  if (s.n)
    qsort(s.runs, s.n, sizeof(*s.runs), by_key);
  s.rows = calloc(s.n + 1, sizeof(*s.rows));
  s.nrows = calloc(s.n + 1, sizeof(*s.nrows));
  for (size_t i = 0; i < s.n; i++)
    cr_assert_eq(st_run_iterations(h, s.runs[i].id, &s.rows[i], &s.nrows[i]),
                 ST_OK);
  st_close(h);
  return s;
}

static void drop(snapshot *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->rows[i]);
  free(s->rows);
  free(s->nrows);
  free(s->runs);
}

/* Same configurations with bit-identical iteration rows. */
static void assert_same(const snapshot *a, const snapshot *b) {
  cr_assert_eq(a->n, b->n, "%zu vs %zu runs", a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    cr_assert_str_eq(a->runs[i].config_key, b->runs[i].config_key);
    cr_assert_str_eq(a->runs[i].policy, b->runs[i].policy);
    cr_assert_eq(a->runs[i].gpus, b->runs[i].gpus);
    cr_assert_eq(a->nrows[i], b->nrows[i]);
    cr_assert_eq(memcmp(a->rows[i], b->rows[i], a->nrows[i] * sizeof(st_iter_row)),
                 0, "rows of %s differ", a->runs[i].config_key);
  }
}

static size_t count_complete(const char *db) {
  st_db *h = NULL;
  if (st_open(&h, db, ST_READ, NULL, 0) != ST_OK)
    return 0;
  st_run_summary *r = NULL;
  size_t n = 0;
  if (st_runs_list(h, NULL, &r, &n) != ST_OK)
    n = 0;
  free(r);
  st_close(h);
  return n;
}

Test(sweep, every_point_is_stored_once_and_a_rerun_skips_them) {
  need_sample();
  char db[300], *out, *err;
  db_path(db, sizeof(db), "a.db");
  int rc = sweep_run(&out, &err, db, "8,16", "1", NULL);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert(strstr(out, "sweep: 4 grid points (1 trace x 1 cluster x 2 sizes x "
                        "1 seed x 2 policies)"),
            "%s", out);
  cr_assert(strstr(out, "computed 4, already in"), "%s", out);
  cr_assert_str_eq(err, "", "no progress bar without a terminal");
  free(out);
  free(err);
  snapshot first = take(db);
  cr_assert_eq(first.n, 4);
  for (size_t i = 0; i < first.n; i++)
    cr_assert_eq(first.nrows[i], 20, "run %s has %zu iterations",
                 first.runs[i].config_key, first.nrows[i]);
  /* Rerun: nothing to do, nothing changes. */
  cr_assert_eq(sweep_run(&out, &err, db, "8,16", "2", NULL), 0, "%s", err);
  cr_assert(strstr(out, "computed 0, already in") && strstr(out, " 4, failed 0"),
            "%s", out);
  free(out);
  free(err);
  snapshot again = take(db);
  assert_same(&first, &again);
  for (size_t i = 0; i < first.n; i++)
    cr_assert_eq(first.runs[i].id, again.runs[i].id, "a run was rewritten");
  drop(&first);
  drop(&again);
  /* The trace's expert loads are there for the notebooks: 200 iterations x
   * 6 layers x 32 experts, summed over ranks. */
  sqlite3 *h = NULL;
  sqlite3_stmt *q = NULL;
  cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_prepare_v2(h, "SELECT count(*), count(DISTINCT iteration) "
                                     "FROM trace_loads", -1, &q, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
  cr_assert_eq(sqlite3_column_int64(q, 0), 200 * 6 * 32);
  cr_assert_eq(sqlite3_column_int64(q, 1), 200);
  sqlite3_finalize(q);
  sqlite3_close(h);
}

Test(sweep, workers_give_the_same_results_as_one_process) {
  need_sample();
  char a[300], b[300], *out, *err;
  db_path(a, sizeof(a), "one.db");
  db_path(b, sizeof(b), "two.db");
  cr_assert_eq(sweep_run(&out, &err, a, "8,16,64", "1", NULL), 0, "%s", err);
  free(out);
  free(err);
  cr_assert_eq(sweep_run(&out, &err, b, "8,16,64", "3", NULL), 0, "%s", err);
  cr_assert(strstr(out, "with 3 workers"), "%s", out);
  free(out);
  free(err);
  snapshot sa = take(a), sb = take(b);
  cr_assert_eq(sa.n, 6);
  assert_same(&sa, &sb);
  drop(&sa);
  drop(&sb);
}

/* Processes whose command line mentions text (the sweep and its workers
 * carry the database path), zombies excluded. */
Test(sweep, plans_keep_their_moves_only_when_asked) {
  need_sample();
  char db[300], dbm[300], *out, *err;
  db_path(db, sizeof(db), "summary.db");
  db_path(dbm, sizeof(dbm), "moves.db");
  const char *const flex[] = {"--policy", "flexmoe", NULL};
  const char *const flex_moves[] = {"--policy", "flexmoe", "--plan-moves", NULL};
  cr_assert_eq(sweep_run(&out, &err, db, "16", "1", flex), 0, "%s", err);
  free(out);
  free(err);
  cr_assert_eq(sweep_run(&out, &err, dbm, "16", "1", flex_moves), 0, "%s", err);
  free(out);
  free(err);
  /* Same plans either way: counts and bytes per (iteration, layer). */
  int64_t plans = sql_int(db, "SELECT count(*) FROM plans WHERE nmoves > 0");
  cr_assert_gt(plans, 0, "flexmoe re-planned nothing in 20 iterations on 16 GPUs");
  cr_assert_eq(sql_int(dbm, "SELECT count(*) FROM plans WHERE nmoves > 0"), plans);
  cr_assert_eq(sql_int(db, "SELECT sum(bytes) FROM plans"),
               sql_int(dbm, "SELECT sum(bytes) FROM plans"));
  /* A sweep stores the summary by default ... */
  cr_assert_eq(sql_int(db, "SELECT count(*) FROM plans WHERE moves_json IS NOT NULL"), 0);
  /* ... and with --plan-moves one [expert, from, to, kind] array per move. */
  cr_assert_eq(sql_int(dbm, "SELECT count(*) FROM plans WHERE moves_json IS NULL"), 0);
  cr_assert_eq(sql_int(dbm, "SELECT count(*) FROM plans "
                              "WHERE json_array_length(moves_json) != nmoves"),
               0);
  cr_assert_eq(sql_int(dbm, "SELECT count(*) FROM plans, json_each(plans.moves_json) m "
                              "WHERE json_array_length(m.value) != 4 "
                              "OR json_extract(m.value, '$[3]') NOT IN ('r', 'd', 'm')"),
               0);
}

static int processes_naming(const char *text) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    char path[300], buf[4096];
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[got] = '\0';
    const char *paren = strrchr(buf, ')');
    if (paren && paren[1] == ' ' && paren[2] == 'Z')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    if (!(f = fopen(path, "r")))
      continue;
    got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (size_t i = 0; i < got; i++)
      if (!buf[i])
        buf[i] = ' ';
    buf[got] = '\0';
    n += strstr(buf, text) != NULL;
  }
  if (d)
    closedir(d);
  return n;
}

Test(sweep, a_killed_sweep_resumes_exactly_the_missing_points) {
  need_sample();
  char db[300], ref[300], *out, *err;
  db_path(db, sizeof(db), "killed.db");
  db_path(ref, sizeof(ref), "whole.db");
  const char *gpus = "8,16,32,64";
  const char *extra[] = {"--seeds", "1,2", "--quiet", NULL};
  const size_t total = 4 * 2 * 2;
  /* Start it, wait until half of the points are stored, kill it. */
  const char *argv[] = {flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                        "static", "--policy", "capacity", "--gpus", gpus,
                        "--seeds", "1,2", "--iterations", "0:20", "--jobs", "2",
                        "--db", db, "--quiet", NULL};
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ),
               0);
  posix_spawn_file_actions_destroy(&fa);
  size_t seen = 0;
  for (int i = 0; i < 60000 && seen < total / 2; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    seen = count_complete(db);
    if (waitpid(pid, NULL, WNOHANG) == pid)
      cr_assert_fail("the sweep finished before it could be killed (%zu points)", seen);
  }
  cr_assert_eq(kill(pid, SIGKILL), 0);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  /* Its workers die with it (none keeps computing for nobody). */
  int left = 1;
  for (int i = 0; i < 200 && left; i++) {
    left = processes_naming(db);
    if (left) {
      struct timespec ts = {0, 10000000};
      nanosleep(&ts, NULL);
    }
  }
  cr_assert_eq(left, 0, "%d worker(s) outlived the killed sweep", left);

  /* The database opens, for reading and writing, and every stored point is
   * whole. */
  st_db *h = NULL;
  char msg[512] = "";
  cr_assert_eq(st_open(&h, db, ST_WRITE, msg, sizeof(msg)), ST_OK, "%s", msg);
  st_close(h);
  snapshot part = take(db);
  cr_assert(part.n >= total / 2 && part.n < total, "%zu points stored", part.n);
  for (size_t i = 0; i < part.n; i++)
    cr_assert_eq(part.nrows[i], 20, "partial point %s: %zu iterations",
                 part.runs[i].config_key, part.nrows[i]);
  size_t done = part.n;
  drop(&part);

  /* A rerun computes exactly the missing points. */
  cr_assert_eq(sweep_run(&out, &err, db, gpus, "2", extra), 0, "%s", err);
  char want[512];
  snprintf(want, sizeof(want), "computed %zu, already in %s %zu, failed 0",
           total - done, db, done);
  cr_assert(strstr(out, want), "want '%s' in:\n%s", want, out);
  fprintf(stderr,
          "# SIGKILL after %zu of %zu points were stored; the database opens, "
          "every stored point has all its 20 iterations; the rerun says:\n%s",
          done, total, out);
  free(out);
  free(err);

  /* And the result equals an uninterrupted sweep. */
  cr_assert_eq(sweep_run(&out, &err, ref, gpus, "1", extra), 0, "%s", err);
  free(out);
  free(err);
  snapshot a = take(db), b = take(ref);
  cr_assert_eq(a.n, total);
  assert_same(&a, &b);
  drop(&a);
  drop(&b);
}

static int have_mpirun(char *path, size_t len) {
  const char *p = getenv("PATH");
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s", p ? p : "/usr/bin:/bin");
  for (char *tok = strtok(buf, ":"); tok; tok = strtok(NULL, ":")) {
    snprintf(path, len, "%s/mpirun", tok);
    if (access(path, X_OK) == 0)
      return 1;
  }
  return 0;
}

Test(sweep, mpi_ranks_share_the_grid_and_rank_zero_writes) {
  need_sample();
  char mpirun[512], *out, *err;
  if (!have_mpirun(mpirun, sizeof(mpirun)))
    fm_skip("mpi", "mpirun not found");
  const char *vargv[] = {flexmoe_bin(), "--version", NULL};
  run_capture(dir, (char *const *)vargv, &out, &err);
  int with_mpi = strstr(out, "mpi yes") != NULL;
  free(out);
  free(err);
  if (!with_mpi)
    fm_skip("mpi", "flexmoe built without MPI");
  /* Open MPI's plugins (dlopen'ed, unloaded at exit) leak by design and
   * cannot be named in LSan suppressions; our own code's leaks are checked
   * by the tests without MPI. */
  char asan[1024];
  const char *prev = getenv("ASAN_OPTIONS");
  snprintf(asan, sizeof(asan), "%s%sdetect_leaks=0", prev ? prev : "",
           prev && *prev ? ":" : "");
  setenv("ASAN_OPTIONS", asan, 1);
  char a[300], b[300];
  db_path(a, sizeof(a), "mpi.db");
  db_path(b, sizeof(b), "plain.db");
  const char *argv[] = {mpirun, "-n", "2", "--allow-run-as-root", "--oversubscribe",
                        flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                        "static", "--policy", "capacity", "--gpus", "8,16,32",
                        "--iterations", "0:20", "--db", a, NULL};
  int rc = run_capture(dir, (char *const *)argv, &out, &err);
  cr_assert_eq(rc, 0, "mpirun: %s\n%s", out, err);
  cr_assert(strstr(out, "on 2 MPI ranks") && strstr(out, "computed 6"), "%s", out);
  /* One summary: only rank 0 speaks. */
  const char *first = strstr(out, "sweep:");
  cr_assert_not_null(first, "%s", out);
  cr_assert_null(strstr(first + 1, "sweep:"), "%s", out);
  free(out);
  free(err);
  cr_assert_eq(sweep_run(&out, &err, b, "8,16,32", "1", NULL), 0, "%s", err);
  free(out);
  free(err);
  snapshot sa = take(a), sb = take(b);
  assert_same(&sa, &sb);
  drop(&sa);
  drop(&sb);
}

Test(sweep, a_progress_bar_is_drawn_on_a_terminal) {
  need_sample();
  char db[300];
  db_path(db, sizeof(db), "tty.db");
  int master;
  pid_t pid = forkpty(&master, NULL, NULL, NULL);
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1); /* summary away: the terminal gets stderr only */
    execl(flexmoe_bin(), flexmoe_bin(), "sweep", "--trace", trace, "--policy",
          "static", "--gpus", "8,16", "--iterations", "0:20", "--db", db,
          (char *)NULL);
    _exit(127);
  }
  char buf[8192];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(master, buf + got, sizeof(buf) - 1 - got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  buf[got] = '\0';
  int status;
  waitpid(pid, &status, 0);
  close(master);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", buf);
  cr_assert(strstr(buf, "\r[") && strstr(buf, "2/2 points"), "terminal got: %s", buf);
}

Test(sweep, bad_input_fails_before_the_database_is_touched) {
  char db[300], *out, *err;
  db_path(db, sizeof(db), "bad.db");
  /* No --gpus. */
  const char *a1[] = {flexmoe_bin(), "sweep", "--trace", "x.npy", "--db", db, NULL};
  cr_assert_eq(run_capture(dir, (char *const *)a1, &out, &err), 2);
  cr_assert(strstr(err, "flexmoe sweep: --gpus is required"), "%s", err);
  free(out);
  free(err);
  /* A malformed size list. */
  const char *a2[] = {flexmoe_bin(), "sweep", "--trace", "x.npy", "--gpus", "8,,16",
                      "--db", db, NULL};
  cr_assert_eq(run_capture(dir, (char *const *)a2, &out, &err), 2);
  cr_assert(strstr(err, "--gpus"), "%s", err);
  free(out);
  free(err);
  /* A missing trace is named; no database is created. */
  char missing[300];
  db_path(missing, sizeof(missing), "nope.npy");
  const char *a3[] = {flexmoe_bin(), "sweep", "--trace", missing, "--gpus", "8",
                      "--db", db, NULL};
  cr_assert_neq(run_capture(dir, (char *const *)a3, &out, &err), 0);
  cr_assert(strstr(err, "flexmoe sweep: ") == err && strstr(err, missing), "%s", err);
  free(out);
  free(err);
  cr_assert_neq(access(db, F_OK), 0, "the database was created");
  need_sample();
  /* An unknown policy. */
  const char *a4[] = {flexmoe_bin(), "sweep", "--trace", trace, "--gpus", "8",
                      "--policy", "bogus", "--db", db, NULL};
  cr_assert_neq(run_capture(dir, (char *const *)a4, &out, &err), 0);
  cr_assert(strstr(err, "bogus"), "%s", err);
  free(out);
  free(err);
  cr_assert_neq(access(db, F_OK), 0, "the database was created");
  /* A database that is not a flexmoe database stays as it was. */
  FILE *f = fopen(db, "w");
  fputs("not a database\n", f);
  fclose(f);
  const char *a5[] = {flexmoe_bin(), "sweep", "--trace", trace, "--gpus", "8",
                      "--policy", "static", "--db", db, NULL};
  cr_assert_eq(run_capture(dir, (char *const *)a5, &out, &err), 1);
  cr_assert(strstr(err, "not a flexmoe database"), "%s", err);
  free(out);
  free(err);
  char *content = read_all(db);
  cr_assert_str_eq(content, "not a database\n");
  free(content);
  /* A read-only database is named. */
  remove(db);
  cr_assert_eq(sweep_run(&out, &err, db, "8", "1", NULL), 0, "%s", err);
  free(out);
  free(err);
  chmod(db, 0444);
  cr_assert_eq(sweep_run(&out, &err, db, "8,16", "1", NULL), 1);
  cr_assert(strstr(err, db) && strstr(err, "read-only"), "%s", err);
  free(out);
  free(err);
}

/* Issue 20, finding 5: a full disk (here the file size limit, which fails
 * writes the same way without root) was reported as "cannot rollback", and
 * SIGXFSZ killed the sweep without a word. */
Test(sweep, a_full_disk_is_named_and_the_stored_points_stay_whole) {
  need_sample();
  char db[300], *out, *err;
  db_path(db, sizeof(db), "full.db");
  /* The trace's loads and a first point, without a limit. */
  cr_assert_eq(sweep_run(&out, &err, db, "8", "1", NULL), 0, "%s", err);
  free(out);
  free(err);
  struct stat st;
  cr_assert_eq(stat(db, &st), 0);
  /* Room for a few more points in the WAL, not for 64. */
  rlim_t limit = (rlim_t)st.st_size + 128 * 1024;
  const char *argv[] = {flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                        "static", "--policy", "capacity", "--gpus", "8,16,32,64",
                        "--seeds", "1,2,3,4,5,6,7,8", "--iterations", "0:20",
                        "--db", db, "--quiet", NULL};
  int rc = run_capture_fsize(dir, (char *const *)argv, &out, &err, limit);
  cr_assert_eq(rc, 1, "exit %d (128 + %d is a signal)\nstderr: %s", rc, SIGXFSZ, err);
  cr_assert(strstr(err, db) && strstr(err, "file size limit"), "%s", err);
  cr_assert_null(strstr(err, "rollback"), "%s", err);
  fprintf(stderr, "# the sweep under ulimit -f says:\n%s", err);
  free(out);
  free(err);
  /* What was stored is whole, and the database is sound. */
  snapshot s = take(db);
  cr_assert(s.n >= 1 && s.n < 64, "%zu points stored", s.n);
  for (size_t i = 0; i < s.n; i++)
    cr_assert_eq(s.nrows[i], 20, "partial point %s", s.runs[i].config_key);
  drop(&s);
  cr_assert_eq(sql_int(db, "SELECT quick_check = 'ok' FROM pragma_quick_check"), 1);
}

/* Issue 20, what to build 4: a database that another process holds a write
 * transaction on is named as locked by another process after --lock-wait,
 * not after a hang. */
Test(sweep, a_locked_database_is_named_after_the_lock_wait) {
  need_sample();
  char db[300], *out, *err;
  db_path(db, sizeof(db), "locked.db");
  cr_assert_eq(sweep_run(&out, &err, db, "8", "1", NULL), 0, "%s", err);
  free(out);
  free(err);
  sqlite3 *other = NULL;
  cr_assert_eq(sqlite3_open(db, &other), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  const char *extra[] = {"--lock-wait", "1", NULL};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = sweep_run(&out, &err, db, "8,16", "1", extra);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
  sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close(other);
  cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
  cr_assert(strstr(err, db) && strstr(err, "locked by another process"), "%s", err);
  cr_assert(took >= 1.0 && took < 20.0, "took %.2f s", took);
  free(out);
  free(err);
  /* --lock-wait is checked like every other number. */
  const char *bad[] = {"--lock-wait", "4000", NULL};
  cr_assert_eq(sweep_run(&out, &err, db, "8", "1", bad), 2);
  cr_assert(strstr(err, "--lock-wait") && strstr(err, "3600"), "%s", err);
  free(out);
  free(err);
}

/* A database written by a newer flexmoe (schema above this build's) is
 * refused by sweep and report alike, untouched, with a message saying so. */
Test(sweep, a_newer_database_is_refused_by_sweep_and_report) {
  need_sample();
  char db[300], *out, *err;
  db_path(db, sizeof(db), "newer.db");
  cr_assert_eq(sweep_run(&out, &err, db, "8", "1", NULL), 0, "%s", err);
  free(out);
  free(err);
  sqlite3 *h = NULL;
  cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(h);
  struct stat st;
  cr_assert_eq(stat(db, &st), 0);
  size_t blen = (size_t)st.st_size;
  char *before = read_all(db);
  cr_assert_eq(sweep_run(&out, &err, db, "8,16", "1", NULL), 1);
  cr_assert(strstr(err, db) && strstr(err, "newer than this flexmoe"), "%s", err);
  free(out);
  free(err);
  const char *argv[] = {flexmoe_bin(), "report", "--db", db, NULL};
  cr_assert_eq(run_capture(dir, (char *const *)argv, &out, &err), 1);
  cr_assert(strstr(err, "flexmoe report: ") == err && strstr(err, "newer than this flexmoe"),
            "%s", err);
  free(out);
  free(err);
  cr_assert_eq(stat(db, &st), 0);
  cr_assert_eq((size_t)st.st_size, blen);
  char *after = read_all(db);
  cr_assert_eq(memcmp(before, after, blen), 0, "the database changed");
  free(before);
  free(after);
}

/* "computed N, already in DB M" of a sweep's summary. */
static void counts_of(const char *out, int *computed, int *already) {
  const char *p = strstr(out, "computed ");
  cr_assert_not_null(p, "%s", out);
  cr_assert_eq(sscanf(p, "computed %d", computed), 1, "%s", out);
  p = strstr(p, "already in ");
  cr_assert_not_null(p, "%s", out);
  const char *num = strstr(p, ".db ");
  cr_assert_not_null(num, "%s", out);
  cr_assert_eq(sscanf(num + 4, "%d", already), 1, "%s", out);
}

/* Issue 20, finding 8: two identical sweeps started at once on one database
 * stored every point twice (both found it missing, both computed, both
 * inserted). Now the claim and the insert are one transaction over a unique
 * key: each point is stored once, and each sweep counts the other's. */
Test(sweep, two_sweeps_at_once_store_every_point_once) {
  need_sample();
  char db[300];
  db_path(db, sizeof(db), "twice.db");
  const size_t total = 4 * 3 * 2;
  const char *argv[] = {flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                        "static", "--policy", "capacity", "--gpus", "8,16,32,64",
                        "--seeds", "1,2,3", "--iterations", "0:50", "--jobs", "1",
                        "--db", db, "--quiet", NULL};
  pid_t pid[2];
  char po[2][400], pe[2][400];
  for (int k = 0; k < 2; k++) {
    snprintf(po[k], sizeof(po[k]), "%s/out%d", dir, k);
    snprintf(pe[k], sizeof(pe[k]), "%s/err%d", dir, k);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, po[k], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, pe[k], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_eq(posix_spawn(&pid[k], argv[0], &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  int computed_sum = 0;
  for (int k = 0; k < 2; k++) {
    int status = 0;
    cr_assert_eq(waitpid(pid[k], &status, 0), pid[k]);
    char *out = read_all(po[k]), *err = read_all(pe[k]);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sweep %d: %s%s", k, out, err);
    int computed = -1, already = -1;
    counts_of(out, &computed, &already);
    cr_assert_eq((size_t)(computed + already), total, "sweep %d: %s", k, out);
    computed_sum += computed;
    fprintf(stderr, "# sweep %d of 2 at once:\n%s", k, out);
    free(out);
    free(err);
  }
  cr_assert_eq((size_t)computed_sum, total, "the two sweeps stored %d points", computed_sum);
  cr_assert_eq(sql_int(db, "SELECT count(*) FROM runs"), (int64_t)total);
  cr_assert_eq(sql_int(db, "SELECT count(DISTINCT config_key) FROM runs"), (int64_t)total);
  /* And the rows are those of one sweep alone. */
  char ref[300], *out, *err;
  db_path(ref, sizeof(ref), "alone.db");
  const char *argv1[] = {flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                         "static", "--policy", "capacity", "--gpus", "8,16,32,64",
                         "--seeds", "1,2,3", "--iterations", "0:50", "--db", ref,
                         "--quiet", NULL};
  cr_assert_eq(run_capture(dir, (char *const *)argv1, &out, &err), 0, "%s", err);
  free(out);
  free(err);
  snapshot a = take(db), b = take(ref);
  assert_same(&a, &b);
  drop(&a);
  drop(&b);
}

/* Starts a 50-point sweep with two workers, waits until a point is stored,
 * SIGKILLs its workers (all of them, or only the first) and waits for the
 * sweep. Returns its exit status; *out and *err are its stdout and stderr. */
static int sweep_losing_workers(const char *db, int all, char **out, char **err) {
  const char *argv[] = {flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                        "static", "--policy", "capacity", "--gpus", "8,16,32,64,128",
                        "--seeds", "1,2,3,4,5", "--iterations", "0:100", "--jobs", "2",
                        "--db", db, "--quiet", NULL};
  char po[400], pe[400];
  snprintf(po, sizeof(po), "%s/lost.out", dir);
  snprintf(pe, sizeof(pe), "%s/lost.err", dir);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, po, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 60000 && count_complete(db) < 1; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    if (waitpid(pid, NULL, WNOHANG) == pid)
      cr_assert_fail("the sweep ended before a worker could be killed");
  }
  char path[128], kids[256] = "";
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "%s", path);
  size_t got = fread(kids, 1, sizeof(kids) - 1, f);
  fclose(f);
  kids[got] = '\0';
  int nkilled = 0;
  for (char *tok = strtok(kids, " \n"); tok && (all || nkilled < 1);
       tok = strtok(NULL, " \n"))
    nkilled += kill((pid_t)atoi(tok), SIGKILL) == 0;
  cr_assert_eq(nkilled, all ? 2 : 1, "killed %d workers (children: %s)", nkilled, kids);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  *out = read_all(po);
  *err = read_all(pe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Lines of err that name a point ("  static on dgx-h100, ..."). */
static int listed_points(const char *err) {
  int n = 0;
  for (const char *p = err; (p = strstr(p, "\n  ")); p++)
    n += strncmp(p + 3, "...", 3) != 0;
  return n;
}

/* Issue 20, finding 4: killing all the sweep's workers dropped the points
 * they had not reached with no word and a successful exit. Now the sweep
 * says which worker died and which points are lost, exits 1, and the next
 * run computes exactly them. */
Test(sweep, killed_workers_lose_points_that_are_listed_and_resumed) {
  need_sample();
  char db[300], *out, *err;
  db_path(db, sizeof(db), "lost.db");
  const int total = 50;
  int rc = sweep_losing_workers(db, 1, &out, &err);
  fprintf(stderr, "# both workers killed; the sweep says:\n%s%s", out, err);
  cr_assert_eq(rc, 1, "exit %d\n%s%s", rc, out, err);
  int computed = -1, already = -1, lost = -1;
  counts_of(out, &computed, &already);
  const char *l = strstr(out, "  lost ");
  cr_assert_not_null(l, "%s", out);
  cr_assert_eq(sscanf(l, "  lost %d", &lost), 1);
  cr_assert_eq(computed + lost, total, "%s", out);
  cr_assert_gt(lost, 0);
  cr_assert_eq((int)count_complete(db), computed);
  cr_assert(strstr(err, "was killed by signal 9"), "%s", err);
  char want[128];
  snprintf(want, sizeof(want), "%d point%s not computed and not stored", lost,
           lost == 1 ? "" : "s");
  cr_assert(strstr(err, want), "want '%s' in:\n%s", want, err);
  cr_assert_eq(listed_points(err), lost < 64 ? lost : 64, "%s", err);
  free(out);
  free(err);
  /* The next run computes exactly the lost points. */
  const char *argv[] = {flexmoe_bin(), "sweep", "--trace", trace, "--policy",
                        "static", "--policy", "capacity", "--gpus", "8,16,32,64,128",
                        "--seeds", "1,2,3,4,5", "--iterations", "0:100", "--jobs", "2",
                        "--db", db, "--quiet", NULL};
  cr_assert_eq(run_capture(dir, (char *const *)argv, &out, &err), 0, "%s", err);
  char again[512];
  snprintf(again, sizeof(again), "computed %d, already in %s %d, failed 0", lost, db,
           computed);
  cr_assert(strstr(out, again), "want '%s' in:\n%s", again, out);
  cr_assert_null(strstr(out, "  lost "), "%s", out);
  free(out);
  free(err);
  cr_assert_eq((int)count_complete(db), total);
}

/* One worker of two killed: the point it was computing is lost and named
 * (none, in the rare case it was killed between two points), the other
 * worker computes everything else. */
Test(sweep, one_killed_worker_loses_only_its_point) {
  need_sample();
  char db[300], *out, *err;
  db_path(db, sizeof(db), "one.db");
  int rc = sweep_losing_workers(db, 0, &out, &err);
  cr_assert(strstr(err, "was killed by signal 9"), "%s", err);
  int lost = 0;
  const char *l = strstr(out, "  lost ");
  if (l)
    cr_assert_eq(sscanf(l, "  lost %d", &lost), 1);
  cr_assert(lost <= 1, "%s", out);
  cr_assert_eq(rc, lost ? 1 : 0, "exit %d\n%s%s", rc, out, err);
  cr_assert_eq(listed_points(err), lost, "%s", err);
  if (lost)
    cr_assert(strstr(err, "that point is lost") &&
                  strstr(err, "1 point not computed and not stored"),
              "%s", err);
  cr_assert_eq((int)count_complete(db), 50 - lost);
  free(out);
  free(err);
}
