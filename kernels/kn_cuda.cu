/*
 * kn_cuda.cu - CUDA kernels and cuBLAS calls behind the C enqueue functions
 * of kn_kernels.h. Every function only enqueues work on the given stream
 * (no synchronisation); every CUDA/cuBLAS call is checked by KN_CHECK /
 * KN_BLAS, which record file, line and message (kn_cuda_last_error), and
 * every launch is followed by cudaGetLastError.
 *
 * Memory-bound kernels move 16 bytes (8 bf16) per thread access, so rows
 * must be multiples of 8 elements; they use grid-stride loops over
 * (row, vector) pairs with a grid sized to the device.
 */
#include "kernels/kn_kernels.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>

static thread_local char kn_errbuf[512];

extern "C" const char *kn_cuda_last_error(void) { return kn_errbuf; }

extern "C" int kn_cuda_record(int code, const char *file, int line,
                              const char *what, const char *msg) {
  snprintf(kn_errbuf, sizeof kn_errbuf, "%s:%d: %s: %s", file, line, what, msg);
  return code;
}

#define KN_CHECK(call)                                                        \
  do {                                                                        \
    cudaError_t e_ = (call);                                                  \
    if (e_ != cudaSuccess)                                                    \
      return kn_cuda_record(KN_ECUDA, __FILE__, __LINE__, #call,              \
                            cudaGetErrorString(e_));                          \
  } while (0)
#define KN_LAUNCHED() KN_CHECK(cudaGetLastError())
#define KN_BLAS(call)                                                         \
  do {                                                                        \
    cublasStatus_t s_ = (call);                                               \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                          \
      return kn_cuda_record(KN_ECUBLAS, __FILE__, __LINE__, #call,            \
                            cublasGetStatusString(s_));                       \
  } while (0)

static int kn_grid(size_t work, int threads) {
  size_t b = (work + threads - 1) / threads;
  if (b > 132 * 16) b = 132 * 16;
  if (b < 1) b = 1;
  return (int)b;
}

union kn_vec {
  uint4 u;
  __nv_bfloat162 h[4];
};

__global__ void k_fill(__nv_bfloat16 *dst, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(scale * kn_value(seed, i));
}

__global__ void k_fill_bytes(uint32_t *dst, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dst[i] = (uint32_t)kn_mix64(seed ^ kn_mix64(i));
}

__global__ void k_permute(uint4 *dst, const uint4 *src, const int32_t *idx,
                          const float *w, int64_t rows, int vpr) {
  int64_t total = rows * vpr;
  for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < total;
       v += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = v / vpr;
    int c = (int)(v - r * vpr);
    int32_t s = idx[r];
    kn_vec x;
    if (s < 0) {
      x.u = make_uint4(0, 0, 0, 0);
    } else {
      x.u = src[(int64_t)s * vpr + c];
      if (w) {
        float a = w[r];
#pragma unroll
        for (int q = 0; q < 4; q++) {
          float2 f = __bfloat1622float2(x.h[q]);
          x.h[q] = __floats2bfloat162_rn(a * f.x, a * f.y);
        }
      }
    }
    dst[v] = x.u;
  }
}

__global__ void k_combine(uint4 *out, const uint4 *src, const int32_t *idx,
                          const float *w, int64_t tokens, int k, int vpr) {
  int64_t total = tokens * vpr;
  for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < total;
       v += (int64_t)gridDim.x * blockDim.x) {
    int64_t t = v / vpr;
    int c = (int)(v - t * vpr);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < k; j++) {
      int32_t p = idx[t * k + j];
      if (p < 0) continue;
      float a = w ? w[t * k + j] : 1.0f;
      kn_vec x;
      x.u = src[(int64_t)p * vpr + c];
#pragma unroll
      for (int q = 0; q < 4; q++) {
        float2 f = __bfloat1622float2(x.h[q]);
        acc[2 * q] += a * f.x;
        acc[2 * q + 1] += a * f.y;
      }
    }
    kn_vec o;
#pragma unroll
    for (int q = 0; q < 4; q++) o.h[q] = __floats2bfloat162_rn(acc[2 * q], acc[2 * q + 1]);
    out[v] = o.u;
  }
}

__global__ void k_relu(uint4 *a, int64_t nv) {
  const __nv_bfloat162 z = __floats2bfloat162_rn(0.0f, 0.0f);
  for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < nv;
       v += (int64_t)gridDim.x * blockDim.x) {
    kn_vec x;
    x.u = a[v];
#pragma unroll
    for (int q = 0; q < 4; q++) x.h[q] = __hmax2(x.h[q], z);
    a[v] = x.u;
  }
}

