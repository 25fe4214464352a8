/*
 * Parity of the simulator and the runtime on the cpu backend (issue 16):
 * for flexmoe with background moves (its default) and blocking
 * (background=0), one validation stores a predicted and a measured run
 * whose plans are the same rows, byte for byte, in the store's one plans
 * encoding (st_plan_moves_json); and a replay checked after every
 * iteration keeps every token, matches the single-device reference and
 * keeps every replica's parameter and optimizer checksums while background
 * moves are in flight (their replicas checked as they land).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/fm_error.h"
#include "run/fm_profile.h"
#include "run/fm_replay.h"
#include "run/fm_validate.h"

#include "helpers.h"

static char dir[64], prof_path[128], db_path[128];

/* A profile as `flexmoe calibrate --out` writes it, plausible numbers for
 * 4 cpu ranks (only the plans matter here, and both sides read it). */
static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/fm-parity-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(prof_path, sizeof prof_path, "%s/cpu-4.json", dir);
  snprintf(db_path, sizeof db_path, "%s/v.db", dir);
  write_test_profile(prof_path, "cpu-4-parity", 4, 4);
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

static fm_replay_config tiny(void) {
  fm_replay_config r = FM_REPLAY_CONFIG_INIT;
  r.backend = "cpu";
  r.trace_path = sample();
  r.ranks = 4;
  r.d_model = 16;
  r.d_ff = 32;
  r.tokens_per_gpu = 64;
  r.slots = 12; /* 4 x 12 = 48 for 32 experts: room to replicate */
  r.it_begin = 0;
  r.it_end = 12;
  r.quiet = 1;
  return r;
}

/* Every plan row of run `id` as one text: iteration|layer|nmoves|bytes|moves_json per line. */
static char *plans_of(sqlite3 *db, int64_t id, int *rows, int *later) {
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db,
                                  "SELECT iteration, layer, nmoves, bytes, moves_json FROM plans "
                                  "WHERE run_id = ?1 ORDER BY iteration, layer",
                                  -1, &st, NULL),
               SQLITE_OK);
  sqlite3_bind_int64(st, 1, id);
  size_t cap = 1 << 16, off = 0;
  char *s = malloc(cap);
  cr_assert_not_null(s);
  s[0] = 0;
  *rows = *later = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *js = (const char *)sqlite3_column_text(st, 4);
    cr_assert_not_null(js, "run %lld stored a plan without its moves", (long long)id);
    size_t need = strlen(js) + 80;
    if (off + need >= cap) {
      cap = 2 * (off + need);
      cr_assert_not_null(s = realloc(s, cap));
    }
    off += (size_t)snprintf(s + off, cap - off, "%lld|%d|%d|%lld|%s\n",
                            (long long)sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
                            sqlite3_column_int(st, 2), (long long)sqlite3_column_int64(st, 3), js);
    (*rows)++;
    *later += sqlite3_column_int64(st, 0) > 0;
  }
  sqlite3_finalize(st);
  return s;
}

/* And with the temporaries decision charged (host=100): its gate's
 * choices (flexmoe's own state) change the plans the same way on both
 * sides. */
Test(parity, flexmoe_background_and_blocking_store_the_same_plans_predicted_and_measured,
     .init = setup, .fini = teardown, .timeout = 120) {
  const char *const pols[] = {"flexmoe", "flexmoe:background=0", "flexmoe:host=100"};
  enum { NP = sizeof pols / sizeof pols[0] };
  fm_validate_config c = FM_VALIDATE_CONFIG_INIT;
  c.replay = tiny();
  c.policies = pols;
  c.npolicies = NP;
  c.profile_path = prof_path;
  c.db_path = db_path;
  fm_validate_result res;
  char em[1024] = "";
  cr_assert_eq(fm_validate(&c, &res, em, sizeof em), FM_OK, "%s", em);
  cr_assert_eq(res.nruns, NP);
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  for (int p = 0; p < NP; p++) {
    const fm_validate_run *r = &res.runs[p];
    cr_assert_gt(r->measured_id, 0);
    cr_assert_gt(r->predicted_id, 0);
    int nm, np, lm, lp;
    char *m = plans_of(db, r->measured_id, &nm, &lm);
    char *q = plans_of(db, r->predicted_id, &np, &lp);
    cr_assert_gt(lm, 0, "%s made no plan after the first iteration: the test needs moves",
                 r->policy);
    cr_expect_eq(nm, np, "%s: %d plans measured, %d predicted", r->policy, nm, np);
    cr_expect_str_eq(m, q, "%s: the plans differ", r->policy);
    free(m);
    free(q);
  }
  cr_expect(strstr(res.runs[0].policy, "background=1"), "%s", res.runs[0].policy);
  cr_expect(strstr(res.runs[1].policy, "background=0"), "%s", res.runs[1].policy);
  cr_expect(strstr(res.runs[2].policy, "host=100,host_gate=1"), "%s", res.runs[2].policy);
  /* background moves land beside the iteration: the blocking one charges
   * them in full as a phase of their own */
  cr_expect_gt(res.runs[1].predicted[FM_V_MIGRATION], 0);
  sqlite3_close(db);
  fm_validate_result_fini(&res);
}

Test(parity, every_background_move_keeps_checksums_tokens_and_the_reference_results,
     .init = setup, .fini = teardown, .timeout = 120) {
  const char *const pols[] = {"flexmoe", "flexmoe:background=0", "eplb:period=2"};
  for (int p = 0; p < 3; p++) {
    fm_replay_config r = tiny();
    r.policy = pols[p];
    r.profile_path = prof_path;
    r.check = 2;
    fm_replay_output *o = NULL;
    char em[1024] = "";
    cr_assert_eq(fm_replay_compute(&r, &o, em, sizeof em), FM_OK, "%s", em);
    const rt_check *c = &o->check;
    cr_assert_eq(o->checked, 12);
    cr_assert_gt(o->nmoves, 0, "%s made no move: the test needs some", pols[p]);
    if (p != 1)
      cr_expect_gt(c->moved_checked, 0, "%s: no replica checked as it landed", pols[p]);
    else
      cr_expect_eq(c->moved_checked, 0, "blocking moves have nothing in flight");
    cr_expect_eq(c->tokens_missing, 0, "%s", pols[p]);
    cr_expect_gt(c->tokens_checked, 0);
    cr_expect_eq(c->checksum_mismatches, 0, "%s", pols[p]);
    /* cpu: outputs exactly equal, gradients sums in another order (rt_exec.h) */
    cr_expect_leq(c->out_err, 1e-5, "%s: outputs %g", pols[p], c->out_err);
    cr_expect_leq(c->din_err, 1e-5, "%s: input gradients %g", pols[p], c->din_err);
    cr_expect_leq(c->grad_err, 1e-5, "%s: expert gradients %g", pols[p], c->grad_err);
    fm_replay_output_free(o);
  }
}
