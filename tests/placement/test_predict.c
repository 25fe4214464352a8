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
