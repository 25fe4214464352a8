/* Load predictors: last value, EWMA, sliding-window mean. */
#include <criterion/criterion.h>

#include "placement/pl_error.h"
#include "placement/pl_predict.h"

Test(predict, last_returns_the_latest_observation) {
  pl_predictor p;
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_LAST, 2, 0, 0), PL_OK);
  cr_assert_float_eq(pl_predictor_estimate(&p)[0], 0.0, 1e-12);
  int64_t a[2] = {10, 20}, b[2] = {3, 4};
  pl_predictor_observe(&p, a);
  pl_predictor_observe(&p, b);
  cr_assert_float_eq(pl_predictor_estimate(&p)[1], 4.0, 1e-12);
  pl_predictor_fini(&p);
}

Test(predict, ewma_starts_at_the_first_value_then_weights_by_alpha) {
  pl_predictor p;
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_EWMA, 1, 0.25, 0), PL_OK);
  int64_t x[1] = {100};
  pl_predictor_observe(&p, x);
  cr_assert_float_eq(pl_predictor_estimate(&p)[0], 100.0, 1e-12);
  x[0] = 200;
  pl_predictor_observe(&p, x);
  cr_assert_float_eq(pl_predictor_estimate(&p)[0], 125.0, 1e-12);
  pl_predictor_fini(&p);
}

Test(predict, window_averages_the_last_w_observations_exactly) {
  pl_predictor p;
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_WINDOW, 1, 0, 3), PL_OK);
  int64_t seq[] = {3, 6, 9, 30, 0};
  double want[] = {3, 4.5, 6, 15, 13};
  for (int i = 0; i < 5; i++) {
    pl_predictor_observe(&p, &seq[i]);
    cr_assert_float_eq(pl_predictor_estimate(&p)[0], want[i], 1e-12, "step %d", i);
  }
  pl_predictor_fini(&p);
}

Test(predict, bad_parameters_are_refused) {
  pl_predictor p;
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_EWMA, 4, 0.0, 0), PL_EINVAL);
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_EWMA, 4, 1.5, 0), PL_EINVAL);
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_WINDOW, 4, 0, 0), PL_EINVAL);
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_LAST, 0, 0, 0), PL_EINVAL);
}

/* auto follows the candidate with the lowest recent error: on a steady ramp
 * (+10 per iteration) the damped trend is closest, so after a few
 * observations the estimate is above the last value; on a level that jumps
 * once and stays, the last value wins and the estimate equals it. */
Test(predict, auto_follows_the_trend_on_a_ramp_and_the_last_value_on_steps) {
  pl_predictor p;
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_AUTO, 1, 0.5, 0), PL_OK);
  for (int t = 0; t < 10; t++) {
    int64_t x[1] = {100 + 10 * t};
    pl_predictor_observe(&p, x);
  }
  /* trend: 190 + (190 - 180) / 2 */
  cr_assert_float_eq(pl_predictor_estimate(&p)[0], 195.0, 1e-9);
  pl_predictor_fini(&p);
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_AUTO, 2, 0.5, 0), PL_OK);
  for (int t = 0; t < 10; t++) {
    int64_t x[2] = {t < 3 ? 100 : 300, t < 3 ? 300 : 100};
    pl_predictor_observe(&p, x);
  }
  cr_assert_float_eq(pl_predictor_estimate(&p)[0], 300.0, 1e-9);
  cr_assert_float_eq(pl_predictor_estimate(&p)[1], 100.0, 1e-9);
  pl_predictor_fini(&p);
  cr_assert_eq(pl_predictor_init(&p, PL_PRED_AUTO, 1, 0, 0), PL_EINVAL);
}
