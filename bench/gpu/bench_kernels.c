/*
 * bench_kernels.c - GPU kernel checks and benchmarks (plain executable:
 * the GPU machine has no Criterion). Exit status 1 when a check fails.
 *
 * 1. Correctness of every CUDA kernel against its CPU twin (kernels/
 *    kn_cpu.c) on fresh random inputs, relative L2 error vs tolerance
 *    (bf16 operands: 2e-2; exact for permute without weights).
 * 2. Expert FFN forward (two GEMMs + relu) at 1024..16384 tokens vs one
 *    plain cuBLAS GEMM with the same FLOPs measured in the same run (the
 *    rate cuBLAS reaches on this shape: target FFN >= 70% of it).
 * 3. permute / combine vs a device-to-device copy of the same bytes
 *    (target >= 60% of the copy bandwidth), bytes = read + written.
 * 4. One MoE layer (1 rank, E experts, counts from a trace slice) forward +
 *    backward through the executor, for comparison with PyTorch
 *    (bench/gpu/moe_torch.py reads the same counts from --counts-out).
 * Times: CUDA events, median of `reps` after warm-up.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kn_kernels.h"
#include "placement/pl_policy.h"
#include "runtime/rt_backend.h"
#include "runtime/rt_exec.h"
#include "traces/tr_trace.h"

#define CK(call)                                                               \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,           \
              cudaGetErrorString(e_));                                         \
      exit(2);                                                                 \
    }                                                                          \
  } while (0)
#define KN(call)                                                               \
  do {                                                                         \
    if ((call)) {                                                              \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,           \
              kn_cuda_last_error());                                           \
      exit(2);                                                                 \
    }                                                                          \
  } while (0)

static int failures = 0;

static void *dmalloc(size_t n) {
  void *p;
  CK(cudaMalloc(&p, n ? n : 16));
  return p;
}

static void up_bf(uint16_t *d, const float *h, size_t n) {
  uint16_t *t = malloc(n * 2);
  for (size_t i = 0; i < n; i++) t[i] = kn_f2bf(h[i]);
  CK(cudaMemcpy(d, t, n * 2, cudaMemcpyHostToDevice));
  free(t);
}
static void down_bf(float *h, const uint16_t *d, size_t n) {
  uint16_t *t = malloc(n * 2);
  CK(cudaMemcpy(t, d, n * 2, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < n; i++) h[i] = kn_bf2f(t[i]);
  free(t);
}
static void rnd(float *h, size_t n, uint64_t seed, float scale) {
  kn_cpu_fill(h, n, seed, scale);
  for (size_t i = 0; i < n; i++) h[i] = kn_bf16_round(h[i]);
}
static double relerr(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    if (isnan(a[i])) return INFINITY;
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}
static void report(const char *what, double err, double tol) {
  int ok = err <= tol;
  if (!ok) failures++;
  printf("CHECK %-28s rel_err %.3e tol %.0e %s\n", what, err, tol, ok ? "ok" : "FAILED");
}

static void check_kernels(kn_blas h, cudaStream_t s) {
  int d = 256, f = 512, rows = 1000, k = 2;
  int64_t T = 700;
  uint64_t seed = 12345;
  size_t nx = (size_t)T * d;
  float *X = malloc(nx * 4), *out = malloc((size_t)rows * d * 4), *ref = malloc((size_t)rows * d * 4);
  int32_t *idx = malloc((size_t)rows * 4), *cidx = malloc((size_t)T * k * 4);
  float *w = malloc((size_t)rows * 4), *cw = malloc((size_t)T * k * 4);
  rnd(X, nx, seed, 1.0f);
  for (int i = 0; i < rows; i++) {
    idx[i] = (int32_t)(kn_mix64(seed + (uint64_t)i) % (uint64_t)T);
    if (i % 97 == 0) idx[i] = -1;
    w[i] = 0.5f + 0.5f * fabsf(kn_value(seed + 1, (uint64_t)i));
  }
  for (int64_t t = 0; t < T * k; t++) {
    cidx[t] = (int32_t)(kn_mix64(seed + 7 + (uint64_t)t) % (uint64_t)rows);
    if (t % 53 == 0) cidx[t] = -1;
    cw[t] = kn_value(seed + 3, (uint64_t)t);
  }
  uint16_t *dX = dmalloc(nx * 2), *dO = dmalloc((size_t)rows * d * 2), *dT = dmalloc(nx * 2);
  int32_t *didx = dmalloc((size_t)rows * 4), *dcidx = dmalloc((size_t)T * k * 4);
  float *dw = dmalloc((size_t)rows * 4), *dcw = dmalloc((size_t)T * k * 4);
  up_bf(dX, X, nx);
  CK(cudaMemcpy(didx, idx, (size_t)rows * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dcidx, cidx, (size_t)T * k * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dw, w, (size_t)rows * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dcw, cw, (size_t)T * k * 4, cudaMemcpyHostToDevice));
  /* permute, no weights: exact */
  CK(cudaMemset(dO, 0xff, (size_t)rows * d * 2)); /* poison: NaN bf16 */
  KN(kn_cuda_permute(s, dO, dX, didx, NULL, rows, d));
  CK(cudaStreamSynchronize(s));
  down_bf(out, dO, (size_t)rows * d);
  kn_cpu_permute(ref, X, idx, NULL, rows, d);
  report("permute", relerr(out, ref, (size_t)rows * d), 0.0);
  KN(kn_cuda_permute(s, dO, dX, didx, dw, rows, d));
  CK(cudaStreamSynchronize(s));
  down_bf(out, dO, (size_t)rows * d);
  kn_cpu_permute(ref, X, idx, w, rows, d);
  report("permute_weighted", relerr(out, ref, (size_t)rows * d), 8e-3);
  /* combine: src = the permuted rows */
  float *src = ref;
  kn_cpu_permute(src, X, idx, NULL, rows, d);
  float *cout = malloc(nx * 4), *cref = malloc(nx * 4);
  KN(kn_cuda_permute(s, dO, dX, didx, NULL, rows, d));
  CK(cudaMemset(dT, 0xff, nx * 2));
  KN(kn_cuda_combine(s, dT, dO, dcidx, dcw, T, k, d));
  CK(cudaStreamSynchronize(s));
  down_bf(cout, dT, nx);
  kn_cpu_combine(cref, src, cidx, cw, T, k, d);
  report("combine", relerr(cout, cref, nx), 8e-3);
  /* FFN forward / backward vs CPU float on the same bf16 inputs */
  int64_t n = 384;
  size_t df = (size_t)d * f;
  float *P = malloc(2 * df * 4), *A = malloc((size_t)n * f * 4), *Y = malloc((size_t)n * d * 4);
  float *dY = malloc((size_t)n * d * 4), *dA = malloc((size_t)n * f * 4), *dXr = malloc((size_t)n * d * 4);
  float *G = malloc(2 * df * 4), *Yg = malloc((size_t)n * d * 4), *dXg = malloc((size_t)n * d * 4),
        *Gg = malloc(2 * df * 4);
  rnd(P, df, seed + 11, 1.0f / sqrtf((float)d));
  rnd(P + df, df, seed + 12, 1.0f / sqrtf((float)f));
  rnd(dY, (size_t)n * d, seed + 13, 1.0f);
  uint16_t *dP = dmalloc(2 * df * 2), *dAg = dmalloc((size_t)n * f * 2), *dYg = dmalloc((size_t)n * d * 2),
           *ddY = dmalloc((size_t)n * d * 2), *ddA = dmalloc((size_t)n * f * 2),
           *ddX = dmalloc((size_t)n * d * 2), *dG = dmalloc(2 * df * 2);
  up_bf(dP, P, 2 * df);
  up_bf(ddY, dY, (size_t)n * d);
  CK(cudaMemset(dYg, 0xff, (size_t)n * d * 2));
  KN(kn_cuda_ffn_fwd(h, s, dX, dP, dAg, dYg, n, d, f));
  KN(kn_cuda_ffn_bwd(h, s, dX, dP, dAg, ddY, ddA, ddX, dG, n, d, f));
  CK(cudaStreamSynchronize(s));
  down_bf(Yg, dYg, (size_t)n * d);
  down_bf(dXg, ddX, (size_t)n * d);
  down_bf(Gg, dG, 2 * df);
  kn_cpu_ffn_fwd(X, P, A, Y, n, d, f);
  kn_cpu_ffn_bwd(X, P, A, dY, dA, dXr, G, n, d, f);
  report("ffn_fwd", relerr(Yg, Y, (size_t)n * d), 2e-2);
  report("ffn_bwd_dX", relerr(dXg, dXr, (size_t)n * d), 2e-2);
  report("ffn_bwd_dW1", relerr(Gg, G, df), 2e-2);
  report("ffn_bwd_dW2", relerr(Gg + df, G + df, df), 2e-2);
  /* add */
  float *a = malloc(df * 4), *b = malloc(df * 4);
  rnd(a, df + 0, seed + 21, 1.0f);
  rnd(b, df, seed + 22, 1.0f);
  up_bf(dG, a, df);
  up_bf(dP, b, df);
  KN(kn_cuda_add(s, dG, dP, df - 3));
  CK(cudaStreamSynchronize(s));
  kn_cpu_add(a, b, df - 3);
  down_bf(G, dG, df);
  report("add", relerr(G, a, df), 8e-3);
  /* fill: bit-exact with the CPU twin rounded to bf16 */
  KN(kn_cuda_fill(s, dG, df, 99, 0.5f));
  CK(cudaStreamSynchronize(s));
  down_bf(G, dG, df);
  kn_cpu_fill(a, df, 99, 0.5f);
  for (size_t i = 0; i < df; i++) a[i] = kn_bf16_round(a[i]);
  report("fill", relerr(G, a, df), 0.0);
  void *fr[] = {dX, dO, dT, didx, dcidx, dw, dcw, dP, dAg, dYg, ddY, ddA, ddX, dG};
  for (size_t i = 0; i < sizeof fr / sizeof *fr; i++) cudaFree(fr[i]);
  free(X); free(out); free(ref); free(idx); free(cidx); free(w); free(cw); free(cout); free(cref);
  free(P); free(A); free(Y); free(dY); free(dA); free(dXr); free(G); free(Yg); free(dXg); free(Gg);
  free(a); free(b);
}

