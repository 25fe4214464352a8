/* flexmoe sim / net / clusters as a user meets them: outputs, errors, the
 * database left untouched on error, byte-identical results for equal input. */
#include <criterion/criterion.h>
#include <grp.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../require.h"

typedef struct res {
  int code;
  char out[1 << 16];
  char err[4096];
} res;

static char dir[256];
/* The user run() starts flexmoe as (-1: as we are; the child exits 126 when
 * it cannot become that user). */
static int run_uid = -1;

static void mkscratch(void) {
  snprintf(dir, sizeof(dir), "/tmp/flexmoe-simcli-%d", (int)getpid());
  mkdir(dir, 0755);
}

static const char *path_in(const char *name) {
  static char p[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
  return p[k];
}

static const char *sample(void) {
  static char p[1024];
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert_not_null(root);
  snprintf(p, sizeof(p), "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy", root);
  return p;
}

static void slurp(const char *path, char *buf, size_t len) {
  FILE *fp = fopen(path, "rb");
  size_t n = fp ? fread(buf, 1, len - 1, fp) : 0;
  buf[n] = '\0';
  if (fp)
    fclose(fp);
}

static res *run(const char *arg, ...) {
  static res r;
  const char *bin = getenv("FLEXMOE_BIN");
  cr_assert_not_null(bin);
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)bin;
  va_list ap;
  va_start(ap, arg);
  for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
    argv[n++] = (char *)a;
  va_end(ap);
  argv[n] = NULL;
  char out[600], err[600];
  snprintf(out, sizeof(out), "%s/stdout", dir);
  snprintf(err, sizeof(err), "%s/stderr", dir);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir) || !freopen(out, "w", stdout) || !freopen(err, "w", stderr))
      _exit(127);
    if (run_uid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)run_uid) != 0 ||
                         setuid((uid_t)run_uid) != 0))
      _exit(126);
    execv(bin, argv);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  cr_assert(WIFEXITED(st), "flexmoe died by a signal");
  r.code = WEXITSTATUS(st);
  slurp(out, r.out, sizeof(r.out));
  slurp(err, r.err, sizeof(r.err));
  return &r;
}

