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
 * The driver API calls (green contexts) are looked up at run time with
 * cudaGetDriverEntryPointByVersion, so the executable does not link
 * libcuda: it starts on machines without a GPU driver (CI) and says "no
 * usable GPU" only when the backend is asked for.
 *
 * Cross-rank order: barrier() records one event per rank and makes every
 * stream wait for all of them. Time stamps are CUDA events; collect() polls
 * the last ones (cudaEventQuery, 50 us sleeps) until a timeout instead of
 * blocking forever. Every CUDA call is checked (RT_CU / RT_DRV), the failing
 * call, file, line and message kept for last_error().
 *
 * Background moves (rt_backend.h move_begin/copy/fence): every rank has a
 * copy stream of its own beside its compute stream. move_begin records an
 * event on each rank's stream and makes the rank's copy stream wait for it
 * (the iteration's start: sources written, destinations idle since the
 * barrier before it); a move copies on its source rank's copy stream (peer
 * copies between GPUs), so compute and all-to-all keep their streams; the
 * fence records an event on every copy stream and makes every rank's
 * stream wait for all of them (two alternating sets, like the barrier).
 * Per-layer completion (move_point / move_wait, weights-first copies): a
 * point records event `id` on every copy stream where it is put (events
 * created on first use, on the calling thread), so it marks each source's
 * copies given before it; a wait makes every rank's stream wait for every
 * copy stream's event `id`; a join (move_join: the optimizer state behind
 * every source's weights) makes every copy stream wait for every other
 * copy stream's event `id`. In worker mode the workers meet at the wait
 * first (as at a fence), so every copy stream's record precedes every
 * wait; the executor's barriers between a wait and the next put of the
 * same id keep a record from overtaking a wait.
 */
#include "runtime/rt_backend.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kn_kernels.h"
#include "rt_cuda_priv.h"

#define CU_MAX_MARKS 4096

/* Driver entry points (types from the cuda.h prototypes; no link-time
 * reference to libcuda). */
static struct {
  int loaded;
  __typeof__(cuGetErrorString) *GetErrorString;
  __typeof__(cuDeviceGet) *DeviceGet;
  __typeof__(cuDeviceGetDevResource) *DeviceGetDevResource;
  __typeof__(cuDevSmResourceSplitByCount) *DevSmResourceSplitByCount;
  __typeof__(cuDevResourceGenerateDesc) *DevResourceGenerateDesc;
  __typeof__(cuGreenCtxCreate) *GreenCtxCreate;
  __typeof__(cuGreenCtxStreamCreate) *GreenCtxStreamCreate;
  __typeof__(cuGreenCtxDestroy) *GreenCtxDestroy;
} drv;

static int drv_load(char *err, size_t errlen) {
  if (drv.loaded) return 0;
  struct {
    const char *name;
    void **fn;
  } t[] = {{"cuGetErrorString", (void **)&drv.GetErrorString},
           {"cuDeviceGet", (void **)&drv.DeviceGet},
           {"cuDeviceGetDevResource", (void **)&drv.DeviceGetDevResource},
           {"cuDevSmResourceSplitByCount", (void **)&drv.DevSmResourceSplitByCount},
           {"cuDevResourceGenerateDesc", (void **)&drv.DevResourceGenerateDesc},
           {"cuGreenCtxCreate", (void **)&drv.GreenCtxCreate},
           {"cuGreenCtxStreamCreate", (void **)&drv.GreenCtxStreamCreate},
           {"cuGreenCtxDestroy", (void **)&drv.GreenCtxDestroy}};
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    enum cudaDriverEntryPointQueryResult q;
    cudaError_t e = cudaGetDriverEntryPointByVersion(t[i].name, t[i].fn, 12080, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !*t[i].fn) {
      snprintf(err, errlen, "the GPU driver has no %s (green contexts need CUDA 12.8+ drivers)", t[i].name);
      return RT_EDEVICE;
    }
  }
  drv.loaded = 1;
  return 0;
}

static const char *drv_msg(CUresult r) {
  const char *m = NULL;
  if (drv.GetErrorString) drv.GetErrorString(r, &m);
  return m ? m : "driver error";
}

typedef struct cu_rank {
  int dev;
  CUgreenCtx green;
  cudaStream_t stream;
  kn_blas blas;
  cudaEvent_t bar_ev;
  cudaEvent_t bar2[2];  /* worker-mode barrier events, alternating */
  cudaEvent_t *mark_ev; /* [CU_MAX_MARKS], created on first use */
  int sms;
  cudaStream_t mv_stream; /* background moves from this rank */
  cudaEvent_t go_ev;      /* move_begin's point on the rank's stream */
  cudaEvent_t mv_ev[2];   /* fence: the copy stream's end, alternating */
  cudaEvent_t *pt_ev;     /* [RT_MOVE_POINTS] move_point's events on the copy
                             stream, created on first use */
} cu_rank;

