/*
 * The CPU twins of the kernels: the reference the cpu backend runs and the
 * GPU kernels are checked against (bench/gpu/bench_kernels does the GPU
 * side). Tolerances: float arithmetic in a fixed order, so results are
 * compared with a double-precision reference at 1e-5 relative, and the
 * FFN backward with central finite differences at 2e-3 relative.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kn_kernels.h"

Test(kn_values, deterministic_in_range_and_not_constant) {
  double sum = 0, sum2 = 0;
  for (uint64_t i = 0; i < 10000; i++) {
    float v = kn_value(42, i);
    cr_assert(v >= -1.0f && v < 1.0f);
    cr_assert_eq(v, kn_value(42, i));
    sum += v;
    sum2 += (double)v * v;
  }
  cr_assert_lt(fabs(sum / 10000), 0.05, "mean far from 0");
  cr_assert_gt(sum2 / 10000, 0.25, "variance too small for uniform [-1, 1)");
  cr_assert_neq(kn_value(1, 5), kn_value(2, 5));
  cr_assert_neq(kn_seed(1, 2, 3, 4, 5), kn_seed(1, 2, 3, 5, 4));
}

Test(kn_bf16, rounds_to_nearest_even_and_round_trips) {
  cr_assert_eq(kn_f2bf(1.0f), 0x3f80);
  cr_assert_eq(kn_bf2f(0x3f80), 1.0f);
  /* 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0) */
  cr_assert_eq(kn_f2bf(1.0f + 1.0f / 256), 0x3f80);
  /* 1 + 3 * 2^-8: halfway, rounds up to the even mantissa */
  cr_assert_eq(kn_f2bf(1.0f + 3.0f / 256), 0x3f82);
  cr_assert_eq(kn_f2bf(-2.0f), 0xc000);
  cr_assert(isnan(kn_bf2f(kn_f2bf(NAN))));
  for (int i = 0; i < 1000; i++) {
    float v = kn_value(7, (uint64_t)i) * 100.0f;
    float r = kn_bf16_round(v);
    cr_assert_leq(fabsf(r - v), fabsf(v) / 128.0f, "bf16 keeps 8 significant bits");
    cr_assert_eq(kn_bf16_round(r), r);
  }
}

Test(kn_permute, gathers_rows_scales_by_weight_and_zeroes_missing) {
  float src[4 * 8], dst[3 * 8];
  for (int i = 0; i < 32; i++) src[i] = (float)i;
  int32_t idx[3] = {2, -1, 0};
  float w[3] = {0.5f, 9.0f, 2.0f};
  kn_cpu_permute(dst, src, idx, w, 3, 8);
  for (int c = 0; c < 8; c++) {
    cr_assert_eq(dst[c], 0.5f * src[16 + c]);
    cr_assert_eq(dst[8 + c], 0.0f);
    cr_assert_eq(dst[16 + c], 2.0f * src[c]);
  }
  kn_cpu_permute(dst, src, idx, NULL, 3, 8);
  cr_assert_eq(dst[0], src[16]);
}

Test(kn_combine, sums_each_tokens_slots_with_weights_skipping_dropped) {
  float src[3 * 8], out[2 * 8];
  for (int i = 0; i < 24; i++) src[i] = (float)(i + 1);
  int32_t idx[4] = {1, 2, -1, 0}; /* token 0: rows 1, 2; token 1: dropped, row 0 */
  float w[4] = {0.25f, 0.75f, 5.0f, 1.5f};
  kn_cpu_combine(out, src, idx, w, 2, 2, 8);
  for (int c = 0; c < 8; c++) {
    cr_assert_float_eq(out[c], 0.25f * src[8 + c] + 0.75f * src[16 + c], 1e-6);
    cr_assert_float_eq(out[8 + c], 1.5f * src[c], 1e-6);
  }
}

/* Double-precision FFN: A = relu(X W1), Y = A W2; loss = sum(Y * G). */
static double loss_ref(const float *X, const float *P, const float *G, int n, int d, int f) {
  double L = 0;
  for (int i = 0; i < n; i++) {
    for (int c = 0; c < d; c++) {
      double y = 0;
      for (int j = 0; j < f; j++) {
        double h = 0;
        for (int r = 0; r < d; r++) h += (double)X[i * d + r] * P[r * f + j];
        if (h > 0) y += h * P[d * f + j * d + c];
      }
      L += y * G[i * d + c];
    }
  }
  return L;
}

