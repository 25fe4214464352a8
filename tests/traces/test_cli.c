/* `flexmoe trace ...` as a user runs it: help, output, and one clear line
 * with a non-zero exit for every bad file or command line. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>

#include "tr_run.h"
#include "traces/tr_trace.h"

#define P(name) tu_path((char[512]){0}, 512, name)

static const char *SUBS[] = {"info", "stats", "gen", "fit", "rescale", "import"};
#define NSUBS (sizeof(SUBS) / sizeof(SUBS[0]))

Test(cli, trace_help_lists_every_subcommand_with_an_example) {
  tu_result *r = tu_run("trace", "--help", NULL);
  cr_assert_eq(r->code, 0);
  for (size_t i = 0; i < NSUBS; i++) {
    char needle[32];
    snprintf(needle, sizeof(needle), "\n  %s ", SUBS[i]);
    cr_assert(strstr(r->out, needle) != NULL, "help does not list '%s':\n%s", SUBS[i], r->out);
  }
  cr_assert(strstr(r->out, "example:") != NULL);
}

Test(cli, every_trace_subcommand_has_help_with_an_example) {
  for (size_t i = 0; i < NSUBS; i++) {
    tu_result *r = tu_run("trace", SUBS[i], "--help", NULL);
    cr_assert_eq(r->code, 0, "trace %s --help: %s", SUBS[i], r->err);
    char usage[64], example[64];
    snprintf(usage, sizeof(usage), "usage: flexmoe trace %s", SUBS[i]);
    snprintf(example, sizeof(example), "example:\n  flexmoe trace %s", SUBS[i]);
    cr_assert(strstr(r->out, usage) != NULL, "%s", r->out);
    cr_assert(strstr(r->out, example) != NULL, "%s", r->out);
  }
}

Test(cli, info_prints_shape_slots_and_per_layer_skew_of_the_sample) {
  tu_result *r = tu_run("trace", "info", tu_sample(), NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  cr_assert_str_empty(r->err);
  cr_assert(strstr(r->out, "200 iterations x 6 layers x 8 ranks x 32 experts (int32)") != NULL,
            "%s", r->out);
  cr_assert(strstr(r->out, "32768 per (iteration, layer), constant") != NULL, "%s", r->out);
  cr_assert(strstr(r->out, "top_k 2, d_model 384, d_ff 768") != NULL, "%s", r->out);
  cr_assert(strstr(r->out, "\n    0          5.38          6.02") != NULL, "%s", r->out);
}

Test(cli, info_json_is_one_document_with_the_documented_keys) {
  tu_result *r = tu_run("trace", "info", tu_sample(), "--format", "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  json_error_t e;
  json_t *o = json_loads(r->out, 0, &e);
  cr_assert_not_null(o, "not JSON: %s", e.text);
  cr_assert_eq(json_integer_value(json_array_get(json_object_get(o, "shape"), 0)), 200);
  cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "meta"), "top_k")), 2);
  json_t *slots = json_object_get(o, "slots_per_slice");
  cr_assert_eq(json_integer_value(json_object_get(slots, "min")), 32768);
  cr_assert(json_is_true(json_object_get(slots, "constant")));
  json_t *layers = json_object_get(o, "layers");
  cr_assert_eq(json_array_size(layers), 6);
  for (size_t l = 0; l < 6; l++) {
    json_t *x = json_array_get(layers, l);
    double p50 = json_real_value(json_object_get(x, "max_mean_p50"));
    double p90 = json_real_value(json_object_get(x, "max_mean_p90"));
    double ch = json_real_value(json_object_get(x, "change_l1"));
    cr_assert(p50 >= 1 && p50 <= p90 && p90 <= 32, "layer %zu: %g %g", l, p50, p90);
    cr_assert(ch > 0 && ch < 2, "layer %zu change %g", l, ch);
  }
  cr_assert_float_eq(json_real_value(json_object_get(json_array_get(layers, 0), "max_mean_p50")),
                     5.38, 0.005);
  json_decref(o);
}

Test(cli, stats_json_has_lags_persistence_and_rank_variation) {
  tu_result *r = tu_run("trace", "stats", tu_sample(), "--format", "json", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  json_t *o = json_loads(r->out, 0, NULL);
  cr_assert_not_null(o);
  json_t *x = json_array_get(json_object_get(o, "layers"), 2);
  static const char *keys[] = {"gini", "entropy", "change_l1_lag1", "change_l1_lag10",
                               "change_l1_lag100", "hot_persistence_lag1",
                               "hot_persistence_lag10", "rank_divergence_l1", "rank_total_cv"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    cr_assert(json_is_number(json_object_get(x, keys[i])), "missing %s", keys[i]);
  /* Farther apart means more different, on real routing. */
  double l1 = json_real_value(json_object_get(x, "change_l1_lag1"));
  double l10 = json_real_value(json_object_get(x, "change_l1_lag10"));
  cr_assert(l10 > l1, "%g %g", l1, l10);
  json_decref(o);
}

