/* flexmoe report, run as a binary on databases written through the store:
 * the comparison numbers, the three formats, and bad databases. */
#include <dirent.h>
#include <jansson.h>
#include <math.h>

#include "../require.h"
#include "helpers.h"

static char dir[256], dbpath[300];

static void setup(void) {
  tmp_dir(dir, sizeof(dir));
  snprintf(dbpath, sizeof(dbpath), "%s/r.db", dir);
}
static void teardown(void) { rm_tree(dir); }
TestSuite(report, .init = setup, .fini = teardown);

/* 8 GPUs: static 20 ms (an older duplicate run said 40), flexmoe 9 ms,
 * oracle 8 ms, all of seed 1; flexmoe 11 ms of seed 2 (another
 * configuration: no peers). 16 GPUs: static 10, "eplb:period=5,slots=2" 5 ms
 * and no oracle. One gpu run of static at 8 GPUs: 30 ms. */
static void fill(void) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  const char *t = "traces/samples/x.npy";
  put_run(db, "sim", t, "dgx-h100", 8, "static", 1, "s8", 40, 4);
  put_run(db, "sim", t, "dgx-h100", 8, "flexmoe", 1, "f8-1", 9, 4);
  put_run(db, "sim", t, "dgx-h100", 8, "flexmoe", 2, "f8-2", 11, 4);
  put_run(db, "sim", t, "dgx-h100", 8, "oracle", 1, "o8", 8, 4);
  put_run(db, "sim", t, "dgx-h100", 8, "static", 1, "s8", 20, 4);
  put_run(db, "sim", t, "dgx-h100", 16, "static", 1, "s16", 10, 4);
  put_run(db, "sim", t, "dgx-h100", 16, "eplb:period=5,slots=2", 1, "e16", 5, 4);
  put_run(db, "gpu", t, "h200-green-4", 8, "static", 1, "g8", 30, 4);
  st_close(db);
}

static int report(char **out, char **err, const char *a1, const char *a2,
                  const char *a3, const char *a4) {
  char *const argv[] = {(char *)flexmoe_bin(), "report", (char *)a1,
                        (char *)a2, (char *)a3, (char *)a4, NULL};
  return run_capture(dir, argv, out, err);
}

Test(report, json_gives_speedup_over_static_and_gap_to_the_oracle) {
  fill();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "json"), 0, "%s",
               err);
  json_error_t je;
  json_t *doc = json_loads(out, 0, &je);
  cr_assert_not_null(doc, "not JSON: %s\n%s", je.text, out);
  json_t *rows = json_object_get(doc, "rows");
  cr_assert_eq(json_array_size(rows), 7);
  /* Order: gpu group first (kind), then seed 1: 8 GPUs static, flexmoe,
   * oracle; 16 GPUs static, eplb; then seed 2: 8 GPUs flexmoe alone. */
  const char *want_policy[] = {"static", "static", "flexmoe", "oracle", "static",
                               "eplb:period=5,slots=2", "flexmoe"};
  const double want_mean[] = {30, 20, 9, 8, 10, 5, 11};
  const double want_speedup[] = {1, 1, 20.0 / 9, 2.5, 1, 2, NAN};
  const int want_seed[] = {1, 1, 1, 1, 1, 1, 2};
  for (size_t i = 0; i < 7; i++) {
    json_t *r = json_array_get(rows, i);
    cr_assert_str_eq(json_string_value(json_object_get(r, "policy")),
                     want_policy[i]);
    cr_assert_float_eq(json_real_value(json_object_get(r, "mean_iteration_ms")),
                       want_mean[i], 1e-9, "row %zu", i);
    if (isnan(want_speedup[i]))
      cr_assert(json_is_null(json_object_get(r, "speedup_vs_static")), "row %zu", i);
    else
      cr_assert_float_eq(json_real_value(json_object_get(r, "speedup_vs_static")),
                         want_speedup[i], 1e-7, "row %zu", i); /* 9 digits */
    cr_assert_eq(json_integer_value(json_object_get(r, "seed")), want_seed[i], "row %zu", i);
    json_t *bd = json_object_get(r, "breakdown_ms");
    cr_assert_float_eq(json_real_value(json_object_get(bd, "compute")),
                       0.6 * want_mean[i], 1e-9);
    cr_assert_not_null(json_object_get(bd, "alltoall"));
    cr_assert_not_null(json_object_get(bd, "allreduce"));
    cr_assert_not_null(json_object_get(bd, "migration"));
    cr_assert_not_null(json_object_get(bd, "other"));
  }
  json_t *flex = json_array_get(rows, 2);
  cr_assert_eq(json_integer_value(json_object_get(flex, "runs")), 1,
               "runs of another seed are another configuration: never averaged");
  cr_assert_float_eq(json_real_value(json_object_get(flex, "oracle_gap")), 0.125,
                     1e-9);
  cr_assert(json_is_null(json_object_get(json_array_get(rows, 6), "oracle_gap")),
            "seed 2 has no oracle: its flexmoe row must not borrow seed 1's");
  cr_assert(json_is_null(json_object_get(json_array_get(rows, 5), "oracle_gap")),
            "no oracle at 16 GPUs: the gap must be null");
  cr_assert_eq(json_integer_value(json_object_get(doc, "runs")), 7,
               "the superseded duplicate must not count");
  json_decref(doc);
  free(out);
  free(err);
}

