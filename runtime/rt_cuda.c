/*
 * rt_cuda.c - the cuda backend: one process, G ranks that are either G GPUs
 * (partitions = 0: rank r is device `device + r`) or G SM partitions of one
 * GPU (partitions = G: CUDA green contexts made with
 * cuDevSmResourceSplitByCount + cuGreenCtxCreate, one stream per partition
 * from cuGreenCtxStreamCreate). Green contexts share the primary context's
 * memory, so buffers come from cudaMalloc and exchange is device-to-device
 * copies enqueued on the source rank's stream; kernels and cuBLAS run on the
 * rank's stream and therefore only on its partition's SMs.
 *
 * Cross-rank order: barrier() records one event per rank and makes every
 * stream wait for all of them. Time stamps are CUDA events; collect() polls
 * the last ones (cudaEventQuery, 50 us sleeps) until a timeout instead of
 * blocking forever. Every CUDA call is checked (RT_CU / RT_DRV), the failing
 * call, file, line and message kept for last_error().
 */
#include "runtime/rt_backend.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kn_kernels.h"
#include "rt_cuda_priv.h"

#define CU_MAX_MARKS 4096

typedef struct cu_rank {
  int dev;
  CUgreenCtx green;
  cudaStream_t stream;
  kn_blas blas;
  cudaEvent_t bar_ev;
  cudaEvent_t *mark_ev; /* [CU_MAX_MARKS], created on first use */
  int sms;
} cu_rank;

typedef struct cu_backend {
  rt_backend base;
  cu_rank *rank;
  int partitions;
  double timeout_s;
  int max_slot;
  char desc[512];
  char err[640];
} cu_backend;

static int cu_fail(cu_backend *c, int code, const char *file, int line,
                   const char *what, const char *msg) {
  snprintf(c->err, sizeof c->err, "%s:%d: %s: %s", file, line, what, msg);
  return code;
}

#define RT_CU(c, call)                                                         \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess)                                                     \
      return cu_fail((c), RT_EDEVICE, __FILE__, __LINE__, #call,               \
                     cudaGetErrorString(e_));                                  \
  } while (0)
#define RT_DRV(c, call)                                                        \
  do {                                                                         \
    CUresult r_ = (call);                                                      \
    if (r_ != CUDA_SUCCESS) {                                                  \
      const char *m_ = NULL;                                                   \
      cuGetErrorString(r_, &m_);                                               \
      return cu_fail((c), RT_EDEVICE, __FILE__, __LINE__, #call,               \
                     m_ ? m_ : "unknown driver error");                        \
    }                                                                          \
  } while (0)
/* A kernels/ call: its own message is kept. */
#define RT_KN(c, call)                                                         \
  do {                                                                         \
    int k_ = (call);                                                           \
    if (k_)                                                                    \
      return cu_fail((c), RT_EDEVICE, __FILE__, __LINE__, #call,               \
                     kn_cuda_last_error());                                    \
  } while (0)

static cu_rank *R(rt_backend *b, int r) { return &((cu_backend *)b)->rank[r]; }

