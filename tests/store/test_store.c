/* The results store: identity checks, migrations, one transaction per run,
 * crash safety, read-only files, round trips and determinism of rows. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "store/st_store.h"

static char dir[256];
static char dbpath[300];

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void setup(void) {
  snprintf(dir, sizeof(dir), "/tmp/flexmoe-store-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(dbpath, sizeof(dbpath), "%s/results.db", dir);
}

static void teardown(void) {
  chmod(dir, 0700);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store, .init = setup, .fini = teardown);

static const st_trace_row trace = {"traces/samples/t.npy", 0xfedcba9876543210ull,
                                   200, 6, 8, 32, "{\"top_k\": 2}"};

static st_run_row run_row(const char *policy, const char *key) {
  st_run_row r = {0};
  r.kind = "sim";
  r.policy = policy;
  r.cluster = "dgx-h100";
  r.cluster_json = "{\"name\": \"dgx-h100\"}";
  r.engine = "analytic";
  r.params_json = "{\"iterations\": [0, 10]}";
  r.gpus = 16;
  r.seed = 0xffffffffffffffffull; /* must survive SQLite's signed INTEGER */
  r.rng = "mt19937";
  r.code_version = "0.1.0";
  r.started = 1.5;
  r.finished = 2.5;
  r.status = "complete";
  r.config_key = key;
  return r;
}

static st_iter_row iter_row(int64_t i) {
  st_iter_row r = {0};
  r.iteration = i;
  r.time_ms = 10.0 + i / 3.0;
  r.compute_ms = 6.0 + i / 7.0;
  r.alltoall_ms = 2.0;
  r.allreduce_ms = 1.0 / 3.0;
  r.migration_ms = i % 2 ? 0.25 : 0;
  r.other_ms = 1.0;
  r.balance = 1.0 + 1.0 / (i + 1);
  r.bytes_alltoall = (int64_t)1 << 40;
  r.bytes_migrated = i * 1000;
  r.tokens_dropped = i;
  r.tokens_total = 65536;
  return r;
}

/* Writes one complete run with n iterations; returns its id. */
static int64_t write_run(st_db *db, const char *policy, const char *key,
                         int n) {
  st_run_row rr = run_row(policy, key);
  st_run *r = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_OK, "%s", st_errmsg(db));
  for (int i = 0; i < n; i++) {
    st_iter_row it = iter_row(i);
    cr_assert_eq(st_run_iteration(r, &it), ST_OK);
  }
  cr_assert_eq(st_run_plan(r, 3, 1, 2, 4096, "[{\"expert\": 5}]"), ST_OK);
  cr_assert_eq(st_run_gpu(r, 0, 90.0, 10.0), ST_OK);
  cr_assert_eq(st_run_layer(r, 0, 0, 1.25, 1.0), ST_OK);
  int64_t id = -1;
  cr_assert_eq(st_run_commit(r, &id), ST_OK);
  cr_assert_gt(id, 0);
  return id;
}

static size_t count_runs(const char *path) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, path, ST_READ, NULL, 0), ST_OK);
  st_run_summary *rows = NULL;
  size_t n = 99;
  cr_assert_eq(st_runs_list(db, NULL, &rows, &n), ST_OK);
  free(rows);
  st_close(db);
  return n;
}

static void sql_exec(const char *path, const char *sql) {
  sqlite3 *h = NULL;
  cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s",
               sqlite3_errmsg(h));
  sqlite3_close(h);
}

/* Whole file into a malloc'd buffer (for "untouched" checks). */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void assert_untouched(const char *path, const char *before,
                             size_t blen) {
  size_t alen;
  char *after = slurp(path, &alen);
  cr_assert_eq(alen, blen, "%s changed size", path);
  cr_assert_eq(memcmp(before, after, blen), 0, "%s changed", path);
  free(after);
  char wal[400];
  snprintf(wal, sizeof(wal), "%s-wal", path);
  cr_assert_neq(access(wal, F_OK), 0, "a WAL file was created next to %s",
                path);
}

Test(store, a_new_database_is_created_in_wal_mode_with_version_and_id) {
  st_db *db = NULL;
  char msg[512] = "";
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_OK, "%s",
               msg);
  cr_assert_eq(st_schema_version(db), ST_SCHEMA_VERSION);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), ST_SCHEMA_VERSION);
  cr_assert_eq(sql_int(dbpath, "PRAGMA application_id"), ST_APPLICATION_ID);
  char *mode = NULL;
  sqlite3 *h = NULL;
  sqlite3_stmt *s = NULL;
  sqlite3_open(dbpath, &h);
  sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL);
  cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
  mode = strdup((const char *)sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(h);
  cr_assert_str_eq(mode, "wal");
  free(mode);
  /* Opening again (write, then read) keeps everything. */
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_close(db);
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_OK);
  cr_assert_eq(st_schema_version(db), ST_SCHEMA_VERSION);
  st_close(db);
}

