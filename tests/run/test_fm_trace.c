/* run/fm_trace.h called directly: the analysis and its JSON documents
 * against the CLI's recorded outputs (tests/run/golden), and generate,
 * import, rescale and fit checked against counts read back from the
 * written files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/fm_error.h"
#include "run/fm_trace.h"

#define JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))
#define SAMPLE "traces/samples/gpt-l6-e32-top2-aux-200.npy"

/* The tests run from the source root: the documents carry the path as the
 * CLI's golden cases gave it. */
static void to_root(void) {
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert_not_null(root);
  cr_assert_eq(chdir(root), 0);
}

/* The golden file's text (malloc'd). */
static char *golden(const char *name) {
  char p[256];
  snprintf(p, sizeof(p), "tests/run/golden/%s.out", name);
  FILE *f = fopen(p, "rb");
  cr_assert_not_null(f, "%s", p);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strdup(buf);
}

/* doc dumped as the CLI prints it (a newline after) equals the golden. */
static void assert_doc_is(json_t *doc, const char *name) {
  cr_assert_not_null(doc);
  char *text = json_dumps(doc, JSON_FLAGS), *want = golden(name);
  json_decref(doc);
  size_t n = strlen(text);
  cr_assert(strncmp(text, want, n) == 0 && strcmp(want + n, "\n") == 0,
            "%s differs from the CLI's recorded output", name);
  free(text);
  free(want);
}

