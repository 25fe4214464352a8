/*
 * `flexmoe run`, `flexmoe calibrate` and `flexmoe validate` as a user meets
 * them on the cpu backend: the JSON keys, the checks, the files and the
 * database rows they promise, and one clear line with a non-zero exit for
 * each bad command line.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* After any trace warnings ("flexmoe CMD: warning: ...": SMALL replays 4
 * of the sample's 8 ranks), stderr is one line "flexmoe CMD: ..." naming
 * `what`; stdout empty. */
static void fails_with(const char *cmd, const char *what) {
  char prefix[64], warning[80];
  snprintf(prefix, sizeof prefix, "flexmoe %s: ", cmd);
  snprintf(warning, sizeof warning, "flexmoe %s: warning: ", cmd);
  const char *e = err;
  while (strncmp(e, warning, strlen(warning)) == 0 && strchr(e, '\n'))
    e = strchr(e, '\n') + 1;
  cr_assert_eq(strncmp(e, prefix, strlen(prefix)), 0, "stderr: %s", err);
  cr_assert(strstr(e, what), "stderr does not name '%s': %s", what, err);
  cr_assert(strchr(e, '\n') == e + strlen(e) - 1, "more than one line: %s", err);
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

/* Without --d-model / --d-ff the cpu backend measures a model it can
 * compute in seconds (64 x 128), not the GPUs' 2048 x 8192, which takes
 * hours in its plain loops; the output says the model measured. */
Test(rt_cli, calibrate_on_cpu_defaults_to_a_model_the_cpu_can_measure, .timeout = 60) {
  cr_assert_eq(run("calibrate --backend cpu --reps 1 --format json"), 0, "%s", err);
  json_t *root = parse();
  cr_assert_eq(json_integer_value(json_object_get(root, "d_model")), 64);
  cr_assert_eq(json_integer_value(json_object_get(root, "d_ff")), 128);
  json_decref(root);
  cr_assert_eq(run("calibrate --backend cpu --reps 1 --d-model 32"), 0, "%s", err);
  cr_assert(strstr(out, "d_model 32, d_ff 128"), "%s", out);
}

/* --no-db wins over --db in every command that can write a database
 * (issue 18): the file is never created; without --no-db it is. */
Test(rt_cli, no_db_stores_nothing_in_calibrate_and_run, .timeout = 90) {
  char dir[] = "/tmp/flexmoe-rt-nodb-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char args[1024], db[64];
  snprintf(db, sizeof db, "%s/r.db", dir);
  const char *cmds[] = {"calibrate --backend cpu --d-model 16 --d-ff 32 --reps 1",
                        "run " SMALL " " SAMPLE " --iterations 0:1 --policy static"};
  for (int i = 0; i < 2; i++) {
    snprintf(args, sizeof args, "%s --db %s --no-db", cmds[i], db);
    cr_assert_eq(run(args), 0, "%s: %s", cmds[i], err);
    cr_assert_neq(access(db, F_OK), 0, "%s --no-db wrote %s", cmds[i], db);
    snprintf(args, sizeof args, "%s --db %s", cmds[i], db);
    cr_assert_eq(run(args), 0, "%s: %s", cmds[i], err);
    cr_assert_eq(access(db, F_OK), 0, "%s --db did not write %s", cmds[i], db);
    unlink(db);
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

/* The CI-sized cpu validation (issue 16): every default policy, background
 * ones included, calibrated now on the replay's ranks, in well under a
 * minute. */
Test(rt_cli, validate_with_its_defaults_calibrates_and_compares_four_policies, .timeout = 60) {
  time_t t0 = time(NULL);
  cr_assert_eq(run("validate --backend cpu --ranks 2 --d-model 16 --d-ff 32 --tokens-per-gpu 64 "
                   SAMPLE " --iterations 0:4 --format json"), 0, "%s", err);
  cr_expect_leq(time(NULL) - t0, 50, "the CI-sized validation took %lld s",
                (long long)(time(NULL) - t0));
  json_t *root = parse(), *runs = json_object_get(root, "runs");
  cr_assert_eq(json_array_size(runs), 4);
  const char *want[] = {"static", "flexmoe:", "flexmoe:", "eplb:"};
  const char *bg[] = {NULL, "background=1", "background=0", "background=1"};
  for (size_t i = 0; i < 4; i++) {
    json_t *r = json_array_get(runs, i);
    const char *pol = json_string_value(json_object_get(r, "policy"));
    cr_assert_not_null(pol);
    cr_expect_eq(strncmp(pol, want[i], strlen(want[i])), 0, "run %zu is %s", i, pol);
    if (bg[i]) cr_expect(strstr(pol, bg[i]), "run %zu: %s lacks %s", i, pol, bg[i]);
    cr_expect_gt(json_real_value(json_object_get(r, "predicted_ms")), 0.0);
    cr_expect_gt(json_real_value(json_object_get(r, "measured_ms")), 0.0);
    cr_expect(json_is_number(json_object_get(r, "error")), "%s: no error", pol);
  }
  cr_expect_str_eq(json_string_value(json_object_get(root, "profile")), "calibrated now");
  json_decref(root);
}

/* A document whose every real number is the median of the documents'
 * numbers at the same place (same keys, same array positions); anything
 * else is taken from the first. New reference. */
static json_t *median_of(json_t **docs, int n) {
  json_t *d0 = docs[0];
  if (json_is_real(d0)) {
    double v[16];
    for (int i = 0; i < n; i++)
      v[i] = json_number_value(docs[i]);
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
      for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
        double t = v[j];
        v[j] = v[j - 1];
        v[j - 1] = t;
      }
    return json_real(n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
  }
  json_t *part[16];
  if (json_is_object(d0)) {
    json_t *o = json_object();
    const char *key;
    json_t *val;
    json_object_foreach(d0, key, val) {
      for (int i = 0; i < n; i++)
        cr_assert_not_null(part[i] = json_object_get(docs[i], key), "calibration lacks %s", key);
      json_object_set_new(o, key, median_of(part, n));
    }
    return o;
  }
  if (json_is_array(d0)) {
    json_t *a = json_array();
    for (size_t k = 0; k < json_array_size(d0); k++) {
      for (int i = 0; i < n; i++)
        cr_assert_not_null(part[i] = json_array_get(docs[i], k));
      json_array_append_new(a, median_of(part, n));
    }
    return a;
  }
  return json_incref(d0);
}

/* Share of a core each of two spinning threads gets for 0.2 s (1.0: the
 * machine has two idle cores for the cpu backend's two ranks); the
 * smaller of the two. */
static double now_s(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static void *spin(void *arg) {
  double *share = arg, w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
  volatile unsigned long x = 0;
  while (now_s(CLOCK_MONOTONIC) - w0 < 0.2)
    x++;
  *share = (now_s(CLOCK_THREAD_CPUTIME_ID) - c0) / (now_s(CLOCK_MONOTONIC) - w0);
  return NULL;
}
static double core_share(void) {
  pthread_t t[2];
  double s[2];
  for (int i = 0; i < 2; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, spin, &s[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  return fmin(s[0], s[1]);
}

/*
 * validate on the cpu backend with a stated error bound. The cpu backend's
 * times are wall times on a machine other jobs share, so the test measures
 * robustly and refuses to judge a busy machine:
 *   - one calibration jumps 2-3x at single points (another job takes a core
 *     for a few ms of its 3 repetitions: over six calibrations the 256 and
 *     512 token points ranged 240-865 and 948-2132 us), so the test
 *     calibrates five times and predicts with each number's median
 *     (profile, cluster and runtime files);
 *   - a replay is only ever slowed by other jobs, so it replays three times
 *     and compares the prediction (the same each time) with the fastest
 *     measurement;
 *   - before and after, two threads spin for 0.2 s each; if either got less
 *     than 75% of a core, other jobs hold the cores and the test is
 *     skipped, saying so (on this 2-core build machine, shared with
 *     sweeps and fuzzers, that happens: the skip is the honest result).
 * Bounds (docs/runtime.md, "validate on the cpu backend"), from 13 runs of
 * this procedure on the build machine when it was written, three policies
 * each (a 14th skipped):
 *   - compute, which the profile predicts: |error| <= 0.35 (measured -0.21
 *     to +0.04, median -0.10). With every FFN time of the cost model
 *     doubled it gave +0.81 to +1.12, halved -0.50 to -0.54;
 *   - the iteration time: |error| <= 0.5 (measured -0.36 to -0.03, median
 *     -0.23: the cpu ranks also wait at the exchange barriers, which the
 *     simulator's all-to-all, a copy at the calibrated bandwidth, does not
 *     model; that phase's error is about -0.9 and not bounded here).
 */
Test(rt_cli, validate_on_cpu_predicts_compute_and_iteration_time_within_stated_bounds,
     .timeout = 120) {
  double share = core_share();
  if (share < 0.75)
    cr_skip_test("the machine is busy (a spinning thread got %.0f%% of a core): the cpu "
                 "backend's times would measure the other jobs", 100 * share);
  char dir[] = "/tmp/flexmoe-rt-bound-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char args[1024], path[700];
  enum { K = 5 };
  static const char *const ext[] = {".json", ".cluster.json", ".runtime.json"};
  json_t *docs[3][K];
  for (int k = 0; k < K; k++) {
    snprintf(args, sizeof args, "calibrate --backend cpu --ranks 2 --d-model 64 --d-ff 128 --out %s/c%d.json",
             dir, k);
    cr_assert_eq(run(args), 0, "%s", err);
    for (int f = 0; f < 3; f++) {
      json_error_t je;
      snprintf(path, sizeof path, "%s/c%d%s", dir, k, ext[f]);
      cr_assert_not_null(docs[f][k] = json_load_file(path, 0, &je), "%s: %s", path, je.text);
      unlink(path);
    }
  }
  for (int f = 0; f < 3; f++) {
    json_t *m = median_of(docs[f], K);
    snprintf(path, sizeof path, "%s/median%s", dir, ext[f]);
    cr_assert_eq(json_dump_file(m, path, 0), 0);
    json_decref(m);
    for (int k = 0; k < K; k++)
      json_decref(docs[f][k]);
  }
  snprintf(args, sizeof args,
           "validate --backend cpu --ranks 2 --d-model 64 --d-ff 128 --tokens-per-gpu 256 " SAMPLE
           " --iterations 0:5 --profile %s/median.json --policy static --policy flexmoe:background=0"
           " --policy eplb:period=2,background=0 --format json", dir);
  /* three replays; per policy the fastest measurement of each (a job that
   * takes a core during a replay makes it slower, never faster), against
   * the prediction, the same in every replay */
  enum { V = 3, P = 3 };
  double pt[P], pc[P], mt[P], mc[P];
  char pol[P][48];
  for (int v = 0; v < V; v++) {
    cr_assert_eq(run(args), 0, "%s", err);
    json_t *root = parse(), *runs = json_object_get(root, "runs");
    cr_assert_eq(json_array_size(runs), P);
    for (int i = 0; i < P; i++) {
      json_t *r = json_array_get(runs, (size_t)i);
      json_t *comp = json_object_get(json_object_get(r, "phases"), "compute");
      double t = json_real_value(json_object_get(r, "predicted_ms"));
      double c = json_real_value(json_object_get(comp, "predicted_ms"));
      double tm = json_real_value(json_object_get(r, "measured_ms"));
      double cm = json_real_value(json_object_get(comp, "measured_ms"));
      if (v == 0) {
        snprintf(pol[i], sizeof pol[i], "%s", json_string_value(json_object_get(r, "policy")));
        pt[i] = t, pc[i] = c, mt[i] = tm, mc[i] = cm;
      } else {
        cr_assert(t == pt[i] && c == pc[i], "%s: the prediction changed between replays", pol[i]);
        mt[i] = fmin(mt[i], tm);
        mc[i] = fmin(mc[i], cm);
      }
    }
    json_decref(root);
  }
  for (int f = 0; f < 3; f++) {
    snprintf(path, sizeof path, "%s/median%s", dir, ext[f]);
    unlink(path);
  }
  rmdir(dir);
  share = core_share();
  if (share < 0.75)
    cr_skip_test("the machine became busy (a spinning thread got %.0f%% of a core)",
                 100 * share);
  for (int i = 0; i < P; i++) {
    double et = pt[i] / mt[i] - 1, ec = pc[i] / mc[i] - 1;
    cr_log_info("%.40s: iteration %.3f / %.3f ms, error %+.3f; compute %.3f / %.3f ms, error "
                "%+.3f", pol[i], pt[i], mt[i], et, pc[i], mc[i], ec);
    cr_assert(fabs(ec) <= 0.35, "%s: compute predicted %.3f ms, measured %.3f ms (fastest of %d): "
              "error %+.3f beyond 0.35", pol[i], pc[i], mc[i], V, ec);
    cr_assert(fabs(et) <= 0.5, "%s: iteration predicted %.3f ms, measured %.3f ms (fastest of %d): "
              "error %+.3f beyond 0.5", pol[i], pt[i], mt[i], V, et);
  }
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
  cr_assert_eq(run("run --backend cpu --ranks 4 --d-ff 32 --tokens-per-gpu 64 " SAMPLE " --policy static --d-model 12"), 2);
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
  /* before anything is measured: ranks beyond the trace's, slots below
   * the experts, a database that cannot be written (issues 16 and 18) */
  cr_assert_eq(run("validate --backend cpu --ranks 9 --d-model 16 --d-ff 32 " SAMPLE), 2);
  fails_with("validate", "--ranks 9: traces/samples/gpt-l6-e32-top2-aux-200.npy has 8 ranks");
  cr_assert_eq(run("run --backend cpu --ranks 9 --d-model 16 --d-ff 32 " SAMPLE " --policy static"), 2);
  fails_with("run", "--ranks 9: ");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --slots 3 --policy flexmoe"), 2);
  fails_with("validate", "--slots 3: 4 ranks x 3 slots < 32 experts");
  cr_assert_eq(run("validate " SMALL " " SAMPLE " --db /nonexistent-dir/v.db"), 1);
  fails_with("validate", "--db /nonexistent-dir/v.db: cannot open it for writing");
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
