/*
 * rt_backend.h - the interface every runtime backend implements (cpu, cuda,
 * nccl), and the registry that finds them by name.
 *
 * Model: G ranks, each with an in-order work queue (a CUDA stream on the GPU
 * backends, a list of deferred operations run by the rank's own thread on
 * the cpu backend). Every operation names the rank whose queue runs it and
 * only enqueues; ordering between ranks is made explicit with barrier()
 * (every rank's later work waits for every rank's earlier work), and
 * copies between ranks are bracketed by group_begin/group_end (one NCCL
 * group on the nccl backend). mark() records a time stamp in every rank's
 * queue; collect() waits for all work (polling, with a timeout) and returns
 * the stamps. In the nccl backend a process owns one rank: operations on
 * ranks it does not own are ignored and a copy becomes a send on the source
 * process and a receive on the destination one, so every process runs the
 * same host code (SPMD).
 *
 * Buffers are opaque pointers in the rank's memory space (device memory on
 * the GPU backends); element type is the backend's: float on cpu (4 bytes),
 * bf16 on cuda and nccl (2 bytes); elem_bytes says which. Host source
 * buffers given to upload() must stay unchanged until the next collect().
 * Errors: 0 or a negative RT_ code; last_error() then says which call failed
 * and why (file:line and the CUDA/NCCL message on GPU backends).
 */
#ifndef FLEXMOE_RT_BACKEND_H
#define FLEXMOE_RT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RT_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(EBACKEND, -3, "unknown or unavailable backend")                            \
  X(EDEVICE, -4, "GPU error")                                                  \
  X(ETIMEOUT, -5, "timed out waiting for the device")                          \
  X(ECOMM, -6, "communication error")                                          \
  X(EPLACEMENT, -7, "placement library error")                                 \
  X(ETRACE, -8, "trace error")                                                 \
  X(ECHECK, -9, "self-check failed")                                           \
  X(ESLOTS, -10, "no free expert slot on a rank")

typedef enum rt_err {
#define RT_ERR_ENUM(name, value, msg) RT_##name = (value),
  RT_ERRNO_MAP(RT_ERR_ENUM)
#undef RT_ERR_ENUM
} rt_err;

const char *rt_strerror(int code);

/* Host allocation hook of the runtime (defaults: malloc/realloc/free), so
 * tests can fail the Nth allocation. Set it before any other call, never
 * concurrently with them. rt_calloc checks n * size for overflow. */
typedef void *(*rt_malloc_fn)(size_t size);
typedef void *(*rt_realloc_fn)(void *ptr, size_t size);
typedef void (*rt_free_fn)(void *ptr);
void rt_set_allocator(rt_malloc_fn m, rt_realloc_fn r, rt_free_fn f);
void *rt_malloc(size_t size);
void *rt_calloc(size_t n, size_t size);
void *rt_realloc(void *ptr, size_t size);
void rt_free(void *ptr);

typedef struct rt_backend rt_backend;

typedef struct rt_backend_config {
  int ranks;           /* G >= 1 (nccl: the MPI world size, or 0 for it) */
  int partitions;      /* cuda: > 0 = G SM partitions of one GPU (green
                          contexts), 0 = one GPU per rank */
  int device;          /* first CUDA device */
  double timeout_s;    /* collect() gives up after this long (default 120) */
  int direct;          /* cuda: issue work from the calling thread instead of
                          one worker thread per rank (the nccl backend's
                          local GPU needs this) */
} rt_backend_config;