Test(report, table_shows_each_cluster_size_with_speedup_and_oracle_gap) {
  fill();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--kind", "sim"), 0, "%s", err);
  cr_assert(strstr(out, "sim runs, trace x.npy, cluster dgx-h100, engine analytic, iterations 0:4"),
            "%s", out);
  cr_assert(strstr(out, "speedup") && strstr(out, "vs_oracle"), "%s", out);
  /* flexmoe at 8 GPUs, seed 1: 9 ms, 2.22x, +12.5% above the oracle. */
  char *line = strstr(out, "    8  flexmoe");
  cr_assert_not_null(line, "%s", out);
  cr_assert(strstr(line, "9.000") && strstr(line, "2.22x") &&
                strstr(line, "+12.5%"),
            "%s", line);
  cr_assert(strstr(out, "iterations 0:4, seed 2\n"), "seed 2 has its own block:\n%s", out);
  cr_assert_null(strstr(out, "h200-green-4"), "--kind sim shows gpu runs");
  cr_assert_str_eq(err, "");
  free(out);
  free(err);
}

Test(report, csv_quotes_policy_specs_with_commas) {
  fill();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "csv"), 0, "%s", err);
  const char *head = "kind,trace,cluster,engine,first_iteration,end_iteration,gpus,"
                     "policy,runs,";
  cr_assert(strncmp(out, head, strlen(head)) == 0, "%s", out);
  cr_assert(strstr(out, "sim,traces/samples/x.npy,dgx-h100,analytic,0,4,16,"
                        "\"eplb:period=5,slots=2\",1,4,5.000000,2.000000,,"),
            "%s", out);
  int lines = 0;
  for (char *p = out; *p; p++)
    lines += *p == '\n';
  cr_assert_eq(lines, 8); /* header + 7 rows */
  free(out);
  free(err);
}

Test(report, runs_lists_every_stored_run) {
  fill();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--runs", "--format") , 2);
  free(out);
  free(err);
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--runs", NULL), 0, "%s", err);
  int lines = 0;
  for (char *p = out; *p; p++)
    lines += *p == '\n';
  /* header + the 7 complete runs: the first static run at 8 GPUs was
   * superseded by the second of its configuration (schema 3) */
  cr_assert_eq(lines, 8, "%s", out);
  free(out);
  free(err);
}

Test(report, a_missing_database_is_named_and_not_created) {
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 1);
  cr_assert_str_eq(out, "");
  char want[512];
  snprintf(want, sizeof(want), "flexmoe report: %s: no such database file\n",
           dbpath);
  cr_assert_str_eq(err, want);
  cr_assert_neq(access(dbpath, F_OK), 0);
  free(out);
  free(err);
}

