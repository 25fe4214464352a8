/*
 * `flexmoe run`, `flexmoe calibrate` and `flexmoe validate` as a user meets
 * them on the cpu backend: the JSON keys, the checks, the files and the
 * database rows they promise, and one clear line with a non-zero exit for
 * each bad command line.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/st_store.h"

static char out[1 << 20], err[1 << 16];

/* Runs `flexmoe ARGS` in the source root; returns the exit code. */
static int run(const char *args) {
  const char *bin = getenv("FLEXMOE_BIN");
  const char *src = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert(bin && src, "FLEXMOE_BIN / FLEXMOE_SOURCE_ROOT not set");
  char errpath[] = "/tmp/flexmoe-rt-cli-XXXXXX";
  int fd = mkstemp(errpath);
  cr_assert_geq(fd, 0);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>'%s'", src, bin, args, errpath);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  FILE *e = fdopen(fd, "r");
  n = fread(err, 1, sizeof err - 1, e);
  err[n] = '\0';
  fclose(e);
  unlink(errpath);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The last stderr line is "flexmoe CMD: ..." naming `what`; stdout empty. */
static void fails_with(const char *cmd, const char *what) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "flexmoe %s: ", cmd);
  cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "stderr: %s", err);
  cr_assert(strstr(err, what), "stderr does not name '%s': %s", what, err);
  cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
  cr_assert_str_eq(out, "", "stdout not empty on error");
}

#define SAMPLE "--trace traces/samples/gpt-l6-e32-top2-aux-200.npy"
#define SMALL "--backend cpu --ranks 4 --d-model 16 --d-ff 32 --tokens-per-gpu 64"

static json_t *parse(void) {
  json_error_t je;
  json_t *root = json_loads(out, 0, &je);
  cr_assert_not_null(root, "not JSON (%s): %s", je.text, out);
  return root;
}

Test(rt_cli, run_replays_and_checks_against_the_reference, .timeout = 90) {
  cr_assert_eq(run("run " SMALL " " SAMPLE " --iterations 0:3 --policy static --policy eplb:period=1"
                   " --check --format json"), 0, "%s", err);
  json_t *root = parse(), *runs = json_object_get(root, "runs");
  cr_assert_eq(json_array_size(runs), 2);
  for (size_t i = 0; i < 2; i++) {
    json_t *r = json_array_get(runs, i);
    cr_assert_eq(json_integer_value(json_object_get(r, "gpus")), 4);
    cr_assert_eq(json_integer_value(json_object_get(r, "iterations")), 3);
    cr_assert_gt(json_real_value(json_object_get(r, "mean_iteration_ms")), 0.0);
    json_t *bd = json_object_get(r, "breakdown_ms");
    const char *keys[] = {"dispatch", "compute", "combine", "local", "allreduce", "migration"};
    for (int k = 0; k < 6; k++) cr_assert(json_is_number(json_object_get(bd, keys[k])), "%s", keys[k]);
    json_t *c = json_object_get(r, "check");
    cr_assert(json_is_true(json_object_get(c, "ok")));
    cr_assert_eq(json_integer_value(json_object_get(c, "tokens_missing")), 0);
    cr_assert_eq(json_integer_value(json_object_get(c, "checksum_mismatches")), 0);
  }
  json_decref(root);
}

Test(rt_cli, run_records_runs_of_kind_gpu, .timeout = 60) {
  char db[] = "/tmp/flexmoe-rt-db-XXXXXX";
  int fd = mkstemp(db);
  close(fd);
  unlink(db);
  char args[512];
  snprintf(args, sizeof args, "run " SMALL " " SAMPLE " --iterations 0:2 --policy static --db %s", db);
  cr_assert_eq(run(args), 0, "%s", err);
  st_db *s = NULL;
  char em[256];
  cr_assert_eq(st_open(&s, db, ST_READ, em, sizeof em), 0, "%s", em);
  st_run_summary *rows = NULL;
  size_t n = 0;
  cr_assert_eq(st_runs_list(s, "gpu", &rows, &n), 0);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(rows[0].kind, "gpu");
  cr_assert_str_eq(rows[0].engine, "cpu");
  cr_assert_eq(rows[0].iterations, 2);
  cr_assert_gt(rows[0].mean_ms, 0.0);
  free(rows);
  st_close(s);
  unlink(db);
}