static int use(cu_backend *c, int r) {
  if (r < 0 || r >= c->base.ranks) {
    snprintf(c->err, sizeof c->err, "rank %d out of range", r);
    return RT_EINVAL;
  }
  RT_CU(c, cudaSetDevice(c->rank[r].dev));
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits for ev (or the stream when ev is NULL) with a timeout. */
static int wait_poll(cu_backend *c, cudaEvent_t ev, cudaStream_t s) {
  double t0 = now_s();
  for (;;) {
    cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(s);
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady)
      return cu_fail(c, RT_EDEVICE, __FILE__, __LINE__, ev ? "cudaEventQuery" : "cudaStreamQuery",
                     cudaGetErrorString(e));
    if (now_s() - t0 > c->timeout_s) {
      snprintf(c->err, sizeof c->err, "device work not finished after %.0f s", c->timeout_s);
      return RT_ETIMEOUT;
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
}

static void cu_destroy(rt_backend *b);

static int make_partitions(cu_backend *c, int device, int G) {
  CUdevice dev;
  CUdevResource all, rem;
  RT_DRV(c, cuInit(0));
  RT_DRV(c, cuDeviceGet(&dev, device));
  RT_DRV(c, cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM));
  unsigned total = all.sm.smCount;
  unsigned per = total / (unsigned)G;
  per -= per % 8; /* Hopper partitions come in multiples of 8 SMs */
  if (per < 8) {
    snprintf(c->err, sizeof c->err, "%u SMs cannot be split into %d partitions of >= 8", total, G);
    return RT_EINVAL;
  }
  CUdevResource *groups = calloc((size_t)G, sizeof *groups);
  if (!groups) return RT_ENOMEM;
  unsigned nb = (unsigned)G;
  CUresult r = cuDevSmResourceSplitByCount(groups, &nb, &all, &rem, 0, per);
  if (r != CUDA_SUCCESS || nb < (unsigned)G) {
    const char *m = NULL;
    cuGetErrorString(r, &m);
    free(groups);
    snprintf(c->err, sizeof c->err, "cuDevSmResourceSplitByCount(%d x %u SMs): %s (%u groups)",
             G, per, m ? m : "too few groups", nb);
    return RT_EDEVICE;
  }
  int rc = 0;
  for (int i = 0; i < G && !rc; i++) {
    CUdevResourceDesc desc;
    cu_rank *k = &c->rank[i];
    k->dev = device;
    k->sms = (int)groups[i].sm.smCount;
    CUresult e = cuDevResourceGenerateDesc(&desc, &groups[i], 1);
    if (e == CUDA_SUCCESS) e = cuGreenCtxCreate(&k->green, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
    if (e == CUDA_SUCCESS)
      e = cuGreenCtxStreamCreate((CUstream *)&k->stream, k->green, CU_STREAM_NON_BLOCKING, 0);
    if (e != CUDA_SUCCESS) {
      const char *m = NULL;
      cuGetErrorString(e, &m);
      snprintf(c->err, sizeof c->err, "green context %d: %s", i, m ? m : "error");
      rc = RT_EDEVICE;
    }
  }
  free(groups);
  if (!rc)
    snprintf(c->desc, sizeof c->desc, "%d green-context partitions of %d SMs (of %u)", G,
             c->rank[0].sms, total);
  return rc;
}

static int cu_create(rt_backend **out, const rt_backend_config *cfg, char *err,
                     size_t errlen) {
  cu_backend *c = calloc(1, sizeof *c);
  if (!c) return RT_ENOMEM;
  c->base.ops = &rt_backend_cuda_ops;
  c->base.ranks = cfg->ranks;
  c->partitions = cfg->partitions;
  c->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 120.0;
  c->rank = calloc((size_t)cfg->ranks, sizeof *c->rank);
  int rc = c->rank ? 0 : RT_ENOMEM;
  int ndev = 0;
  if (!rc) {
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess) {
      snprintf(c->err, sizeof c->err, "no usable GPU: %s", cudaGetErrorString(e));
      rc = RT_EDEVICE;
    } else if (cfg->device < 0 || cfg->device >= ndev) {
      snprintf(c->err, sizeof c->err, "device %d does not exist (%d GPUs)", cfg->device, ndev);
      rc = RT_EDEVICE;
    }
  }
  if (!rc) {
    if (cudaSetDevice(cfg->device) != cudaSuccess || cudaFree(0) != cudaSuccess) {
      snprintf(c->err, sizeof c->err, "cannot initialise device %d", cfg->device);
      rc = RT_EDEVICE;
    }
  }
  if (!rc && cfg->partitions > 0) {
    if (cfg->partitions != cfg->ranks) {
      snprintf(c->err, sizeof c->err, "%d partitions for %d ranks", cfg->partitions, cfg->ranks);
      rc = RT_EINVAL;
    } else {
      rc = make_partitions(c, cfg->device, cfg->ranks);
    }
  } else if (!rc) {
    if (cfg->device + cfg->ranks > ndev) {
      snprintf(c->err, sizeof c->err, "%d ranks need %d GPUs from device %d, %d present (use --partitions)",
               cfg->ranks, cfg->ranks, cfg->device, ndev);
      rc = RT_EDEVICE;
    }
    for (int r = 0; r < cfg->ranks && !rc; r++) {
      cu_rank *k = &c->rank[r];
      k->dev = cfg->device + r;
      if (cudaSetDevice(k->dev) != cudaSuccess ||
          cudaStreamCreateWithFlags(&k->stream, cudaStreamNonBlocking) != cudaSuccess) {
        snprintf(c->err, sizeof c->err, "cannot create a stream on device %d", k->dev);
        rc = RT_EDEVICE;
      }
      for (int q = 0; q < cfg->ranks && !rc; q++) {
        int can = 0;
        if (q != r && cudaDeviceCanAccessPeer(&can, k->dev, cfg->device + q) == cudaSuccess && can) {
          cudaError_t e = cudaDeviceEnablePeerAccess(cfg->device + q, 0);
          if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
            snprintf(c->err, sizeof c->err, "peer access %d->%d: %s", k->dev, cfg->device + q,
                     cudaGetErrorString(e));
            rc = RT_EDEVICE;
          }
          cudaGetLastError();
        }
      }
    }
    if (!rc) {
      struct cudaDeviceProp p;
      cudaGetDeviceProperties(&p, cfg->device);
      snprintf(c->desc, sizeof c->desc, "%d x %s", cfg->ranks, p.name);
    }
  }
  for (int r = 0; r < cfg->ranks && !rc; r++) {
    cu_rank *k = &c->rank[r];
    if (cudaSetDevice(k->dev) != cudaSuccess ||
        cudaEventCreateWithFlags(&k->bar_ev, cudaEventDisableTiming) != cudaSuccess) {
      snprintf(c->err, sizeof c->err, "cannot create events on device %d", k->dev);
      rc = RT_EDEVICE;
      break;
    }
    k->mark_ev = calloc(CU_MAX_MARKS, sizeof *k->mark_ev);
    if (!k->mark_ev) rc = RT_ENOMEM;
    if (!rc && kn_cuda_blas_create(&k->blas, k->stream)) {
      snprintf(c->err, sizeof c->err, "%s", kn_cuda_last_error());
      rc = RT_EDEVICE;
    }
  }
  if (rc) {
    if (err) snprintf(err, errlen, "backend 'cuda': %s", c->err);
    cu_destroy(&c->base);
    return rc;
  }
  *out = &c->base;
  return 0;
}