Test(report, a_file_that_is_not_a_flexmoe_database_is_refused) {
  FILE *f = fopen(dbpath, "w");
  fputs("hello\n", f);
  fclose(f);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 1);
  cr_assert(strstr(err, "flexmoe report: ") == err &&
                strstr(err, "not a flexmoe database"),
            "%s", err);
  cr_assert_eq(strchr(err, '\n') - err + 1, (long)strlen(err), "one line: %s", err);
  free(out);
  free(err);
  char *content = read_all(dbpath);
  cr_assert_str_eq(content, "hello\n");
  free(content);
}

Test(report, an_empty_database_says_so) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  st_close(db);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0);
  cr_assert(strstr(out, "no complete runs"), "%s", out);
  free(out);
  free(err);
}

Test(report, bad_flags_are_usage_errors) {
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--format", "xml", NULL, NULL), 2);
  cr_assert(strstr(err, "--format: 'xml'"), "%s", err);
  free(out);
  free(err);
  cr_assert_eq(report(&out, &err, "--kind", "cloud", NULL, NULL), 2);
  cr_assert(strstr(err, "--kind: 'cloud'"), "%s", err);
  free(out);
  free(err);
  cr_assert_eq(report(&out, &err, "--frobnicate", NULL, NULL, NULL), 2);
  free(out);
  free(err);
  cr_assert_eq(report(&out, &err, "--help", NULL, NULL, NULL), 0);
  cr_assert(strstr(out, "example:") && strstr(out, "flexmoe report --db"), "%s",
            out);
  free(out);
  free(err);
}

Test(report, table_names_policies_by_the_parameters_that_differ) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  const char *t = "x.npy";
  put_run(db, "sim", t, "dgx-h100", 8, "static", 1, "a", 10, 2);
  put_run(db, "sim", t, "dgx-h100", 8, "flexmoe:threshold=1.1,horizon=50", 1, "b", 5, 2);
  put_run(db, "sim", t, "dgx-h100", 8, "flexmoe:threshold=1.3,horizon=50", 1, "c", 4, 2);
  put_run(db, "sim", t, "dgx-h100", 8, "eplb:period=100,slots=0", 1, "d", 8, 2);
  put_run(db, "sim", t, "dgx-h100", 8, "oracle:max_steps=0", 1, "e", 2, 2);
  st_close(db);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  /* DESIGN.md order: static, ..., eplb, flexmoe, oracle last. */
  const char *want[] = {"    8  static ", "    8  eplb ", "    8  flexmoe:threshold=1.1 ",
                        "    8  flexmoe:threshold=1.3 ", "    8  oracle "};
  const char *at = out;
  for (size_t i = 0; i < 5; i++) {
    const char *hit = strstr(at, want[i]);
    cr_assert_not_null(hit, "'%s' missing or out of order in:\n%s", want[i], out);
    at = hit + 1;
  }
  cr_assert(strstr(out, "+100.0%") && strstr(out, "2.50x"), "%s", out);
  free(out);
  free(err);
  /* CSV keeps the full canonical spec. */
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "csv"), 0);
  cr_assert(strstr(out, "\"flexmoe:threshold=1.3,horizon=50\""), "%s", out);
  free(out);
  free(err);
}

Test(report, runs_over_different_iterations_are_not_compared) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "static", 1, "a", 10, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "static", 1, "b", 20, 4);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "flexmoe", 1, "c", 5, 4);
  st_close(db);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "json"), 0, "%s", err);
  json_t *doc = json_loads(out, 0, NULL);
  json_t *rows = json_object_get(doc, "rows");
  cr_assert_eq(json_array_size(rows), 3);
  /* flexmoe ran over iterations 0:4 and is compared with static over 0:4. */
  json_t *flex = json_array_get(rows, 2);
  cr_assert_str_eq(json_string_value(json_object_get(flex, "policy")), "flexmoe");
  cr_assert_eq(json_integer_value(json_array_get(json_object_get(flex, "iteration_range"), 1)), 4);
  cr_assert_float_eq(json_real_value(json_object_get(flex, "speedup_vs_static")), 4.0, 1e-9);
  json_decref(doc);
  free(out);
  free(err);
}