/* dA *= (A > 0) */
__global__ void k_mask(uint4 *dA, const uint4 *A, int64_t nv) {
  for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < nv;
       v += (int64_t)gridDim.x * blockDim.x) {
    kn_vec g, a;
    g.u = dA[v];
    a.u = A[v];
#pragma unroll
    for (int q = 0; q < 4; q++) {
      float2 fa = __bfloat1622float2(a.h[q]);
      float2 fg = __bfloat1622float2(g.h[q]);
      g.h[q] = __floats2bfloat162_rn(fa.x > 0.0f ? fg.x : 0.0f,
                                     fa.y > 0.0f ? fg.y : 0.0f);
    }
    dA[v] = g.u;
  }
}

__global__ void k_add(uint4 *dst, const uint4 *src, int64_t nv) {
  for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < nv;
       v += (int64_t)gridDim.x * blockDim.x) {
    kn_vec a, b;
    a.u = dst[v];
    b.u = src[v];
#pragma unroll
    for (int q = 0; q < 4; q++) {
      float2 fa = __bfloat1622float2(a.h[q]), fb = __bfloat1622float2(b.h[q]);
      a.h[q] = __floats2bfloat162_rn(fa.x + fb.x, fa.y + fb.y);
    }
    dst[v] = a.u;
  }
}

__global__ void k_add_tail(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16_rn(__bfloat162float(dst[i]) + __bfloat162float(src[i]));
}

__global__ void k_empty(void) {}

__global__ void k_spin(uint64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

#define ST(s) ((cudaStream_t)(s))

extern "C" int kn_cuda_blas_create(kn_blas *out, kn_stream stream) {
  cublasHandle_t h;
  KN_BLAS(cublasCreate(&h));
  cublasStatus_t st = cublasSetStream(h, ST(stream));
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(h);
    KN_BLAS(st);
  }
  *out = h;
  return 0;
}

extern "C" void kn_cuda_blas_destroy(kn_blas h) {
  if (h) cublasDestroy((cublasHandle_t)h);
}

extern "C" int kn_cuda_fill(kn_stream s, uint16_t *dst, size_t n, uint64_t seed,
                            float scale) {
  if (n == 0) return 0;
  k_fill<<<kn_grid(n, 256), 256, 0, ST(s)>>>((__nv_bfloat16 *)dst, n, seed, scale);
  KN_LAUNCHED();
  return 0;
}

extern "C" int kn_cuda_fill_bytes(kn_stream s, void *dst, size_t bytes, uint64_t seed) {
  if (bytes % 4) return KN_EINVAL;
  if (bytes == 0) return 0;
  k_fill_bytes<<<kn_grid(bytes / 4, 256), 256, 0, ST(s)>>>((uint32_t *)dst, bytes / 4, seed);
  KN_LAUNCHED();
  return 0;
}

extern "C" int kn_cuda_permute(kn_stream s, uint16_t *dst, const uint16_t *src,
                               const int32_t *idx, const float *w, int64_t rows,
                               int d) {
  if (d % 8 || rows < 0) return KN_EINVAL;
  if (rows == 0) return 0;
  int vpr = d / 8;
  k_permute<<<kn_grid((size_t)rows * vpr, 256), 256, 0, ST(s)>>>(
      (uint4 *)dst, (const uint4 *)src, idx, w, rows, vpr);
  KN_LAUNCHED();
  return 0;
}

extern "C" int kn_cuda_combine(kn_stream s, uint16_t *out, const uint16_t *src,
                               const int32_t *idx, const float *w, int64_t tokens,
                               int k, int d) {
  if (d % 8 || tokens < 0 || k < 1) return KN_EINVAL;
  if (tokens == 0) return 0;
  int vpr = d / 8;
  k_combine<<<kn_grid((size_t)tokens * vpr, 256), 256, 0, ST(s)>>>(
      (uint4 *)out, (const uint4 *)src, idx, w, tokens, k, vpr);
  KN_LAUNCHED();
  return 0;
}

