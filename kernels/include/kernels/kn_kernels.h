/*
 * kn_kernels.h - the MoE kernels of flexmoe: C-callable enqueue functions
 * (CUDA, in kn_cuda.cu) and their CPU twins (kn_cpu.c).
 *
 * Data layout: activations are row-major [rows, d] matrices; an expert's
 * parameters are W1 [d, f] followed by W2 [f, d] (row-major, one buffer of
 * 2*d*f elements); its gradient has the same layout. The expert FFN is
 *   A = relu(X W1),  Y = A W2
 * and its backward, given dY,
 *   dA = dY W2^T,  dH = dA * (A > 0),  dW2 = A^T dY,  dW1 = X^T dH,  dX = dH W1^T.
 * The GPU versions store bf16 (uint16_t bit patterns in this C interface)
 * and accumulate in fp32 (cuBLAS GEMMs with CUBLAS_COMPUTE_32F); the CPU
 * twins compute in float on float buffers, in a fixed loop order, so a row's
 * result does not depend on which other rows share the call.
 *
 * Deterministic data: kn_value(seed, i) is a pure function (splitmix64 of
 * seed and index) giving a float in [-1, 1); the GPU fill stores
 * scale*kn_value rounded to bf16 (round to nearest even), the CPU fill the
 * float itself; kn_bf16_round gives the CPU the GPU's rounding.
 *
 * Memory spaces: every pointer argument of a kn_cuda_* function is DEVICE
 * memory unless its comment says "host". The CPU twins take host memory.
 * Errors: 0 or a negative KN_ code; the CUDA functions record the failing
 * call's file, line and CUDA/cuBLAS message, read back with kn_cuda_last_error.
 */
#ifndef FLEXMOE_KN_KERNELS_H
#define FLEXMOE_KN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KN_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ECUDA, -3, "CUDA error")                                                   \
  X(ECUBLAS, -4, "cuBLAS error")                                               \
  X(ENODEV, -5, "built without CUDA")

typedef enum kn_err {
#define KN_ERR_ENUM(name, value, msg) KN_##name = (value),
  KN_ERRNO_MAP(KN_ERR_ENUM)
#undef KN_ERR_ENUM
} kn_err;

const char *kn_strerror(int code);

/* ---- deterministic values (shared by both sides) ---- */
#ifdef __CUDACC__
#define KN_HD __host__ __device__
#else
#define KN_HD
#endif
static inline KN_HD uint64_t kn_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
/* Float in [-1, 1) from (seed, index). */
static inline KN_HD float kn_value(uint64_t seed, uint64_t i) {
  uint64_t h = kn_mix64(seed ^ kn_mix64(i));
  return (float)((double)(h >> 40) / (double)(1ULL << 23) - 1.0);
}
/* Seed of one stream from a base seed and up to four ids. */
static inline uint64_t kn_seed(uint64_t base, uint64_t a, uint64_t b, uint64_t c,
                               uint64_t d) {
  uint64_t s = kn_mix64(base);
  s = kn_mix64(s ^ a);
  s = kn_mix64(s ^ (b + 0x51ULL));
  s = kn_mix64(s ^ (c + 0x3bULL));
  return kn_mix64(s ^ (d + 0x17ULL));
}

/* float -> bf16 bits (round to nearest even; NaN kept) and back. */
uint16_t kn_f2bf(float f);
float kn_bf2f(uint16_t b);
/* The float a bf16 store of f gives back. */
static inline float kn_bf16_round(float f) { return kn_bf2f(kn_f2bf(f)); }

/* ---- CPU twins (host memory, float) ---- */
void kn_cpu_fill(float *dst, size_t n, uint64_t seed, float scale);
/* dst[i] = (w ? w[i] : 1) * src[idx[i]]; idx[i] < 0 gives a zero row. */
void kn_cpu_permute(float *dst, const float *src, const int32_t *idx,
                    const float *w, int64_t rows, int d);
/* out[t] = sum_{j<k, idx[t*k+j] >= 0} (w ? w[t*k+j] : 1) * src[idx[t*k+j]],
 * summed in j order. */
void kn_cpu_combine(float *out, const float *src, const int32_t *idx,
                    const float *w, int64_t tokens, int k, int d);