/* Issue 18: a sweep of a small model into a database that held a large
 * one was averaged with it (static "runs 2") and drew flexmoe below the
 * oracle. Two shapes at 8 GPUs, the same trace, cluster, engine, seed and
 * iterations: d_model 4096 (static 20, flexmoe 12, oracle 10 ms) and
 * d_model 1024 (static 6, flexmoe 5, oracle 4 ms); and d_model 1024 again
 * with 512 tokens per GPU (static 3, oracle 2 ms). Mixed, flexmoe 1024
 * would be -50% against oracle 4096. */
#define SHAPE(dm, dff, tok)                                                     \
  "{\"d_model\":" #dm ",\"d_ff\":" #dff ",\"top_k\":2,\"tokens_per_gpu\":" #tok      \
  ",\"iterations\":[0,4],\"engine\":\"analytic\",\"network\":\"fluid\"}"
static void fill_shapes(void) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  const char *t = "x.npy", *big = SHAPE(4096, 16384, 4096), *small = SHAPE(1024, 4096, 4096),
             *few = SHAPE(1024, 4096, 512);
  put_run_params(db, "sim", t, "dgx-h100", 8, "static", 0, "sb", 20, 4, 0, big);
  put_run_params(db, "sim", t, "dgx-h100", 8, "flexmoe", 0, "fb", 12, 4, 0, big);
  put_run_params(db, "sim", t, "dgx-h100", 8, "oracle", 0, "ob", 10, 4, 0, big);
  put_run_params(db, "sim", t, "dgx-h100", 8, "static", 0, "ss", 6, 4, 0, small);
  put_run_params(db, "sim", t, "dgx-h100", 8, "flexmoe", 0, "fs", 5, 4, 0, small);
  put_run_params(db, "sim", t, "dgx-h100", 8, "oracle", 0, "os", 4, 4, 0, small);
  put_run_params(db, "sim", t, "dgx-h100", 8, "static", 0, "sf", 3, 4, 0, few);
  put_run_params(db, "sim", t, "dgx-h100", 8, "oracle", 0, "of", 2, 4, 0, few);
  st_close(db);
}

Test(report, two_model_shapes_are_reported_apart_and_the_oracle_is_never_beaten) {
  fill_shapes();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "json"), 0, "%s", err);
  json_t *doc = json_loads(out, 0, NULL);
  cr_assert_not_null(doc, "%s", out);
  json_t *rows = json_object_get(doc, "rows");
  cr_assert_eq(json_array_size(rows), 8, "%s", out);
  /* each row's peers are of its own shape: static's time of that shape */
  struct {
    int d_model, tokens;
    double stat, orac;
  } shape[] = {{4096, 4096, 20, 10}, {1024, 4096, 6, 4}, {1024, 512, 3, 2}};
  int seen[3] = {0}, groups[3] = {-1, -1, -1};
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *r = json_array_get(rows, i), *p = json_object_get(r, "params");
    int dm = (int)json_integer_value(json_object_get(p, "d_model"));
    int tok = (int)json_integer_value(json_object_get(p, "tokens_per_gpu"));
    int k = dm == 4096 ? 0 : tok == 4096 ? 1 : 2;
    cr_assert(dm == shape[k].d_model && tok == shape[k].tokens, "row %zu: %d %d", i, dm, tok);
    cr_assert_eq(json_integer_value(json_object_get(r, "runs")), 1, "row %zu averages shapes", i);
    double eff = json_real_value(json_object_get(r, "effective_iteration_ms"));
    cr_assert_float_eq(json_real_value(json_object_get(r, "speedup_vs_static")),
                       shape[k].stat / eff, 1e-7, "row %zu", i); /* 9 digits */
    json_t *gap = json_object_get(r, "oracle_gap");
    cr_assert(json_is_number(gap), "row %zu: no gap", i);
    cr_assert_float_eq(json_number_value(gap), eff / shape[k].orac - 1, 1e-7, "row %zu", i);
    cr_assert_geq(json_number_value(gap), 0.0, "row %zu beats the oracle", i);
    int g = (int)json_integer_value(json_object_get(r, "group"));
    cr_assert(groups[k] == -1 || groups[k] == g, "one shape, two groups");
    for (int o = 0; o < 3; o++)
      cr_assert(o == k || groups[o] != g, "two shapes, one group");
    groups[k] = g;
    seen[k]++;
  }
  cr_assert(seen[0] == 3 && seen[1] == 3 && seen[2] == 2, "%d %d %d", seen[0], seen[1], seen[2]);
  cr_assert_eq(json_array_size(json_object_get(doc, "notes")), 0, "%s", out);
  json_decref(doc);
  free(out);
  free(err);
  /* the table: one block per shape, its header naming the shape and what
   * else differs (the tokens per GPU between the two 1024 blocks only) */
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  cr_assert(strstr(out, "seed 0, d_model=4096, d_ff=16384, top_k=2\n"), "%s", out);
  cr_assert(strstr(out, "seed 0, d_model=1024, d_ff=4096, top_k=2, tokens_per_gpu=4096\n"), "%s",
            out);
  cr_assert(strstr(out, "seed 0, d_model=1024, d_ff=4096, top_k=2, tokens_per_gpu=512\n"), "%s",
            out);
  /* every percentage of the table (vs_oracle, dropped) is >= 0 */
  for (const char *p = out; (p = strchr(p, '%')) != NULL; p++) {
    const char *tok = p;
    while (tok > out && tok[-1] != ' ')
      tok--;
    cr_assert_neq(*tok, '-', "a negative percentage: %.12s\n%s", tok, out);
  }
  free(out);
  free(err);
}

