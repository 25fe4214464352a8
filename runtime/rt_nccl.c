/*
 * rt_nccl.c - the nccl backend: one process per GPU under mpirun.
 *
 * The MPI world is the rank set (world size must equal the rank count);
 * rank r uses GPU `device + local rank` (local = rank among the processes
 * of its node). NCCL is bootstrapped over MPI (rank 0 makes the unique id,
 * MPI_Bcast). Every process runs the executor's host code for all ranks
 * (SPMD); this backend ignores work on ranks it does not own, and a copy
 * from rank a to rank b becomes ncclSend on a and ncclRecv on b, inside
 * the ncclGroupStart/End the executor brackets each exchange with: grouped
 * send/recv all-to-all. The replica gradient all-reduce runs as NCCL
 * all-reduce on sub-communicators, one per replica set (ncclCommSplit,
 * cached by the set). barrier() is a one-element all-reduce on the world
 * communicator: later work on every stream waits for earlier work on all.
 * Kernels, memory and time stamps are the cuda backend's for the local GPU;
 * collect() gathers every rank's stamps with MPI_Allgather.
 *
 * Background moves (rt_backend.h move_begin/copy/fence) run on a separate
 * communicator (ncclCommSplit of the world one, made at start) and a copy
 * stream of their own, so the iteration's all-to-all and all-reduce keep
 * theirs: move_begin records an event on the rank's stream that the copy
 * stream waits for and opens one NCCL group on the move communicator; the
 * moves are its send/recv pairs (a swap between two GPUs cannot deadlock
 * inside a group); the group is closed by the backend's next call of any
 * other kind (every process makes the same calls in the same order, SPMD);
 * the fence makes the rank's stream wait for the copy stream's event.
 * Per-layer completion (move_point / move_wait): a point closes the open
 * group (the copies before it, one group: a layer's weights), records
 * event `id` on the copy stream and opens the next group; a wait makes the
 * rank's stream wait for that event (the copies a rank waits for are its
 * own receives, which complete on its copy stream). Every process puts the
 * same points in the same order (SPMD), so the groups pair up.
 */
#include "runtime/rt_backend.h"

#include <math.h>
#include <mpi.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime_api.h>

#include "rt_cuda_priv.h"

#define NC_MAX_SUBCOMMS 256

typedef struct subcomm {
  uint64_t set; /* bit mask of the ranks */
  ncclComm_t comm;
} subcomm;

typedef struct nc_backend {
  rt_backend base;
  rt_backend *local; /* cuda backend, one rank: this process's GPU */
  int me;
  int inited_mpi;
  ncclComm_t comm;
  float *one;        /* barrier scratch */
  subcomm sub[NC_MAX_SUBCOMMS];
  int nsub;
  double *mine;
  ncclComm_t mcomm;      /* background moves */
  cudaStream_t mstream;  /* their stream on the local GPU */
  cudaEvent_t go_ev, mv_ev;
  cudaEvent_t *pt_ev;    /* [RT_MOVE_POINTS] move_point's events, created on first use */
  int mv_open;           /* a move group is open (move_begin .. next call) */
  char err[640];
} nc_backend;