static int cmpf(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* median ms of reps runs of fn between events */
typedef void (*bench_fn)(void *ctx);
static float timeit(cudaStream_t s, bench_fn fn, void *ctx, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; i++) fn(ctx);
  float *t = malloc(sizeof(float) * (size_t)reps);
  for (int i = 0; i < reps; i++) {
    CK(cudaEventRecord(a, s));
    fn(ctx);
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  qsort(t, (size_t)reps, sizeof *t, cmpf);
  float m = t[reps / 2];
  free(t);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return m;
}

typedef struct bctx {
  kn_blas h;
  cudaStream_t s;
  uint16_t *X, *P, *A, *Y, *B2, *C2;
  int64_t n;
  int d, f, m2, n2, k2;
  int32_t *idx;
  float *w;
  void *src, *dst;
  size_t bytes;
  int64_t rows, tokens;
} bctx;

static void run_ffn(void *p) {
  bctx *c = p;
  KN(kn_cuda_ffn_fwd(c->h, c->s, c->X, c->P, c->A, c->Y, c->n, c->d, c->f));
}
static void run_gemm(void *p) {
  bctx *c = p;
  KN(kn_cuda_gemm(c->h, c->s, c->X, c->B2, c->C2, c->m2, c->n2, c->k2));
}
static void run_copy(void *p) {
  bctx *c = p;
  CK(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, c->s));
}
static void run_permute(void *p) {
  bctx *c = p;
  KN(kn_cuda_permute(c->s, c->dst, c->src, c->idx, NULL, c->rows, c->d));
}
static void run_permute_w(void *p) {
  bctx *c = p;
  KN(kn_cuda_permute(c->s, c->dst, c->src, c->idx, c->w, c->rows, c->d));
}
static void run_combine(void *p) {
  bctx *c = p;
  KN(kn_cuda_combine(c->s, c->dst, c->src, c->idx, c->w, c->tokens, 2, c->d));
}