typedef struct cu_backend {
  rt_backend base;
  cu_rank *rank;
  int partitions;
  double timeout_s;
  int max_slot;
  struct cu_worker *wk;   /* NULL: direct mode */
  struct wk_arg *wargs;
  pthread_barrier_t pbar;
  int bar_set;
  int mv_set; /* fence event set, alternating */
  char desc[512];
  char err[768];
} cu_backend;

/* Failures are written to a buffer of the calling thread (rank workers
 * run CUDA calls concurrently); main-thread entry points copy it into
 * c->err (keep()), workers into their own error slot. */
static _Thread_local char tl_err[640];

static int cu_fail(cu_backend *c, int code, const char *file, int line,
                   const char *what, const char *msg) {
  (void)c;
  snprintf(tl_err, sizeof tl_err, "%s:%d: %s: %s", file, line, what, msg);
  return code;
}

static int keep(cu_backend *c, int rc) {
  if (rc) snprintf(c->err, sizeof c->err, "%s", tl_err);
  return rc;
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
    if (r_ != CUDA_SUCCESS)                                                    \
      return cu_fail((c), RT_EDEVICE, __FILE__, __LINE__, #call, drv_msg(r_)); \
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
    snprintf(tl_err, sizeof tl_err, "rank %d out of range", r);
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
static int start_workers(cu_backend *c);
static int drain(cu_backend *c);
static void stop_workers(cu_backend *c);

static int make_partitions(cu_backend *c, int device, int G) {
  CUdevice dev;
  CUdevResource all, rem;
  int rc = drv_load(c->err, sizeof c->err);
  if (rc) return rc;
  RT_DRV(c, drv.DeviceGet(&dev, device));
  RT_DRV(c, drv.DeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM));
  unsigned total = all.sm.smCount;
  unsigned per = total / (unsigned)G;
  per -= per % 8; /* Hopper partitions come in multiples of 8 SMs */
  if (per < 8) {
    snprintf(c->err, sizeof c->err, "%u SMs cannot be split into %d partitions of >= 8", total, G);
    return RT_EINVAL;
  }
  CUdevResource *groups = rt_calloc((size_t)G, sizeof *groups);
  if (!groups) return RT_ENOMEM;
  unsigned nb = (unsigned)G;
  CUresult r = drv.DevSmResourceSplitByCount(groups, &nb, &all, &rem, 0, per);
  if (r != CUDA_SUCCESS || nb < (unsigned)G) {
    rt_free(groups);
    snprintf(c->err, sizeof c->err, "cuDevSmResourceSplitByCount(%d x %u SMs): %s (%u groups)",
             G, per, r != CUDA_SUCCESS ? drv_msg(r) : "too few groups", nb);
    return RT_EDEVICE;
  }
  for (int i = 0; i < G && !rc; i++) {
    CUdevResourceDesc desc;
    cu_rank *k = &c->rank[i];
    k->dev = device;
    k->sms = (int)groups[i].sm.smCount;
    CUresult e = drv.DevResourceGenerateDesc(&desc, &groups[i], 1);
    if (e == CUDA_SUCCESS) e = drv.GreenCtxCreate(&k->green, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
    if (e == CUDA_SUCCESS)
      e = drv.GreenCtxStreamCreate((CUstream *)&k->stream, k->green, CU_STREAM_NON_BLOCKING, 0);
    if (e != CUDA_SUCCESS) {
      snprintf(c->err, sizeof c->err, "green context %d: %s", i, drv_msg(e));
      rc = RT_EDEVICE;
    }
  }
  rt_free(groups);
  if (!rc)
    snprintf(c->desc, sizeof c->desc, "%d green-context partitions of %d SMs (of %u)", G,
             c->rank[0].sms, total);
  return rc;
}

static int cu_create(rt_backend **out, const rt_backend_config *cfg, char *err,
                     size_t errlen) {
  cu_backend *c = rt_calloc(1, sizeof *c);
  if (!c) return RT_ENOMEM;
  c->base.ops = &rt_backend_cuda_ops;
  c->base.ranks = cfg->ranks;
  c->partitions = cfg->partitions;
  c->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 120.0;
  c->rank = rt_calloc((size_t)cfg->ranks, sizeof *c->rank);
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
        cudaEventCreateWithFlags(&k->bar_ev, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&k->bar2[0], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&k->bar2[1], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&k->go_ev, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&k->mv_ev[0], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&k->mv_ev[1], cudaEventDisableTiming) != cudaSuccess ||
        cudaStreamCreateWithFlags(&k->mv_stream, cudaStreamNonBlocking) != cudaSuccess) {
      snprintf(c->err, sizeof c->err, "cannot create events on device %d", k->dev);
      rc = RT_EDEVICE;
      break;
    }
    k->mark_ev = rt_calloc(CU_MAX_MARKS, sizeof *k->mark_ev);
    k->pt_ev = rt_calloc(RT_MOVE_POINTS, sizeof *k->pt_ev);
    if (!k->mark_ev || !k->pt_ev) rc = RT_ENOMEM;
    if (!rc && kn_cuda_blas_create(&k->blas, k->stream)) {
      snprintf(c->err, sizeof c->err, "%s", kn_cuda_last_error());
      rc = RT_EDEVICE;
    }
  }
  if (!rc && cfg->ranks > 1 && !cfg->direct) rc = start_workers(c);
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
  drain(c);
  stop_workers(c);
  if (c->rank) {
    for (int r = 0; r < b->ranks; r++) {
      cu_rank *k = &c->rank[r];
      cudaSetDevice(k->dev);
      if (k->stream) cudaStreamSynchronize(k->stream);
      if (k->mv_stream) cudaStreamSynchronize(k->mv_stream);
      kn_cuda_blas_destroy(k->blas);
      if (k->mark_ev)
        for (int i = 0; i < CU_MAX_MARKS; i++)
          if (k->mark_ev[i]) cudaEventDestroy(k->mark_ev[i]);
      rt_free(k->mark_ev);
      if (k->pt_ev)
        for (int i = 0; i < RT_MOVE_POINTS; i++)
          if (k->pt_ev[i]) cudaEventDestroy(k->pt_ev[i]);
      rt_free(k->pt_ev);
      if (k->bar_ev) cudaEventDestroy(k->bar_ev);
      for (int i = 0; i < 2; i++) {
        if (k->bar2[i]) cudaEventDestroy(k->bar2[i]);
        if (k->mv_ev[i]) cudaEventDestroy(k->mv_ev[i]);
      }
      if (k->go_ev) cudaEventDestroy(k->go_ev);
      if (k->mv_stream) cudaStreamDestroy(k->mv_stream);
      if (k->stream) cudaStreamDestroy(k->stream);
      if (k->green && drv.GreenCtxDestroy) drv.GreenCtxDestroy(k->green);
    }
  }
  rt_free(c->rank);
  rt_free(c);
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
/* ---- per-rank worker threads ----
 * With several ranks in one process, issuing every rank's launches from one
 * host thread makes the host the bottleneck (about 5 us per launch, times
 * the ranks). Each rank therefore gets a worker thread that issues its
 * stream's work in order: the executor's calls only append an operation
 * to the rank's queue. Cross-rank order (barrier) is kept by recording
 * each rank's event, a pthread barrier among the workers, then waits on
 * the others' events (two alternating event sets, so an event is recorded
 * again only after every rank has enqueued its wait on it). Errors are
 * kept per worker and returned by the next download/collect; a failed
 * worker still joins every barrier, so none waits forever. */
enum cu_kind { K_UPLOAD, K_FILL, K_FILL_BYTES, K_PERMUTE, K_COMBINE, K_FFN_FWD, K_FFN_BWD,
               K_ADD, K_COPY, K_BARRIER, K_MARK, K_DELAY, K_STOP,
               K_MOVE_GO, K_MOVE_COPY, K_MOVE_FENCE, K_MOVE_POINT, K_MOVE_WAIT,
               K_MOVE_JOIN };

typedef struct cu_op {
  enum cu_kind kind;
  int r, r2, k, d, f, set;
  void *dst, *x1, *x2;
  const void *a, *b, *c, *e;
  const int32_t *idx;
  const float *w;
  int64_t n;
  size_t bytes;
  uint64_t seed;
  float scale;
  double us;
} cu_op;

typedef struct cu_worker {
  pthread_t th;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv, idle;
  cu_op *ring;
  size_t head, count, cap;
  int busy;
  int rc;
  char err[700];
} cu_worker;

static int exec_op(rt_backend *b, const cu_op *o);

typedef struct wk_arg {
  cu_backend *c;
  int r;
} wk_arg;

/* Rank r's stream (copy 0) or copy stream (copy 1) waits for every copy
 * stream's point id, a copy stream for every other one's (its own is
 * behind it already). Every wait is issued; the first failure, or
 * cudaSuccess. */
static cudaError_t wait_point(cu_backend *c, int r, int id, int copy) {
  cudaStream_t s = copy ? c->rank[r].mv_stream : c->rank[r].stream;
  cudaError_t first = cudaSuccess;
  for (int q = 0; q < c->base.ranks; q++) {
    if (copy && q == r) continue;
    cudaError_t e = cudaStreamWaitEvent(s, c->rank[q].pt_ev[id], 0);
    if (first == cudaSuccess) first = e;
  }
  return first;
}

static void *worker_main(void *p) {
  wk_arg *a = p;
  cu_backend *c = a->c;
  cu_worker *w = &c->wk[a->r];
  cudaSetDevice(c->rank[a->r].dev);
  for (;;) {
    pthread_mutex_lock(&w->mu);
    while (w->count == 0) pthread_cond_wait(&w->cv, &w->mu);
    cu_op o = w->ring[w->head];
    w->head = (w->head + 1) % w->cap;
    w->count--;
    w->busy = 1;
    pthread_mutex_unlock(&w->mu);
    if (o.kind == K_STOP) break;
    if (o.kind == K_BARRIER) {
      /* record, meet the others, wait on theirs (even after an error) */
      cu_rank *k = &c->rank[a->r];
      if (!w->rc) cudaEventRecord(k->bar2[o.set], k->stream);
      pthread_barrier_wait(&c->pbar);
      if (!w->rc)
        for (int q = 0; q < c->base.ranks; q++)
          if (q != a->r) cudaStreamWaitEvent(k->stream, c->rank[q].bar2[o.set], 0);
    } else if (o.kind == K_MOVE_FENCE) {
      /* the copy stream's end, meet the others, wait on every copy stream */
      cu_rank *k = &c->rank[a->r];
      if (!w->rc) cudaEventRecord(k->mv_ev[o.set], k->mv_stream);
      pthread_barrier_wait(&c->pbar);
      if (!w->rc)
        for (int q = 0; q < c->base.ranks; q++)
          cudaStreamWaitEvent(k->stream, c->rank[q].mv_ev[o.set], 0);
    } else if (o.kind == K_MOVE_WAIT || o.kind == K_MOVE_JOIN) {
      /* every copy stream recorded point o.k before this (meet first) */
      pthread_barrier_wait(&c->pbar);
      if (!w->rc) wait_point(c, a->r, o.k, o.kind == K_MOVE_JOIN);
    } else if (!w->rc) {
      int rc = exec_op(&c->base, &o);
      if (rc) {
        w->rc = rc;
        snprintf(w->err, sizeof w->err, "rank %d: %s", a->r, tl_err);
      }
    }
    pthread_mutex_lock(&w->mu);
    w->busy = 0;
    if (w->count == 0) pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->mu);
  }
  pthread_mutex_lock(&w->mu);
  w->busy = 0;
  pthread_cond_broadcast(&w->idle);
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static int push(cu_backend *c, const cu_op *o) {
  cu_worker *w = &c->wk[o->r];
  pthread_mutex_lock(&w->mu);
  if (w->count == w->cap) {
    size_t nc = w->cap ? 2 * w->cap : 1024;
    cu_op *n = rt_malloc(sizeof *n * nc);
    if (!n) {
      pthread_mutex_unlock(&w->mu);
      return RT_ENOMEM;
    }
    for (size_t i = 0; i < w->count; i++) n[i] = w->ring[(w->head + i) % w->cap];
    rt_free(w->ring);
    w->ring = n;
    w->head = 0;
    w->cap = nc;
  }
  w->ring[(w->head + w->count) % w->cap] = *o;
  w->count++;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

/* Waits until every worker has issued everything queued; returns the
 * first worker error (message in c->err). */
static int drain(cu_backend *c) {
  if (!c->wk) return 0;
  int rc = 0;
  for (int r = 0; r < c->base.ranks; r++) {
    cu_worker *w = &c->wk[r];
    if (!w->started) continue;
    pthread_mutex_lock(&w->mu);
    while (w->count > 0 || w->busy) pthread_cond_wait(&w->idle, &w->mu);
    if (w->rc && !rc) {
      rc = w->rc;
      snprintf(c->err, sizeof c->err, "%s", w->err);
    }
    pthread_mutex_unlock(&w->mu);
  }
  return rc;
}

static void stop_workers(cu_backend *c) {
  if (!c->wk) return;
  for (int r = 0; r < c->base.ranks; r++) {
    cu_worker *w = &c->wk[r];
    if (!w->started) continue;
    cu_op o = {.kind = K_STOP, .r = r};
    push(c, &o);
    pthread_join(w->th, NULL);
  }
  for (int r = 0; r < c->base.ranks; r++) {
    cu_worker *w = &c->wk[r];
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->idle);
    rt_free(w->ring);
  }
  pthread_barrier_destroy(&c->pbar);
  rt_free(c->wk);
  rt_free(c->wargs);
  c->wk = NULL;
}

static int start_workers(cu_backend *c) {
  int G = c->base.ranks;
  c->wk = rt_calloc((size_t)G, sizeof *c->wk);
  c->wargs = rt_calloc((size_t)G, sizeof *c->wargs);
  if (!c->wk || !c->wargs) return RT_ENOMEM;
  if (pthread_barrier_init(&c->pbar, NULL, (unsigned)G)) return RT_ENOMEM;
  for (int r = 0; r < G; r++) {
    cu_worker *w = &c->wk[r];
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->idle, NULL);
  }
  for (int r = 0; r < G; r++) {
    c->wargs[r].c = c;
    c->wargs[r].r = r;
    if (pthread_create(&c->wk[r].th, NULL, worker_main, &c->wargs[r])) {
      snprintf(c->err, sizeof c->err, "cannot start the worker thread of rank %d", r);
      /* Workers already started would block at a barrier without this one:
       * none is pushed before all exist, so stopping them is safe. */
      return RT_ENOMEM;
    }
    c->wk[r].started = 1;
  }
  return 0;
}