#define NC(c, call)                                                            \
  do {                                                                         \
    ncclResult_t r_ = (call);                                                  \
    if (r_ != ncclSuccess) {                                                   \
      snprintf((c)->err, sizeof (c)->err, "%s:%d: %s: %s", __FILE__, __LINE__, \
               #call, ncclGetErrorString(r_));                                 \
      return RT_ECOMM;                                                         \
    }                                                                          \
  } while (0)

static int local_fail(nc_backend *c, int rc) {
  snprintf(c->err, sizeof c->err, "%s", c->local->ops->last_error(c->local));
  return rc;
}
#define LOC(c, call)                                                           \
  do {                                                                         \
    int rc_ = (call);                                                          \
    if (rc_) return local_fail((c), rc_);                                      \
  } while (0)

static void nc_destroy(rt_backend *b);

static int nc_create(rt_backend **out, const rt_backend_config *cfg, char *err,
                     size_t errlen) {
  int inited = 0, size = 0;
  MPI_Initialized(&inited);
  nc_backend *c = rt_calloc(1, sizeof *c);
  if (!c) return RT_ENOMEM;
  c->base.ops = &rt_backend_nccl_ops;
  c->base.ranks = cfg->ranks;
  if (!inited) {
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
      if (err) snprintf(err, errlen, "backend 'nccl': MPI_Init failed");
      rt_free(c);
      return RT_ECOMM;
    }
    c->inited_mpi = 1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &c->me);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 0;
  if (cfg->ranks == 0) c->base.ranks = size;
  if (c->base.ranks > 64) {
    snprintf(c->err, sizeof c->err, "at most 64 ranks");
    rc = RT_EINVAL;
  } else if (size != c->base.ranks) {
    snprintf(c->err, sizeof c->err,
             "%d ranks asked but %d MPI processes (run under mpirun -n %d)", cfg->ranks, size,
             cfg->ranks);
    rc = RT_EINVAL;
  }
  if (cfg->partitions > 0) {
    snprintf(c->err, sizeof c->err, "--partitions needs the cuda backend (NCCL refuses two ranks on one GPU)");
    rc = RT_EINVAL;
  }
  int local = 0;
  if (!rc) {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->me, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    rt_backend_config lc = *cfg;
    lc.timeout_s = cfg->timeout_s;
    lc.direct = 1; /* NCCL calls go on the same stream from this thread */
    lc.ranks = 1;
    lc.partitions = 0;
    lc.device = cfg->device + local;
    char lerr[512] = "";
    rc = rt_backend_cuda_ops.create(&c->local, &lc, lerr, sizeof lerr);
    if (rc) snprintf(c->err, sizeof c->err, "%s", lerr);
  }
  /* Every process must take part in the bootstrap even if one failed. */
  int bad = rc != 0, anybad = 0;
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (anybad && !rc) {
    snprintf(c->err, sizeof c->err, "another rank failed to start");
    rc = RT_ECOMM;
  }
  if (!rc) {
    ncclUniqueId id;
    if (c->me == 0) ncclGetUniqueId(&id);
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    cudaSetDevice(rt_cuda_device(c->local, 0));
    ncclResult_t r = ncclCommInitRank(&c->comm, size, id, c->me);
    if (r != ncclSuccess) {
      snprintf(c->err, sizeof c->err, "ncclCommInitRank: %s", ncclGetErrorString(r));
      rc = RT_ECOMM;
    }
  }
  if (!rc) {
    /* the move communicator: a collective, every process makes it */
    ncclResult_t r = ncclCommSplit(c->comm, 0, c->me, &c->mcomm, NULL);
    if (r != ncclSuccess) {
      snprintf(c->err, sizeof c->err, "ncclCommSplit (move communicator): %s",
               ncclGetErrorString(r));
      rc = RT_ECOMM;
    } else if (cudaStreamCreateWithFlags(&c->mstream, cudaStreamNonBlocking) != cudaSuccess ||
               cudaEventCreateWithFlags(&c->go_ev, cudaEventDisableTiming) != cudaSuccess ||
               cudaEventCreateWithFlags(&c->mv_ev, cudaEventDisableTiming) != cudaSuccess) {
      snprintf(c->err, sizeof c->err, "cannot create the move stream and events");
      rc = RT_EDEVICE;
    }
  }
  if (!rc) {
    c->one = c->local->ops->alloc(c->local, 0, 64);
    c->mine = rt_calloc(4096, sizeof(double));
    c->pt_ev = rt_calloc(RT_MOVE_POINTS, sizeof *c->pt_ev);
    if (!c->one || !c->mine || !c->pt_ev) rc = RT_ENOMEM;
  }
  if (rc) {
    if (err) snprintf(err, errlen, "backend 'nccl': %s", c->err);
    nc_destroy(&c->base);
    return rc;
  }
  *out = &c->base;
  return 0;
}

static void nc_destroy(rt_backend *b) {
  nc_backend *c = (nc_backend *)b;
  for (int i = 0; i < c->nsub; i++) ncclCommDestroy(c->sub[i].comm);
  if (c->mv_open) ncclGroupEnd();
  if (c->mstream) cudaStreamSynchronize(c->mstream);
  if (c->mcomm) ncclCommDestroy(c->mcomm);
  if (c->mstream) cudaStreamDestroy(c->mstream);
  if (c->go_ev) cudaEventDestroy(c->go_ev);
  if (c->mv_ev) cudaEventDestroy(c->mv_ev);
  if (c->pt_ev)
    for (int i = 0; i < RT_MOVE_POINTS; i++)
      if (c->pt_ev[i]) cudaEventDestroy(c->pt_ev[i]);
  rt_free(c->pt_ev);
  if (c->comm) ncclCommDestroy(c->comm);
  if (c->one) c->local->ops->release(c->local, 0, c->one);
  rt_backend_destroy(c->local);
  rt_free(c->mine);
  if (c->inited_mpi) MPI_Finalize();
  rt_free(c);
}