Test(rt_cli, calibrate_writes_the_simulators_profile_and_cluster_files, .timeout = 60) {
  char dir[] = "/tmp/flexmoe-rt-cal-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char args[512], path[600];
  snprintf(args, sizeof args, "calibrate --backend cpu --d-model 16 --d-ff 32 --reps 1 --out %s/p.json --format json", dir);
  cr_assert_eq(run(args), 0, "%s", err);
  json_t *root = parse();
  cr_assert(json_is_array(json_object_get(root, "ffn")));
  cr_assert(json_is_number(json_object_get(root, "exchange_GBps")));
  json_decref(root);
  json_error_t je;
  snprintf(path, sizeof path, "%s/p.json", dir);
  json_t *p = json_load_file(path, 0, &je);
  cr_assert_not_null(p, "%s", je.text);
  cr_assert(json_is_number(json_object_get(p, "bwd_ratio")));
  json_t *sh = json_array_get(json_object_get(p, "shapes"), 0);
  cr_assert_eq(json_integer_value(json_object_get(sh, "d_model")), 16);
  cr_assert_eq(json_array_size(json_object_get(sh, "tokens")), json_array_size(json_object_get(sh, "us")));
  json_decref(p);
  snprintf(path, sizeof path, "%s/p.cluster.json", dir);
  json_t *c = json_load_file(path, 0, &je);
  cr_assert_not_null(c, "%s", je.text);
  cr_assert_eq(json_integer_value(json_object_get(c, "gpus_per_node")), 2);
  json_decref(c);
  const char *files[] = {"p.json", "p.cluster.json", "p.runtime.json"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

Test(rt_cli, validate_compares_runtime_and_simulator_per_policy, .timeout = 120) {
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --iterations 0:2 --policy static --policy flexmoe:background=0"
                   " --format json"), 0, "%s", err);
  json_t *root = parse(), *runs = json_object_get(root, "runs");
  cr_assert_eq(json_array_size(runs), 2);
  for (size_t i = 0; i < 2; i++) {
    json_t *r = json_array_get(runs, i);
    cr_assert(json_is_string(json_object_get(r, "policy")));
    double p = json_real_value(json_object_get(r, "predicted_ms"));
    double m = json_real_value(json_object_get(r, "measured_ms"));
    cr_assert_gt(p, 0.0);
    cr_assert_gt(m, 0.0);
    cr_assert_float_eq(json_real_value(json_object_get(r, "error")), (p - m) / m, 1e-9);
    cr_assert(json_is_object(json_object_get(r, "phases")));
  }
  cr_assert(json_is_number(json_object_get(root, "median_abs_error")));
  cr_assert(json_is_number(json_object_get(root, "p95_abs_error")));
  cr_assert(json_is_boolean(json_object_get(root, "ranking_agrees")));
  json_decref(root);
}

/* Sum of (nmoves, bytes) of a run's plans after its first iteration. */
static void plan_totals(sqlite3 *db, int64_t run, int64_t *moves, int64_t *bytes) {
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, "SELECT coalesce(sum(nmoves),0), coalesce(sum(bytes),0) FROM plans "
                                      "WHERE run_id = ?1 AND iteration > 0", -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int64(st, 1, run);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  *moves = sqlite3_column_int64(st, 0);
  *bytes = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
}

