/* The rules every command shares (run/fm_config.h): one default seed, one
 * percentile, one iteration range refused the same way by sim and replay. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/fm_config.h"
#include "run/fm_error.h"
#include "run/fm_replay.h"
#include "run/fm_sim.h"

static const char *sample(void) {
  static char p[1024];
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert_not_null(root);
  snprintf(p, sizeof(p), "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy", root);
  return p;
}

Test(fm_config, every_command_starts_from_the_one_default_seed) {
  fm_sim_config s = FM_SIM_CONFIG_INIT;
  fm_replay_config r = FM_REPLAY_CONFIG_INIT;
  cr_assert_eq(s.seed, (uint64_t)FM_DEFAULT_SEED);
  cr_assert_eq(r.seed, (uint64_t)FM_DEFAULT_SEED);
  cr_assert_eq(FM_DEFAULT_SEED, 0);
}

/* Hand cases of the nearest-rank rule: rank ceil(q n), 1-based. */
Test(fm_config, percentile_is_nearest_rank) {
  const double v[] = {1, 2, 3, 4, 5};
  cr_assert_eq(fm_percentile(v, 5, 0.5), 3);  /* ceil(2.5) = 3 */
  cr_assert_eq(fm_percentile(v, 5, 0.9), 5);  /* ceil(4.5) = 5, not interpolated 4.6 */
  cr_assert_eq(fm_percentile(v, 5, 0.2), 1);  /* ceil(1.0) = 1 exactly */
  cr_assert_eq(fm_percentile(v, 4, 0.5), 2);  /* ceil(2) = 2: the lower middle */
  const double w[] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
  cr_assert_eq(fm_percentile(w, 12, 0.9), 110); /* ceil(10.8) = 11; (n-1)q gives 100 */
  cr_assert_eq(fm_percentile(w, 1, 0.95), 10);
  cr_assert(isnan(fm_percentile(w, 0, 0.5)));
  double u[] = {5, 1, 4, 2, 3};
  cr_assert_eq(fm_percentile_of(u, 5, 0.9), 5);
  cr_assert_eq(u[0], 1); /* sorted in place */
}

/* Against an independent count: the result is the smallest value with at
 * least a share q of the values at or below it. */
Test(fm_config, percentile_is_the_smallest_value_covering_q) {
  srand(7);
  for (int trial = 0; trial < 200; trial++) {
    int n = 1 + rand() % 40;
    double v[40];
    for (int i = 0; i < n; i++) v[i] = rand() % 17;
    double q = (1 + rand() % 100) / 100.0;
    double p = fm_percentile_of(v, n, q);
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
      int at_or_below = 0;
      for (int j = 0; j < n; j++) at_or_below += v[j] <= v[i];
      if (at_or_below >= q * n - 1e-9 && v[i] < best) best = v[i];
    }
    cr_assert_eq(p, best, "n=%d q=%g: %g vs %g", n, q, p, best);
  }
}

Test(fm_config, iteration_range_resolves_and_refuses) {
  int64_t a = 7, b = 7;
  char em[256];
  cr_assert_eq(fm_iteration_range(0, -1, 200, &a, &b, em, sizeof em), FM_OK);
  cr_assert(a == 0 && b == 200);
  cr_assert_eq(fm_iteration_range(100, 150, 200, &a, &b, em, sizeof em), FM_OK);
  cr_assert(a == 100 && b == 150);
  a = b = 7;
  cr_assert_eq(fm_iteration_range(0, 500, 200, &a, &b, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--iterations: 0:500 is not inside the trace's 0:200");
  cr_assert(a == 7 && b == 7, "untouched on error");
  cr_assert_eq(fm_iteration_range(200, -1, 200, &a, &b, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--iterations: 200:200 is not inside the trace's 0:200");
  cr_assert_eq(fm_iteration_range(50, 50, 200, &a, &b, em, sizeof em), FM_EUSAGE);
  cr_assert_eq(fm_iteration_range(-1, 10, 200, &a, &b, em, sizeof em), FM_EUSAGE);
}

/* The simulator and the runtime replay refuse the same out-of-range
 * iterations with the same message (the replay used to clamp them). */
Test(fm_config, sim_and_replay_refuse_out_of_range_iterations_alike) {
  char es[256] = "", er[256] = "";
  fm_sim_config s = FM_SIM_CONFIG_INIT;
  s.trace_path = sample();
  s.it_begin = 150;
  s.it_end = 250;
  fm_sim_output *so = NULL;
  cr_assert_eq(fm_sim_compute(&s, &so, es, sizeof es), FM_EUSAGE);
  cr_assert_null(so);
  fm_replay_config r = FM_REPLAY_CONFIG_INIT;
  r.trace_path = sample();
  r.ranks = 2;
  r.d_model = 64;
  r.d_ff = 128;
  r.it_begin = 150;
  r.it_end = 250;
  r.quiet = 1;
  fm_replay_output *ro = NULL;
  cr_assert_eq(fm_replay_compute(&r, &ro, er, sizeof er), FM_EUSAGE);
  cr_assert_null(ro);
  cr_assert_str_eq(es, "--iterations: 150:250 is not inside the trace's 0:200");
  cr_assert_str_eq(er, es);
}