static void one_line(const res *r, const char *word) {
  size_t len = strlen(r->err);
  cr_assert(len > 0 && strchr(r->err, '\n') == r->err + len - 1, "not one line: '%s'", r->err);
  cr_assert(strstr(r->err, word), "'%s' does not mention '%s'", r->err, word);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

static int append_row(void *arg, int n, char **v, char **names) {
  (void)names;
  char *buf = arg;
  for (int i = 0; i < n; i++) {
    strncat(buf, v[i] ? v[i] : "NULL", (1 << 20) - strlen(buf) - 2);
    strcat(buf, "|");
  }
  strcat(buf, "\n");
  return 0;
}

/* The result rows of a database (not the wall-clock columns of runs). */
static char *dump(const char *db) {
  char *buf = calloc(1, 1 << 20);
  sqlite3 *h;
  cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  const char *q[] = {"SELECT * FROM iterations ORDER BY 1, 2",
                     "SELECT * FROM gpu_stats ORDER BY 1, 2", "SELECT * FROM plans ORDER BY 1, 2, 3, 4",
                     "SELECT policy, cluster_id, engine, params_json, seed, config_key FROM runs ORDER BY 1"};
  for (int i = 0; i < 4; i++) {
    char *err = NULL;
    int rc = sqlite3_exec(h, q[i], append_row, buf, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", q[i], err ? err : "");
  }
  sqlite3_close(h);
  return buf;
}

TestSuite(simcli, .init = mkscratch);

Test(simcli, json_has_the_design_keys_and_static_is_the_reference) {
  res *r = run("sim", "--trace", sample(), "--iterations", "0:20", "--policy", "static",
               "--policy", "capacity", "--no-db", "--format", "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  const char *keys[] = {"\"runs\"", "\"policy\"", "\"cluster\"", "\"gpus\"", "\"iterations\"",
                        "\"mean_iteration_ms\"", "\"speedup_vs_static\": 1.0",
                        "\"balance_p50\"", "\"balance_p90\"", "\"migrated_bytes\"",
                        "\"dropped_tokens\"", "\"breakdown_ms\"", "\"compute\"", "\"alltoall\"",
                        "\"allreduce\"", "\"migration\"", "\"other\""};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    cr_assert(strstr(r->out, keys[i]), "no %s in %s", keys[i], r->out);
}

Test(simcli, same_inputs_give_byte_identical_database_rows_with_one_or_two_threads) {
  /* 16 GPUs from an 8-rank trace: the counts are drawn, inline with one
   * thread, ahead on a second thread with two */
  const char *a = path_in("a.db"), *b = path_in("b.db");
  unlink(a);
  unlink(b);
  for (int k = 0; k < 2; k++) {
    res *r = run("sim", "--trace", sample(), "--iterations", "0:40", "--nodes", "2",
                 "--policy", "flexmoe", "--policy", "eplb:period=10", "--engine", "des",
                 "--seed", "7", "--threads", k ? "2" : "1", "--db", k ? b : a, NULL);
    cr_assert_eq(r->code, 0, "%s", r->err);
  }
  char *da = dump(a), *db = dump(b);
  cr_assert_gt(strlen(da), 1000);
  cr_assert_str_eq(da, db);
  free(da);
  free(db);
}

/* One row of numbers from a read-only query of the database at path. */
static void sql_doubles(const char *path, const char *sql, double *out, int n) {
  sqlite3 *h;
  sqlite3_stmt *s;
  cr_assert_eq(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
  cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "%s", sql);
  for (int i = 0; i < n; i++)
    out[i] = sqlite3_column_double(s, i);
  sqlite3_finalize(s);
  sqlite3_close(h);
}

/* The JSON document a successful run printed (the caller frees it). */
static json_t *json_out(const res *r) {
  cr_assert_eq(r->code, 0, "%s", r->err);
  json_error_t je;
  json_t *doc = json_loads(r->out, 0, &je);
  cr_assert_not_null(doc, "%s: %s", je.text, r->out);
  return doc;
}

static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  cr_assert(json_is_number(v), "no number '%s'", key);
  return json_number_value(v);
}

Test(simcli, dropped_tokens_are_priced_in_effective_time_and_the_speedup) {
  const char *db = path_in("eff.db");
  unlink(db);
  res *r = run("sim", "--trace", sample(), "--iterations", "0:5", "--policy", "static",
               "--policy", "capacity", "--db", db, "--format", "json", NULL);
  json_t *doc = json_out(r);
  json_t *runs = json_object_get(doc, "runs");
  json_t *st = json_array_get(runs, 0), *cap = json_array_get(runs, 1);
  cr_assert_str_eq(json_string_value(json_object_get(cap, "policy")), "capacity:cf=1.0,min_capacity=4,drop=1");
  /* dropless static: effective time is its mean, bit for bit */
  cr_assert_eq(num(st, "effective_iteration_ms"), num(st, "mean_iteration_ms"));
  cr_assert_eq(num(st, "speedup_vs_static"), 1.0);
  /* capacity: the dropped share of token slots from its stored iterations */
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT avg(time_ms), sum(tokens_dropped), sum(tokens_total), count(*) "
           "FROM iterations WHERE run_id = %lld",
           (long long)json_integer_value(json_object_get(cap, "run_id")));
  double v[4];
  sql_doubles(db, sql, v, 4);
  cr_assert_eq(v[3], 5);
  double share = v[1] / v[2];
  cr_assert(share > 0.05 && share < 0.9, "capacity should drop some slots: share %g", share);
  cr_assert_eq(num(cap, "dropped_tokens"), v[1]);
  double mean = num(cap, "mean_iteration_ms"), eff = num(cap, "effective_iteration_ms");
  cr_assert_float_eq(mean, v[0], 1e-7 * v[0]);
  cr_assert_float_eq(eff, v[0] / (1 - share), 1e-7 * eff);
  /* the speedup is over effective time: lower than raw time would say */
  double ref = num(st, "mean_iteration_ms");
  cr_assert_float_eq(num(cap, "speedup_vs_static"), ref / eff, 1e-6);
  cr_assert_lt(num(cap, "speedup_vs_static"), ref / mean * (1 - share / 2));
  json_decref(doc);
  /* the report reads the same effective time back from the database */
  r = run("report", "--db", db, "--format", "json", NULL);
  doc = json_out(r);
  json_t *row = json_array_get(json_object_get(doc, "rows"), 1);
  cr_assert_str_eq(json_string_value(json_object_get(row, "policy")), "capacity:cf=1.0,min_capacity=4,drop=1");
  cr_assert_float_eq(num(row, "effective_iteration_ms"), eff, 1e-7 * eff);
  cr_assert_float_eq(num(row, "speedup_vs_static"), ref / eff, 1e-6);
  json_decref(doc);
  /* the table shows it and says the speedup is over it */
  r = run("sim", "--trace", sample(), "--iterations", "0:5", "--policy", "static", "--policy",
          "capacity", "--no-db", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  cr_assert(strstr(r->out, "iter_ms    eff_ms speedup"), "%s", r->out);
  cr_assert(strstr(r->out, "eff_ms = iter_ms / (1 - share of token slots") &&
                strstr(r->out, "speedup = static / policy in eff_ms"),
            "%s", r->out);
  char want[64];
  snprintf(want, sizeof(want), " %9.3f %9.3f %6.2fx ", mean, eff, ref / eff);
  cr_assert(strstr(r->out, want), "no '%s' in\n%s", want, r->out);
}

/* flexmoe:host=100,host_gate=0 charges each temporaries decision's
 * modelled time on the iteration's path (between the gate and the
 * dispatch, as other time): the same placements and temporaries, so the
 * same compute and moves, and a longer iteration; host=0 (the default)
 * charges nothing. */
Test(simcli, flexmoe_host_charges_the_decision_as_other_time_and_nothing_else) {
  res *r = run("sim", "--trace", sample(), "--iterations", "0:10", "--nodes", "2", "--policy",
               "flexmoe", "--policy", "flexmoe:host=100,host_gate=0", "--no-db", "--format",
               "json", NULL);
  json_t *doc = json_out(r);
  json_t *runs = json_object_get(doc, "runs");
  json_t *a = json_array_get(runs, 0), *b = json_array_get(runs, 1);
  cr_assert(strstr(json_string_value(json_object_get(a, "policy")), ",host=0"));
  cr_assert(strstr(json_string_value(json_object_get(b, "policy")), ",host=100,host_gate=0"));
  json_t *ba = json_object_get(a, "breakdown_ms"), *bb = json_object_get(b, "breakdown_ms");
  cr_assert_eq(num(ba, "compute"), num(bb, "compute"));
  cr_assert_eq(num(a, "migrated_bytes"), num(b, "migrated_bytes"));
  cr_assert_eq(num(a, "balance_p90"), num(b, "balance_p90"));
  double more = num(bb, "other") - num(ba, "other");
  double longer = num(b, "mean_iteration_ms") - num(a, "mean_iteration_ms");
  cr_assert_gt(more, 0.01, "other %.6f -> %.6f ms", num(ba, "other"), num(bb, "other"));
  /* the background flows (gradients, moves) run on while the host decides,
   * so the all-to-alls they share links with may end sooner: the iteration
   * is longer by the decisions, less at most what they hid */
  cr_assert(longer > 0.5 * more && longer <= more + 1e-6, "iteration +%.6f ms, other +%.6f",
            longer, more);
  json_decref(doc);
}

/* With the decision charged, host_gate (on by default) stops the layers
 * whose decisions cost more than they predict to save from deciding: on
 * the sample's model at 8 GPUs (layers of 80-100 us, decisions of 10-25 us)
 * less time is charged and the iteration is shorter than with every
 * decision made (des: 0.566 against 0.618 ms when this was written). */
Test(simcli, flexmoe_host_gate_charges_less_and_runs_faster_where_decisions_do_not_pay) {
  res *r = run("sim", "--trace", sample(), "--engine", "des", "--policy",
               "flexmoe:host=100,host_gate=0", "--policy", "flexmoe:host=100", "--no-db",
               "--format", "json", NULL);
  json_t *doc = json_out(r);
  json_t *runs = json_object_get(doc, "runs");
  json_t *a = json_array_get(runs, 0), *b = json_array_get(runs, 1);
  cr_assert(strstr(json_string_value(json_object_get(b, "policy")), ",host=100,host_gate=1"));
  double oa = num(json_object_get(a, "breakdown_ms"), "other"),
         ob = num(json_object_get(b, "breakdown_ms"), "other");
  double ma = num(a, "mean_iteration_ms"), mb = num(b, "mean_iteration_ms");
  cr_assert_lt(ob, 0.9 * oa, "other %.6f ms gated, %.6f every decision", ob, oa);
  cr_assert_lt(mb, ma, "iteration %.6f ms gated, %.6f every decision", mb, ma);
  json_decref(doc);
}

Test(simcli, des_and_analytic_agree_on_one_node_without_moves) {
  res *r = run("sim", "--trace", sample(), "--iterations", "0:20", "--policy", "static",
               "--no-db", "--format", "json", NULL);
  cr_assert_eq(r->code, 0);
  const char *p = strstr(r->out, "\"mean_iteration_ms\": ");
  double a = atof(p + 21);
  r = run("sim", "--trace", sample(), "--iterations", "0:20", "--policy", "static",
          "--no-db", "--engine", "des", "--format", "json", NULL);
  cr_assert_eq(r->code, 0);
  p = strstr(r->out, "\"mean_iteration_ms\": ");
  double d = atof(p + 21);
  cr_assert(a > 0 && d > 0 && fabs(a - d) < 5e-5, "analytic %.9f ms, des %.9f ms (48 phases of 1 ns rounding at most)", a, d);
}

/* A database the user may not write. Root writes any file, so as root the
 * second run is nobody's (uid 65534), in a directory nobody owns: the user's
 * own read-only file, as a user meets it. */
Test(simcli, read_only_database_fails_and_stays_untouched) {
  const char *sub = path_in("ro"), *db = path_in("ro/ro.db");
  cr_assert_eq(mkdir(sub, 0755), 0);
  res *r = run("sim", "--trace", sample(), "--iterations", "0:5", "--policy", "static",
               "--db", db, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  char before[1 << 16], after[1 << 16];
  slurp(db, before, sizeof(before));
  cr_assert_eq(chmod(db, 0444), 0);
  if (geteuid() == 0) {
    cr_assert_eq(chown(sub, 65534, 65534), 0);
    cr_assert_eq(chown(db, 65534, 65534), 0);
    run_uid = 65534;
  }
  r = run("sim", "--trace", sample(), "--iterations", "0:5", "--policy", "static", "--db", db,
          NULL);
  run_uid = -1;
  if (r->code == 126 || r->code == 127)
    fm_skip("unprivileged", "running as root, and flexmoe cannot run as nobody (exit %d)",
            r->code);
  cr_assert_eq(r->code, 1, "%s", r->err);
  one_line(r, "read-only");
  slurp(db, after, sizeof(after));
  cr_assert_eq(memcmp(before, after, sizeof(before)), 0);
}

/* A file that is not a flexmoe database: refused, and left as it was (no
 * permissions involved: runs as any user). */
Test(simcli, foreign_database_fails_and_stays_untouched) {
  const char *foreign = path_in("foreign.db");
  char after[1 << 16];
  write_file(foreign, "not a database\n");
  res *r = run("sim", "--trace", sample(), "--db", foreign, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "not a flexmoe database");
  slurp(foreign, after, sizeof(after));
  cr_assert_str_eq(after, "not a database\n");
}

Test(simcli, bad_input_gets_one_clear_line) {
  res *r = run("sim", "--trace", sample(), "--policy", "nosuch", "--no-db", NULL);
  cr_assert_eq(r->code, 2);
  one_line(r, "nosuch");
  r = run("sim", "--trace", sample(), "--cluster", "dgx-z", "--no-db", NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "dgx-z");
  r = run("sim", "--trace", sample(), "--slots", "1", "--no-db", NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "fewer expert slots than experts");
  r = run("sim", "--trace", sample(), "--iterations", "150:400", "--no-db", NULL);
  cr_assert_eq(r->code, 2);
  one_line(r, "--iterations");
  r = run("sim", "--trace", sample(), "--engine", "quantum", "--no-db", NULL);
  cr_assert_eq(r->code, 2);
  one_line(r, "--engine");
  r = run("sim", "--trace", path_in("missing.npy"), "--no-db", NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "missing.npy");
  r = run("sim", "--trace", sample(), "--frobnicate", NULL);
  cr_assert_eq(r->code, 2);
  one_line(r, "--frobnicate");
  r = run("sim", "--trace", sample(), "--nodes", "9000", "--no-db", NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "65536");
}

Test(simcli, net_prints_finish_times_and_makespan) {
  const char *csv = path_in("flows.csv");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,450000000\n2,1,450000000\n0,8,50000000\n");
  res *r = run("net", "--cluster", "dgx-h100", "--nodes", "2", "--flows", csv, "--format",
               "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  /* two flows into GPU 1 share its 450 GB/s: 2000 us + 2 us latency */
  cr_assert(strstr(r->out, "\"finish_us\": 2002.0"), "%s", r->out);
  cr_assert(strstr(r->out, "\"makespan_us\": 2002.0"), "%s", r->out);
  cr_assert(strstr(r->out, "\"src\": 0") && strstr(r->out, "\"dst\": 8"));
}

Test(simcli, net_csv_errors_name_the_line) {
  const char *csv = path_in("bad.csv");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,100\n0,x,5\n");
  res *r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "bad.csv:3:");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,-100\n");
  r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "bad.csv:2:");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,99,100\n");
  r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "GPU 99");
  write_file(csv, "a,b,c\n");
  r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "header");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,99999999999999999999999\n");
  r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "overflows");
  write_file(csv, "");
  r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "empty");
}