Test(rt_cli, validate_runtime_and_simulator_make_the_same_plans, .timeout = 120) {
  /* Both sides resolve the profile, cluster, counts and iteration numbers
   * the same way, so a policy plans identically on both: the comparison is
   * of execution, not of two different schedules. */
  char dir[] = "/tmp/flexmoe-rt-val-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char args[1024], db[600];
  snprintf(args, sizeof args, "calibrate --backend cpu --ranks 4 --d-model 32 --d-ff 64 --reps 1 --out %s/p.json", dir);
  cr_assert_eq(run(args), 0, "%s", err);
  snprintf(db, sizeof db, "%s/v.db", dir);
  snprintf(args, sizeof args,
           "validate --backend cpu --ranks 4 --d-model 8 --d-ff 16 " SAMPLE " --iterations 0:12 --slots 12"
           " --profile %s/p.json --policy flexmoe:background=0 --policy eplb:period=5,background=0 --db %s", dir, db);
  cr_assert_eq(run(args), 0, "%s", err);
  sqlite3 *s;
  cr_assert_eq(sqlite3_open(db, &s), SQLITE_OK);
  /* runs 1 (gpu) and 2 (sim) are flexmoe, 3 and 4 eplb */
  int64_t mg, bg, ms, bs;
  for (int64_t r = 1; r <= 3; r += 2) {
    plan_totals(s, r, &mg, &bg);
    plan_totals(s, r + 1, &ms, &bs);
    cr_assert_gt(mg, 0, "run %lld made no moves: the test needs some", (long long)r);
    cr_assert_eq(mg, ms, "runtime %lld moves, simulator %lld", (long long)mg, (long long)ms);
    cr_assert_eq(bg, bs);
  }
  sqlite3_close(s);
  char path[700];
  const char *files[] = {"p.json", "p.cluster.json", "p.runtime.json", "v.db", "v.db-wal", "v.db-shm"};
  for (int i = 0; i < 6; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

Test(rt_cli, bad_command_lines_get_one_clear_line) {
  cr_assert_eq(run("run --backend cpu --policy static"), 2);
  fails_with("run", "--trace is required");
  cr_assert_eq(run("run " SAMPLE " --policy static --backend cpu --partitions 2"), 2);
  fails_with("run", "--partitions needs --backend cuda");
  cr_assert_eq(run("run " SAMPLE " --policy static --backend tpu"), 1);
  fails_with("run", "unknown backend 'tpu'");
  cr_assert_eq(run("run " SMALL " " SAMPLE " --policy nosuch"), 2);
  fails_with("run", "nosuch");
  cr_assert_eq(run("run " SMALL " " SAMPLE " --policy static --iterations 300:400"), 2);
  fails_with("run", "--iterations");
  cr_assert_eq(run("run " SMALL " --trace /nonexistent.npy --policy static"), 1);
  fails_with("run", "/nonexistent.npy");
  cr_assert_eq(run("run " SMALL " " SAMPLE " --policy static --d-model 12"), 2);
  fails_with("run", "multiples of 8");
  cr_assert_eq(run("run --bogus"), 2);
  fails_with("run", "--bogus");
  cr_assert_eq(run("calibrate --d-model 16"), 2);
  fails_with("calibrate", "--backend is required");
  cr_assert_eq(run("calibrate --backend cpu --partitions 4"), 2);
  fails_with("calibrate", "--partitions needs --backend cuda");
  cr_assert_eq(run("validate --backend cpu --policy static"), 2);
  fails_with("validate", "--trace is required");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --engine warp"), 2);
  fails_with("validate", "--engine");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --profile /nonexistent.json"), 1);
  fails_with("validate", "/nonexistent.json");
  /* the runtime migrates blocking: a background policy's prediction would
   * describe another run (every re-planning policy defaults to background=1) */
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --policy static --policy flexmoe"), 2);
  fails_with("validate", "'flexmoe' moves experts in the background");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --policy eplb:period=5"), 2);
  fails_with("validate", "'eplb:period=5' moves experts in the background");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --policy smartmoe"), 2);
  fails_with("validate", "'smartmoe' moves experts in the background");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --policy flexmoe:horizon=20,background=1"), 2);
  fails_with("validate", "set background=0");
}

Test(rt_cli, a_gpu_backend_that_cannot_start_says_why) {
  /* device 99 exists nowhere; on a build without CUDA the backend is
   * reported as not built in: either way one line naming the backend */
  cr_assert_eq(run("run " SAMPLE " --policy static --backend cuda --device 99 --iterations 0:1"), 1);
  fails_with("run", "backend 'cuda'");
}

Test(rt_cli, help_has_an_example) {
  const char *cmds[] = {"run", "calibrate", "validate"};
  for (int i = 0; i < 3; i++) {
    char a[64];
    snprintf(a, sizeof a, "%s --help", cmds[i]);
    cr_assert_eq(run(a), 0);
    cr_assert(strstr(out, "example:"), "%s --help has no example", cmds[i]);
  }
}
