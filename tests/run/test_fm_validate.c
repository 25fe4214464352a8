/*
 * fm_validate on the cpu backend, called directly: the result's structure
 * (one run per policy, per-iteration times whose means are the run's, the
 * errors and statistics as fm_validate.h defines them, stored ids), and the
 * profile reaching the simulator in memory: nothing is written beside it,
 * and the simulator's non-MoE time is the replay's (the runtime's local
 * token movement of P.runtime.json).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "run/fm_config.h"
#include "run/fm_error.h"
#include "run/fm_profile.h"
#include "run/fm_validate.h"

#include "helpers.h"

static char dir[64], prof_path[128], db_dir[64], db_path[128];

/* A calibrated profile written as `flexmoe calibrate --out` does, with
 * made-up but plausible numbers (the cpu backend is measured anyway; only
 * the prediction uses these). */
static void write_profile(void) {
  snprintf(dir, sizeof dir, "/tmp/fm-validate-prof-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(prof_path, sizeof prof_path, "%s/cpu-2.json", dir);
  write_test_profile(prof_path, "cpu-2-test", 2, 3);
  snprintf(db_dir, sizeof db_dir, "/tmp/fm-validate-db-XXXXXX");
  cr_assert_not_null(mkdtemp(db_dir));
  snprintf(db_path, sizeof db_path, "%s/v.db", db_dir);
}

static void remove_dir(const char *d) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  cr_assert_eq(system(cmd), 0);
}

static void cleanup(void) {
  remove_dir(dir);
  remove_dir(db_dir);
}

static fm_validate_config tiny(const char *const *policies, int n) {
  fm_validate_config c = FM_VALIDATE_CONFIG_INIT;
  c.replay.backend = "cpu";
  c.replay.trace_path = sample();
  c.replay.ranks = 2;
  c.replay.d_model = 16;
  c.replay.d_ff = 32;
  c.replay.tokens_per_gpu = 64;
  c.replay.it_begin = 0;
  c.replay.it_end = 3;
  c.replay.quiet = 1;
  c.policies = policies;
  c.npolicies = n;
  c.profile_path = prof_path;
  return c;
}

/* fm_validate.h's error: two phases both under a microsecond agree */
static double rel(double p, double m) {
  if (fabs(p) < 1e-3 && fabs(m) < 1e-3) return 0.0;
  return m != 0 ? (p - m) / m : NAN;
}

static double mean(const double *v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += v[i];
  return s / (double)n;
}

Test(fm_validate, cpu_run_gives_per_phase_and_per_iteration_results_with_the_profile_in_memory,
     .init = write_profile, .fini = cleanup, .timeout = 60) {
  const char *const pols[] = {"static", "flexmoe:background=0"};
  fm_validate_config c = tiny(pols, 2);
  c.db_path = db_path;
  /* every file created, written or renamed into the profile's directory */
  int fd = inotify_init1(IN_NONBLOCK);
  cr_assert_geq(fd, 0);
  cr_assert_geq(inotify_add_watch(fd, dir, IN_CREATE | IN_MODIFY | IN_MOVED_TO), 0);
  fm_validate_result res;
  char em[1024] = "";
  cr_assert_eq(fm_validate(&c, &res, em, sizeof em), FM_OK, "%s", em);
  char ev[4096];
  ssize_t got = read(fd, ev, sizeof ev);
  close(fd);
  cr_expect_leq(got, 0, "fm_validate wrote into the profile's directory (first: %s)",
                got > 0 ? ((struct inotify_event *)ev)->name : "");

  cr_assert_eq(res.owner, 1);
  cr_assert_eq(res.nruns, 2);
  cr_expect_str_eq(res.predictor, "simulator (analytic)");
  cr_expect_str_eq(res.profile, prof_path);
  cr_expect_str_eq(res.backend, "cpu");
  cr_expect_str_eq(res.runs[0].policy, "static");
  cr_expect_eq(strncmp(res.runs[1].policy, "flexmoe:", 8), 0, "%s", res.runs[1].policy);
  double abs_time[2];
  for (int p = 0; p < 2; p++) {
    const fm_validate_run *r = &res.runs[p];
    cr_assert_eq(r->iterations, 3);
    cr_assert(r->predicted_ms && r->measured_ms);
    /* the per-iteration times are the rows behind the means */
    cr_expect_float_eq(mean(r->measured_ms, 3), r->measured[FM_V_TIME],
                       1e-9 * r->measured[FM_V_TIME], "%s", r->policy);
    cr_expect_float_eq(mean(r->predicted_ms, 3), r->predicted[FM_V_TIME],
                       1e-9 * r->predicted[FM_V_TIME], "%s", r->policy);
    for (int q = 0; q < FM_V_N; q++) {
      cr_expect(r->predicted[q] >= 0 && r->measured[q] >= 0, "%s %s", r->policy,
                fm_validate_phase_names[q]);
      double e = rel(r->predicted[q], r->measured[q]);
      cr_expect(isnan(e) ? isnan(r->error[q]) : fabs(r->error[q] - e) <= 1e-12, "%s %s",
                r->policy, fm_validate_phase_names[q]);
    }
    cr_expect_gt(r->measured[FM_V_COMPUTE], 0);
    cr_expect_gt(r->predicted[FM_V_COMPUTE], 0);
    /* in memory: the simulator planned with the replay's non-MoE time
     * (4 (3 + S 0.02) us with S = 64 x top-2 slots), not the file's 0 */
    double want = 4.0 * (3.0 + 128 * 0.02);
    cr_expect_float_eq(r->measured_nonmoe_us, want, 1e-9, "%g", r->measured_nonmoe_us);
    cr_expect_float_eq(r->predicted_nonmoe_us, want, 1e-5 * want, "%g", r->predicted_nonmoe_us);
    cr_expect_gt(r->measured_id, 0);
    cr_expect_gt(r->predicted_id, 0);
    abs_time[p] = fabs(r->error[FM_V_TIME]);
  }
  cr_expect_neq(res.runs[0].measured_id, res.runs[1].measured_id);
  /* nearest-rank median of two values is the smaller */
  cr_expect_eq(res.median_abs_error, fmin(abs_time[0], abs_time[1]));
  int agrees = (res.runs[0].measured[FM_V_TIME] < res.runs[1].measured[FM_V_TIME]) ==
               (res.runs[0].predicted[FM_V_TIME] < res.runs[1].predicted[FM_V_TIME]);
  cr_expect_eq(res.ranking_agrees, agrees);
  cr_expect(res.p95_abs_error >= 0);
  fm_validate_result_fini(&res);
  fm_validate_result_fini(&res); /* empty after fini: a second call is harmless */
}