static void cu_destroy(rt_backend *b) {
  cu_backend *c = (cu_backend *)b;
  if (c->rank) {
    for (int r = 0; r < b->ranks; r++) {
      cu_rank *k = &c->rank[r];
      cudaSetDevice(k->dev);
      if (k->stream) cudaStreamSynchronize(k->stream);
      kn_cuda_blas_destroy(k->blas);
      if (k->mark_ev)
        for (int i = 0; i < CU_MAX_MARKS; i++)
          if (k->mark_ev[i]) cudaEventDestroy(k->mark_ev[i]);
      free(k->mark_ev);
      if (k->bar_ev) cudaEventDestroy(k->bar_ev);
      if (k->stream) {
        if (k->green) cuStreamDestroy((CUstream)k->stream);
        else cudaStreamDestroy(k->stream);
      }
      if (k->green) cuGreenCtxDestroy(k->green);
    }
  }
  free(c->rank);
  free(c);
}

static int cu_elem_bytes(const rt_backend *b) { (void)b; return 2; }
static int cu_owns(const rt_backend *b, int r) { return r >= 0 && r < b->ranks; }
static const char *cu_describe(const rt_backend *b) { return ((const cu_backend *)b)->desc; }

static void *cu_alloc(rt_backend *b, int r, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  void *p = NULL;
  if (use(c, r)) return NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
  if (e != cudaSuccess) {
    cu_fail(c, RT_ENOMEM, __FILE__, __LINE__, "cudaMalloc", cudaGetErrorString(e));
    return NULL;
  }
  return p;
}
static void cu_release(rt_backend *b, int r, void *p) {
  if (!p || use((cu_backend *)b, r)) return;
  cudaFree(p);
}
static int cu_upload(rt_backend *b, int r, void *dst, const void *host, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  if (bytes) RT_CU(c, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, R(b, r)->stream));
  return 0;
}
static int cu_download(rt_backend *b, int r, void *host, const void *src, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  for (int q = 0; q < b->ranks; q++)
    if ((rc = wait_poll(c, NULL, c->rank[q].stream))) return rc;
  if (bytes) RT_CU(c, cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
  return 0;
}
static int cu_fill(rt_backend *b, int r, void *dst, size_t n, uint64_t seed, float scale) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_fill(R(b, r)->stream, dst, n, seed, scale));
  return 0;
}
static int cu_fill_bytes(rt_backend *b, int r, void *dst, size_t bytes, uint64_t seed) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_fill_bytes(R(b, r)->stream, dst, bytes, seed));
  return 0;
}
static int cu_permute(rt_backend *b, int r, void *dst, const void *src,
                      const int32_t *idx, const float *w, int64_t rows, int d) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_permute(R(b, r)->stream, dst, src, idx, w, rows, d));
  return 0;
}
static int cu_combine(rt_backend *b, int r, void *out, const void *src,
                      const int32_t *idx, const float *w, int64_t tokens, int k, int d) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_combine(R(b, r)->stream, out, src, idx, w, tokens, k, d));
  return 0;
}
static int cu_ffn_fwd(rt_backend *b, int r, const void *X, const void *P, void *A,
                      void *Y, int64_t n, int d, int f) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_ffn_fwd(R(b, r)->blas, R(b, r)->stream, X, P, A, Y, n, d, f));
  return 0;
}
static int cu_ffn_bwd(rt_backend *b, int r, const void *X, const void *P,
                      const void *A, const void *dY, void *dA, void *dX, void *G,
                      int64_t n, int d, int f) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_ffn_bwd(R(b, r)->blas, R(b, r)->stream, X, P, A, dY, dA, dX, G, n, d, f));
  return 0;
}
static int cu_add(rt_backend *b, int r, void *dst, const void *src, size_t n) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_add(R(b, r)->stream, dst, src, n));
  return 0;
}
static int cu_group(rt_backend *b) { (void)b; return 0; }
static int cu_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, sr);
  if (rc) return rc;
  if (dr < 0 || dr >= b->ranks) return RT_EINVAL;
  RT_KN(c, kn_cuda_copy(R(b, sr)->stream, dst, R(b, dr)->dev, src, R(b, sr)->dev, bytes));
  return 0;
}
static int cu_barrier(rt_backend *b) {
  cu_backend *c = (cu_backend *)b;
  int G = b->ranks, rc;
  if (G == 1) return 0;
  for (int r = 0; r < G; r++) {
    if ((rc = use(c, r))) return rc;
    RT_CU(c, cudaEventRecord(c->rank[r].bar_ev, c->rank[r].stream));
  }
  for (int r = 0; r < G; r++) {
    if ((rc = use(c, r))) return rc;
    for (int q = 0; q < G; q++)
      if (q != r) RT_CU(c, cudaStreamWaitEvent(c->rank[r].stream, c->rank[q].bar_ev, 0));
  }
  return 0;
}
static int cu_mark(rt_backend *b, int slot) {
  cu_backend *c = (cu_backend *)b;
  int rc;
  if (slot < 0 || slot >= CU_MAX_MARKS) return RT_EINVAL;
  for (int r = 0; r < b->ranks; r++) {
    cu_rank *k = &c->rank[r];
    if ((rc = use(c, r))) return rc;
    if (!k->mark_ev[slot]) RT_CU(c, cudaEventCreate(&k->mark_ev[slot]));
    RT_CU(c, cudaEventRecord(k->mark_ev[slot], k->stream));
  }
  if (slot > c->max_slot) c->max_slot = slot;
  return 0;
}
static int cu_collect(rt_backend *b, int nslots, double *ms) {
  cu_backend *c = (cu_backend *)b;
  int G = b->ranks, rc;
  if (nslots < 1 || nslots > CU_MAX_MARKS) return RT_EINVAL;
  for (int r = 0; r < G; r++)
    if ((rc = wait_poll(c, NULL, c->rank[r].stream))) return rc;
  cudaEvent_t ref = c->rank[0].mark_ev[0];
  if (!ref) {
    snprintf(c->err, sizeof c->err, "collect before the first mark");
    return RT_EINVAL;
  }
  /* Each rank's stamps relative to its own stamp 0 (same stream), shifted
   * by the offset of that stamp from rank 0's (cross-stream elapsed time;
   * if the driver refuses it, the stamps 0 are taken as simultaneous). */
  double lo = INFINITY;
  for (int r = 0; r < G; r++) {
    cudaEvent_t own = c->rank[r].mark_ev[0];
    float off = 0.0f;
    if (!own) {
      snprintf(c->err, sizeof c->err, "rank %d has no stamp 0", r);
      return RT_EINVAL;
    }
    if ((rc = use(c, r))) return rc;
    if (r > 0 && cudaEventElapsedTime(&off, ref, own) != cudaSuccess) {
      cudaGetLastError();
      off = 0.0f;
    }
    for (int s = 0; s < nslots; s++) {
      float t = 0.0f;
      cudaEvent_t ev = c->rank[r].mark_ev[s];
      if (!ev) {
        ms[s * G + r] = NAN;
        continue;
      }
      RT_CU(c, cudaEventElapsedTime(&t, own, ev));
      ms[s * G + r] = (double)t + (double)off;
    }
    if ((double)off < lo) lo = off;
  }
  for (int i = 0; i < nslots * G; i++) ms[i] -= lo;
  return 0;
}
static int cu_max_marks(const rt_backend *b) { (void)b; return CU_MAX_MARKS; }
static const char *cu_last_error(const rt_backend *b) { return ((const cu_backend *)b)->err; }

const rt_backend_ops rt_backend_cuda_ops = {
    .name = "cuda",
    .summary = "one process: several GPUs, or --partitions N SM partitions of one GPU (green contexts)",
    .create = cu_create,
    .destroy = cu_destroy,
    .elem_bytes = cu_elem_bytes,
    .owns = cu_owns,
    .describe = cu_describe,
    .alloc = cu_alloc,
    .release = cu_release,
    .upload = cu_upload,
    .download = cu_download,
    .fill = cu_fill,
    .fill_bytes = cu_fill_bytes,
    .permute = cu_permute,
    .combine = cu_combine,
    .ffn_fwd = cu_ffn_fwd,
    .ffn_bwd = cu_ffn_bwd,
    .add = cu_add,
    .group_begin = cu_group,
    .copy = cu_copy,
    .group_end = cu_group,
    .allreduce = NULL,
    .barrier = cu_barrier,
    .mark = cu_mark,
    .collect = cu_collect,
    .max_marks = cu_max_marks,
    .last_error = cu_last_error,
};

void *rt_cuda_stream(rt_backend *b, int rank) { return R(b, rank)->stream; }
int rt_cuda_device(rt_backend *b, int rank) { return R(b, rank)->dev; }
