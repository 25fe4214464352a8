/*
 * kn_cpu.c - CPU twins of the kernels (see kn_kernels.h): the reference the
 * cpu backend runs and the tests compare the GPU against. Plain loops in a
 * fixed order; a row's result depends only on that row and the weights.
 */
#include "kernels/kn_kernels.h"

#include <string.h>

const char *kn_strerror(int code) {
  switch (code) {
#define KN_ERR_STR(name, value, msg) \
  case value:                        \
    return msg;
    KN_ERRNO_MAP(KN_ERR_STR)
#undef KN_ERR_STR
  default:
    return "unknown kernels error";
  }
}

uint16_t kn_f2bf(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float kn_bf2f(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

void kn_cpu_fill(float *dst, size_t n, uint64_t seed, float scale) {
  for (size_t i = 0; i < n; i++) dst[i] = scale * kn_value(seed, i);
}

void kn_cpu_permute(float *dst, const float *src, const int32_t *idx,
                    const float *w, int64_t rows, int d) {
  for (int64_t i = 0; i < rows; i++) {
    float *o = dst + i * d;
    if (idx[i] < 0) {
      memset(o, 0, sizeof(float) * (size_t)d);
      continue;
    }
    const float *x = src + (int64_t)idx[i] * d;
    float s = w ? w[i] : 1.0f;
    for (int c = 0; c < d; c++) o[c] = s * x[c];
  }
}

void kn_cpu_combine(float *out, const float *src, const int32_t *idx,
                    const float *w, int64_t tokens, int k, int d) {
  for (int64_t t = 0; t < tokens; t++) {
    float *o = out + t * d;
    for (int c = 0; c < d; c++) o[c] = 0.0f;
    for (int j = 0; j < k; j++) {
      int32_t p = idx[t * k + j];
      if (p < 0) continue;
      float s = w ? w[t * k + j] : 1.0f;
      const float *x = src + (int64_t)p * d;
      for (int c = 0; c < d; c++) o[c] += s * x[c];
    }
  }
}

/* C[m,n] = A[m,k] B[k,n], row-major, i-k-j order. */
static void mm(const float *A, const float *B, float *C, int64_t m, int n, int k) {
  for (int64_t i = 0; i < m; i++) {
    float *c = C + i * n;
    for (int j = 0; j < n; j++) c[j] = 0.0f;
    for (int p = 0; p < k; p++) {
      float a = A[i * k + p];
      const float *b = B + (int64_t)p * n;
      for (int j = 0; j < n; j++) c[j] += a * b[j];
    }
  }
}

void kn_cpu_ffn_fwd(const float *X, const float *P, float *A, float *Y,
                    int64_t n, int d, int f) {
  const float *W1 = P, *W2 = P + (size_t)d * f;
  mm(X, W1, A, n, f, d);
  for (int64_t i = 0; i < n * f; i++)
    if (A[i] < 0.0f) A[i] = 0.0f;
  mm(A, W2, Y, n, d, f);
}

void kn_cpu_ffn_bwd(const float *X, const float *P, const float *A,
                    const float *dY, float *dA, float *dX, float *G, int64_t n,
                    int d, int f) {
  const float *W1 = P, *W2 = P + (size_t)d * f;
  float *dW1 = G, *dW2 = G + (size_t)d * f;
  /* dA[i, j] = sum_c dY[i, c] W2[j, c]; masked by A > 0 */
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < f; j++) {
      float s = 0.0f;
      if (A[i * f + j] > 0.0f)
        for (int c = 0; c < d; c++) s += dY[i * d + c] * W2[(size_t)j * d + c];
      dA[i * f + j] = s;
    }
  /* dW2[j, c] = sum_i A[i, j] dY[i, c];  dW1[r, j] = sum_i X[i, r] dA[i, j] */
  memset(G, 0, sizeof(float) * 2 * (size_t)d * f);
  for (int64_t i = 0; i < n; i++) {
    for (int j = 0; j < f; j++) {
      float a = A[i * f + j];
      if (a == 0.0f) continue;
      for (int c = 0; c < d; c++) dW2[(size_t)j * d + c] += a * dY[i * d + c];
    }
    for (int r = 0; r < d; r++) {
      float x = X[i * d + r];
      for (int j = 0; j < f; j++) dW1[(size_t)r * f + j] += x * dA[i * f + j];
    }
  }
  /* dX[i, r] = sum_j dA[i, j] W1[r, j] */
  for (int64_t i = 0; i < n; i++)
    for (int r = 0; r < d; r++) {
      float s = 0.0f;
      for (int j = 0; j < f; j++) s += dA[i * f + j] * W1[(size_t)r * f + j];
      dX[i * d + r] = s;
    }
}

void kn_cpu_add(float *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

uint64_t kn_checksum(const void *p, size_t bytes) {
  const unsigned char *b = p;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < bytes; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