Test(simcli, clusters_lists_presets_and_reads_files) {
  res *r = run("clusters", NULL);
  cr_assert_eq(r->code, 0);
  cr_assert(strstr(r->out, "dgx-a100") && strstr(r->out, "dgx-h100") &&
            strstr(r->out, "pcie-a100") && strstr(r->out, "h200-green-4"));
  r = run("clusters", "--format", "json", "--nodes", "4", "dgx-h100", NULL);
  cr_assert_eq(r->code, 0);
  cr_assert(strstr(r->out, "\"gpus\": 32"), "%s", r->out);
  const char *bad = path_in("c.json");
  write_file(bad, "{\"nodes\": 1}");
  r = run("clusters", bad, NULL);
  cr_assert_eq(r->code, 1);
  one_line(r, "gpus_per_node");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A two-node H100 cluster file with one key's value replaced. */
static const char *hostile_cluster(const char *name, const char *hbm, const char *intra_bw,
                                   const char *oversub) {
  char text[1024];
  snprintf(text, sizeof(text),
           "{\"nodes\": 2, \"gpus_per_node\": 8, \"gpu\": {\"profile\": \"h100\", "
           "\"hbm_gib\": %s}, \"intra\": {\"bandwidth_GBps\": %s, \"latency_us\": 2}, "
           "\"inter\": {\"bandwidth_GBps\": 50, \"latency_us\": 5, "
           "\"oversubscription\": %s}}",
           hbm, intra_bw, oversub);
  const char *path = path_in(name);
  write_file(path, text);
  return path;
}

/* Finding: oversubscription 1e300 or bandwidth 1e-300 made sim and net loop
 * for minutes or print nonsense with exit 0; hbm_gib 1e300 became a NaN and
 * then an int. Each is now one line naming the key and its range, exit 1,
 * at once, from every command that reads a cluster. */
Test(simcli, hostile_cluster_numbers_fail_fast_naming_the_key_and_range) {
  const struct {
    const char *file, *key, *range;
  } cases[] = {
      {hostile_cluster("os.json", "80", "450", "1e300"), "inter.oversubscription",
       "between 1 and 1000"},
      {hostile_cluster("bw.json", "80", "1e-300", "1"), "intra.bandwidth_GBps",
       "between 0.001 and 100000"},
      {hostile_cluster("hbm.json", "1e300", "450", "1"), "gpu.hbm_gib",
       "between 0.001 and 1e+06"},
  };
  const char *csv = path_in("f.csv");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,1000000000\n0,8,1000000000\n");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *eng[] = {"analytic", "des"};
    for (int k = 0; k < 2; k++) {
      double t0 = now_s();
      res *r = run("sim", "--trace", sample(), "--cluster", cases[i].file, "--policy", "static",
                   "--iterations", "0:2", "--engine", eng[k], "--no-db", NULL);
      cr_assert_eq(r->code, 1, "%s %s: exit %d", cases[i].key, eng[k], r->code);
      one_line(r, cases[i].key);
      one_line(r, cases[i].range);
      cr_assert_lt(now_s() - t0, 10.0, "%s: not at once", cases[i].key);
    }
    double t0 = now_s();
    res *r = run("net", "--cluster", cases[i].file, "--flows", csv, NULL);
    cr_assert_eq(r->code, 1, "net %s: exit %d", cases[i].key, r->code);
    one_line(r, cases[i].key);
    one_line(r, cases[i].range);
    cr_assert_lt(now_s() - t0, 10.0);
    r = run("clusters", cases[i].file, NULL);
    cr_assert_eq(r->code, 1);
    one_line(r, cases[i].range);
  }
  /* the ends of the ranges still run */
  const char *edge = hostile_cluster("edge.json", "1000000", "0.001", "1000");
  res *r = run("net", "--cluster", edge, "--flows", csv, "--format", "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  /* 1 GB over a 1 MB/s NVLink: 1000 s + 2 us */
  cr_assert(strstr(r->out, "\"finish_us\": 1000000002.0"), "%s", r->out);
}

/* Finding: a flow of 2^63 - 1 bytes made `net` loop for ever with exit 0.
 * Bytes are bounded (2^50) with the range in the message; a makespan past
 * the clock's 2^62 ns is an error; 2^50 bytes on a real cluster runs. */
Test(simcli, net_bounds_flow_bytes_and_the_makespan) {
  const char *csv = path_in("big.csv");
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,9223372036854775807\n");
  double t0 = now_s();
  res *r = run("net", "--flows", csv, NULL);
  cr_assert_eq(r->code, 1, "exit %d: %s", r->code, r->err);
  one_line(r, "big.csv:2: bytes must be between 0 and 1125899906842624");
  cr_assert_lt(now_s() - t0, 10.0);
  /* six flows of 2^50 bytes into one 1 MB/s NVLink: 6.75e18 ns */
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,1125899906842624\n2,1,1125899906842624\n"
                  "3,1,1125899906842624\n4,1,1125899906842624\n5,1,1125899906842624\n"
                  "6,1,1125899906842624\n");
  const char *slow = hostile_cluster("slow.json", "80", "0.001", "1");
  r = run("net", "--cluster", slow, "--flows", csv, NULL);
  cr_assert_eq(r->code, 1, "exit %d: %s", r->code, r->out);
  one_line(r, "longer than 2^62 ns");
  /* the six on a DGX H100: 6 x 2^50 bytes into one 450 GB/s NVLink, + 2 us */
  r = run("net", "--cluster", "dgx-h100", "--flows", csv, "--format", "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  cr_assert(strstr(r->out, "\"makespan_us\": 15011998759.9"), "%s", r->out);
  write_file(csv, "src_gpu,dst_gpu,bytes\n0,1,1125899906842624\n");
  r = run("net", "--cluster", "dgx-h100", "--flows", csv, "--format", "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  /* 2^50 bytes over a 450 GB/s NVLink: 2,501,999,792.982 us + 2 us */
  cr_assert(strstr(r->out, "\"makespan_us\": 2501999794.98"), "%s", r->out);
}