Test(kn_ffn, forward_matches_a_double_reference) {
  int n = 5, d = 8, f = 16;
  float X[5 * 8], P[2 * 8 * 16], A[5 * 16], Y[5 * 8];
  kn_cpu_fill(X, 40, 1, 1.0f);
  kn_cpu_fill(P, 256, 2, 0.5f);
  kn_cpu_ffn_fwd(X, P, A, Y, n, d, f);
  for (int i = 0; i < n; i++)
    for (int c = 0; c < d; c++) {
      double y = 0;
      for (int j = 0; j < f; j++) {
        double h = 0;
        for (int r = 0; r < d; r++) h += (double)X[i * d + r] * P[r * f + j];
        cr_assert_float_eq(A[i * f + j], h > 0 ? h : 0, 1e-5);
        if (h > 0) y += h * P[d * f + j * d + c];
      }
      cr_assert_float_eq(Y[i * d + c], y, 1e-5 * (1 + fabs(y)));
    }
}

Test(kn_ffn, backward_matches_finite_differences) {
  int n = 4, d = 8, f = 16;
  float X[4 * 8], P[256], A[4 * 16], Y[4 * 8], G[4 * 8], dA[4 * 16], dX[4 * 8], dP[256];
  kn_cpu_fill(X, 32, 3, 1.0f);
  kn_cpu_fill(P, 256, 4, 0.5f);
  kn_cpu_fill(G, 32, 5, 1.0f);
  kn_cpu_ffn_fwd(X, P, A, Y, n, d, f);
  kn_cpu_ffn_bwd(X, P, A, G, dA, dX, dP, n, d, f);
  const float h = 1e-2f;
  for (int q = 0; q < 256; q += 7) {
    float keep = P[q];
    P[q] = keep + h;
    double lp = loss_ref(X, P, G, n, d, f);
    P[q] = keep - h;
    double lm = loss_ref(X, P, G, n, d, f);
    P[q] = keep;
    double num = (lp - lm) / (2 * h);
    cr_assert_float_eq(dP[q], num, 2e-3 * (1 + fabs(num)), "dP[%d] %g vs %g", q, dP[q], num);
  }
  for (int q = 0; q < 32; q += 3) {
    float keep = X[q];
    X[q] = keep + h;
    double lp = loss_ref(X, P, G, n, d, f);
    X[q] = keep - h;
    double lm = loss_ref(X, P, G, n, d, f);
    X[q] = keep;
    double num = (lp - lm) / (2 * h);
    cr_assert_float_eq(dX[q], num, 2e-3 * (1 + fabs(num)), "dX[%d] %g vs %g", q, dX[q], num);
  }
}

Test(kn_ffn, backward_of_no_tokens_is_a_zero_gradient) {
  float P[2 * 8 * 8], G[2 * 8 * 8];
  kn_cpu_fill(P, 128, 1, 1.0f);
  for (int i = 0; i < 128; i++) G[i] = 7.0f;
  kn_cpu_ffn_bwd(NULL, P, NULL, NULL, NULL, NULL, G, 0, 8, 8);
  for (int i = 0; i < 128; i++) cr_assert_eq(G[i], 0.0f);
}

Test(kn_add, adds_elementwise) {
  float a[5] = {1, 2, 3, 4, 5}, b[5] = {10, 20, 30, 40, 50};
  kn_cpu_add(a, b, 4);
  cr_assert_eq(a[0], 11);
  cr_assert_eq(a[3], 44);
  cr_assert_eq(a[4], 5, "only n elements");
}

Test(kn_checksum, is_fnv1a_and_sees_one_bit) {
  cr_assert_eq(kn_checksum("a", 1), 0xaf63dc4c8601ec8cULL);
  unsigned char buf[64] = {0};
  uint64_t h = kn_checksum(buf, 64);
  buf[63] ^= 1;
  cr_assert_neq(kn_checksum(buf, 64), h);
}

Test(kn_errors, every_code_has_a_message) {
  cr_assert_str_eq(kn_strerror(KN_OK), "success");
  cr_assert_str_eq(kn_strerror(KN_ENODEV), "built without CUDA");
  cr_assert_str_eq(kn_strerror(12345), "unknown kernels error");
}