Test(store, a_run_reads_back_exactly_with_its_summary) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  int64_t id = write_run(db, "flexmoe:threshold=1.2", "key-a", 10);
  st_iter_row *rows = NULL;
  size_t n = 0;
  cr_assert_eq(st_run_iterations(db, id, &rows, &n), ST_OK);
  cr_assert_eq(n, 10);
  for (size_t i = 0; i < n; i++) {
    st_iter_row want = iter_row((int64_t)i);
    cr_assert_eq(memcmp(&rows[i], &want, sizeof(want)), 0, "row %zu differs", i);
  }
  free(rows);
  st_run_summary *sum = NULL;
  cr_assert_eq(st_runs_list(db, "sim", &sum, &n), ST_OK);
  cr_assert_eq(n, 1);
  cr_assert_eq(sum[0].id, id);
  cr_assert_str_eq(sum[0].policy, "flexmoe:threshold=1.2");
  cr_assert_str_eq(sum[0].cluster, "dgx-h100");
  cr_assert_str_eq(sum[0].trace, "traces/samples/t.npy");
  cr_assert_str_eq(sum[0].trace_hash, "fedcba9876543210");
  cr_assert_str_eq(sum[0].config_key, "key-a");
  cr_assert_eq(sum[0].seed, 0xffffffffffffffffull);
  cr_assert_eq(sum[0].gpus, 16);
  cr_assert_eq(sum[0].iterations, 10);
  double mean = 0;
  for (int i = 0; i < 10; i++)
    mean += iter_row(i).time_ms / 10;
  cr_assert_float_eq(sum[0].mean_ms, mean, 1e-12);
  cr_assert_eq(sum[0].bytes_migrated, 45000);
  cr_assert_eq(sum[0].tokens_dropped, 45);
  /* 45 of 10 x 65536 slots dropped */
  cr_assert_float_eq(sum[0].effective_ms, mean / (1 - 45.0 / 655360), 1e-12);
  cr_assert_gt(sum[0].effective_ms, sum[0].mean_ms);
  free(sum);
  cr_assert_eq(st_runs_list(db, "gpu", &sum, &n), ST_OK);
  cr_assert_eq(n, 0);
  free(sum);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM plans"), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM gpu_stats"), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM layer_iterations"), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM traces"), 1);
}

Test(store, the_same_trace_and_cluster_are_stored_once) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "k1", 2);
  write_run(db, "capacity", "k2", 2);
  int64_t tid = 0;
  cr_assert_eq(st_trace_put(db, &trace, &tid), ST_OK);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM traces"), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM clusters"), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(DISTINCT trace_id) FROM runs"), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT max(trace_id) FROM runs"), tid);
}

Test(store, an_aborted_run_leaves_nothing) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_run_row rr = run_row("static", "k");
  st_run *r = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_OK);
  st_iter_row it = iter_row(0);
  cr_assert_eq(st_run_iteration(r, &it), ST_OK);
  st_run_abort(r);
  int exists = 1;
  cr_assert_eq(st_run_exists(db, "k", &exists), ST_OK);
  cr_assert_eq(exists, 0);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM runs"), 0);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM iterations"), 0);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM traces"), 0);
}

Test(store, closing_with_an_open_run_rolls_it_back) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "done", 3);
  st_run_row rr = run_row("capacity", "open");
  st_run *r = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_OK);
  st_iter_row it = iter_row(0);
  cr_assert_eq(st_run_iteration(r, &it), ST_OK);
  st_close(db); /* frees r */
  cr_assert_eq(count_runs(dbpath), 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM iterations"), 3);
}

Test(store, only_one_run_is_open_per_connection) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_run_row rr = run_row("static", "a");
  st_run *r = NULL, *r2 = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_OK);
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r2), ST_EBUSY);
  cr_assert_null(r2);
  int64_t tid;
  cr_assert_eq(st_trace_put(db, &trace, &tid), ST_EBUSY);
  cr_assert_eq(st_run_commit(r, NULL), ST_OK);
  st_close(db);
}

Test(store, a_process_dying_mid_run_leaves_no_partial_run) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "before", 4);
  st_close(db);
  for (int how = 0; how < 2; how++) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
      st_db *cdb = NULL;
      if (st_open(&cdb, dbpath, ST_WRITE, NULL, 0) != ST_OK)
        _exit(3);
      st_run_row rr = run_row("capacity", "crashed");
      st_run *r = NULL;
      if (st_run_begin(cdb, &trace, &rr, &r) != ST_OK)
        _exit(4);
      /* Enough rows that SQLite spills pages into the WAL before commit. */
      for (int i = 0; i < 20000; i++) {
        st_iter_row it = iter_row(i);
        if (st_run_iteration(r, &it) != ST_OK)
          _exit(5);
      }
      if (how == 0)
        _exit(0); /* no commit, no close */
      raise(SIGKILL);
      _exit(6);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    if (how == 0)
      cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d",
                WEXITSTATUS(status));
    else
      cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    cr_assert_eq(count_runs(dbpath), 1);
    cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM runs"), 1);
    cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM iterations"), 4);
    cr_assert_eq(sql_int(dbpath, "SELECT quick_check = 'ok' FROM "
                                 "pragma_quick_check"),
                 1);
  }
  /* The lock died with the process: a new run can be written. */
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "capacity", "after", 2);
  int exists = 0;
  cr_assert_eq(st_run_exists(db, "crashed", &exists), ST_OK);
  cr_assert_eq(exists, 0);
  cr_assert_eq(st_run_exists(db, "after", &exists), ST_OK);
  cr_assert_eq(exists, 1);
  st_close(db);
}

Test(store, a_read_only_file_is_refused_for_writing_and_named) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "k", 2);
  st_close(db);
  cr_assert_eq(chmod(dbpath, 0444), 0);
  size_t blen;
  char *before = slurp(dbpath, &blen);
  char msg[512] = "";
  db = (st_db *)0x1;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_EREADONLY);
  cr_assert_eq(db, (st_db *)0x1, "output touched on error");
  cr_assert(strstr(msg, dbpath) && strstr(msg, "read-only"), "message: %s", msg);
  assert_untouched(dbpath, before, blen);
  /* Reading it is fine. */
  cr_assert_eq(count_runs(dbpath), 1);
  free(before);
}