/* The model numbers: --tokens-per-gpu past its range (the flag parser
 * takes up to 2^40) is a usage error naming the range; a cluster at the
 * ends of its ranges with a model too large for it is one line, exit 1;
 * the same cluster with a small enough load runs on both engines. */
Test(simcli, model_numbers_and_scale_are_bounded_and_the_ends_still_run) {
  res *r = run("sim", "--trace", sample(), "--tokens-per-gpu", "1099511627776", "--no-db", NULL);
  cr_assert_eq(r->code, 2, "exit %d: %s", r->code, r->err);
  one_line(r, "--tokens-per-gpu must be between 1 and 1073741824");
  char text[1024];
  snprintf(text, sizeof(text),
           "{\"nodes\": 2, \"gpus_per_node\": 8, \"gpu\": {\"profile\": \"h100\", "
           "\"hbm_gib\": 1000000}, \"intra\": {\"bandwidth_GBps\": 0.001, \"latency_us\": "
           "1000000}, \"inter\": {\"bandwidth_GBps\": 0.001, \"latency_us\": 1000000, "
           "\"oversubscription\": 1000}}");
  const char *edge = path_in("edge.json");
  write_file(edge, text);
  double t0 = now_s();
  r = run("sim", "--trace", sample(), "--cluster", edge, "--policy", "static", "--no-db", NULL);
  cr_assert_eq(r->code, 1, "exit %d: %s", r->code, r->out);
  one_line(r, "model too large for the cluster");
  cr_assert_lt(now_s() - t0, 10.0);
  const char *eng[] = {"analytic", "des"};
  for (int k = 0; k < 2; k++) {
    r = run("sim", "--trace", sample(), "--cluster", edge, "--tokens-per-gpu", "16", "--slots",
            "2", "--policy", "static", "--policy", "flexmoe", "--iterations", "0:2", "--engine",
            eng[k], "--format", "json", "--no-db", NULL);
    cr_assert_eq(r->code, 0, "%s: %s", eng[k], r->err);
    cr_assert(strstr(r->out, "\"mean_iteration_ms\": 367296.1"), "%s: %s", eng[k], r->out);
  }
}
