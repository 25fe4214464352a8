/* The shared sim runner: pack/unpack round trip, config keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/fm_error.h"
#include "run/fm_sim.h"

#include "helpers.h"

Test(fm_sim, pack_unpack_gives_back_the_same_output) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.policy = "flexmoe";
  c.engine = "des";
  c.nodes = 2;
  c.it_end = 30;
  char err[512];
  fm_sim_output *o = NULL, *back = NULL;
  cr_assert_eq(fm_sim_compute(&c, &o, err, sizeof(err)), 0, "%s", err);
  void *buf = NULL, *buf2 = NULL;
  size_t len = 0, len2 = 0;
  cr_assert_eq(fm_sim_pack(o, &buf, &len), 0);
  cr_assert_eq(fm_sim_unpack(buf, len, &back), 0);
  cr_assert_eq(fm_sim_pack(back, &buf2, &len2), 0);
  cr_assert_eq(len, len2);
  cr_assert_eq(memcmp(buf, buf2, len), 0);
  cr_assert_eq(memcmp(fm_sim_summary_of(o), fm_sim_summary_of(back), sizeof(fm_sim_summary)), 0);
  cr_assert_eq(fm_sim_summary_of(back)->iterations, 30);
  /* a truncated image is refused */
  fm_sim_output *bad = NULL;
  cr_assert_neq(fm_sim_unpack(buf, len - 1, &bad), 0);
  cr_assert_null(bad);
  free(buf);
  free(buf2);
  fm_sim_output_free(o);
  fm_sim_output_free(back);
}

Test(fm_sim, config_key_is_stable_and_tells_configurations_apart) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.policy = "capacity";
  char a[128], b[128], d[128], err[512];
  cr_assert_eq(fm_sim_config_key(&c, a, sizeof(a), err, sizeof(err)), 0, "%s", err);
  c.policy = "capacity:cf=1.0,drop=1"; /* the defaults, spelled out: same config */
  cr_assert_eq(fm_sim_config_key(&c, b, sizeof(b), err, sizeof(err)), 0, "%s", err);
  cr_assert_str_eq(a, b);
  c.nodes = 2;
  cr_assert_eq(fm_sim_config_key(&c, d, sizeof(d), err, sizeof(err)), 0, "%s", err);
  cr_assert_str_neq(a, d);
  c.policy = "nosuch";
  cr_assert_neq(fm_sim_config_key(&c, d, sizeof(d), err, sizeof(err)), 0);
  cr_assert(strstr(err, "nosuch"), "%s", err);
}

/* Resolves c (config key only: no simulation); the code, err filled. */
static int resolve_code(fm_sim_config *c, char *err, size_t len) {
  char key[128];
  err[0] = '\0';
  return fm_sim_config_key(c, key, sizeof(key), err, len);
}

/* Every model number from the flags has a physical range given in the
 * error (exit 2: a bad command line), and the whole configuration must fit
 * the simulator's arithmetic (exit 1); a large real model still resolves. */
Test(fm_sim, model_numbers_outside_their_ranges_are_refused_naming_flag_and_range) {
  static const struct {
    int d_model, d_ff, top_k;
    int64_t tokens;
    const char *msg;
  } bad[] = {
      {(1 << 20) + 1, 0, 0, 0, "--d-model must be between 1 and 1048576"},
      {0, (1 << 22) + 1, 0, 0, "--d-ff must be between 1 and 4194304"},
      {0, 0, 65, 0, "--top-k must be between 1 and 64"},
      {0, 0, 0, ((int64_t)1 << 30) + 1, "--tokens-per-gpu must be between 1 and 1073741824"},
      {0, 0, 0, -5, "--tokens-per-gpu must be between 1 and 1073741824"},
      {0, 0, 0, INT64_MAX, "--tokens-per-gpu must be between 1 and 1073741824"},
  };
  char err[512];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    fm_sim_config c = FM_SIM_CONFIG_INIT;
    c.trace_path = sample();
    c.d_model = bad[i].d_model;
    c.d_ff = bad[i].d_ff;
    c.top_k = bad[i].top_k;
    c.tokens_per_gpu = bad[i].tokens;
    cr_assert_eq(resolve_code(&c, err, sizeof(err)), 2, "case %zu: %s", i, err);
    cr_assert(strstr(err, bad[i].msg), "case %zu: '%s'", i, err);
  }
  /* each at its end of the range, on 65,536 GPUs: the products are far past
   * what the simulator's clock and counters hold */
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.nodes = 8192;
  c.d_model = 1 << 20;
  c.d_ff = 1 << 22;
  c.top_k = 64;
  c.tokens_per_gpu = (int64_t)1 << 30;
  c.slots = 1;
  cr_assert_eq(resolve_code(&c, err, sizeof(err)), 1, "%s", err);
  cr_assert(strstr(err, "model too large") && strstr(err, "2^36 us"), "%s", err);
  /* a GPT-4-sized layer on 1,024 H100s: inside every limit */
  c.nodes = 128;
  c.d_model = 8192;
  c.d_ff = 32768;
  c.top_k = 8;
  c.tokens_per_gpu = 16384;
  c.slots = 0;
  cr_assert_eq(resolve_code(&c, err, sizeof(err)), 0, "%s", err);
}

/* The same ranges hold for numbers from the trace's sidecar, named as the
 * sidecar's key (exit 1: the input, not the command line, is wrong); the
 * trace reader refuses such a sidecar when it opens the trace. */