/* A schema-1 database (before trace_loads and the one-run-per-key index),
 * read as it is (report never migrates): its runs' params_json and cluster
 * description are the configuration, so its two shapes are reported apart
 * too, and the file is left at version 1. */
Test(report, an_old_schema_database_is_grouped_by_its_stored_configuration) {
  sqlite3 *h = NULL;
  cr_assert_eq(sqlite3_open(dbpath, &h), SQLITE_OK);
  char sql[4096];
  snprintf(sql, sizeof(sql),
           "%s PRAGMA user_version = 1; PRAGMA application_id = %d;"
           "INSERT INTO clusters(name, gpus, json) VALUES('dgx-h100', 8, "
           "'{\"name\":\"dgx-h100\",\"nodes\":1,\"gpus_per_node\":8}');",
           st_migration_sql(1), ST_APPLICATION_ID);
  cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
  const char *runs[][3] = {{"static", "{\"d_model\":4096}", "20"},
                           {"oracle", "{\"d_model\":4096}", "10"},
                           {"static", "{\"d_model\":1024}", "6"},
                           {"flexmoe", "{\"d_model\":1024}", "5"}};
  for (int i = 0; i < 4; i++) {
    snprintf(sql, sizeof(sql),
             "INSERT INTO runs(kind, cluster_id, policy, engine, params_json, gpus, seed, "
             "status, config_key) VALUES('sim', 1, '%s', 'analytic', '%s', 8, 0, 'complete', "
             "'k%d'); INSERT INTO iterations(run_id, iteration, time_ms) VALUES(%d, 0, %s);",
             runs[i][0], runs[i][1], i, i + 1, runs[i][2]);
    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
  }
  sqlite3_close(h);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "json"), 0, "%s", err);
  json_t *doc = json_loads(out, 0, NULL);
  json_t *rows = json_object_get(doc, "rows");
  cr_assert_eq(json_array_size(rows), 4, "%s", out);
  for (size_t i = 0; i < 4; i++) {
    json_t *r = json_array_get(rows, i);
    int dm = (int)json_integer_value(json_object_get(json_object_get(r, "params"), "d_model"));
    const char *pol = json_string_value(json_object_get(r, "policy"));
    double sp = json_real_value(json_object_get(r, "speedup_vs_static"));
    cr_assert_eq(json_integer_value(json_object_get(r, "gpus_per_node")), 8);
    if (!strcmp(pol, "flexmoe")) /* its own shape's static (6 ms), and no oracle there */
      cr_assert(dm == 1024 && fabs(sp - 1.2) < 1e-9 &&
                    json_is_null(json_object_get(r, "oracle_gap")),
                "%s", out);
    if (!strcmp(pol, "oracle"))
      cr_assert(dm == 4096 && fabs(sp - 2.0) < 1e-9, "%s", out);
  }
  json_decref(doc);
  free(out);
  free(err);
  cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 1, "report migrated the file");
}