static int do_upload(rt_backend *b, int r, void *dst, const void *host, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  if (bytes) RT_CU(c, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, R(b, r)->stream));
  return 0;
}
static int cu_download(rt_backend *b, int r, void *host, const void *src, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = drain(c);
  if (rc) return rc;
  if ((rc = use(c, r))) return keep(c, rc);
  for (int q = 0; q < b->ranks; q++)
    if ((rc = wait_poll(c, NULL, c->rank[q].stream)) ||
        (rc = wait_poll(c, NULL, c->rank[q].mv_stream)))
      return rc;
  if (bytes) RT_CU(c, cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
  return 0;
}
static int do_fill(rt_backend *b, int r, void *dst, size_t n, uint64_t seed, float scale) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_fill(R(b, r)->stream, dst, n, seed, scale));
  return 0;
}
static int do_fill_bytes(rt_backend *b, int r, void *dst, size_t bytes, uint64_t seed) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_fill_bytes(R(b, r)->stream, dst, bytes, seed));
  return 0;
}
static int do_permute(rt_backend *b, int r, void *dst, const void *src,
                      const int32_t *idx, const float *w, int64_t rows, int d) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_permute(R(b, r)->stream, dst, src, idx, w, rows, d));
  return 0;
}
static int do_combine(rt_backend *b, int r, void *out, const void *src,
                      const int32_t *idx, const float *w, int64_t tokens, int k, int d) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_combine(R(b, r)->stream, out, src, idx, w, tokens, k, d));
  return 0;
}
static int do_ffn_fwd(rt_backend *b, int r, const void *X, const void *P, void *A,
                      void *Y, int64_t n, int d, int f) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_ffn_fwd(R(b, r)->blas, R(b, r)->stream, X, P, A, Y, n, d, f));
  return 0;
}
static int do_ffn_bwd(rt_backend *b, int r, const void *X, const void *P,
                      const void *A, const void *dY, void *dA, void *dX, void *G,
                      int64_t n, int d, int f) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_ffn_bwd(R(b, r)->blas, R(b, r)->stream, X, P, A, dY, dA, dX, G, n, d, f));
  return 0;
}
static int do_add(rt_backend *b, int r, void *dst, const void *src, size_t n) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_KN(c, kn_cuda_add(R(b, r)->stream, dst, src, n));
  return 0;
}
static int cu_group(rt_backend *b) { (void)b; return 0; }
static int do_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, sr);
  if (rc) return rc;
  if (dr < 0 || dr >= b->ranks) return RT_EINVAL;
  RT_KN(c, kn_cuda_copy(R(b, sr)->stream, dst, R(b, dr)->dev, src, R(b, sr)->dev, bytes));
  return 0;
}
static int do_barrier(rt_backend *b) {
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
/* move_begin on rank r: the copy stream starts after the rank's stream
 * reaches this point. */
static int do_move_go(rt_backend *b, int r) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  cu_rank *k = &c->rank[r];
  RT_CU(c, cudaEventRecord(k->go_ev, k->stream));
  RT_CU(c, cudaStreamWaitEvent(k->mv_stream, k->go_ev, 0));
  return 0;
}
static int do_move_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, sr);
  if (rc) return rc;
  if (dr < 0 || dr >= b->ranks) return RT_EINVAL;
  RT_KN(c, kn_cuda_copy(R(b, sr)->mv_stream, dst, R(b, dr)->dev, src, R(b, sr)->dev, bytes));
  return 0;
}
/* Direct mode's fence: every stream waits for every copy stream. */
static int do_move_fence(rt_backend *b, int set) {
  cu_backend *c = (cu_backend *)b;
  int G = b->ranks, rc;
  for (int r = 0; r < G; r++) {
    if ((rc = use(c, r))) return rc;
    RT_CU(c, cudaEventRecord(c->rank[r].mv_ev[set], c->rank[r].mv_stream));
  }
  for (int r = 0; r < G; r++) {
    if ((rc = use(c, r))) return rc;
    for (int q = 0; q < G; q++)
      RT_CU(c, cudaStreamWaitEvent(c->rank[r].stream, c->rank[q].mv_ev[set], 0));
  }
  return 0;
}
/* move_point on rank r: event id marks the copies given so far on its copy
 * stream. */