Test(store, a_read_only_directory_refuses_a_new_database) {
  cr_assert_eq(chmod(dir, 0555), 0);
  char msg[512] = "";
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_EREADONLY);
  cr_assert(strstr(msg, dbpath) && strstr(msg, "read-only"), "message: %s", msg);
  cr_assert_neq(access(dbpath, F_OK), 0);
}

Test(store, a_text_file_is_not_a_flexmoe_database_and_stays_untouched) {
  FILE *f = fopen(dbpath, "w");
  fputs("iteration,layer,rank,expert,tokens\n0,0,0,0,5\n", f);
  fclose(f);
  size_t blen;
  char *before = slurp(dbpath, &blen);
  for (int mode = ST_READ; mode <= ST_WRITE; mode++) {
    char msg[512] = "";
    st_db *db = NULL;
    cr_assert_eq(st_open(&db, dbpath, mode, msg, sizeof(msg)), ST_ENOTDB);
    cr_assert(strstr(msg, dbpath) && strstr(msg, "not a flexmoe database"),
              "message: %s", msg);
    assert_untouched(dbpath, before, blen);
  }
  free(before);
}

Test(store, another_applications_sqlite_file_is_refused_untouched) {
  sql_exec(dbpath, "CREATE TABLE songs(title TEXT); "
                   "INSERT INTO songs VALUES('x');");
  size_t blen;
  char *before = slurp(dbpath, &blen);
  char msg[512] = "";
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_ENOTDB);
  cr_assert(strstr(msg, "not a flexmoe database"), "message: %s", msg);
  assert_untouched(dbpath, before, blen);
  /* Same with an application_id of its own. */
  sql_exec(dbpath, "PRAGMA application_id = 1234;");
  free(before);
  before = slurp(dbpath, &blen);
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_ENOTDB);
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_ENOTDB);
  assert_untouched(dbpath, before, blen);
  free(before);
}

Test(store, a_newer_schema_is_refused_untouched) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "k", 2);
  st_close(db);
  sql_exec(dbpath, "PRAGMA user_version = 99; PRAGMA journal_mode = DELETE;");
  size_t blen;
  char *before = slurp(dbpath, &blen);
  char msg[512] = "";
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_EVERSION);
  cr_assert(strstr(msg, dbpath) && strstr(msg, "newer than this flexmoe") &&
                strstr(msg, "99"),
            "message: %s", msg);
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_EVERSION);
  assert_untouched(dbpath, before, blen);
  free(before);
}

Test(store, an_older_schema_is_migrated_and_keeps_its_runs) {
  /* A version-1 database, as a build of schema 1 wrote it. */
  char sql[256];
  sql_exec(dbpath, st_migration_sql(1));
  snprintf(sql, sizeof(sql), "PRAGMA user_version = 1; PRAGMA application_id = %d;",
           ST_APPLICATION_ID);
  sql_exec(dbpath, sql);
  sql_exec(dbpath,
           "INSERT INTO runs(kind, policy, gpus, seed, status, config_key) "
           "VALUES('sim', 'static', 8, 1, 'complete', 'old');"
           "INSERT INTO iterations(run_id, iteration, time_ms) VALUES(1, 0, 5.0);");
  st_db *db = NULL;
  /* Reading does not migrate. */
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_OK);
  cr_assert_eq(st_schema_version(db), 1);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 1);
  char msg[512] = "";
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_OK, "%s", msg);
  cr_assert_eq(st_schema_version(db), ST_SCHEMA_VERSION);
  int exists = 0;
  cr_assert_eq(st_run_exists(db, "old", &exists), ST_OK);
  cr_assert_eq(exists, 1);
  int64_t tid;
  cr_assert_eq(st_trace_put(db, &trace, &tid), ST_OK);
  int64_t loads[2 * 1 * 2] = {1, 2, 3, 4};
  cr_assert_eq(st_trace_loads_put(db, tid, 0, 2, 1, 2, loads, NULL), ST_OK);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), ST_SCHEMA_VERSION);
  cr_assert_eq(sql_int(dbpath, "SELECT sum(tokens) FROM trace_loads"), 10);
  cr_assert_eq(count_runs(dbpath), 1);
}

/*
 * Step 4 of opening re-reads the schema version inside its write
 * transaction: a newer flexmoe may upgrade the file after step 3 read it
 * and before this one gets the write lock to migrate. Here another
 * connection (the newer flexmoe) holds the write lock of a version-1
 * database while a child process opens it for writing: the child passes
 * step 3 (version 1 is committed) and waits for the lock to migrate; then
 * the newer one sets version 99 and commits. The child must refuse the
 * file, name it as newer, and leave it as the newer one wrote it. (Steps 1
 * to 3 take milliseconds; the lock is held 1 s. Were the child slower, step
 * 3 would see version 99 and refuse as well.)
 */