/* An oracle run with a limited search is not a bound: a dropless policy
 * below it keeps its (negative) gap, and the report says why, on stderr
 * and in the JSON's notes. */
Test(report, a_policy_below_a_limited_oracle_is_pointed_out) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "static", 0, "s", 10, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "flexmoe:shadow=0", 0, "f", 4, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "oracle:max_steps=1", 0, "o", 5, 2);
  st_close(db);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  cr_assert(strstr(out, "-20.0%"), "%s", out);
  cr_assert(strstr(err, "1 dropless row is below the oracle of its group") &&
                strstr(err, "not a lower bound"),
            "%s", err);
  free(out);
  free(err);
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "json"), 0, "%s", err);
  json_t *doc = json_loads(out, 0, NULL);
  json_t *notes = json_object_get(doc, "notes");
  cr_assert_eq(json_array_size(notes), 1, "%s", out);
  cr_assert(strstr(json_string_value(json_array_get(notes, 0)), "not a lower bound"), "%s", out);
  json_decref(doc);
  free(out);
  free(err);
}

/* An oracle that makes no per-iteration copies (stored before its
 * temporaries, or shadow=0): fastermoe's shadows and flexmoe's temporaries
 * may go below it without any note; flexmoe:shadow=0 below it gets one. */
Test(report, policies_with_per_iteration_copies_below_the_oracle_need_no_note) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "static", 0, "s", 10, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "flexmoe", 0, "f", 4, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "flexmoe:shadow=1,threshold=1.2", 0, "g", 4.5, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "fastermoe", 0, "h", 4.8, 2);
  /* a canonical oracle spec stored before the oracle's temporaries */
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "oracle:slots=0,max_steps=0", 0, "o", 5, 2);
  st_close(db);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  cr_assert(strstr(out, "-20.0%"), "%s", out); /* the gap is still shown */
  cr_assert_null(strstr(err, "below the oracle"), "%s", err);
  free(out);
  free(err);
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "flexmoe:shadow=0", 0, "z", 4.9, 2);
  st_close(db);
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  cr_assert(strstr(err, "1 dropless row is below the oracle of its group"), "%s", err);
  free(out);
  free(err);
}

/* An oracle that makes temporaries itself (shadow > 0, its default since
 * 2026-12-07) is a bound for the policies that copy too: flexmoe and
 * fastermoe below it are pointed out. */
Test(report, policies_with_copies_below_an_oracle_with_copies_are_pointed_out) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "static", 0, "s", 10, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "flexmoe:shadow=4", 0, "f", 4, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "fastermoe", 0, "h", 4.8, 2);
  put_run(db, "sim", "x.npy", "dgx-h100", 8, "oracle:shadow=3", 0, "o", 5, 2);
  st_close(db);
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  cr_assert(strstr(err, "2 dropless rows are below the oracle of their group"), "%s", err);
  free(out);
  free(err);
}

/* 8 GPUs: static 20 ms (dropless), capacity 10 ms dropping 500 of 1000 slots
 * per iteration (effective 20 ms: no faster than static), capacity:cf=0.01
 * 5 ms dropping all 1000 (effective +inf), oracle 8 ms (dropless). */
static void fill_dropping(void) {
  st_db *db = NULL;
  cr_assert_eq(st_open(&db, dbpath, ST_WRITE, NULL, 0), ST_OK);
  const char *t = "x.npy";
  put_run(db, "sim", t, "dgx-h100", 8, "static", 1, "s", 20, 4);
  put_run_dropping(db, "sim", t, "dgx-h100", 8, "capacity:cf=1.25", 1, "c", 10, 4, 500);
  put_run_dropping(db, "sim", t, "dgx-h100", 8, "capacity:cf=0.01", 1, "z", 5, 4, 1000);
  put_run(db, "sim", t, "dgx-h100", 8, "oracle", 1, "o", 8, 4);
  st_close(db);
}