static int do_move_point(rt_backend *b, int r, int id) {
  cu_backend *c = (cu_backend *)b;
  int rc = use(c, r);
  if (rc) return rc;
  RT_CU(c, cudaEventRecord(c->rank[r].pt_ev[id], c->rank[r].mv_stream));
  return 0;
}
/* Direct mode's move_wait (copy 0: every stream waits for every copy
 * stream's point id) and move_join (copy 1: every copy stream waits for
 * every other copy stream's point id). */
static int do_move_wait(rt_backend *b, int id, int copy) {
  cu_backend *c = (cu_backend *)b;
  int rc;
  for (int r = 0; r < b->ranks; r++) {
    if ((rc = use(c, r))) return rc;
    cudaError_t e = wait_point(c, r, id, copy);
    if (e != cudaSuccess)
      return cu_fail(c, RT_EDEVICE, __FILE__, __LINE__, "cudaStreamWaitEvent",
                     cudaGetErrorString(e));
  }
  return 0;
}
static int do_mark(rt_backend *b, int slot) {
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
static int exec_op(rt_backend *b, const cu_op *o) {
  switch (o->kind) {
  case K_UPLOAD: return do_upload(b, o->r, o->dst, o->a, o->bytes);
  case K_FILL: return do_fill(b, o->r, o->dst, (size_t)o->n, o->seed, o->scale);
  case K_FILL_BYTES: return do_fill_bytes(b, o->r, o->dst, o->bytes, o->seed);
  case K_PERMUTE: return do_permute(b, o->r, o->dst, o->a, o->idx, o->w, o->n, o->d);
  case K_COMBINE: return do_combine(b, o->r, o->dst, o->a, o->idx, o->w, o->n, o->k, o->d);
  case K_FFN_FWD: return do_ffn_fwd(b, o->r, o->a, o->b, o->x1, o->dst, o->n, o->d, o->f);
  case K_FFN_BWD:
    return do_ffn_bwd(b, o->r, o->a, o->b, o->c, o->e, o->x1, o->x2, o->dst, o->n, o->d, o->f);
  case K_ADD: return do_add(b, o->r, o->dst, o->a, (size_t)o->n);
  case K_COPY: return do_copy(b, o->r, o->a, o->r2, o->dst, o->bytes);
  case K_MOVE_GO: return do_move_go(b, o->r);
  case K_MOVE_COPY: return do_move_copy(b, o->r, o->a, o->r2, o->dst, o->bytes);
  case K_MOVE_POINT: return do_move_point(b, o->r, o->k);
  case K_DELAY: {
    cu_backend *c = (cu_backend *)b;
    int rc = use(c, o->r);
    if (rc) return rc;
    RT_KN(c, kn_cuda_spin(c->rank[o->r].stream, o->us));
    return 0;
  }
  case K_MARK: {
    cu_backend *c = (cu_backend *)b;
    cu_rank *k = &c->rank[o->r];
    RT_CU(c, cudaEventRecord(k->mark_ev[o->k], k->stream));
    return 0;
  }
  default: return RT_EINVAL;
  }
}

/* Direct mode (one rank, or the nccl backend's local GPU): run now;
 * worker mode: queue for the rank's worker. */
static int submit(rt_backend *b, const cu_op *o) {
  cu_backend *c = (cu_backend *)b;
  if (o->r < 0 || o->r >= b->ranks) {
    snprintf(c->err, sizeof c->err, "rank %d out of range", o->r);
    return RT_EINVAL;
  }
  if (!c->wk) return keep(c, exec_op(b, o));
  int rc = push(c, o);
  if (rc) snprintf(c->err, sizeof c->err, "out of memory queueing work for rank %d", o->r);
  return rc;
}

static int cu_upload(rt_backend *b, int r, void *dst, const void *host, size_t bytes) {
  cu_op o = {.kind = K_UPLOAD, .r = r, .dst = dst, .a = host, .bytes = bytes};
  return submit(b, &o);
}
static int cu_fill(rt_backend *b, int r, void *dst, size_t n, uint64_t seed, float scale) {
  cu_op o = {.kind = K_FILL, .r = r, .dst = dst, .n = (int64_t)n, .seed = seed, .scale = scale};
  return submit(b, &o);
}
static int cu_fill_bytes(rt_backend *b, int r, void *dst, size_t bytes, uint64_t seed) {
  cu_op o = {.kind = K_FILL_BYTES, .r = r, .dst = dst, .bytes = bytes, .seed = seed};
  return submit(b, &o);
}
static int cu_permute(rt_backend *b, int r, void *dst, const void *src, const int32_t *idx,
                      const float *w, int64_t rows, int d) {
  cu_op o = {.kind = K_PERMUTE, .r = r, .dst = dst, .a = src, .idx = idx, .w = w, .n = rows, .d = d};
  return submit(b, &o);
}
static int cu_combine(rt_backend *b, int r, void *out, const void *src, const int32_t *idx,
                      const float *w, int64_t tokens, int k, int d) {
  cu_op o = {.kind = K_COMBINE, .r = r, .dst = out, .a = src, .idx = idx, .w = w, .n = tokens,
             .k = k, .d = d};
  return submit(b, &o);
}
static int cu_ffn_fwd(rt_backend *b, int r, const void *X, const void *P, void *A, void *Y,
                      int64_t n, int d, int f) {
  cu_op o = {.kind = K_FFN_FWD, .r = r, .a = X, .b = P, .x1 = A, .dst = Y, .n = n, .d = d, .f = f};
  return submit(b, &o);
}
static int cu_ffn_bwd(rt_backend *b, int r, const void *X, const void *P, const void *A,
                      const void *dY, void *dA, void *dX, void *G, int64_t n, int d, int f) {
  cu_op o = {.kind = K_FFN_BWD, .r = r, .a = X, .b = P, .c = A, .e = dY, .x1 = dA, .x2 = dX,
             .dst = G, .n = n, .d = d, .f = f};
  return submit(b, &o);
}
static int cu_add(rt_backend *b, int r, void *dst, const void *src, size_t n) {
  cu_op o = {.kind = K_ADD, .r = r, .dst = dst, .a = src, .n = (int64_t)n};
  return submit(b, &o);
}
static int cu_delay(rt_backend *b, int r, double us) {
  cu_op o = {.kind = K_DELAY, .r = r, .us = us};
  return submit(b, &o);
}
static int cu_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  if (dr < 0 || dr >= b->ranks) return RT_EINVAL;
  cu_op o = {.kind = K_COPY, .r = sr, .r2 = dr, .a = src, .dst = dst, .bytes = bytes};
  return submit(b, &o);
}
static int cu_barrier(rt_backend *b) {
  cu_backend *c = (cu_backend *)b;
  if (!c->wk) return keep(c, do_barrier(b));
  c->bar_set ^= 1;
  for (int r = 0; r < b->ranks; r++) {
    cu_op o = {.kind = K_BARRIER, .r = r, .set = c->bar_set};
    int rc = submit(b, &o);
    if (rc) return rc;
  }
  return 0;
}
static int cu_mark(rt_backend *b, int slot) {
  cu_backend *c = (cu_backend *)b;
  if (slot < 0 || slot >= CU_MAX_MARKS) return RT_EINVAL;
  /* events are created here, on the calling thread, before use */
  for (int r = 0; r < b->ranks; r++) {
    cu_rank *k = &c->rank[r];
    if (!k->mark_ev[slot]) {
      int rc = use(c, r);
      if (rc) return keep(c, rc);
      cudaError_t e = cudaEventCreate(&k->mark_ev[slot]);
      if (e != cudaSuccess) return keep(c, cu_fail(c, RT_EDEVICE, __FILE__, __LINE__, "cudaEventCreate", cudaGetErrorString(e)));
    }
  }
  if (slot > c->max_slot) c->max_slot = slot;
  if (!c->wk) return keep(c, do_mark(b, slot));
  for (int r = 0; r < b->ranks; r++) {
    cu_op o = {.kind = K_MARK, .r = r, .k = slot};
    int rc = submit(b, &o);
    if (rc) return rc;
  }
  return 0;
}