Test(store, a_database_upgraded_while_waiting_to_migrate_is_refused_untouched) {
  char sql[256];
  sql_exec(dbpath, st_migration_sql(1));
  snprintf(sql, sizeof(sql),
           "PRAGMA user_version = 1; PRAGMA application_id = %d; PRAGMA journal_mode = WAL;",
           ST_APPLICATION_ID);
  sql_exec(dbpath, sql);
  int go[2], result[2];
  cr_assert_eq(pipe(go), 0);
  cr_assert_eq(pipe(result), 0);
  pid_t pid = fork(); /* before this process opens the database again */
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    char c;
    close(go[1]);
    close(result[0]);
    if (read(go[0], &c, 1) != 1)
      _exit(3);
    struct {
      int rc;
      char msg[500];
    } out = {.rc = 1};
    st_db *db = NULL;
    out.rc = st_open(&db, dbpath, ST_WRITE, out.msg, sizeof(out.msg));
    st_close(db);
    _exit(write(result[1], &out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 4);
  }
  close(go[0]);
  close(result[1]);
  sqlite3 *newer = NULL;
  cr_assert_eq(sqlite3_open(dbpath, &newer), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(newer, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  cr_assert_eq(write(go[1], "g", 1), 1);
  struct timespec hold = {.tv_sec = 1, .tv_nsec = 0};
  nanosleep(&hold, NULL);
  cr_assert_eq(sqlite3_exec(newer, "PRAGMA user_version = 99; COMMIT", NULL, NULL, NULL),
               SQLITE_OK, "%s", sqlite3_errmsg(newer));
  sqlite3_close(newer);
  struct {
    int rc;
    char msg[500];
  } got = {.rc = 1};
  cr_assert_eq(read(result[0], &got, sizeof(got)), (ssize_t)sizeof(got));
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(go[1]);
  close(result[0]);
  cr_assert_eq(got.rc, ST_EVERSION, "opened with %d: %s", got.rc, got.msg);
  cr_assert(strstr(got.msg, dbpath) && strstr(got.msg, "newer than this flexmoe") &&
                strstr(got.msg, "99"),
            "message: %s", got.msg);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 99);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM sqlite_master WHERE name = 'trace_loads'"),
               0, "the older flexmoe migrated the newer file");
}

Test(store, effective_time_is_the_mean_over_one_minus_the_dropped_share) {
  static const struct {
    double mean;
    int64_t dropped, total;
    double want;
  } cases[] = {
      {10, 0, 100, 10},        /* dropless: unchanged */
      {10, 25, 100, 10 / 0.75},
      {3, 1, 3, 4.5},
      {10, 99, 100, 1000},     /* 1% of the work done */
      {10, 5, 0, 10},          /* no slots counted: nothing to price */
      {10, 0, 0, 10},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    cr_assert_float_eq(st_effective_ms(cases[i].mean, cases[i].dropped, cases[i].total),
                       cases[i].want, 1e-9 * cases[i].want, "case %zu", i);
  /* every slot dropped: no useful work at any speed, never a finite time */
  cr_assert(isinf(st_effective_ms(10, 100, 100)) && st_effective_ms(10, 100, 100) > 0);
  cr_assert(isinf(st_effective_ms(10, 101, 100)));
}

Test(store, a_version_1_database_gives_effective_time_from_its_iterations) {
  /* Effective time has no column: a database written by a schema-1 build,
   * opened read-only (not migrated), prices its drops the same way. */
  char sql[256];
  sql_exec(dbpath, st_migration_sql(1));
  snprintf(sql, sizeof(sql), "PRAGMA user_version = 1; PRAGMA application_id = %d;",
           ST_APPLICATION_ID);
  sql_exec(dbpath, sql);
  sql_exec(dbpath,
           "INSERT INTO runs(kind, policy, gpus, seed, status) "
           "VALUES('sim', 'capacity', 8, 1, 'complete');"
           "INSERT INTO iterations(run_id, iteration, time_ms, tokens_dropped, tokens_total) "
           "VALUES(1, 0, 4.0, 100, 1000), (1, 1, 6.0, 300, 1000);"
           "INSERT INTO runs(kind, policy, gpus, seed, status) "
           "VALUES('sim', 'static', 8, 1, 'complete');"
           "INSERT INTO iterations(run_id, iteration, time_ms, tokens_dropped, tokens_total) "
           "VALUES(2, 0, 7.0, 0, 1000), (2, 1, 9.0, 0, 1000);");
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_OK);
  cr_assert_eq(st_schema_version(db), 1);
  st_run_summary *sum = NULL;
  size_t n = 0;
  cr_assert_eq(st_runs_list(db, NULL, &sum, &n), ST_OK);
  cr_assert_eq(n, 2);
  /* mean 5 ms, 400 of 2000 slots dropped: 5 / 0.8 */
  cr_assert_float_eq(sum[0].effective_ms, 6.25, 1e-12);
  cr_assert_float_eq(sum[1].effective_ms, sum[1].mean_ms, 0);
  free(sum);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 1);
}

Test(store, missing_files_and_directories_are_named) {
  char msg[512] = "";
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_READ, msg, sizeof(msg)), ST_EOPEN);
  cr_assert(strstr(msg, dbpath) && strstr(msg, "no such"), "message: %s", msg);
  cr_assert_neq(access(dbpath, F_OK), 0, "reading created the file");
  char deep[400];
  snprintf(deep, sizeof(deep), "%s/nope/results.db", dir);
  cr_assert_eq(st_open(&db, deep, ST_WRITE, msg, sizeof(msg)), ST_EOPEN);
  cr_assert(strstr(msg, "no such directory"), "message: %s", msg);
  cr_assert_eq(st_open(&db, dir, ST_WRITE, msg, sizeof(msg)), ST_EOPEN);
  cr_assert(strstr(msg, "directory"), "message: %s", msg);
}