Test(report, json_compares_policies_that_drop_tokens_by_effective_time) {
  fill_dropping();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "json"), 0, "%s", err);
  json_error_t je;
  json_t *doc = json_loads(out, 0, &je);
  cr_assert_not_null(doc, "not JSON: %s\n%s", je.text, out);
  json_t *rows = json_object_get(doc, "rows");
  cr_assert_eq(json_array_size(rows), 4);
  /* capacity specs in spec order: cf=0.01 before cf=1.25 */
  json_t *stat = json_array_get(rows, 0), *all = json_array_get(rows, 1),
         *cap = json_array_get(rows, 2), *orac = json_array_get(rows, 3);
  cr_assert_str_eq(json_string_value(json_object_get(cap, "policy")), "capacity:cf=1.25");
  cr_assert_str_eq(json_string_value(json_object_get(all, "policy")), "capacity:cf=0.01");
  /* dropless: effective = mean */
  cr_assert_float_eq(json_real_value(json_object_get(stat, "effective_iteration_ms")), 20, 1e-9);
  cr_assert_float_eq(json_real_value(json_object_get(orac, "effective_iteration_ms")), 8, 1e-9);
  cr_assert_float_eq(json_real_value(json_object_get(orac, "speedup_vs_static")), 2.5, 1e-9);
  /* half the slots dropped: 10 / (1 - 0.5) = 20 ms, the speed of static, and
   * no gap to the oracle: the oracle processes every token, it bounds the
   * dropless policies only (by raw time it would be 2x and -20%) */
  cr_assert_float_eq(json_real_value(json_object_get(cap, "mean_iteration_ms")), 10, 1e-9);
  cr_assert_float_eq(json_real_value(json_object_get(cap, "effective_iteration_ms")), 20, 1e-9);
  cr_assert_float_eq(json_real_value(json_object_get(cap, "speedup_vs_static")), 1.0, 1e-9);
  cr_assert(json_is_null(json_object_get(cap, "oracle_gap")), "%s", out);
  cr_assert_float_eq(json_real_value(json_object_get(stat, "oracle_gap")), 1.5, 1e-9);
  /* everything dropped: no useful work; JSON has no infinity (the table says
   * inf and +inf%) */
  cr_assert(json_is_null(json_object_get(all, "effective_iteration_ms")), "%s", out);
  cr_assert_float_eq(json_real_value(json_object_get(all, "speedup_vs_static")), 0.0, 1e-12);
  cr_assert(json_is_null(json_object_get(all, "oracle_gap")), "%s", out);
  json_decref(doc);
  free(out);
  free(err);
}

Test(report, table_and_csv_show_effective_time_and_inf_when_everything_is_dropped) {
  fill_dropping();
  char *out, *err;
  cr_assert_eq(report(&out, &err, "--db", dbpath, NULL, NULL), 0, "%s", err);
  cr_assert(strstr(out, "mean_ms     eff_ms  speedup vs_oracle"), "%s", out);
  cr_assert(strstr(out, "eff_ms = mean_ms / (1 - dropped)"), "no footnote:\n%s", out);
  char *line = strstr(out, "    8  capacity:cf=1.25");
  cr_assert_not_null(line, "%s", out);
  *strchr(line, '\n') = '\0';
  cr_assert(strstr(line, "  10.000     20.000    1.00x         -"), "%s", line);
  cr_assert(strstr(line, "50.0%"), "%s", line);
  line[strlen(line)] = '\n';
  line = strstr(out, "    8  capacity:cf=0.01");
  cr_assert_not_null(line, "%s", out);
  cr_assert(strstr(line, "   5.000        inf    0.00x         -"), "%s", line);
  free(out);
  free(err);
  cr_assert_eq(report(&out, &err, "--db", dbpath, "--format", "csv"), 0, "%s", err);
  cr_assert(strstr(out, ",dropped_tokens,effective_iteration_ms,seed,"), "%s", out);
  cr_assert(strstr(out, ",capacity:cf=1.25,1,4,10.000000,1.000000,,"), "%s", out);
  cr_assert(strstr(out, ",2000,20.000000,1,"), "%s", out);
  cr_assert(strstr(out, ",4000,inf,1,"), "%s", out);
  free(out);
  free(err);
  char *const argv[] = {(char *)flexmoe_bin(), "report", "--db", dbpath, "--runs",
                        "--format", "json", NULL};
  cr_assert_eq(run_capture(dir, argv, &out, &err), 0, "%s", err);
  json_t *doc = json_loads(out, 0, NULL);
  cr_assert_not_null(doc, "%s", out);
  json_t *runs = json_object_get(doc, "runs");
  cr_assert_float_eq(json_real_value(json_object_get(json_array_get(runs, 1),
                                                     "effective_iteration_ms")), 20, 1e-9);
  cr_assert(json_is_null(json_object_get(json_array_get(runs, 2), "effective_iteration_ms")));
  json_decref(doc);
  free(out);
  free(err);
}