/* Row-major C[m,n] = op(A) op(B) written as column-major C^T = op(B)^T op(A)^T. */
static int gemm_rm(cublasHandle_t h, bool ta, bool tb, int m, int n, int k,
                   const void *A, int lda, const void *B, int ldb, void *C,
                   int ldc) {
  const float one = 1.0f, zero = 0.0f;
  KN_BLAS(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                       n, m, k, &one, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &zero,
                       C, CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return 0;
}

extern "C" int kn_cuda_gemm(kn_blas h, kn_stream s, const uint16_t *A,
                            const uint16_t *B, uint16_t *C, int m, int n, int k) {
  (void)s;
  return gemm_rm((cublasHandle_t)h, false, false, m, n, k, A, k, B, n, C, n);
}

extern "C" int kn_cuda_ffn_fwd(kn_blas hb, kn_stream s, const uint16_t *X,
                               const uint16_t *P, uint16_t *A, uint16_t *Y,
                               int64_t n, int d, int f) {
  if (d % 8 || f % 8 || n < 0 || n > INT32_MAX) return KN_EINVAL;
  if (n == 0) return 0;
  cublasHandle_t h = (cublasHandle_t)hb;
  const uint16_t *W1 = P, *W2 = P + (size_t)d * f;
  int rc;
  /* A[n,f] = X[n,d] W1[d,f] */
  if ((rc = gemm_rm(h, false, false, (int)n, f, d, X, d, W1, f, A, f))) return rc;
  int64_t nv = n * f / 8;
  k_relu<<<kn_grid((size_t)nv, 256), 256, 0, ST(s)>>>((uint4 *)A, nv);
  KN_LAUNCHED();
  /* Y[n,d] = A[n,f] W2[f,d] */
  return gemm_rm(h, false, false, (int)n, d, f, A, f, W2, d, Y, d);
}

extern "C" int kn_cuda_ffn_bwd(kn_blas hb, kn_stream s, const uint16_t *X,
                               const uint16_t *P, const uint16_t *A,
                               const uint16_t *dY, uint16_t *dA, uint16_t *dX,
                               uint16_t *G, int64_t n, int d, int f) {
  if (d % 8 || f % 8 || n < 0 || n > INT32_MAX) return KN_EINVAL;
  if (n == 0) {
    KN_CHECK(cudaMemsetAsync(G, 0, sizeof(uint16_t) * 2 * (size_t)d * f, ST(s)));
    return 0;
  }
  cublasHandle_t h = (cublasHandle_t)hb;
  const uint16_t *W1 = P, *W2 = P + (size_t)d * f;
  uint16_t *dW1 = G, *dW2 = G + (size_t)d * f;
  int rc;
  /* dA[n,f] = dY[n,d] W2[f,d]^T */
  if ((rc = gemm_rm(h, false, true, (int)n, f, d, dY, d, W2, d, dA, f))) return rc;
  int64_t nv = n * f / 8;
  k_mask<<<kn_grid((size_t)nv, 256), 256, 0, ST(s)>>>((uint4 *)dA, (const uint4 *)A, nv);
  KN_LAUNCHED();
  /* dW2[f,d] = A[n,f]^T dY[n,d] */
  if ((rc = gemm_rm(h, true, false, f, d, (int)n, A, f, dY, d, dW2, d))) return rc;
  /* dW1[d,f] = X[n,d]^T dA[n,f] */
  if ((rc = gemm_rm(h, true, false, d, f, (int)n, X, d, dA, f, dW1, f))) return rc;
  /* dX[n,d] = dA[n,f] W1[d,f]^T */
  return gemm_rm(h, false, true, (int)n, d, f, dA, f, W1, f, dX, d);
}

extern "C" int kn_cuda_add(kn_stream s, uint16_t *dst, const uint16_t *src, size_t n) {
  if (n == 0) return 0;
  int64_t nv = (int64_t)(n / 8);
  if (nv) {
    k_add<<<kn_grid((size_t)nv, 256), 256, 0, ST(s)>>>((uint4 *)dst, (const uint4 *)src, nv);
    KN_LAUNCHED();
  }
  int64_t tail = (int64_t)(n % 8);
  if (tail) {
    k_add_tail<<<1, 8, 0, ST(s)>>>((__nv_bfloat16 *)dst + nv * 8,
                                   (const __nv_bfloat16 *)src + nv * 8, tail);
    KN_LAUNCHED();
  }
  return 0;
}

extern "C" int kn_cuda_copy(kn_stream s, void *dst, int dst_dev, const void *src,
                            int src_dev, size_t bytes) {
  if (bytes == 0) return 0;
  if (dst_dev == src_dev)
    KN_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ST(s)));
  else
    KN_CHECK(cudaMemcpyPeerAsync(dst, dst_dev, src, src_dev, bytes, ST(s)));
  return 0;
}

extern "C" int kn_cuda_empty(kn_stream s) {
  k_empty<<<1, 1, 0, ST(s)>>>();
  KN_LAUNCHED();
  return 0;
}

extern "C" int kn_cuda_spin(kn_stream s, double us) {
  if (us <= 0) return 0;
  k_spin<<<1, 1, 0, ST(s)>>>((uint64_t)(us * 1e3));
  KN_LAUNCHED();
  return 0;
}