typedef struct rt_backend_ops {
  const char *name;
  const char *summary;
  int (*create)(rt_backend **out, const rt_backend_config *cfg, char *err,
                size_t errlen);
  void (*destroy)(rt_backend *b);
  int (*elem_bytes)(const rt_backend *b);
  int (*owns)(const rt_backend *b, int rank);
  /* A short description of the hardware (device name, partitions). */
  const char *(*describe)(const rt_backend *b);

  /* Memory of a rank; NULL on failure or when the rank is not owned. */
  void *(*alloc)(rt_backend *b, int rank, size_t bytes);
  void (*release)(rt_backend *b, int rank, void *p);
  int (*upload)(rt_backend *b, int rank, void *dst, const void *host, size_t bytes);
  /* Synchronous: waits for the rank's queue, then copies to host. */
  int (*download)(rt_backend *b, int rank, void *host, const void *src, size_t bytes);

  /* Kernels (see kernels/kn_kernels.h for the math). Sizes in elements. */
  int (*fill)(rt_backend *b, int rank, void *dst, size_t n, uint64_t seed, float scale);
  int (*fill_bytes)(rt_backend *b, int rank, void *dst, size_t bytes, uint64_t seed);
  int (*permute)(rt_backend *b, int rank, void *dst, const void *src,
                 const int32_t *idx, const float *w, int64_t rows, int d);
  int (*combine)(rt_backend *b, int rank, void *out, const void *src,
                 const int32_t *idx, const float *w, int64_t tokens, int k, int d);
  int (*ffn_fwd)(rt_backend *b, int rank, const void *X, const void *P, void *A,
                 void *Y, int64_t n, int d, int f);
  int (*ffn_bwd)(rt_backend *b, int rank, const void *X, const void *P,
                 const void *A, const void *dY, void *dA, void *dX, void *G,
                 int64_t n, int d, int f);
  int (*add)(rt_backend *b, int rank, void *dst, const void *src, size_t n);
  /* Keeps the rank's queue busy for `us` microseconds (GPU backends: a
   * spinning kernel), so the host can queue work ahead of a time stamp.
   * May be NULL (cpu). */
  int (*delay)(rt_backend *b, int rank, double us);

  /* Communication: bytes from src (on src_rank) to dst (on dst_rank). */
  int (*group_begin)(rt_backend *b);
  int (*copy)(rt_backend *b, int src_rank, const void *src, int dst_rank,
              void *dst, size_t bytes);
  int (*group_end)(rt_backend *b);
  /* Sum of n elements over the ranks in `ranks` (ascending, nranks >= 2),
   * in place in buf (one buffer per listed rank), using scratch (same
   * size) on each. May be NULL: the executor then reduces with copy + add. */
  int (*allreduce)(rt_backend *b, const int *ranks, int nranks, void *const *buf,
                   void *const *scratch, size_t n);
  int (*barrier)(rt_backend *b);

  /* Timing: mark() enqueues stamp `slot` on every owned rank; collect()
   * waits for all work and writes ms[slot * ranks + r] relative to stamp 0
   * (entries of ranks not owned are set to NaN locally; the nccl backend
   * fills them in by gathering). */
  int (*mark)(rt_backend *b, int slot);
  int (*collect)(rt_backend *b, int nslots, double *ms);
  int (*max_marks)(const rt_backend *b);

  const char *(*last_error)(const rt_backend *b);

  /* Appended: background moves (docs/runtime.md, "Background moves"; the
   * contract is pl_policy.h's). move_begin() marks a point in every rank's
   * queue: copies given to move_copy() after it start once every rank has
   * reached that point (their sources are then written) and run beside the
   * ranks' later work, on the backend's mover (cpu: a mover thread; cuda:
   * a copy stream per rank ordered by events; nccl: a separate
   * communicator). move_fence() makes every rank's later work wait until
   * every copy given so far has landed. Copies must not write what the
   * ranks read or write between the begin and the fence, nor read what
   * they write. Any of the three may be NULL: the backend has no mover,
   * and the executor then makes the copies at the fence, blocking. */
  int (*move_begin)(rt_backend *b);
  int (*move_copy)(rt_backend *b, int src_rank, const void *src, int dst_rank, void *dst,
                   size_t bytes);
  int (*move_fence)(rt_backend *b);

  /* Appended (issue 17): per-layer completion on the mover, for
   * weights-first copies (pl_policy.h rule 6: a layer's forward waits for
   * its own weights only). move_point(b, id) puts point `id` (0 <= id <
   * RT_MOVE_POINTS) in the mover's queue after every copy given so far;
   * move_wait(b, id) makes every rank's later work wait until the mover has
   * passed the latest point `id` put before it, not for copies given after
   * that point (they keep running beside the ranks' work, until
   * move_fence). An id may be put again once a barrier() follows every
   * wait on it; put again before its wait, the point moves to the later
   * put (the wait then also covers the copies in between). Either may be NULL: the executor then fences with
   * move_fence (every copy given so far, later layers' included). */
  int (*move_point)(rt_backend *b, int id);
  int (*move_wait)(rt_backend *b, int id);

  /* Appended (issue 17, pl_policy.h rule 6): move_join(b, id) makes the
   * mover's copies given after it start only once every copy before the
   * latest point `id` has landed, on every source: the optimizer state and
   * the plain background copies start when the last weight part lands,
   * not per source as soon as that source's own weights are done. NULL
   * where the mover's order already gives it (cpu: one queue for all
   * ranks) or cannot (nccl: a pair's copies start once both its ends have
   * passed their earlier groups). */
  int (*move_join)(rt_backend *b, int id);
} rt_backend_ops;

/* Point ids of move_point / move_wait: 0 .. RT_MOVE_POINTS - 1. */
#define RT_MOVE_POINTS 4096

/* Every backend struct starts with this. */
struct rt_backend {
  const rt_backend_ops *ops;
  int ranks;
};

/* NULL-terminated list of the backends this build has (cpu always). */
const rt_backend_ops *const *rt_backend_registry(void);
const rt_backend_ops *rt_backend_find(const char *name);
/* Whether a backend is known but not compiled in (cuda, nccl). */
int rt_backend_known(const char *name);

/* Creates by name. RT_EBACKEND (with a message) for unknown/absent ones. */
int rt_backend_create(rt_backend **out, const char *name,
                      const rt_backend_config *cfg, char *err, size_t errlen);
void rt_backend_destroy(rt_backend *b); /* accepts NULL */

extern const rt_backend_ops rt_backend_cpu_ops;
extern const rt_backend_ops rt_backend_cuda_ops;
extern const rt_backend_ops rt_backend_nccl_ops;

#ifdef __cplusplus
}
#endif
#endif