static int cu_move_begin(rt_backend *b) {
  for (int r = 0; r < b->ranks; r++) {
    cu_op o = {.kind = K_MOVE_GO, .r = r};
    int rc = submit(b, &o);
    if (rc) return rc;
  }
  return 0;
}
static int cu_move_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  if (dr < 0 || dr >= b->ranks) return RT_EINVAL;
  cu_op o = {.kind = K_MOVE_COPY, .r = sr, .r2 = dr, .a = src, .dst = dst, .bytes = bytes};
  return submit(b, &o);
}
static int cu_move_fence(rt_backend *b) {
  cu_backend *c = (cu_backend *)b;
  c->mv_set ^= 1;
  if (!c->wk) return keep(c, do_move_fence(b, c->mv_set));
  for (int r = 0; r < b->ranks; r++) {
    cu_op o = {.kind = K_MOVE_FENCE, .r = r, .set = c->mv_set};
    int rc = submit(b, &o);
    if (rc) return rc;
  }
  return 0;
}

/* Point id's events, created here on the calling thread before any use
 * (as cu_mark's); RT_EINVAL for an id out of range. */
static int point_events(cu_backend *c, int id) {
  if (id < 0 || id >= RT_MOVE_POINTS) {
    snprintf(c->err, sizeof c->err, "move point %d out of range", id);
    return RT_EINVAL;
  }
  for (int r = 0; r < c->base.ranks; r++) {
    cu_rank *k = &c->rank[r];
    if (k->pt_ev[id]) continue;
    int rc = use(c, r);
    if (rc) return keep(c, rc);
    cudaError_t e = cudaEventCreateWithFlags(&k->pt_ev[id], cudaEventDisableTiming);
    if (e != cudaSuccess)
      return keep(c, cu_fail(c, RT_EDEVICE, __FILE__, __LINE__, "cudaEventCreateWithFlags",
                             cudaGetErrorString(e)));
  }
  return 0;
}
static int cu_move_point(rt_backend *b, int id) {
  cu_backend *c = (cu_backend *)b;
  int rc = point_events(c, id);
  if (rc) return rc;
  for (int r = 0; r < b->ranks; r++) {
    cu_op o = {.kind = K_MOVE_POINT, .r = r, .k = id};
    if ((rc = submit(b, &o))) return rc;
  }
  return 0;
}
/* move_wait (K_MOVE_WAIT) and move_join (K_MOVE_JOIN): now in direct
 * mode, else one op per rank's worker (they meet before waiting). */