Test(store, an_empty_file_becomes_a_database_when_writing) {
  FILE *f = fopen(dbpath, "w");
  fclose(f);
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_ENOTDB);
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "PRAGMA application_id"), ST_APPLICATION_ID);
}

Test(store, a_read_connection_cannot_write) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_close(db);
  cr_assert_eq(st_open(&db, dbpath, ST_READ, NULL, 0), ST_OK);
  st_run_row rr = run_row("static", "k");
  st_run *r = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_EREADONLY);
  cr_assert_eq(st_profile_put(db, "h200", "{}"), ST_EREADONLY);
  st_close(db);
}

Test(store, invalid_runs_are_refused) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_run *r = NULL;
  st_run_row rr = run_row("static", "k");
  rr.kind = "cloud";
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_EINVAL);
  rr = run_row("static", "k");
  rr.gpus = 0;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_EINVAL);
  rr = run_row(NULL, "k");
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_EINVAL);
  /* A duplicate iteration is an error inside the run; aborting keeps the
   * database clean. */
  rr = run_row("static", "k");
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_OK);
  st_iter_row it = iter_row(1);
  cr_assert_eq(st_run_iteration(r, &it), ST_OK);
  cr_assert_eq(st_run_iteration(r, &it), ST_ESQL);
  st_run_abort(r);
  st_close(db);
  cr_assert_eq(count_runs(dbpath), 0);
}

Test(store, run_exists_only_for_a_complete_run_with_that_key) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "grid/1", 1);
  st_run_row rr = run_row("static", "grid/2");
  rr.status = "failed";
  st_run *r = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_OK);
  cr_assert_eq(st_run_commit(r, NULL), ST_OK);
  int e = -1;
  cr_assert_eq(st_run_exists(db, "grid/1", &e), ST_OK);
  cr_assert_eq(e, 1);
  cr_assert_eq(st_run_exists(db, "grid/2", &e), ST_OK);
  cr_assert_eq(e, 0);
  cr_assert_eq(st_run_exists(db, "grid/3", &e), ST_OK);
  cr_assert_eq(e, 0);
  st_close(db);
  cr_assert_eq(count_runs(dbpath), 1); /* the failed run is not listed */
}

Test(store, the_same_inputs_give_identical_rows) {
  char other[320];
  snprintf(other, sizeof(other), "%s/other.db", dir);
  const char *paths[2] = {dbpath, other};
  st_iter_row *rows[2];
  size_t n[2];
  st_run_summary *sum[2];
  size_t ns[2];
  for (int k = 0; k < 2; k++) {
    st_db *db = NULL;
    cr_assert_eq(st_open(&db, paths[k], ST_WRITE, NULL, 0), ST_OK);
    write_run(db, "static", "a", 50);
    int64_t id = write_run(db, "eplb", "b", 50);
    cr_assert_eq(st_run_iterations(db, id, &rows[k], &n[k]), ST_OK);
    cr_assert_eq(st_runs_list(db, NULL, &sum[k], &ns[k]), ST_OK);
    st_close(db);
  }
  cr_assert_eq(n[0], n[1]);
  cr_assert_eq(memcmp(rows[0], rows[1], n[0] * sizeof(st_iter_row)), 0);
  cr_assert_eq(ns[0], 2);
  cr_assert_eq(ns[1], 2);
  cr_assert_eq(memcmp(sum[0], sum[1], 2 * sizeof(st_run_summary)), 0);
  for (int k = 0; k < 2; k++) {
    free(rows[k]);
    free(sum[k]);
  }
}

Test(store, profiles_are_stored_by_name_and_replaced) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  char *json = NULL;
  cr_assert_eq(st_profile_get(db, "h200", &json), ST_ENOTFOUND);
  cr_assert_null(json);
  cr_assert_eq(st_profile_put(db, "h200", "{\"points\": [1]}"), ST_OK);
  cr_assert_eq(st_profile_put(db, "h200", "{\"points\": [2]}"), ST_OK);
  cr_assert_eq(st_profile_get(db, "h200", &json), ST_OK);
  cr_assert_str_eq(json, "{\"points\": [2]}");
  free(json);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM profiles"), 1);
}

Test(store, validations_keep_unmeasured_phases_as_null) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  int64_t p = write_run(db, "static", "p", 2);
  int64_t m = write_run(db, "static", "m", 2);
  st_validation_row v = {p, m, 0.05, -0.02, 0.1, NAN, 0.0, NAN, NULL};
  int64_t id = 0, n = 0;
  cr_assert_eq(st_validation_add(db, &v, &id), ST_OK);
  cr_assert_gt(id, 0);
  cr_assert_eq(st_validations_count(db, &n), ST_OK);
  cr_assert_eq(n, 1);
  v.measured_run = 999; /* no such run: the foreign key refuses it */
  cr_assert_eq(st_validation_add(db, &v, &id), ST_ESQL);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM validations "
                               "WHERE err_allreduce IS NULL AND err_other IS NULL "
                               "AND err_compute = -0.02"),
               1);
}

Test(store, trace_loads_are_written_once) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  int64_t tid = 0;
  cr_assert_eq(st_trace_put(db, &trace, &tid), ST_OK);
  int64_t loads[3 * 2 * 4];
  for (int i = 0; i < 24; i++)
    loads[i] = i;
  int written = -1;
  cr_assert_eq(st_trace_loads_put(db, tid, 10, 3, 2, 4, loads, &written), ST_OK);
  cr_assert_eq(written, 1);
  cr_assert_eq(st_trace_loads_put(db, tid, 10, 3, 2, 4, loads, &written), ST_OK);
  cr_assert_eq(written, 0);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM trace_loads"), 24);
  /* (iteration 11, layer 1, expert 3) = loads[(1 * 2 + 1) * 4 + 3] */
  cr_assert_eq(sql_int(dbpath, "SELECT tokens FROM trace_loads WHERE "
                               "iteration = 11 AND layer = 1 AND expert = 3"),
               15);
}