Test(fm_sim, a_sidecar_model_number_outside_its_range_is_refused) {
  char npy[256], json[256], err[512];
  snprintf(npy, sizeof(npy), "/tmp/flexmoe-simrun-%d.npy", (int)getpid());
  snprintf(json, sizeof(json), "/tmp/flexmoe-simrun-%d.json", (int)getpid());
  unlink(npy);
  cr_assert_eq(symlink(sample(), npy), 0);
  FILE *f = fopen(json, "w");
  cr_assert_not_null(f);
  fputs("{\"top_k\": 2, \"d_model\": 384, \"d_ff\": 16777216}", f);
  fclose(f);
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = npy;
  cr_assert_eq(resolve_code(&c, err, sizeof(err)), 1, "%s", err);
  cr_assert(strstr(err, "d_ff") && strstr(err, "between 1 and 4194304"), "%s", err);
  c.d_ff = 768; /* a sidecar out of range is an invalid file: the trace
                 * reader refuses it at open, a flag does not rescue it */
  cr_assert_eq(resolve_code(&c, err, sizeof(err)), 1, "%s", err);
  cr_assert(strstr(err, "d_ff") && strstr(err, "between 1 and 4194304"), "%s", err);
  unlink(npy);
  unlink(json);
}

/* One run of policy on 32 GPUs (the 8-rank sample rescaled: every layer is
 * drawn) with `threads` threads, drawing afresh (keep_draws 0: a replayed
 * draw would hide a difference). */
static fm_sim_output *run_threads(const char *policy, const char *engine, int threads) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.policy = policy;
  c.engine = engine;
  c.nodes = 4;
  c.it_end = 20;
  c.threads = threads;
  c.keep_draws = 0;
  char err[512];
  fm_sim_output *o = NULL;
  cr_assert_eq(fm_sim_compute(&c, &o, err, sizeof(err)), 0, "%s threads=%d: %s", policy,
               threads, err);
  return o;
}

/* The numbers two outputs report are the same bytes: summary, every row,
 * the parameters, the DES's event count. */
static void assert_same_output(const fm_sim_output *a, const fm_sim_output *b, const char *what) {
  cr_assert_eq(memcmp(fm_sim_summary_of(a), fm_sim_summary_of(b), sizeof(fm_sim_summary)), 0,
               "%s: summaries differ", what);
  const st_iter_row *ra, *rb;
  int64_t na = fm_sim_iteration_rows(a, &ra), nb = fm_sim_iteration_rows(b, &rb);
  cr_assert_eq(na, nb, "%s", what);
  cr_assert_eq(memcmp(ra, rb, (size_t)na * sizeof(st_iter_row)), 0, "%s: rows differ", what);
  cr_assert_str_eq(fm_sim_params_json(a), fm_sim_params_json(b), "%s", what);
  cr_assert_eq(fm_sim_events(a), fm_sim_events(b), "%s: event counts differ", what);
}

Test(fm_sim, results_are_byte_identical_for_any_thread_count) {
  /* flexmoe re-plans (plans serve after background moves), capacity routes
   * with a per-source capacity, fastermoe shadows experts, static on the
   * DES and the analytic engine */
  const char *pols[] = {"flexmoe", "capacity", "fastermoe", "static"};
  const char *engs[] = {"des", "des", "des", "analytic"};
  const int threads[] = {2, 3, 7};
  for (int p = 0; p < 4; p++) {
    fm_sim_output *one = run_threads(pols[p], engs[p], 1);
    cr_assert_gt(fm_sim_summary_of(one)->mean_iteration_ms, 0);
    for (int t = 0; t < 3; t++) {
      char what[64];
      snprintf(what, sizeof(what), "%s, 1 vs %d threads", pols[p], threads[t]);
      fm_sim_output *o = run_threads(pols[p], engs[p], threads[t]);
      assert_same_output(one, o, what);
      fm_sim_output_free(o);
    }
    fm_sim_output_free(one);
  }
}

Test(fm_sim, a_kept_draw_replayed_by_the_next_run_gives_the_same_results) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.policy = "static";
  c.engine = "des";
  c.nodes = 4;
  c.it_end = 10;
  c.threads = 2;
  char err[512];
  fm_sim_output *first = NULL, *replay = NULL;
  c.keep_draws = 1; /* this run keeps its draws, the next one replays them */
  cr_assert_eq(fm_sim_compute(&c, &first, err, sizeof(err)), 0, "%s", err);
  c.keep_draws = 0;
  cr_assert_eq(fm_sim_compute(&c, &replay, err, sizeof(err)), 0, "%s", err);
  fm_sim_output *fresh = run_threads("static", "des", 1); /* 20 iterations: another key */
  assert_same_output(first, replay, "drawn vs replayed");
  const st_iter_row *rows;
  cr_assert_eq(fm_sim_iteration_rows(fresh, &rows), 20);
  fm_sim_output_free(first);
  fm_sim_output_free(replay);
  fm_sim_output_free(fresh);
}

Test(fm_sim, a_thread_count_outside_its_range_is_refused_naming_the_flag) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.it_end = 2;
  char err[512];
  fm_sim_output *o = NULL;
  const int bad[] = {-1, FM_SIM_MAX_THREADS + 1};
  for (int i = 0; i < 2; i++) {
    c.threads = bad[i];
    cr_assert_eq(fm_sim_compute(&c, &o, err, sizeof(err)), FM_EUSAGE, "threads=%d", bad[i]);
    cr_assert_null(o);
    cr_assert(strstr(err, "--threads") && strstr(err, "256"), "message: %s", err);
  }
}