int main(int argc, char **argv) {
  const char *trace = argc > 1 ? argv[1] : NULL;
  const char *counts_out = argc > 2 ? argv[2] : NULL;
  int d = 2048, f = 8192, reps = 20;
  struct cudaDeviceProp prop;
  int rtv = 0, drv = 0, dev = 0;
  CK(cudaSetDevice(dev));
  CK(cudaGetDeviceProperties(&prop, dev));
  cudaRuntimeGetVersion(&rtv);
  cudaDriverGetVersion(&drv);
  printf("# flexmoe bench_kernels: %s, %d SMs, %.1f GiB, CUDA runtime %d, driver %d\n", prop.name,
         prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, rtv, drv);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  kn_blas h;
  KN(kn_cuda_blas_create(&h, s));
  check_kernels(h, s);
  /* FFN vs cuBLAS GEMM rate */
  bctx c = {.h = h, .s = s, .d = d, .f = f};
  int64_t nmax = 16384;
  c.X = dmalloc((size_t)nmax * d * 2);
  c.P = dmalloc(2 * (size_t)d * f * 2);
  c.A = dmalloc((size_t)nmax * f * 2);
  c.Y = dmalloc((size_t)nmax * d * 2);
  KN(kn_cuda_fill(s, c.X, (size_t)nmax * d, 1, 1.0f));
  KN(kn_cuda_fill(s, c.P, 2 * (size_t)d * f, 2, 0.02f));
  /* the peer: one square-ish GEMM of 8192 x 8192 x 8192 on the same buffers */
  c.m2 = 8192;
  c.n2 = 8192;
  c.k2 = 2048;
  c.B2 = dmalloc((size_t)c.k2 * c.n2 * 2);
  c.C2 = dmalloc((size_t)c.m2 * c.n2 * 2);
  KN(kn_cuda_fill(s, c.B2, (size_t)c.k2 * c.n2, 3, 0.02f));
  float gms = timeit(s, run_gemm, &c, reps);
  double gtf = 2.0 * c.m2 * c.n2 * c.k2 / (gms * 1e-3) / 1e12;
  printf("\n## expert FFN forward (d_model %d, d_ff %d, bf16, fp32 accumulate) vs cuBLAS GEMM %dx%dx%d = %.1f TFLOP/s\n",
         d, f, c.m2, c.n2, c.k2, gtf);
  printf("%8s %10s %10s %10s\n", "tokens", "us", "TFLOP/s", "vs_cuBLAS");
  int64_t toks[] = {1024, 2048, 4096, 8192, 16384};
  double ratio4096 = 0;
  for (int i = 0; i < 5; i++) {
    c.n = toks[i];
    float ms = timeit(s, run_ffn, &c, reps);
    double tf = 4.0 * c.n * d * f / (ms * 1e-3) / 1e12;
    printf("%8lld %10.1f %10.1f %9.1f%%\n", (long long)c.n, ms * 1e3, tf, 100 * tf / gtf);
    if (toks[i] == 4096) ratio4096 = tf / gtf;
  }
  printf("TARGET ffn_4096_vs_cublas %.1f%% (>= 70%%) %s\n", 100 * ratio4096, ratio4096 >= 0.7 ? "met" : "MISSED");
  /* permute / combine vs device copy */
  int64_t rows = 65536;
  c.rows = rows;
  c.tokens = rows / 2;
  c.src = dmalloc((size_t)rows * d * 2);
  c.dst = dmalloc((size_t)rows * d * 2);
  c.bytes = (size_t)rows * d * 2;
  int32_t *hidx = malloc(sizeof(int32_t) * (size_t)rows);
  float *hw = malloc(sizeof(float) * (size_t)rows);
  for (int64_t i = 0; i < rows; i++) {
    hidx[i] = (int32_t)(kn_mix64((uint64_t)i) % (uint64_t)rows); /* random gather */
    hw[i] = 0.75f;
  }
  c.idx = dmalloc(sizeof(int32_t) * (size_t)rows);
  c.w = dmalloc(sizeof(float) * (size_t)rows);
  CK(cudaMemcpy(c.idx, hidx, sizeof(int32_t) * (size_t)rows, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(c.w, hw, sizeof(float) * (size_t)rows, cudaMemcpyHostToDevice));
  KN(kn_cuda_fill(s, c.src, (size_t)rows * d, 4, 1.0f));
  float cms = timeit(s, run_copy, &c, reps);
  double cbw = 2.0 * c.bytes / (cms * 1e-3) / 1e9;
  float pms = timeit(s, run_permute, &c, reps);
  float pwms = timeit(s, run_permute_w, &c, reps);
  float kms = timeit(s, run_combine, &c, reps);
  double pbw = 2.0 * c.bytes / (pms * 1e-3) / 1e9;
  double pwbw = 2.0 * c.bytes / (pwms * 1e-3) / 1e9;
  /* combine reads 2 rows per token and writes one */
  double kbw = 3.0 * (c.bytes / 2) / (kms * 1e-3) / 1e9;
  printf("\n## permute / combine (%lld rows of %d bf16, random order) vs device copy of the same bytes\n",
         (long long)rows, d);
  printf("%-18s %10s %12s %10s\n", "kernel", "us", "GB/s(r+w)", "vs_copy");
  printf("%-18s %10.1f %12.0f %9.1f%%\n", "cudaMemcpy d2d", cms * 1e3, cbw, 100.0);
  printf("%-18s %10.1f %12.0f %9.1f%%\n", "permute", pms * 1e3, pbw, 100 * pbw / cbw);
  printf("%-18s %10.1f %12.0f %9.1f%%\n", "permute weighted", pwms * 1e3, pwbw, 100 * pwbw / cbw);
  printf("%-18s %10.1f %12.0f %9.1f%%\n", "combine top-2", kms * 1e3, kbw, 100 * kbw / cbw);
  double worst = fmin(pbw, fmin(pwbw, kbw)) / cbw;
  printf("TARGET permute_combine_vs_copy %.1f%% (>= 60%%) %s\n", 100 * worst, worst >= 0.6 ? "met" : "MISSED");
  /* 4. MoE layer fwd+bwd via the executor, 1 rank */
  if (trace) {
    tr_trace t;
    tr_error te;
    if (tr_open(&t, trace, &te)) {
      fprintf(stderr, "%s: %s\n", trace, te.msg);
      return 2;
    }
    int E = t.experts, L = 1, k = t.meta.top_k ? t.meta.top_k : 2;
    int64_t *counts = calloc((size_t)E, sizeof(int64_t)), *row = malloc(sizeof(int64_t) * (size_t)t.ranks * E);
    /* layer 0 of iteration 100, all ranks summed: 32768 slots = 16384 tokens x top-2 */
    tr_slice(&t, t.iterations > 100 ? 100 : 0, 0, row);
    int64_t S = 0;
    for (int r = 0; r < t.ranks; r++)
      for (int e = 0; e < E; e++) counts[e] += row[r * E + e];
    for (int e = 0; e < E; e++) S += counts[e];
    int ld = 1024, lf = 4096;
    rt_backend *b = NULL;
    rt_backend_config bc = {1, 0, 0, 120.0, 0};
    char err[512];
    if (rt_backend_create(&b, "cuda", &bc, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 2;
    }
    pl_env env = PL_ENV_INIT;
    static double tk[] = {16, 65536}, us[] = {20, 1300};
    env.layers = L;
    env.experts = E;
    env.cluster = (pl_cluster){1, 1, E, 500e9, 4e-6, 500e9, 4e-6, 1.0};
    env.model = (pl_model){ld, lf, k, 2, 12.0};
    env.profile = (pl_profile){2, tk, us, 2.0, 0.0};
    pl_policy *pol = NULL;
    if (pl_policy_create(&pol, "static", &env, err, sizeof err)) {
      fprintf(stderr, "policy: %s\n", err);
      return 2;
    }
    rt_exec *x = NULL;
    rt_exec_config xc = {L, E, k, ld, lf, E, S, 0.0, 2, 1, S};
    if (rt_exec_create(&x, b, pol, &env, &xc, err, sizeof err)) {
      fprintf(stderr, "executor: %s\n", err);
      return 2;
    }
    double *tms = malloc(sizeof(double) * 30);
    int nit = 30;
    for (int i = 0; i < nit; i++) {
      rt_iter_result res;
      if (rt_exec_iteration(x, i, counts, &res, err, sizeof err)) {
        fprintf(stderr, "iteration: %s\n", err);
        return 2;
      }
      tms[i] = res.time_ms;
    }
    double sum = 0;
    for (int i = 3; i < nit; i++) sum += tms[i];
    double mean = sum / (nit - 3);
    printf("\n## MoE layer forward+backward, 1 GPU: %lld token slots (top-%d, %lld tokens), %d experts, d_model %d, d_ff %d\n",
           (long long)S, k, (long long)((S + k - 1) / k), E, ld, lf);
    printf("LAYER flexmoe_ms %.3f (mean of %d iterations after 3 warm-up; permute, exchange copy, regroup, FFN, combine, fwd+bwd)\n",
           mean, nit - 3);
    if (counts_out) {
      FILE *fo = fopen(counts_out, "w");
      if (fo) {
        fprintf(fo, "{\"d_model\": %d, \"d_ff\": %d, \"top_k\": %d, \"tokens\": %lld, \"flexmoe_ms\": %.4f, \"counts\": [",
                ld, lf, k, (long long)((S + k - 1) / k), mean);
        for (int e = 0; e < E; e++) fprintf(fo, "%s%lld", e ? ", " : "", (long long)counts[e]);
        fprintf(fo, "]}\n");
        fclose(fo);
      }
    }
    rt_exec_destroy(x);
    pl_policy_destroy(pol);
    rt_backend_destroy(b);
    tr_close(&t);
    free(counts);
    free(row);
    free(tms);
  }
  kn_cuda_blas_destroy(h);
  printf("\nRESULT %d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