Test(store, error_messages_cover_every_code) {
  cr_assert_str_eq(st_strerror(ST_ENOTDB), "not a flexmoe database");
  cr_assert_str_eq(st_strerror(ST_EREADONLY), "database is read-only");
  cr_assert_str_eq(st_strerror(12345), "unknown store error");
}

/* Issue 20, finding 5: a write that does not fit (disk full; here the file
 * size limit, which fails writes the same way without root) is named as
 * such, not as the failed rollback that follows it, and leaves the
 * database whole. */
Test(store, a_full_disk_is_named_and_rolls_back_cleanly) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "before", 4);
  st_close(db);
  struct stat st;
  cr_assert_eq(stat(dbpath, &st), 0);
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    /* Room for the WAL to hold a little more than the file has now. */
    struct rlimit rl = {(rlim_t)st.st_size + 64 * 1024, (rlim_t)st.st_size + 64 * 1024};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0 ||
        st_open(&db, dbpath, ST_WRITE, NULL, 0) != ST_OK)
      _exit(100);
    char line[1200];
    int code = ST_OK, k = 0;
    for (; code == ST_OK && k < 200; k++) {
      char key[32];
      snprintf(key, sizeof(key), "k%d", k);
      st_run_row rr = run_row("capacity", key);
      st_run *r = NULL;
      code = st_run_begin(db, &trace, &rr, &r);
      for (int i = 0; code == ST_OK && i < 500; i++) {
        st_iter_row it = iter_row(i);
        code = st_run_iteration(r, &it);
      }
      if (code == ST_OK)
        code = st_run_commit(r, NULL);
      else
        st_run_abort(r);
    }
    int n = snprintf(line, sizeof(line), "%d %d %s", code, st_errcode(db),
                     st_errmsg(db));
    if (write(fds[1], line, (size_t)n) != n)
      _exit(101);
    st_close(db);
    _exit(0);
  }
  close(fds[1]);
  char line[1200] = "";
  ssize_t got = read(fds[0], line, sizeof(line) - 1);
  close(fds[0]);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  cr_assert_gt(got, 0);
  line[got] = '\0';
  int code = 0, last = 0, off = 0;
  cr_assert_eq(sscanf(line, "%d %d %n", &code, &last, &off), 2, "%s", line);
  cr_assert_eq(code, ST_EFULL, "code %d (%s): %s", code, st_strerror(code), line);
  cr_assert_eq(last, ST_EFULL);
  cr_assert(strstr(line + off, "file size limit") && strstr(line + off, dbpath),
            "message: %s", line + off);
  cr_assert_null(strstr(line + off, "rollback"), "message: %s", line + off);
  cr_assert_str_eq(st_strerror(ST_EFULL), "disk is full or the file size limit was reached");
  /* Every committed run is whole, nothing of the failed one is there, and
   * the database takes new runs once there is room again. */
  size_t n = count_runs(dbpath);
  cr_assert_geq(n, 1);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM iterations"), 4 + (int64_t)(n - 1) * 500);
  cr_assert_eq(sql_int(dbpath, "SELECT quick_check = 'ok' FROM pragma_quick_check"), 1);
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "after", 2);
  st_close(db);
  cr_assert_eq(count_runs(dbpath), n + 1);
}

static int exists_file(const char *path, const char *ext) {
  char f[400];
  snprintf(f, sizeof(f), "%s%s", path, ext);
  return access(f, F_OK) == 0;
}

/* Issue 20, finding 7: reading creates no -wal/-shm files (a read-only
 * directory can be read, nothing is left behind) and still sees what a
 * writer that has the database open has committed into its WAL. */