static int nc_elem_bytes(const rt_backend *b) { (void)b; return 2; }
static int nc_owns(const rt_backend *b, int r) { return r == ((const nc_backend *)b)->me; }
static const char *nc_describe(const rt_backend *b) {
  const nc_backend *c = (const nc_backend *)b;
  return c->local->ops->describe(c->local);
}
static void *nc_alloc(rt_backend *b, int r, size_t bytes) {
  nc_backend *c = (nc_backend *)b;
  return r == c->me ? c->local->ops->alloc(c->local, 0, bytes) : NULL;
}
static void nc_release(rt_backend *b, int r, void *p) {
  nc_backend *c = (nc_backend *)b;
  if (r == c->me) c->local->ops->release(c->local, 0, p);
}

/* Closes the open move group before any other NCCL or stream work. */
static int close_moves(nc_backend *c) {
  if (!c->mv_open) return 0;
  c->mv_open = 0;
  NC(c, ncclGroupEnd());
  return 0;
}
#define CLOSE(c)                                                               \
  do {                                                                         \
    int cm_ = close_moves(c);                                                  \
    if (cm_) return cm_;                                                       \
  } while (0)

#define MINE(c, r) if ((r) != (c)->me) return 0
static int nc_upload(rt_backend *b, int r, void *dst, const void *host, size_t bytes) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->upload(c->local, 0, dst, host, bytes));
  return 0;
}
static int nc_download(rt_backend *b, int r, void *host, const void *src, size_t bytes) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->download(c->local, 0, host, src, bytes));
  return 0;
}
static int nc_fill(rt_backend *b, int r, void *dst, size_t n, uint64_t seed, float scale) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->fill(c->local, 0, dst, n, seed, scale));
  return 0;
}
static int nc_fill_bytes(rt_backend *b, int r, void *dst, size_t bytes, uint64_t seed) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->fill_bytes(c->local, 0, dst, bytes, seed));
  return 0;
}
static int nc_permute(rt_backend *b, int r, void *dst, const void *src, const int32_t *idx,
                      const float *w, int64_t rows, int d) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->permute(c->local, 0, dst, src, idx, w, rows, d));
  return 0;
}
static int nc_combine(rt_backend *b, int r, void *out, const void *src, const int32_t *idx,
                      const float *w, int64_t tokens, int k, int d) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->combine(c->local, 0, out, src, idx, w, tokens, k, d));
  return 0;
}
static int nc_ffn_fwd(rt_backend *b, int r, const void *X, const void *P, void *A, void *Y,
                      int64_t n, int d, int f) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->ffn_fwd(c->local, 0, X, P, A, Y, n, d, f));
  return 0;
}
static int nc_ffn_bwd(rt_backend *b, int r, const void *X, const void *P, const void *A,
                      const void *dY, void *dA, void *dX, void *G, int64_t n, int d, int f) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->ffn_bwd(c->local, 0, X, P, A, dY, dA, dX, G, n, d, f));
  return 0;
}
static int nc_add(rt_backend *b, int r, void *dst, const void *src, size_t n) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->add(c->local, 0, dst, src, n));
  return 0;
}
static int nc_delay(rt_backend *b, int r, double us) {
  nc_backend *c = (nc_backend *)b;
  MINE(c, r);
  LOC(c, c->local->ops->delay(c->local, 0, us));
  return 0;
}
static int nc_group_begin(rt_backend *b) {
  nc_backend *c = (nc_backend *)b;
  CLOSE(c);
  NC(c, ncclGroupStart());
  return 0;
}
static int nc_group_end(rt_backend *b) {
  nc_backend *c = (nc_backend *)b;
  NC(c, ncclGroupEnd());
  return 0;
}
static int nc_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  nc_backend *c = (nc_backend *)b;
  cudaStream_t s = rt_cuda_stream(c->local, 0);
  CLOSE(c);
  if (bytes == 0) return 0;
  if (sr == c->me && dr == c->me) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s);
    if (e != cudaSuccess) {
      snprintf(c->err, sizeof c->err, "%s:%d: cudaMemcpyAsync: %s", __FILE__, __LINE__,
               cudaGetErrorString(e));
      return RT_EDEVICE;
    }
  } else if (sr == c->me) {
    NC(c, ncclSend(src, bytes, ncclChar, dr, c->comm, s));
  } else if (dr == c->me) {
    NC(c, ncclRecv(dst, bytes, ncclChar, sr, c->comm, s));
  }
  return 0;
}
static int sub_of(nc_backend *c, const int *ranks, int nranks, ncclComm_t *out) {
  uint64_t set = 0;
  int mine = 0;
  for (int i = 0; i < nranks; i++) {
    set |= 1ULL << ranks[i];
    if (ranks[i] == c->me) mine = 1;
  }
  for (int i = 0; i < c->nsub; i++)
    if (c->sub[i].set == set) {
      *out = c->sub[i].comm;
      return 0;
    }
  if (c->nsub == NC_MAX_SUBCOMMS) {
    snprintf(c->err, sizeof c->err, "more than %d replica sets", NC_MAX_SUBCOMMS);
    return RT_ECOMM;
  }
  /* Collective over the world: every process reaches this with the same set
   * (the executor's host code is identical everywhere). */
  ncclComm_t nc = NULL;
  NC(c, ncclCommSplit(c->comm, mine ? (int)(set % 0x7fffffff) : NCCL_SPLIT_NOCOLOR, c->me, &nc, NULL));
  c->sub[c->nsub].set = set;
  c->sub[c->nsub].comm = nc;
  c->nsub++;
  *out = nc;
  return 0;
}
static int nc_allreduce(rt_backend *b, const int *ranks, int nranks, void *const *buf,
                        void *const *scratch, size_t n) {
  nc_backend *c = (nc_backend *)b;
  (void)scratch;
  if (b->ranks > 64) return RT_EINVAL;
  CLOSE(c);
  ncclComm_t sc;
  int rc = sub_of(c, ranks, nranks, &sc);
  if (rc) return rc;
  for (int i = 0; i < nranks; i++)
    if (ranks[i] == c->me)
      NC(c, ncclAllReduce(buf[i], buf[i], n, ncclBfloat16, ncclSum, sc, rt_cuda_stream(c->local, 0)));
  return 0;
}
static int nc_barrier(rt_backend *b) {
  nc_backend *c = (nc_backend *)b;
  CLOSE(c);
  if (b->ranks == 1) return 0;
  NC(c, ncclAllReduce(c->one, c->one, 1, ncclFloat, ncclSum, c->comm, rt_cuda_stream(c->local, 0)));
  return 0;
}
static int nc_mark(rt_backend *b, int slot) {
  nc_backend *c = (nc_backend *)b;
  CLOSE(c);
  LOC(c, c->local->ops->mark(c->local, slot));
  return 0;
}
static int nc_collect(rt_backend *b, int nslots, double *ms) {
  nc_backend *c = (nc_backend *)b;
  if (nslots > 4096) return RT_EINVAL;
  CLOSE(c);
  LOC(c, c->local->ops->collect(c->local, nslots, c->mine));
  double *all = rt_malloc(sizeof(double) * (size_t)nslots * (size_t)b->ranks);
  if (!all) return RT_ENOMEM;
  MPI_Allgather(c->mine, nslots, MPI_DOUBLE, all, nslots, MPI_DOUBLE, MPI_COMM_WORLD);
  for (int r = 0; r < b->ranks; r++)
    for (int s = 0; s < nslots; s++) ms[s * b->ranks + r] = all[r * nslots + s];
  rt_free(all);
  return 0;
}
#define CUDA_OK(c, call)                                                       \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      snprintf((c)->err, sizeof (c)->err, "%s:%d: %s: %s", __FILE__, __LINE__, \
               #call, cudaGetErrorString(e_));                                 \
      return RT_EDEVICE;                                                       \
    }                                                                          \
  } while (0)

