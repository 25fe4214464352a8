/* Helpers shared by the store and CLI tests of tests/store: temporary
 * folders, running the flexmoe binary, writing synthetic runs. */
#ifndef FLEXMOE_TESTS_STORE_HELPERS_H
#define FLEXMOE_TESTS_STORE_HELPERS_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <grp.h>
#include <ftw.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/st_store.h"

extern char **environ;

static int helpers_rm(const char *p, const struct stat *sb, int flag,
                      struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

/* Creates a fresh temporary folder into dir[len]. */
static inline void tmp_dir(char *dir, size_t len) {
  snprintf(dir, len, "/tmp/flexmoe-test-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static inline void rm_tree(const char *dir) {
  chmod(dir, 0700);
  nftw(dir, helpers_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return strdup("");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = '\0';
  fclose(f);
  return buf;
}

/* Runs argv (argv[0] = program path) with stdout/stderr into files under
 * dir; *out and *err get their contents (malloc'd). Returns the exit status,
 * or 128 + signal. */
static inline int run_capture(const char *dir, char *const argv[], char **out,
                              char **err) {
  char po[512], pe[512];
  snprintf(po, sizeof(po), "%s/.stdout", dir);
  snprintf(pe, sizeof(pe), "%s/.stderr", dir);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, po, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  cr_assert_eq(rc, 0, "cannot run %s", argv[0]);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  if (out)
    *out = read_all(po);
  if (err)
    *err = read_all(pe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The child of run_capture_in: stdout/stderr into po/pe (mode), then the
 * file size limit (fsize > 0: RLIMIT_FSIZE, with SIGXFSZ back to its
 * default, death, so whatever survives is the program's own doing), then
 * the user (uid >= 0: uid = gid = uid), then argv. Never returns. */
static inline void run_child(const char *po, const char *pe, mode_t mode, char *const argv[],
                             rlim_t fsize, int uid) {
  int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, mode);
  int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
    _exit(126);
  if (fsize > 0) {
    struct rlimit rl = {fsize, fsize};
    signal(SIGXFSZ, SIG_DFL);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(126);
  }
  if (uid >= 0 &&
      (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0))
    _exit(126);
  execve(argv[0], argv, environ);
  _exit(127);
}

/* run_capture with a file size limit (fsize bytes, 0: none; writes past it
 * fail as on a full disk) and as another user (uid, -1: as we are; for
 * tests running as root, where file permissions do not stop writes).
 * Returns the exit status, or 128 + signal; 126 when the limit or the user
 * could not be set. */
static inline int run_capture_in(const char *dir, char *const argv[], char **out, char **err,
                                 rlim_t fsize, int uid) {
  char po[512], pe[512];
  snprintf(po, sizeof(po), "%s/.stdout", dir);
  snprintf(pe, sizeof(pe), "%s/.stderr", dir);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0)
    run_child(po, pe, uid >= 0 ? 0666 : 0600, argv, fsize, uid);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  if (out)
    *out = read_all(po);
  if (err)
    *err = read_all(pe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* run_capture with the child's file size limit set to fsize bytes. */
static inline int run_capture_fsize(const char *dir, char *const argv[], char **out,
                                    char **err, rlim_t fsize) {
  return run_capture_in(dir, argv, out, err, fsize, -1);
}

/* run_capture as user uid (-1: as we are). */
static inline int run_capture_as(const char *dir, char *const argv[], char **out, char **err,
                                 int uid) {
  return run_capture_in(dir, argv, out, err, 0, uid);
}

/* One integer from a read-only query of the database at path. */
static inline int64_t sql_int(const char *path, const char *sql) {
  sqlite3 *h = NULL;
  sqlite3_stmt *s = NULL;
  cr_assert_eq(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK, "%s",
               sqlite3_errmsg(h));
  cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return v;
}

static inline const char *flexmoe_bin(void) {
  const char *bin = getenv("FLEXMOE_BIN");
  cr_assert_not_null(bin, "FLEXMOE_BIN is not set (run through meson test)");
  return bin;
}

/* Writes a complete run whose iterations all take time_ms (compute 60%,
 * all-to-all 30%, other 10%) and route 1000 token slots each, of which
 * `dropped` are dropped; params is its stored params_json (may be NULL: the
 * model shape etc. that the report groups by). */
static inline int64_t put_run_params(st_db *db, const char *kind, const char *trace_path,
                                     const char *cluster, int gpus, const char *policy,
                                     uint64_t seed, const char *key, double time_ms,
                                     int iterations, int64_t dropped, const char *params) {
  st_trace_row t = {trace_path, 0x1234, 200, 6, 8, 32, NULL};
  st_run_row r = {0};
  r.params_json = params;
  r.kind = kind;
  r.policy = policy;
  r.cluster = cluster;
  r.engine = "analytic";
  r.gpus = gpus;
  r.seed = seed;
  r.rng = "mt19937";
  r.code_version = "test";
  r.status = "complete";
  r.config_key = key;
  st_run *w = NULL;
  cr_assert_eq(st_run_begin(db, &t, &r, &w), ST_OK, "%s", st_errmsg(db));
  for (int i = 0; i < iterations; i++) {
    st_iter_row it = {0};
    it.iteration = i;
    it.time_ms = time_ms;
    it.compute_ms = 0.6 * time_ms;
    it.alltoall_ms = 0.3 * time_ms;
    it.other_ms = 0.1 * time_ms;
    it.balance = 1.5;
    it.tokens_total = 1000;
    it.tokens_dropped = dropped;
    it.bytes_migrated = 10;
    cr_assert_eq(st_run_iteration(w, &it), ST_OK);
  }
  int64_t id = 0;
  cr_assert_eq(st_run_commit(w, &id), ST_OK);
  return id;
}

/* put_run_params without stored parameters. */
static inline int64_t put_run_dropping(st_db *db, const char *kind, const char *trace_path,
                                       const char *cluster, int gpus, const char *policy,
                                       uint64_t seed, const char *key, double time_ms,
                                       int iterations, int64_t dropped) {
  return put_run_params(db, kind, trace_path, cluster, gpus, policy, seed, key, time_ms,
                        iterations, dropped, NULL);
}

/* A dropless run (put_run_dropping with nothing dropped). */
static inline int64_t put_run(st_db *db, const char *kind, const char *trace_path,
                              const char *cluster, int gpus, const char *policy,
                              uint64_t seed, const char *key, double time_ms,
                              int iterations) {
  return put_run_dropping(db, kind, trace_path, cluster, gpus, policy, seed, key, time_ms,
                          iterations, 0);
}

#endif