Test(store, reading_creates_no_files_and_sees_an_open_writers_commits) {
  st_db *w = NULL, *r = NULL;
  cr_assert_eq(st_open(&w, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(w, "static", "a", 2);
  st_close(w);
  cr_assert(!exists_file(dbpath, "-wal") && !exists_file(dbpath, "-shm"));
  cr_assert_eq(st_open(&r, dbpath, ST_READ, NULL, 0), ST_OK);
  cr_assert(!exists_file(dbpath, "-wal") && !exists_file(dbpath, "-shm"),
            "opening for reading created SQLite's side files");
  cr_assert_eq(count_runs(dbpath), 1);
  st_close(r);
  cr_assert(!exists_file(dbpath, "-wal") && !exists_file(dbpath, "-shm"),
            "reading left SQLite's side files");
  /* A writer keeps the database open: its commit is in the WAL only. */
  cr_assert_eq(st_open(&w, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(w, "capacity", "b", 2);
  cr_assert(exists_file(dbpath, "-wal"));
  cr_assert_eq(count_runs(dbpath), 2);
  st_close(w);
  cr_assert(!exists_file(dbpath, "-wal") && !exists_file(dbpath, "-shm"));
}

/* A reader opened without the WAL machinery (immutable) reads the file
 * itself; a writer that comes and checkpoints into it meanwhile is noticed,
 * not read as a mix of two states. */
Test(store, a_reader_notices_a_checkpoint_under_it) {
  st_db *w = NULL, *r = NULL;
  cr_assert_eq(st_open(&w, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(w, "static", "a", 2);
  st_close(w);
  cr_assert_eq(st_open(&r, dbpath, ST_READ, NULL, 0), ST_OK);
  st_run_summary *rows = NULL;
  size_t n = 0;
  cr_assert_eq(st_runs_list(r, NULL, &rows, &n), ST_OK);
  cr_assert_eq(n, 1);
  free(rows);
  cr_assert_eq(st_open(&w, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(w, "capacity", "b", 2);
  st_close(w); /* the last connection it knows of: checkpoints into the file */
  rows = NULL;
  cr_assert_eq(st_runs_list(r, NULL, &rows, &n), ST_EBUSY);
  cr_assert_null(rows);
  cr_assert(strstr(st_errmsg(r), "changed while it was being read"), "%s",
            st_errmsg(r));
  st_close(r);
  cr_assert_eq(count_runs(dbpath), 2);
}

/* Issue 20, finding 8: one complete run per configuration. A version-2
 * database that has duplicates (two sweeps at once stored them) keeps the
 * latest of each, says so, and then refuses a second complete run of a key
 * (raw SQL included); st_run_begin supersedes by default and keeps the
 * stored run with ST_DUP_KEEP. */
Test(store, one_complete_run_per_configuration_and_old_duplicates_are_superseded) {
  char sql[256];
  sql_exec(dbpath, st_migration_sql(1));
  sql_exec(dbpath, st_migration_sql(2));
  snprintf(sql, sizeof(sql), "PRAGMA user_version = 2; PRAGMA application_id = %d;",
           ST_APPLICATION_ID);
  sql_exec(dbpath, sql);
  sql_exec(dbpath,
           "INSERT INTO runs(kind, policy, gpus, seed, status, config_key) VALUES"
           "('sim', 'static', 8, 1, 'complete', 'dup'),"
           "('sim', 'static', 8, 1, 'complete', 'solo'),"
           "('sim', 'static', 8, 1, 'complete', 'dup'),"
           "('sim', 'static', 8, 1, 'complete', NULL),"
           "('sim', 'static', 8, 1, 'complete', NULL),"
           "('sim', 'static', 8, 1, 'complete', ''),"
           "('sim', 'static', 8, 1, 'complete', ''),"
           "('sim', 'static', 8, 1, 'complete', 'dup');"
           "INSERT INTO iterations(run_id, iteration, time_ms) VALUES"
           "(1, 0, 40.0), (3, 0, 30.0), (8, 0, 20.0);"
           "INSERT INTO validations(predicted_run, measured_run) VALUES(1, 3);");
  st_db *db = NULL;
  char msg[512] = "";
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_OK, "%s", msg);
  cr_assert_eq(st_schema_version(db), 3);
  cr_assert(strstr(st_notice(db), dbpath) && strstr(st_notice(db), "2 runs") &&
                strstr(st_notice(db), "superseded"),
            "notice: %s", st_notice(db));
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT group_concat(id) FROM runs WHERE "
                               "config_key = 'dup' AND status = 'complete'"),
               8, "the latest run of a configuration is kept");
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM runs WHERE status = 'superseded'"), 2);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM iterations"), 3, "nothing deleted");
  cr_assert_eq(count_runs(dbpath), 6, "dup, solo, two without a key, two with ''");
  /* Opening again says nothing. */
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  cr_assert_str_eq(st_notice(db), "");
  /* The schema itself refuses a second complete run of a key... */
  sqlite3 *h = NULL;
  cr_assert_eq(sqlite3_open(dbpath, &h), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(h,
                            "INSERT INTO runs(kind, policy, gpus, seed, status, "
                            "config_key) VALUES('sim', 'x', 8, 1, 'complete', 'solo')",
                            NULL, NULL, NULL),
               SQLITE_CONSTRAINT);
  sqlite3_close(h);
  /* ...st_run_begin keeps the stored one when asked, writing nothing... */
  cr_assert_eq(st_on_duplicate(db, ST_DUP_KEEP), ST_OK);
  st_run_row rr = run_row("static", "solo");
  st_run *r = NULL;
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_EEXISTS);
  cr_assert_null(r);
  cr_assert_eq(st_errcode(db), ST_EEXISTS);
  cr_assert(strstr(st_errmsg(db), "already stored"), "%s", st_errmsg(db));
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM traces"), 0, "nothing written");
  /* ...and by default the new run supersedes it. */
  cr_assert_eq(st_on_duplicate(db, ST_DUP_SUPERSEDE), ST_OK);
  int64_t id = write_run(db, "static", "solo", 2);
  cr_assert_eq(st_on_duplicate(db, 7), ST_EINVAL);
  st_close(db);
  cr_assert_eq(sql_int(dbpath, "SELECT id FROM runs WHERE config_key = 'solo' "
                               "AND status = 'complete'"),
               id);
  cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM runs WHERE config_key = 'solo'"), 2);
  cr_assert_eq(count_runs(dbpath), 6);
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Issue 20, what to build 4: a database another process is writing is named
 * as locked by another process, after the busy timeout, not after a hang;
 * opening an up-to-date database does not wait for the lock at all. */
Test(store, a_locked_database_is_named_and_nothing_hangs) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  write_run(db, "static", "a", 2);
  st_close(db);
  sqlite3 *other = NULL;
  cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  double t0 = mono_s();
  char msg[512] = "";
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg)), ST_OK, "%s", msg);
  cr_assert_lt(mono_s() - t0, 5.0, "opening waited for the other writer");
  cr_assert_eq(st_busy_timeout(db, 200), ST_OK);
  st_run_row rr = run_row("capacity", "b");
  st_run *r = NULL;
  t0 = mono_s();
  cr_assert_eq(st_run_begin(db, &trace, &rr, &r), ST_EBUSY);
  double waited = mono_s() - t0;
  cr_assert(waited >= 0.15 && waited < 5.0, "waited %.3f s", waited);
  cr_assert(strstr(st_errmsg(db), "locked by another process") &&
                strstr(st_errmsg(db), "200 ms"),
            "%s", st_errmsg(db));
  cr_assert_eq(st_errcode(db), ST_EBUSY);
  cr_assert_str_eq(st_strerror(ST_EBUSY), "database is locked by another process");
  int64_t tid = 0;
  cr_assert_eq(st_trace_put(db, &trace, &tid), ST_EBUSY);
  /* Readers are not blocked, and the lock's end lets the write through. */
  cr_assert_eq(count_runs(dbpath), 1);
  cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  write_run(db, "capacity", "b", 2);
  st_close(db);
  cr_assert_eq(count_runs(dbpath), 2);
}