static int nc_move_begin(rt_backend *b) {
  nc_backend *c = (nc_backend *)b;
  CLOSE(c);
  CUDA_OK(c, cudaEventRecord(c->go_ev, rt_cuda_stream(c->local, 0)));
  CUDA_OK(c, cudaStreamWaitEvent(c->mstream, c->go_ev, 0));
  NC(c, ncclGroupStart());
  c->mv_open = 1;
  return 0;
}
static int nc_move_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  nc_backend *c = (nc_backend *)b;
  if (sr < 0 || sr >= b->ranks || dr < 0 || dr >= b->ranks) return RT_EINVAL;
  if (!c->mv_open) {
    snprintf(c->err, sizeof c->err, "move_copy outside move_begin .. its group");
    return RT_EINVAL;
  }
  if (bytes == 0) return 0;
  if (sr == c->me && dr == c->me)
    CUDA_OK(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->mstream));
  else if (sr == c->me)
    NC(c, ncclSend(src, bytes, ncclChar, dr, c->mcomm, c->mstream));
  else if (dr == c->me)
    NC(c, ncclRecv(dst, bytes, ncclChar, sr, c->mcomm, c->mstream));
  return 0;
}
static int nc_move_fence(rt_backend *b) {
  nc_backend *c = (nc_backend *)b;
  CLOSE(c);
  CUDA_OK(c, cudaEventRecord(c->mv_ev, c->mstream));
  CUDA_OK(c, cudaStreamWaitEvent(rt_cuda_stream(c->local, 0), c->mv_ev, 0));
  return 0;
}
/* Point id's event, created on first use; RT_EINVAL for an id out of range. */
static int nc_point_event(nc_backend *c, int id) {
  if (id < 0 || id >= RT_MOVE_POINTS) {
    snprintf(c->err, sizeof c->err, "move point %d out of range", id);
    return RT_EINVAL;
  }
  if (!c->pt_ev[id]) CUDA_OK(c, cudaEventCreateWithFlags(&c->pt_ev[id], cudaEventDisableTiming));
  return 0;
}
static int nc_move_point(rt_backend *b, int id) {
  nc_backend *c = (nc_backend *)b;
  int rc = nc_point_event(c, id), reopen = c->mv_open;
  if (rc) return rc;
  CLOSE(c);
  CUDA_OK(c, cudaEventRecord(c->pt_ev[id], c->mstream));
  if (reopen) {
    NC(c, ncclGroupStart());
    c->mv_open = 1;
  }
  return 0;
}
static int nc_move_wait(rt_backend *b, int id) {
  nc_backend *c = (nc_backend *)b;
  int rc = nc_point_event(c, id);
  if (rc) return rc;
  CLOSE(c);
  CUDA_OK(c, cudaStreamWaitEvent(rt_cuda_stream(c->local, 0), c->pt_ev[id], 0));
  return 0;
}
static int nc_max_marks(const rt_backend *b) { (void)b; return 4096; }
static const char *nc_last_error(const rt_backend *b) { return ((const nc_backend *)b)->err; }