Test(fm_validate, background_policies_are_validated_at_their_defaults, .init = write_profile,
     .fini = cleanup, .timeout = 60) {
  /* the runtime overlaps background moves as the simulator does: a
   * background policy is compared like any other */
  const char *const pols[] = {"eplb:period=1", "flexmoe"};
  fm_validate_config c = tiny(pols, 2);
  fm_validate_result res;
  char em[1024] = "";
  cr_assert_eq(fm_validate(&c, &res, em, sizeof em), FM_OK, "%s", em);
  cr_assert_eq(res.nruns, 2);
  for (int p = 0; p < 2; p++) {
    cr_expect(strstr(res.runs[p].policy, "background=1"), "%s", res.runs[p].policy);
    cr_expect_gt(res.runs[p].measured[FM_V_TIME], 0);
    cr_expect_gt(res.runs[p].predicted[FM_V_TIME], 0);
  }
  fm_validate_result_fini(&res);
}

/* Bad configurations fail before anything is measured or stored: in well
 * under the time of one replay, with one sentence naming the flag, and
 * with no database file left behind. */
static void refused_quickly(fm_validate_config *c, int code, const char *what) {
  fm_validate_result res;
  char em[1024] = "";
  cr_assert_eq(fm_validate(c, &res, em, sizeof em), code, "%s", em);
  cr_expect(strstr(em, what), "'%s' not in: %s", what, em);
  cr_expect_eq(res.nruns, 0);
  cr_expect_null(res.runs);
}

Test(fm_validate, ranks_beyond_the_trace_are_refused_before_measuring, .init = write_profile,
     .fini = cleanup) {
  const char *const pols[] = {"static"};
  fm_validate_config c = tiny(pols, 1);
  c.replay.ranks = 9; /* the sample has 8 */
  refused_quickly(&c, FM_EUSAGE, "--ranks 9: ");
  cr_expect_eq(access(db_path, F_OK), -1);
}

Test(fm_validate, slots_below_the_experts_are_refused_before_measuring, .init = write_profile,
     .fini = cleanup) {
  const char *const pols[] = {"static", "flexmoe"};
  fm_validate_config c = tiny(pols, 2);
  c.replay.slots = 3; /* 2 ranks x 3 < 32 experts */
  c.replay.it_end = 200; /* a measurement would take long: the test's timeout catches it */
  c.db_path = db_path;
  refused_quickly(&c, FM_EUSAGE, "--slots 3");
  /* opened before the check, but no run in it */
  char cmd[300];
  snprintf(cmd, sizeof cmd, "test \"$(sqlite3 '%s' 'select count(*) from runs' 2>/dev/null || echo 0)\" = 0",
           db_path);
  cr_expect_eq(system(cmd), 0, "a run was stored");
}

Test(fm_validate, a_database_that_cannot_be_written_fails_first_naming_it, .init = write_profile,
     .fini = cleanup) {
  const char *const pols[] = {"static"};
  fm_validate_config c = tiny(pols, 1);
  c.db_path = "/nonexistent-dir/v.db";
  c.replay.it_end = 200;
  refused_quickly(&c, FM_EFAIL, "--db /nonexistent-dir/v.db: cannot open it for writing");
}

Test(fm_validate, cost_engine_predicts_with_the_placement_cost_model, .init = write_profile,
     .fini = cleanup, .timeout = 60) {
  const char *const pols[] = {"static"};
  fm_validate_config c = tiny(pols, 1);
  c.engine = "cost";
  fm_validate_result res;
  char em[1024] = "";
  cr_assert_eq(fm_validate(&c, &res, em, sizeof em), FM_OK, "%s", em);
  cr_expect_str_eq(res.predictor, "placement cost model");
  cr_assert_eq(res.nruns, 1);
  cr_expect_eq(res.runs[0].iterations, 3);
  cr_expect_gt(res.runs[0].predicted[FM_V_TIME], 0);
  cr_expect(isnan(res.runs[0].predicted_nonmoe_us));
  cr_expect_eq(res.runs[0].predicted_id, 0);
  fm_validate_result_fini(&res);
}