/* CI found it: two sweeps creating one database at the same moment, and one
 * failed at once with "locked by another process (gave up after waiting
 * 30000 ms)": switching a fresh file to WAL while another process does the
 * same returned SQLITE_BUSY without the busy handler being called; or it
 * read the schema's identity while the other's migration committed, and
 * called the file "an SQLite file of another application". Here four
 * processes create one database at once, sixty times over; every one of
 * them must open it. */
Test(store, processes_creating_one_database_at_once_all_open_it) {
  enum { ROUNDS = 60, PROCS = 4 };
  int failures = 0;
  char first[600] = "";
  for (int round = 0; round < ROUNDS; round++) {
    unlink(dbpath);
    char side[320];
    snprintf(side, sizeof(side), "%s-wal", dbpath);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", dbpath);
    unlink(side);
    int go[2], result[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(result), 0);
    pid_t pid[PROCS];
    for (int k = 0; k < PROCS; k++) {
      pid[k] = fork();
      cr_assert_geq(pid[k], 0);
      if (pid[k] == 0) {
        char c, msg[500] = "";
        close(go[1]);
        close(result[0]);
        if (read(go[0], &c, 1) != 0) /* wakes when the parent closes go */
          _exit(3);
        /* staggered by 0-9 ms, so that some find the file mid-migration */
        struct timespec lag = {.tv_sec = 0, .tv_nsec = ((round * 3 + k * 7) % 10) * 1000000L};
        nanosleep(&lag, NULL);
        st_db *db = NULL;
        int rc = st_open(&db, dbpath, ST_WRITE, msg, sizeof(msg));
        st_close(db);
        if (rc != ST_OK && write(result[1], msg, strlen(msg) + 1) < 0)
          _exit(4);
        _exit(rc == ST_OK ? 0 : 1);
      }
    }
    close(go[0]);
    close(result[1]);
    close(go[1]); /* all children start at once */
    for (int k = 0; k < PROCS; k++) {
      int status = 0;
      cr_assert_eq(waitpid(pid[k], &status, 0), pid[k]);
      cr_assert(WIFEXITED(status) && WEXITSTATUS(status) <= 1, "child %d: status %d", k,
                status);
      failures += WEXITSTATUS(status);
    }
    if (failures && !first[0] && read(result[0], first, sizeof(first) - 1) < 0)
      first[0] = '\0';
    close(result[0]);
  }
  cr_assert_eq(failures, 0, "%d of %d opens failed; the first: %s", failures,
               ROUNDS * PROCS, first);
  cr_assert_eq(sql_int(dbpath, "PRAGMA application_id"), ST_APPLICATION_ID);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), ST_SCHEMA_VERSION);
}

Test(store, a_second_writer_waits_for_the_first_then_proceeds) {
  st_db *a = NULL, *b = NULL;
  cr_assert_eq(st_open(&a, dbpath, ST_WRITE, NULL, 0), ST_OK);
  cr_assert_eq(st_open(&b, dbpath, ST_WRITE, NULL, 0), ST_OK);
  cr_assert_eq(st_busy_timeout(b, 50), ST_OK);
  st_run_row rr = run_row("static", "first");
  st_run *ra = NULL, *rb = NULL;
  cr_assert_eq(st_run_begin(a, &trace, &rr, &ra), ST_OK);
  /* While a holds its run open, b gives up after its timeout... */
  rr = run_row("capacity", "second");
  cr_assert_eq(st_run_begin(b, &trace, &rr, &rb), ST_EBUSY);
  cr_assert_null(rb);
  /* ...but reads what is committed meanwhile. */
  int exists = 1;
  cr_assert_eq(st_run_exists(b, "first", &exists), ST_OK);
  cr_assert_eq(exists, 0);
  cr_assert_eq(st_run_commit(ra, NULL), ST_OK);
  cr_assert_eq(st_run_exists(b, "first", &exists), ST_OK);
  cr_assert_eq(exists, 1);
  cr_assert_eq(st_run_begin(b, &trace, &rr, &rb), ST_OK);
  cr_assert_eq(st_run_commit(rb, NULL), ST_OK);
  st_close(a);
  st_close(b);
  cr_assert_eq(count_runs(dbpath), 2);
}
