/* The trace cache (issue 15): a comparison of N policies opens its trace
 * once, and the outputs are those of runs that open it themselves.
 * Opens are counted by the traces library (tr_open_count). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/fm_error.h"
#include "run/fm_sim.h"
#include "run/fm_sim_json.h"
#include "run/fm_sweep.h"
#include "run/fm_trace_cache.h"

#include "helpers.h"

static fm_sim_config base_config(void) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.it_begin = 10;
  c.it_end = 40;
  c.nodes = 2;
  c.seed = 3;
  return c;
}

/* Every registered policy (static among them): key and compute each. */
Test(fm_trace_cache, a_comparison_of_every_policy_opens_its_trace_once) {
  fm_sim_config base = base_config();
  fm_sim_comparison cmp;
  char err[512] = "";
  uint64_t before = tr_open_count();
  cr_assert_eq(fm_sim_compare(&base, NULL, 0, NULL, &cmp, err, sizeof(err)), FM_OK, "%s", err);
  cr_assert_geq(cmp.nrun, 7, "the registry has the seven policies of issue 15");
  cr_assert_eq(tr_open_count() - before, 1, "opened %llu times for %d policies",
               (unsigned long long)(tr_open_count() - before), cmp.nrun);
  /* each run equals one that opens the trace itself (one open each) */
  for (int i = 0; i < cmp.nrun; i++) {
    fm_sim_config c = base;
    c.policy = cmp.policies[i];
    fm_sim_output *o = NULL;
    uint64_t at = tr_open_count();
    cr_assert_eq(fm_sim_compute(&c, &o, err, sizeof(err)), FM_OK, "%s", err);
    cr_assert_eq(tr_open_count() - at, 1);
    const st_iter_row *ra, *rb;
    int64_t na = fm_sim_iteration_rows(cmp.out[i], &ra), nb = fm_sim_iteration_rows(o, &rb);
    cr_assert_eq(na, 30);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(ra, rb, sizeof(*ra) * (size_t)na), 0, "%s: rows differ", c.policy);
    cr_assert_eq(memcmp(fm_sim_summary_of(cmp.out[i]), fm_sim_summary_of(o),
                        sizeof(fm_sim_summary)), 0, "%s: summary differs", c.policy);
    cr_assert_str_eq(fm_sim_params_json(cmp.out[i]), fm_sim_params_json(o));
    fm_sim_output_free(o);
  }
  fm_sim_comparison_fini(&cmp);
}

Test(fm_trace_cache, a_callers_cache_is_shared_across_comparisons_and_keys) {
  fm_trace_cache *tc = NULL;
  cr_assert_eq(fm_trace_cache_new(&tc), FM_OK);
  fm_sim_config base = base_config();
  base.traces = tc;
  const char *pols[] = {"static", "flexmoe", "eplb"};
  char err[512] = "", k1[128], k2[128];
  uint64_t before = tr_open_count();
  for (int round = 0; round < 2; round++) {
    fm_sim_comparison cmp;
    cr_assert_eq(fm_sim_compare(&base, pols, 3, NULL, &cmp, err, sizeof(err)), FM_OK, "%s",
                 err);
    fm_sim_comparison_fini(&cmp);
  }
  fm_sim_config c = base;
  c.policy = "flexmoe";
  cr_assert_eq(fm_sim_config_key(&c, k1, sizeof(k1), err, sizeof(err)), FM_OK, "%s", err);
  cr_assert_eq(tr_open_count() - before, 1);
  /* the key does not depend on the cache */
  c.traces = NULL;
  cr_assert_eq(fm_sim_config_key(&c, k2, sizeof(k2), err, sizeof(err)), FM_OK, "%s", err);
  cr_assert_str_eq(k1, k2);
  cr_assert_eq(tr_open_count() - before, 2);
  fm_trace_cache_free(tc);
}

Test(fm_trace_cache, a_file_that_fails_to_open_is_not_cached_and_says_why) {
  fm_trace_cache *tc = NULL;
  cr_assert_eq(fm_trace_cache_new(&tc), FM_OK);
  fm_sim_config c = base_config();
  c.trace_path = "/nonexistent/flexmoe-trace.npy";
  c.traces = tc;
  char err[512] = "", err2[512] = "";
  fm_sim_output *o = NULL;
  uint64_t before = tr_open_count();
  cr_assert_eq(fm_sim_compute(&c, &o, err, sizeof(err)), FM_EFAIL);
  cr_assert_null(o);
  cr_assert(strstr(err, "/nonexistent/flexmoe-trace.npy"), "%s", err);
  /* the same message as without a cache, and tried again each time */
  c.traces = NULL;
  cr_assert_eq(fm_sim_compute(&c, &o, err2, sizeof(err2)), FM_EFAIL);
  cr_assert_str_eq(err, err2);
  c.traces = tc;
  cr_assert_eq(fm_sim_compute(&c, &o, err2, sizeof(err2)), FM_EFAIL);
  cr_assert_eq(tr_open_count() - before, 3);
  /* a good file after a bad one: opened once, then found */
  const tr_trace *t1 = NULL, *t2 = NULL;
  tr_error terr;
  cr_assert_eq(fm_trace_cache_open(tc, sample(), &t1, &terr), TR_OK);
  cr_assert_eq(fm_trace_cache_open(tc, sample(), &t2, &terr), TR_OK);
  cr_assert_eq(t1, t2);
  cr_assert_eq(t1->experts, 32);
  cr_assert_eq(tr_open_count() - before, 4);
  fm_trace_cache_free(tc);
  fm_trace_cache_free(NULL);
}

/* A sweep reads its trace once for all its points (keys, the trace loads it
 * stores, and the inline computations), where it opened it once per point
 * and once more for the loads; the stored runs are the points. */
Test(fm_trace_cache, a_sweep_opens_its_trace_once_for_all_its_points) {
  char dir[] = "/tmp/flexmoe-sweep-cache-XXXXXX", db[600], err[512] = "";
  cr_assert_not_null(mkdtemp(dir));
  snprintf(db, sizeof(db), "%s/sweep.db", dir);
  const char *traces[] = {sample()};
  const char *policies[] = {"static", "eplb", "flexmoe"};
  const long sizes[] = {8, 16}, seeds[] = {1, 2};
  fm_sweep_config cfg = {.traces = traces, .ntraces = 1, .policies = policies, .npolicies = 3,
                         .sizes = sizes, .nsizes = 2, .seeds = seeds, .nseeds = 2,
                         .base = base_config(), .jobs = 1, .db = db, .lock_wait_s = 30};
  fm_sweep *sw = NULL;
  uint64_t before = tr_open_count();
  cr_assert_eq(fm_sweep_run(&cfg, &sw, err, sizeof(err)), FM_OK, "%s", err);
  uint64_t opens = tr_open_count() - before;
  const fm_sweep_stats *st = fm_sweep_stats_of(sw);
  cr_assert_eq(st->points, 12);
  cr_assert_eq(st->done, 12, "done %d, failed %d", st->done, st->failed);
  cr_assert_eq(opens, 1, "opened %llu times for %d points", (unsigned long long)opens,
               st->points);
  fm_sweep_free(sw);
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}