Test(fm_trace, stats_document_is_the_cli_output, .init = to_root) {
  fm_trace_config c = {.path = SAMPLE, .it0 = 0, .it1 = -1, .max_memory = 0};
  fm_trace_analysis a;
  char em[1024];
  cr_assert_eq(fm_trace_analyse(&c, &a, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert_eq(a.it1, 200); /* -1 resolved to the end */
  assert_doc_is(fm_trace_stats_doc(&a), "trace-stats-json");
  fm_trace_analysis_fini(&a);
}

Test(fm_trace, info_document_is_the_cli_output_and_slots_are_the_counts, .init = to_root) {
  fm_trace_config c = {.path = SAMPLE, .it0 = 10, .it1 = 60, .max_memory = 0};
  fm_trace_analysis a;
  char em[1024];
  cr_assert_eq(fm_trace_analyse(&c, &a, em, sizeof(em)), FM_OK, "%s", em);
  /* independent: the slots of each (iteration, layer) summed from the counts */
  const tr_trace *t = &a.trace;
  int64_t lo = INT64_MAX, hi = 0;
  for (int64_t it = 10; it < 60; it++)
    for (int l = 0; l < t->layers; l++) {
      int64_t s = 0;
      for (int r = 0; r < t->ranks; r++)
        for (int e = 0; e < t->experts; e++)
          s += tr_at(t, it, l, r, e);
      lo = s < lo ? s : lo;
      hi = s > hi ? s : hi;
    }
  cr_assert_eq(a.stats.tokens_min, lo);
  cr_assert_eq(a.stats.tokens_max, hi);
  assert_doc_is(fm_trace_info_doc(&a), "trace-info-json-it10-60");
  fm_trace_analysis_fini(&a);
}

Test(fm_trace, a_range_past_the_trace_is_a_usage_error, .init = to_root) {
  fm_trace_config c = {.path = SAMPLE, .it0 = 300, .it1 = -1, .max_memory = 0};
  fm_trace_analysis a;
  char em[1024] = "";
  cr_assert_eq(fm_trace_analyse(&c, &a, em, sizeof(em)), FM_EUSAGE);
  cr_assert_str_eq(em, "--iterations: the trace has 200 iterations");
  fm_trace_analysis_fini(&a); /* zeroed: nothing to release */
  c = (fm_trace_config){.path = "/nonexistent.npy", .it0 = 0, .it1 = -1, .max_memory = 0};
  cr_assert_eq(fm_trace_analyse(&c, &a, em, sizeof(em)), FM_EFAIL);
  cr_assert(strncmp(em, "/nonexistent.npy: ", 18) == 0, "%s", em);
}

/* Removes a written trace or fit and its sidecar. */
static void drop(const char *path) {
  char side[1024];
  tr_sidecar_path(path, side, sizeof(side));
  remove(side);
  remove(path);
}

/* A small generated trace in dir: 20 iterations x 2 layers x 4 ranks x 8
 * experts, top-2, 64 tokens per rank. */
static void gen_small(const char *out, uint64_t seed) {
  fm_trace_gen_config c = {.pattern = "hot-experts", .out = out, .iterations = 20,
                           .seed = seed, .layers = 2, .ranks = 4, .experts = 8,
                           .tokens_per_rank = 64, .top_k = 2};
  fm_trace_gen g;
  char em[1024];
  cr_assert_eq(fm_trace_gen_prepare(&c, &g, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert_eq(g.gen.experts, 8);
  cr_assert_eq(fm_trace_gen_write(&c, &g, em, sizeof(em)), FM_OK, "%s", em);
  fm_trace_gen_fini(&g);
}

Test(fm_trace, generated_imported_and_rescaled_traces_keep_their_totals) {
  char dir[] = "/tmp/fm-trace-XXXXXX", gen[64], imp[64], res[64];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(gen, sizeof(gen), "%s/g.npy", dir);
  snprintf(imp, sizeof(imp), "%s/i.npy", dir);
  snprintf(res, sizeof(res), "%s/r.npy", dir);
  gen_small(gen, 7);
  char em[1024];
  fm_trace_shape s;
  fm_trace_import_config ic = {.trace = {.path = gen, .it0 = 5, .it1 = 15}, .out = imp};
  cr_assert_eq(fm_trace_import(&ic, &s, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert(s.iterations == 10 && s.layers == 2 && s.ranks == 4 && s.experts == 8);
  fm_trace_rescale_config rc = {.trace = {.path = imp, .it0 = 0, .it1 = -1}, .out = res,
                                .gpus = 3, .tokens_per_gpu = 10, .seed = 1};
  cr_assert_eq(fm_trace_rescale(&rc, &s, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert(s.iterations == 10 && s.ranks == 3 && s.experts == 8);
  /* independent: every GPU routes exactly tokens x top_k slots */
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, res, &err), 0, "%s", err.msg);
  for (int64_t it = 0; it < t.iterations; it++)
    for (int l = 0; l < t.layers; l++)
      for (int r = 0; r < t.ranks; r++) {
        int64_t sum = 0;
        for (int e = 0; e < t.experts; e++)
          sum += tr_at(&t, it, l, r, e);
        cr_assert_eq(sum, 20, "iteration %ld layer %d GPU %d: %ld", (long)it, l, r, (long)sum);
      }
  tr_close(&t);
  drop(gen), drop(imp), drop(res);
  rmdir(dir);
}

Test(fm_trace, generator_refuses_top_k_over_experts_and_unknown_patterns) {
  fm_trace_gen_config c = {.pattern = "balanced", .out = "/tmp/unused.npy", .iterations = 3,
                           .layers = -1, .ranks = -1, .experts = 4, .tokens_per_rank = -1,
                           .top_k = 20};
  fm_trace_gen g;
  char em[1024];
  cr_assert_eq(fm_trace_gen_prepare(&c, &g, em, sizeof(em)), FM_EUSAGE);
  cr_assert_str_eq(em, "--top-k 20 is larger than --experts 4");
  fm_trace_gen_fini(&g);
  c.top_k = 2;
  c.pattern = "nope";
  cr_assert_eq(fm_trace_gen_prepare(&c, &g, em, sizeof(em)), FM_EUSAGE);
  cr_assert_str_eq(em, "unknown pattern 'nope' (see 'flexmoe trace gen --help')");
  fm_trace_gen_fini(&g);
}

Test(fm_trace, fit_writes_a_model_that_loads_back_and_needs_12_iterations) {
  char dir[] = "/tmp/fm-fit-XXXXXX", gen[64], fit[64];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(gen, sizeof(gen), "%s/g.npy", dir);
  snprintf(fit, sizeof(fit), "%s/fit.json", dir);
  gen_small(gen, 3);
  char em[1024];
  tr_fit f;
  fm_trace_fit_config c = {.trace = {.path = gen, .it0 = 0, .it1 = 11}, .out = fit, .seed = 1};
  cr_assert_eq(fm_trace_fit(&c, &f, em, sizeof(em)), FM_EFAIL);
  char want[128];
  snprintf(want, sizeof(want), "%s: fitting needs at least 12 iterations", gen);
  cr_assert_str_eq(em, want);
  c.trace.it1 = -1;
  cr_assert_eq(fm_trace_fit(&c, &f, em, sizeof(em)), FM_OK, "%s", em);
  tr_fit back;
  tr_error err;
  cr_assert_eq(tr_fit_load(&back, fit, &err), 0, "%s", err.msg);
  cr_assert(back.layers == 2 && back.ranks == 4 && back.experts == 8 && back.top_k == 2);
  cr_assert_eq(back.iterations, f.iterations);
  tr_fit_fini(&back);
  tr_fit_fini(&f);
  drop(gen), remove(fit);
  rmdir(dir);
}

/* A CSV written to a temporary file and opened; the caller closes t and
 * removes path. */
static void open_csv(const char *text, char *path, size_t len, tr_trace *t) {
  snprintf(path, len, "/tmp/fm-sanity-XXXXXX.csv");
  int fd = mkstemps(path, 4);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  tr_error err;
  cr_assert_eq(tr_open(t, path, &err), TR_OK, "%s", err.msg);
}

/* Issue 18 item 4: what the sanity check finds in hand-made traces, and
 * that a clean trace gives no sentence. */
Test(fm_trace, sanity_names_one_based_ids_empty_iterations_and_unused_ranks) {
  char path[64], em[256], text[2048];
  tr_trace t;
  fm_trace_sanity s;
  /* ranks numbered from 1 (rank 0 empty), iteration 2 missing */
  open_csv("iteration,layer,rank,expert,tokens\n0,0,1,0,5\n0,0,2,1,3\n1,0,1,1,2\n1,0,2,0,9\n"
           "3,0,1,0,4\n3,0,2,1,4\n", path, sizeof path, &t);
  cr_assert_eq(fm_trace_check(&t, 0, -1, 2, &s, em, sizeof em), FM_OK, "%s", em);
  cr_assert_eq(s.total, 27);
  cr_assert(s.rank0_only_empty && s.empty_ranks == 1 && s.first_empty_rank == 0);
  cr_assert(s.empty_iterations == 1 && s.first_empty_iteration == 2);
  cr_assert_eq(s.empty_experts, 0);
  cr_assert_eq(fm_trace_sanity_text(&s, "T", text, sizeof text), 3);
  cr_assert(strstr(text, "T: rank 0 is empty and ranks 1 to 2 are not: the rank ids look "
                         "1-based"), "%s", text);
  cr_assert(strstr(text, "T: 1 iteration without a token slot (the first: 2)"), "%s", text);
  cr_assert(strstr(text, "T: 3 ranks, this run uses 2 (GPU g replays rank g): rank 2 is not "
                         "used"), "%s", text);
  cr_assert_eq(s.warnings, 3);
  /* the range leaves out the empty iteration; 3 ranks used: only the ids */
  cr_assert_eq(fm_trace_check(&t, 0, 2, 3, &s, em, sizeof em), FM_OK);
  cr_assert_eq(s.warnings, 1);
  tr_close(&t);
  remove(path);
  /* all zero */
  open_csv("iteration,layer,rank,expert,tokens\n0,0,0,0,0\n1,1,1,1,0\n", path, sizeof path, &t);
  cr_assert_eq(fm_trace_check(&t, 0, -1, 0, &s, em, sizeof em), FM_OK);
  cr_assert_eq(s.total, 0);
  cr_assert_eq(fm_trace_sanity_text(&s, "Z", text, sizeof text), 1);
  cr_assert(strstr(text, "Z: every count is 0"), "%s", text);
  tr_close(&t);
  remove(path);
}

Test(fm_trace, sanity_of_the_bundled_sample_is_silent, .init = to_root) {
  tr_trace t;
  tr_error err;
  fm_trace_sanity s;
  char em[256];
  cr_assert_eq(tr_open(&t, SAMPLE, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(fm_trace_check(&t, 0, -1, 8, &s, em, sizeof em), FM_OK);
  cr_assert_eq(s.warnings, 0);
  cr_assert_eq(s.total, (int64_t)200 * 6 * 32768);
  cr_assert_eq(fm_trace_check(&t, 0, -1, 16, &s, em, sizeof em), FM_OK);
  cr_assert_eq(s.warnings, 0, "16 GPUs replay each rank twice: nothing to say");
  tr_close(&t);
}