const rt_backend_ops rt_backend_nccl_ops = {
    .name = "nccl",
    .summary = "one process per GPU under mpirun: NCCL send/recv all-to-all, all-reduce on replica sub-communicators",
    .create = nc_create,
    .destroy = nc_destroy,
    .elem_bytes = nc_elem_bytes,
    .owns = nc_owns,
    .describe = nc_describe,
    .alloc = nc_alloc,
    .release = nc_release,
    .upload = nc_upload,
    .download = nc_download,
    .fill = nc_fill,
    .fill_bytes = nc_fill_bytes,
    .permute = nc_permute,
    .combine = nc_combine,
    .ffn_fwd = nc_ffn_fwd,
    .ffn_bwd = nc_ffn_bwd,
    .add = nc_add,
    .delay = nc_delay,
    .group_begin = nc_group_begin,
    .copy = nc_copy,
    .group_end = nc_group_end,
    .allreduce = nc_allreduce,
    .barrier = nc_barrier,
    .mark = nc_mark,
    .collect = nc_collect,
    .max_marks = nc_max_marks,
    .last_error = nc_last_error,
    .move_begin = nc_move_begin,
    .move_copy = nc_move_copy,
    .move_fence = nc_move_fence,
    .move_point = nc_move_point,
    .move_wait = nc_move_wait,
};
