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

#include "helpers.h"

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

/* The one sizing rule of sim, place, sweep, net and clusters (issue 18 item
 * 8): each combination of --gpus, --nodes and --gpus-per-node against hand
 * answers, and the disagreements refused naming the flags. */
Test(fm_config, cluster_size_is_one_rule_for_gpus_nodes_and_gpus_per_node) {
  char em[512];
  int n = -1, k = -1;
  cr_assert_eq(fm_cluster_size("dgx-h100", 0, 0, 0, &n, &k, em, sizeof em), FM_OK);
  cr_assert(n == 1 && k == 8, "the preset's own: %d x %d", n, k);
  cr_assert_eq(fm_cluster_size("dgx-h100", 32, 0, 0, &n, &k, em, sizeof em), FM_OK);
  cr_assert(n == 4 && k == 8, "--gpus 32: %d x %d", n, k);
  cr_assert_eq(fm_cluster_size("dgx-h100", 4, 0, 0, &n, &k, em, sizeof em), FM_OK);
  cr_assert(n == 1 && k == 4, "--gpus 4 is one partial node: %d x %d", n, k);
  cr_assert_eq(fm_cluster_size("dgx-h100", 16, 4, 0, &n, &k, em, sizeof em), FM_OK);
  cr_assert(n == 4 && k == 4, "--gpus 16 --nodes 4: %d x %d", n, k);
  cr_assert_eq(fm_cluster_size("dgx-h100", 0, 3, 2, &n, &k, em, sizeof em), FM_OK);
  cr_assert(n == 3 && k == 2, "--nodes 3 --gpus-per-node 2: %d x %d", n, k);
  cr_assert_eq(fm_cluster_size("dgx-h100", 12, 0, 4, &n, &k, em, sizeof em), FM_OK);
  cr_assert(n == 3 && k == 4, "--gpus 12 --gpus-per-node 4: %d x %d", n, k);
  n = k = -1;
  cr_assert_eq(fm_cluster_size("dgx-h100", 12, 0, 0, &n, &k, em, sizeof em), FM_EUSAGE);
  cr_assert(strstr(em, "--gpus 12 is not a whole number of nodes of 8 GPUs"), "%s", em);
  cr_assert(n == -1 && k == -1, "outputs touched on error");
  cr_assert_eq(fm_cluster_size("dgx-h100", 16, 4, 8, &n, &k, em, sizeof em), FM_EUSAGE);
  cr_assert(strstr(em, "--gpus 16 is not --nodes 4 x --gpus-per-node 8 = 32"), "%s", em);
  cr_assert_eq(fm_cluster_size("dgx-h100", 10, 4, 0, &n, &k, em, sizeof em), FM_EUSAGE);
  cr_assert(strstr(em, "--gpus 10 cannot be split evenly over --nodes 4"), "%s", em);
  cr_assert_eq(fm_cluster_size("dgx-z", 8, 0, 0, &n, &k, em, sizeof em), FM_EUSAGE);
  cr_assert(strstr(em, "dgx-z"), "%s", em);
}