/* The files of folder d other than `keep`, space-separated, into buf. */
static void others_in(const char *d, const char *keep, char *buf, size_t len) {
  DIR *dd = opendir(d);
  struct dirent *e;
  buf[0] = '\0';
  while (dd && (e = readdir(dd)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, keep)) {
      strncat(buf, e->d_name, len - strlen(buf) - 2);
      strcat(buf, " ");
    }
  if (dd)
    closedir(dd);
}

/* Issue 20, finding 7: `report` on a read-only database failed (SQLite
 * wanted to create its -wal and -shm next to it) and, where it could create
 * them (root, or a writable directory), left them behind. */
Test(report, a_read_only_database_is_reported_and_left_as_it_was) {
  char ro[300];
  snprintf(ro, sizeof(ro), "%s/ro", dir);
  cr_assert_eq(mkdir(ro, 0755), 0);
  snprintf(dbpath, sizeof(dbpath), "%.280s/r.db", ro);
  fill();
  char left[1024];
  others_in(ro, "r.db", left, sizeof(left));
  cr_assert_str_eq(left, "", "the writer left files: %s", left);
  size_t blen = 0;
  char *before = read_all(dbpath);
  struct stat st;
  cr_assert_eq(stat(dbpath, &st), 0);
  blen = (size_t)st.st_size;
  cr_assert_eq(chmod(dbpath, 0444), 0);
  cr_assert_eq(chmod(ro, 0555), 0);
  cr_assert_eq(chmod(dir, 0711), 0);
  /* As ourselves (root, where permissions do not stop SQLite from creating
   * files: nothing may be left either), then, when we are root, as nobody,
   * for whom the directory really is read-only. */
  int as[2] = {-1, geteuid() == 0 ? 65534 : -1};
  for (int k = 0; k < 2; k++) {
    if (k == 1 && as[1] < 0)
      break; /* not root: the first pass was already the unprivileged one */
    char *out, *err;
    char *const argv[] = {(char *)flexmoe_bin(), "report", "--db", dbpath, NULL};
    int rc = run_capture_as(dir, argv, &out, &err, as[k]);
    if ((rc == 126 || rc == 127) && k == 1) {
      free(out);
      free(err);
      fm_skip("unprivileged", "cannot run flexmoe as nobody (exit %d) to test a truly "
              "read-only directory", rc);
    }
    cr_assert_eq(rc, 0, "as uid %d: exit %d: %s", as[k], rc, err);
    cr_assert(strstr(out, "static") && strstr(out, "flexmoe"), "%s", out);
    cr_assert_str_eq(err, "");
    others_in(ro, "r.db", left, sizeof(left));
    cr_assert_str_eq(left, "", "as uid %d, report left: %s", as[k], left);
    free(out);
    free(err);
  }
  cr_assert_eq(stat(dbpath, &st), 0);
  cr_assert_eq((size_t)st.st_size, blen);
  char *after = read_all(dbpath);
  cr_assert_eq(memcmp(before, after, blen), 0, "the database changed");
  free(before);
  free(after);
  chmod(ro, 0755);
}