Test(cli, bad_files_get_one_line_naming_the_file_and_exit_1) {
  const char *missing = P("missing.npy");
  tu_result *r = tu_run("trace", "info", missing, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace info: ", missing, "No such file", NULL);

  const char *empty = P("empty.npy");
  tu_text(empty, "");
  r = tu_run("trace", "info", empty, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace info: ", empty, "empty", NULL);

  int32_t d[6] = {0};
  const char *trunc = P("trunc.npy");
  tu_npy(trunc, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1, 1, 3), }", d, 20);
  r = tu_run("trace", "stats", trunc, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace stats: ", trunc, "truncated", NULL);

  const char *flt = P("float.npy");
  tu_npy(flt, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 3), }", d, 24);
  r = tu_run("trace", "info", flt, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace info: ", flt, "'<f8'", "not supported", NULL);
}

Test(cli, bad_csv_lines_are_reported_with_file_and_line) {
  const char *neg = P("neg.csv");
  tu_text(neg, "iteration,layer,rank,expert,tokens\n0,0,0,0,3\n0,0,0,1,-2\n");
  char where[600];
  snprintf(where, sizeof(where), "%s:3: ", neg);
  tu_result *r = tu_run("trace", "info", neg, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace info: ", where, "negative", NULL);

  const char *big = P("big.csv");
  tu_text(big, "iteration,layer,rank,expert,tokens\n0,0,0,0,123456789012345678901234\n");
  snprintf(where, sizeof(where), "%s:2: ", big);
  r = tu_run("trace", "info", big, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace info: ", where, "overflows", NULL);

  const char *bad = P("bad.csv");
  tu_text(bad, "iteration,layer,rank,expert,tokens\n0,0,0,0,3\n0;0;0;0;3\n");
  snprintf(where, sizeof(where), "%s:3: ", bad);
  r = tu_run("trace", "info", bad, NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace info: ", where, "fields", NULL);
}

Test(cli, bad_command_lines_exit_2_with_one_line) {
  tu_result *r = tu_run("trace", "info", NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace info: ", "FILE", NULL);
  r = tu_run("trace", "info", tu_sample(), "--bogus", NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace info: ", "--bogus", NULL);
  r = tu_run("trace", "info", tu_sample(), "--format", "xml", NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace info: ", "xml", NULL);
  r = tu_run("trace", "frobnicate", NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace: ", "frobnicate", NULL);
  r = tu_run("trace", "info", tu_sample(), "--iterations", "500:", NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace info: ", "200 iterations", NULL);
}

Test(cli, gen_writes_a_reproducible_trace_that_info_reads) {
  const char *a = P("gen-a.npy"), *b = P("gen-b.npy");
  tu_result *r = tu_run("trace", "gen", "--pattern", "rotating-hotspot", "--layers", "2",
                        "--experts", "16", "--ranks", "4", "--iterations", "30", "--seed", "7",
                        "-o", a, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  cr_assert(strstr(r->out, "30 iterations x 2 layers x 4 ranks x 16 experts") != NULL, "%s",
            r->out);
  r = tu_run("trace", "gen", "--pattern", "rotating-hotspot", "--layers", "2", "--experts", "16",
             "--ranks", "4", "--iterations", "30", "--seed", "7", "-o", b, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  tr_trace x, y;
  tr_error err;
  cr_assert_eq(tr_open(&x, a, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&y, b, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(x.hash, y.hash);
  cr_assert(strstr(x.meta.source, "rotating-hotspot") != NULL, "%s", x.meta.source);
  tr_close(&x);
  tr_close(&y);
  r = tu_run("trace", "info", a, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  cr_assert(strstr(r->out, "8192 per (iteration, layer), constant") != NULL, "%s", r->out);
}

Test(cli, gen_refuses_bad_command_lines) {
  tu_result *r = tu_run("trace", "gen", "--pattern", "nope", "--iterations", "5", "-o",
                        P("x.npy"), NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace gen: ", "nope", NULL);
  r = tu_run("trace", "gen", "--pattern", "balanced", "-o", P("x.npy"), NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace gen: ", "--iterations", NULL);
  r = tu_run("trace", "gen", "--iterations", "5", "-o", P("x.npy"), NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace gen: ", "--pattern", NULL);
  r = tu_run("trace", "gen", "--pattern", "balanced", "--iterations", "5", "--top-k", "9",
             "--experts", "4", "-o", P("x.npy"), NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace gen: ", "--top-k", NULL);
  const char *fit = P("bad-fit.json");
  tu_text(fit, "{\"layers\": 1}\n");
  r = tu_run("trace", "gen", "--fit", fit, "--iterations", "5", "-o", P("x.npy"), NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace gen: ", fit, NULL);
  cr_assert_neq(access(P("x.npy"), F_OK), 0, "nothing written on error");
}

Test(cli, fit_refuses_missing_and_too_short_traces) {
  const char *missing = P("missing.npy");
  tu_result *r = tu_run("trace", "fit", missing, "-o", P("f.json"), NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace fit: ", missing, NULL);
  r = tu_run("trace", "fit", tu_sample(), "--iterations", "0:5", "-o", P("f.json"), NULL);
  cr_assert_eq(r->code, 1);
  tu_one_line(r, "flexmoe trace fit: ", "12 iterations", NULL);
  r = tu_run("trace", "fit", tu_sample(), NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace fit: ", "-o", NULL);
}

Test(cli, rescale_writes_exact_per_gpu_totals) {
  const char *out = P("g16.npy");
  tu_result *r = tu_run("trace", "rescale", tu_sample(), "--gpus", "16", "--tokens-per-gpu",
                        "1000", "--seed", "3", "--iterations", "0:10", "-o", out, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, out, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.ranks, 16);
  cr_assert_eq(t.iterations, 10);
  cr_assert_eq(t.meta.tokens_per_rank, 1000);
  for (int64_t it = 0; it < 10; it++)
    for (int l = 0; l < 6; l++)
      for (int g = 0; g < 16; g++) {
        int64_t s = 0;
        for (int e = 0; e < 32; e++)
          s += tr_at(&t, it, l, g, e);
        cr_assert_eq(s, 2000, "1000 tokens x top-2");
      }
  tr_close(&t);
  r = tu_run("trace", "rescale", tu_sample(), "-o", out, NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace rescale: ", "--gpus", NULL);
}

Test(cli, import_converts_csv_and_refuses_bad_axes) {
  const char *csv = P("r.csv"), *out = P("r.npy");
  tu_text(csv, "iteration,layer,rank,expert,tokens\n0,0,0,0,4\n2,1,0,3,9\n");
  tu_result *r = tu_run("trace", "import", csv, "-o", out, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  cr_assert(strstr(r->out, "3 iterations x 2 layers x 1 ranks x 4 experts (int32)") != NULL,
            "%s", r->out);
  r = tu_run("trace", "import", out, "--axes", "I,L,X", "-o", P("y.npy"), NULL);
  cr_assert_eq(r->code, 2);
  tu_one_line(r, "flexmoe trace import: ", "I,L,X", NULL);
  const char *bad = P("neg.csv");
  tu_text(bad, "iteration,layer,rank,expert,tokens\n0,0,0,0,-4\n");
  r = tu_run("trace", "import", bad, "-o", P("z.npy"), NULL);
  cr_assert_eq(r->code, 1);
  char where[600];
  snprintf(where, sizeof(where), "%s:2: ", bad);
  tu_one_line(r, "flexmoe trace import: ", where, NULL);
}

/* Issue 20, finding 1: a 20-byte CSV line whose indices describe 10^9
 * counts made `trace import` allocate gigabytes and run for minutes. It is
 * refused before allocating, with the size it would need and the flag that
 * raises the budget; nothing is written. (The CPU limit turns a regression
 * into a quick failure instead of minutes of work.) */
Test(cli, import_refuses_a_tiny_csv_whose_dense_size_is_over_the_memory_budget) {
  tu_cpu_limit_s = 20;
  const char *csv = P("tiny.csv"), *out = P("tiny.npy");
  tu_text(csv, "iteration,layer,rank,expert,tokens\n1000000,999,0,0,1\n");
  tu_result *r = tu_run("trace", "import", csv, "-o", out, "--max-memory", "1G", NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  tu_one_line(r, "flexmoe trace import: ", csv, "1000001 x 1000 x 1 x 1", "needs 14.9 GiB",
              "budget of 1.00 GiB", "--max-memory", NULL);
  cr_assert_neq(access(out, F_OK), 0, "nothing written");
  /* with the default budget (half of this machine's memory), 10^15 counts */
  tu_text(csv, "iteration,layer,rank,expert,tokens\n999999,999,999,999,1\n");
  r = tu_run("trace", "import", csv, "-o", out, NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  tu_one_line(r, "flexmoe trace import: ", csv, "needs 7.11 PiB", "--max-memory", NULL);
  /* the same refusal where any trace subcommand reads the CSV */
  static const char *readers[] = {"info", "stats"};
  for (size_t i = 0; i < 2; i++) {
    r = tu_run("trace", readers[i], csv, NULL);
    cr_assert_eq(r->code, 1, "%s", r->err);
    cr_assert(strstr(r->err, "needs 7.11 PiB") != NULL, "%s", r->err);
  }
  r = tu_run("trace", "rescale", csv, "--gpus", "4", "-o", out, NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  cr_assert(strstr(r->err, "needs 7.11 PiB") != NULL, "%s", r->err);
  /* and a budget that holds it reads it */
  tu_text(csv, "iteration,layer,rank,expert,tokens\n1,1,0,3,4\n");
  r = tu_run("trace", "import", csv, "-o", out, "--max-memory", "64K", NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  tu_cpu_limit_s = 0;
}

Test(cli, gen_and_rescale_refuse_working_sets_over_the_memory_budget) {
  tu_cpu_limit_s = 20;
  const char *out = P("big.npy");
  tu_result *r = tu_run("trace", "gen", "--pattern", "balanced", "--iterations", "2", "--ranks",
                        "1048576", "--experts", "1048576", "-o", out, NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  tu_one_line(r, "flexmoe trace gen: ", "1048576 ranks x 1048576 experts needs 16.0 TiB",
              "--max-memory", NULL);
  r = tu_run("trace", "rescale", tu_sample(), "--gpus", "1000000", "--max-memory", "100M", "-o",
             out, NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  tu_one_line(r, "flexmoe trace rescale: ", "1000000 GPUs x 32 experts needs 248 MiB",
              "budget of 100 MiB", "--max-memory", NULL);
  cr_assert_neq(access(out, F_OK), 0, "nothing written");
  tu_cpu_limit_s = 0;
}

Test(cli, every_trace_subcommand_takes_max_memory_and_refuses_a_bad_size) {
  for (size_t i = 0; i < NSUBS; i++) {
    tu_result *r = tu_run("trace", SUBS[i], "--help", NULL);
    cr_assert(strstr(r->out, "--max-memory SIZE") != NULL, "trace %s --help", SUBS[i]);
    r = tu_run("trace", SUBS[i], tu_sample(), "--max-memory", "12X", NULL);
    cr_assert_eq(r->code, 2, "trace %s: %s", SUBS[i], r->err);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "flexmoe trace %s: ", SUBS[i]);
    tu_one_line(r, prefix, "--max-memory", "'12X'", "512M", NULL);
  }
}

/* Issue 20, finding 1, the file itself: one line with iteration 10^9 is
 * refused on its line by the iterations range, with no allocation. */
Test(cli, import_refuses_the_csv_line_with_iteration_one_billion_naming_the_range) {
  tu_cpu_limit_s = 20;
  const char *csv = P("f1.csv"), *out = P("f1.npy");
  tu_text(csv, "iteration,layer,rank,expert,tokens\n1000000000,0,0,0,1\n");
  tu_result *r = tu_run("trace", "import", csv, "-o", out, NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  char where[600];
  snprintf(where, sizeof(where), "%s:2: ", csv);
  tu_one_line(r, "flexmoe trace import: ", where, "iteration 1000000000 is out of range",
              "0 to 16777215", "between 1 and 16777216", NULL);
  cr_assert_neq(access(out, F_OK), 0, "nothing written");
  tu_cpu_limit_s = 0;
}

/* Issue 20, finding 6: a sidecar with tokens_per_rank = INT64_MAX (or any
 * model number out of its physical range) is refused naming the sidecar,
 * the key and the range. */
Test(cli, a_sidecar_with_numbers_out_of_range_is_refused_naming_key_and_range) {
  const char *npy = P("s.npy"), *side = P("s.json");
  tu_result *r = tu_run("trace", "import", tu_sample(), "--iterations", "0:2", "-o", npy, NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  static const struct {
    const char *json, *key, *range;
  } bad[] = {{"{\"tokens_per_rank\": 9223372036854775807}", "'tokens_per_rank'",
              "between 1 and 1099511627776"},
             {"{\"d_model\": 2147483647}", "'d_model'", "between 1 and 1048576"},
             {"{\"top_k\": 33}", "'top_k'", "between 1 and 32 (the trace's experts)"},
             {"{\"bytes_per_elem\": 64}", "'bytes_per_elem'", "between 1 and 8"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tu_text(side, bad[i].json);
    r = tu_run("trace", "info", npy, NULL);
    cr_assert_eq(r->code, 1, "%s: %s", bad[i].json, r->err);
    tu_one_line(r, "flexmoe trace info: ", side, bad[i].key, bad[i].range, NULL);
  }
}

/* A .npy whose header claims more data than the file holds is refused from
 * the header: the claimed shape and both sizes. */
Test(cli, an_npy_whose_header_claims_more_than_its_file_is_refused) {
  tu_cpu_limit_s = 20;
  int32_t d[6] = {0};
  const char *p = P("claims.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (16000000, 64, 64, 64), }", d,
         sizeof(d));
  static tu_result keep[5]; /* tu_run's result is overwritten by the next run */
  keep[0] = *tu_run("trace", "info", p, NULL);
  keep[1] = *tu_run("trace", "stats", p, NULL);
  keep[2] = *tu_run("trace", "fit", p, "-o", P("f.json"), NULL);
  keep[3] = *tu_run("trace", "rescale", p, "--gpus", "2", "-o", P("x.npy"), NULL);
  keep[4] = *tu_run("trace", "import", p, "-o", P("x.npy"), NULL);
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(keep[i].code, 1, "%d: %s", i, keep[i].err);
    cr_assert(strstr(keep[i].err, "truncated: its header claims shape (16000000, 64, 64, 64), "
                                  "15.3 TiB") != NULL &&
                  strstr(keep[i].err, "the file holds 24") != NULL,
              "%d: %s", i, keep[i].err);
  }
  tu_cpu_limit_s = 0;
}

Test(cli, gen_flags_beyond_the_physical_ranges_exit_2_with_the_range) {
  static const char *bad[][3] = {{"--layers", "4097", "between 1 and 4096"},
                                 {"--experts", "1048577", "between 1 and 1048576"},
                                 {"--d-model", "1048577", "between 1 and 1048576"},
                                 {"--d-ff", "4194305", "between 1 and 4194304"},
                                 {"--iterations", "16777217", "between 1 and 16777216"},
                                 {"--tokens", "1099511627777", "between 0 and 1099511627776"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    /* the flag under test given once (a second --iterations is refused as such) */
    int its = strcmp(bad[i][0], "--iterations") == 0;
    tu_result *r = tu_run("trace", "gen", "--pattern", "balanced", its ? "--seed" : "--iterations",
                          its ? "1" : "5", bad[i][0], bad[i][1], "-o", P("x.npy"), NULL);
    cr_assert_eq(r->code, 2, "%s %s: %s", bad[i][0], bad[i][1], r->err);
    tu_one_line(r, "flexmoe trace gen: ", bad[i][0], bad[i][2], NULL);
  }
}

/* trace gen --fit: the fitted model spread over the requested sizes (L x E
 * doubles) counts with the generator's state against the budget, checked
 * before either is allocated. */
Test(cli, gen_from_a_fit_refuses_sizes_over_the_memory_budget) {
  tu_cpu_limit_s = 20;
  const char *fit = P("tiny-fit.json"), *out = P("fit-gen.npy");
  tu_text(fit, "{\"version\": 1, \"layers\": 1, \"ranks\": 1, \"experts\": 2, \"top_k\": 1, "
               "\"tokens_per_rank\": 8, \"iterations\": 20, \"per_layer\": [{\"scale\": 1, "
               "\"innov\": 0.1, \"phi\": 0.9, \"rank_sigma\": 0, \"base\": [0.5, -0.5]}]}");
  tu_result *r = tu_run("trace", "gen", "--fit", fit, "--iterations", "3", "--layers", "4096",
                        "--experts", "1048576", "--max-memory", "1G", "-o", out, NULL);
  cr_assert_eq(r->code, 1, "%s", r->err);
  tu_one_line(r, "flexmoe trace gen: ", fit, "4096 layers x 1 ranks x 1048576 experts",
              "1.00 GiB", "--max-memory", NULL);
  cr_assert_neq(access(out, F_OK), 0, "nothing written");
  r = tu_run("trace", "gen", "--fit", fit, "--iterations", "3", "--max-memory", "1M", "-o", out,
             NULL);
  cr_assert_eq(r->code, 0, "%s", r->err);
  tu_cpu_limit_s = 0;
}