static int move_wait_kind(rt_backend *b, int id, int kind) {
  cu_backend *c = (cu_backend *)b;
  int rc = point_events(c, id);
  if (rc) return rc;
  if (!c->wk) return keep(c, do_move_wait(b, id, kind == K_MOVE_JOIN));
  for (int r = 0; r < b->ranks; r++) {
    cu_op o = {.kind = kind, .r = r, .k = id};
    if ((rc = submit(b, &o))) return rc;
  }
  return 0;
}
static int cu_move_wait(rt_backend *b, int id) { return move_wait_kind(b, id, K_MOVE_WAIT); }
static int cu_move_join(rt_backend *b, int id) { return move_wait_kind(b, id, K_MOVE_JOIN); }

static int collect_direct(rt_backend *b, int nslots, double *ms);
static int cu_collect(rt_backend *b, int nslots, double *ms) {
  cu_backend *c = (cu_backend *)b;
  int rc = drain(c);
  if (rc) return rc;
  rc = collect_direct(b, nslots, ms);
  if (rc && rc != RT_EINVAL && rc != RT_ETIMEOUT) keep(c, rc);
  return rc;
}

static int collect_direct(rt_backend *b, int nslots, double *ms) {
  cu_backend *c = (cu_backend *)b;
  int G = b->ranks, rc;
  if (nslots < 1 || nslots > CU_MAX_MARKS) return RT_EINVAL;
  for (int r = 0; r < G; r++)
    if ((rc = wait_poll(c, NULL, c->rank[r].stream)) ||
        (rc = wait_poll(c, NULL, c->rank[r].mv_stream)))
      return rc;
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
    .delay = cu_delay,
    .group_begin = cu_group,
    .copy = cu_copy,
    .group_end = cu_group,
    .allreduce = NULL,
    .barrier = cu_barrier,
    .mark = cu_mark,
    .collect = cu_collect,
    .max_marks = cu_max_marks,
    .last_error = cu_last_error,
    .move_begin = cu_move_begin,
    .move_copy = cu_move_copy,
    .move_fence = cu_move_fence,
    .move_point = cu_move_point,
    .move_wait = cu_move_wait,
    .move_join = cu_move_join,
};

void *rt_cuda_stream(rt_backend *b, int rank) { return R(b, rank)->stream; }
int rt_cuda_device(rt_backend *b, int rank) { return R(b, rank)->dev; }