/* X [n,d], P = W1|W2; A [n,f] and Y [n,d] written. */
void kn_cpu_ffn_fwd(const float *X, const float *P, float *A, float *Y,
                    int64_t n, int d, int f);
/* dA scratch [n,f]; dX [n,d] and G = dW1|dW2 written (G overwritten). */
void kn_cpu_ffn_bwd(const float *X, const float *P, const float *A,
                    const float *dY, float *dA, float *dX, float *G, int64_t n,
                    int d, int f);
/* dst[i] += src[i] */
void kn_cpu_add(float *dst, const float *src, size_t n);
/* FNV-1a 64 of bytes (parameter checksums). */
uint64_t kn_checksum(const void *p, size_t bytes);

/* ---- CUDA (kn_cuda.cu). stream: a cudaStream_t; blas: a cublasHandle_t ---- */
typedef void *kn_stream;
typedef void *kn_blas;

/* Message of the last failed CUDA/cuBLAS call of this thread:
 * "file:line: call: error string". Empty when none. */
const char *kn_cuda_last_error(void);
/* Records a failure from outside (backends use it for their own calls). */
int kn_cuda_record(int code, const char *file, int line, const char *what,
                   const char *msg);

int kn_cuda_blas_create(kn_blas *out, kn_stream stream);
void kn_cuda_blas_destroy(kn_blas h);

/* dst bf16 [n] = bf16(scale * kn_value(seed, i)). */
int kn_cuda_fill(kn_stream s, uint16_t *dst, size_t n, uint64_t seed, float scale);
/* Fills raw bytes with a seeded pattern (optimizer state stand-in). */
int kn_cuda_fill_bytes(kn_stream s, void *dst, size_t bytes, uint64_t seed);
/* bf16 rows: dst[i] = w[i] * src[idx[i]] (w may be NULL; idx < 0: zero row).
 * idx int32 [rows], w float [rows]. d must be a multiple of 8. */
int kn_cuda_permute(kn_stream s, uint16_t *dst, const uint16_t *src,
                    const int32_t *idx, const float *w, int64_t rows, int d);
/* bf16: out[t] = sum_j w[t*k+j] * src[idx[t*k+j]] in fp32, rounded once. */
int kn_cuda_combine(kn_stream s, uint16_t *out, const uint16_t *src,
                    const int32_t *idx, const float *w, int64_t tokens, int k,
                    int d);
/* Expert FFN forward (two GEMMs + relu) on n rows; n = 0 does nothing. */
int kn_cuda_ffn_fwd(kn_blas h, kn_stream s, const uint16_t *X, const uint16_t *P,
                    uint16_t *A, uint16_t *Y, int64_t n, int d, int f);
/* Expert FFN backward (four GEMMs + mask); G = dW1|dW2 overwritten (zeroed
 * when n = 0). dA: scratch [n, f]. */
int kn_cuda_ffn_bwd(kn_blas h, kn_stream s, const uint16_t *X, const uint16_t *P,
                    const uint16_t *A, const uint16_t *dY, uint16_t *dA,
                    uint16_t *dX, uint16_t *G, int64_t n, int d, int f);
/* One plain bf16 GEMM C[m,n] = A[m,k] B[k,n] (row-major): the peer the
 * benchmarks compare the FFN against. */
int kn_cuda_gemm(kn_blas h, kn_stream s, const uint16_t *A, const uint16_t *B,
                 uint16_t *C, int m, int n, int k);
/* Gradient reduction: dst[i] = bf16(dst[i] + src[i]) (fp32 add). */
int kn_cuda_add(kn_stream s, uint16_t *dst, const uint16_t *src, size_t n);
/* Migration copy of parameters / optimizer state: bytes from src on device
 * src_dev to dst on device dst_dev (same device: plain device copy). */
int kn_cuda_copy(kn_stream s, void *dst, int dst_dev, const void *src,
                 int src_dev, size_t bytes);
/* Empty kernel (launch overhead measurement). */
int kn_cuda_empty(kn_stream s);
/* One thread spinning on the global timer for `us` microseconds: keeps a
 * stream busy so that the host can queue work ahead of the measurement. */
int kn_cuda_spin(kn_stream s, double us);

#ifdef __cplusplus
}
#endif
#endif
