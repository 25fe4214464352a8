/*
 * rt_cpu.c - the cpu backend: the reference the others are checked against.
 *
 * Ranks are threads. Each operation is appended to its rank's queue and runs
 * later, when the host waits (download, collect): one thread per rank then
 * runs its queue in order; a barrier entry (present in every queue) is a
 * pthread barrier across the rank threads, so cross-rank ordering is exactly
 * what the executor asked for and nothing more. Copies run on the source
 * rank's thread (memcpy). Kernels are the CPU twins of kernels/ in float.
 * Time stamps are CLOCK_MONOTONIC read by the rank thread when it reaches
 * the mark.
 *
 * Background moves have a queue of their own, run by a mover thread (a
 * pool of one for all ranks) beside the rank threads: move_begin puts a GO
 * entry in every rank's queue and an AWAIT_GO in the mover's, which waits
 * until every rank has passed it; move_copy appends a memcpy to the
 * mover's queue; move_fence appends a DONE to the mover's queue and a
 * WAIT in every rank's, which waits until the mover has passed it. The
 * epochs (go, done) only grow, so a fence never waits for a later begin.
 * move_point is a fence's first half: a DONE in the mover's queue, its
 * epoch kept under the point's id; move_wait(id) is the second, a WAIT for
 * that epoch in every rank's queue, so the ranks wait for the copies
 * before the point and not for those given after it.
 * The mover shares the cores and the memory system with the ranks, which
 * is what the iteration's phases measure while it copies.
 */
#include "runtime/rt_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kn_kernels.h"

enum op_kind {
  OP_UPLOAD, OP_FILL, OP_FILL_BYTES, OP_PERMUTE, OP_COMBINE, OP_FFN_FWD,
  OP_FFN_BWD, OP_ADD, OP_COPY, OP_BARRIER, OP_MARK,
  OP_MOVE_GO,       /* rank: it has reached move_begin number k */
  OP_MOVE_WAIT,     /* rank: wait for the mover's fence number k */
  OP_MOVE_AWAIT_GO, /* mover: wait until every rank reached GO k */
  OP_MOVE_DONE      /* mover: fence number k passed */
};

typedef struct op {
  enum op_kind kind;
  void *dst;
  const void *a, *b, *c, *e;
  const int32_t *idx;
  const float *w;
  void *x1, *x2;
  int64_t n;
  int d, f, k;
  uint64_t seed;
  float scale;
} op;

typedef struct cpu_rank {
  op *q;
  int nq, cap;
} cpu_rank;

#define CPU_MAX_MARKS 65536

typedef struct cpu_backend {
  rt_backend base;
  cpu_rank *rank;
  double *stamp; /* [CPU_MAX_MARKS * ranks] seconds */
  double t0;
  pthread_barrier_t bar;
  pthread_mutex_t gate_mu;
  pthread_cond_t gate_cv;
  int gate; /* 0 wait, 1 run, -1 leave */
  cpu_rank mover;      /* the mover's queue */
  pthread_mutex_t mv_mu;
  pthread_cond_t mv_cv;
  int64_t *go;         /* [ranks] last GO epoch each rank passed */
  int64_t mv_done;     /* last fence epoch the mover passed */
  int64_t go_epoch, fence_epoch; /* last handed out */
  int64_t *point;      /* [RT_MOVE_POINTS] fence epoch of each point id, 0: none */
  int failed; /* a push failed: queues may disagree on barriers; never run them */
  char err[256];
} cpu_backend;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Appends o to rank r's queue, or to the mover's when r == -1. */
static int push(cpu_backend *c, int r, const op *o) {
  if (r < -1 || r >= c->base.ranks) {
    snprintf(c->err, sizeof c->err, "rank %d out of range", r);
    return RT_EINVAL;
  }
  cpu_rank *q = r < 0 ? &c->mover : &c->rank[r];
  if (c->failed) return c->failed;
  if (q->nq == q->cap) {
    int nc = q->cap ? 2 * q->cap : 64;
    op *n = rt_realloc(q->q, sizeof(op) * (size_t)nc);
    if (!n) {
      /* One rank's queue may now lack a barrier the others have: running
       * them would deadlock. The backend refuses all further work. */
      c->failed = RT_ENOMEM;
      snprintf(c->err, sizeof c->err, "out of memory queueing work for rank %d", r);
      return RT_ENOMEM;
    }
    q->q = n;
    q->cap = nc;
  }
  q->q[q->nq++] = *o;
  return 0;
}

typedef struct run_arg {
  cpu_backend *c;
  int r;
} run_arg;

static void run_op(cpu_backend *c, int r, const op *o) {
  switch (o->kind) {
  case OP_UPLOAD:
    memcpy(o->dst, o->a, (size_t)o->n);
    break;
  case OP_FILL:
    kn_cpu_fill(o->dst, (size_t)o->n, o->seed, o->scale);
    break;
  case OP_FILL_BYTES: {
    uint32_t *p = o->dst;
    for (int64_t i = 0; i < o->n / 4; i++) p[i] = (uint32_t)kn_mix64(o->seed ^ kn_mix64((uint64_t)i));
    break;
  }
  case OP_PERMUTE:
    kn_cpu_permute(o->dst, o->a, o->idx, o->w, o->n, o->d);
    break;
  case OP_COMBINE:
    kn_cpu_combine(o->dst, o->a, o->idx, o->w, o->n, o->k, o->d);
    break;
  case OP_FFN_FWD:
    kn_cpu_ffn_fwd(o->a, o->b, o->x1, o->dst, o->n, o->d, o->f);
    break;
  case OP_FFN_BWD:
    kn_cpu_ffn_bwd(o->a, o->b, o->c, o->e, o->x1, o->x2, o->dst, o->n, o->d, o->f);
    break;
  case OP_ADD:
    kn_cpu_add(o->dst, o->a, (size_t)o->n);
    break;
  case OP_COPY:
    memmove(o->dst, o->a, (size_t)o->n);
    break;
  case OP_BARRIER:
    pthread_barrier_wait(&c->bar);
    break;
  case OP_MARK:
    c->stamp[(size_t)o->k * (size_t)c->base.ranks + (size_t)r] = now_s();
    break;
  case OP_MOVE_GO:
    pthread_mutex_lock(&c->mv_mu);
    c->go[r] = o->n;
    pthread_cond_broadcast(&c->mv_cv);
    pthread_mutex_unlock(&c->mv_mu);
    break;
  case OP_MOVE_WAIT:
    pthread_mutex_lock(&c->mv_mu);
    while (c->mv_done < o->n) pthread_cond_wait(&c->mv_cv, &c->mv_mu);
    pthread_mutex_unlock(&c->mv_mu);
    break;
  case OP_MOVE_AWAIT_GO:
    pthread_mutex_lock(&c->mv_mu);
    for (int g = 0; g < c->base.ranks; g++)
      while (c->go[g] < o->n) pthread_cond_wait(&c->mv_cv, &c->mv_mu);
    pthread_mutex_unlock(&c->mv_mu);
    break;
  case OP_MOVE_DONE:
    pthread_mutex_lock(&c->mv_mu);
    c->mv_done = o->n;
    pthread_cond_broadcast(&c->mv_cv);
    pthread_mutex_unlock(&c->mv_mu);
    break;
  }
}

/* Serial mode: the mover's entries up to and including fence `epoch`,
 * run inline by the rank that waits for it (every GO before it has
 * passed: serial queues run a rank's entries in order, and a fence is
 * queued after its begin). *pos: the mover's next entry. */
static void run_mover_until(cpu_backend *c, int *pos, int64_t epoch) {
  while (c->mv_done < epoch && *pos < c->mover.nq) {
    const op *o = &c->mover.q[(*pos)++];
    if (o->kind == OP_MOVE_AWAIT_GO) continue;
    run_op(c, -1, o);
  }
}

static void *run_rank(void *p) {
  run_arg *a = p;
  cpu_rank *q = a->r < 0 ? &a->c->mover : &a->c->rank[a->r];
  for (int i = 0; i < q->nq; i++) run_op(a->c, a->r, &q->q[i]);
  return NULL;
}

/* Without threads (none could be started): runs the queues one after the
 * other, barrier segment by barrier segment; same results, no overlap. */
static void run_serial(cpu_backend *c) {
  int G = c->base.ranks, mpos = 0;
  int pos[G];
  for (int r = 0; r < G; r++) pos[r] = 0;
  for (int more = 1; more;) {
    more = 0;
    for (int r = 0; r < G; r++) {
      cpu_rank *q = &c->rank[r];
      while (pos[r] < q->nq && q->q[pos[r]].kind != OP_BARRIER) {
        const op *o = &q->q[pos[r]++];
        if (o->kind == OP_MOVE_WAIT) run_mover_until(c, &mpos, o->n);
        else run_op(c, r, o);
      }
      if (pos[r] < q->nq) {
        pos[r]++; /* step over the barrier */
        more = 1;
      }
    }
  }
  run_mover_until(c, &mpos, INT64_MAX);
}

/* Runs every queue to its end, one thread per rank. Threads wait at a gate
 * until all G exist; if one cannot be created, they leave without running
 * and the queues run serially instead (a barrier needs all G threads). */
static void *run_gated(void *p) {
  run_arg *a = p;
  cpu_backend *c = a->c;
  pthread_mutex_lock(&c->gate_mu);
  while (c->gate == 0) pthread_cond_wait(&c->gate_cv, &c->gate_mu);
  int go = c->gate > 0;
  pthread_mutex_unlock(&c->gate_mu);
  if (go) run_rank(p);
  return NULL;
}

static int flush(cpu_backend *c) {
  int G = c->base.ranks;
  if (c->failed) {
    for (int r = 0; r < G; r++) c->rank[r].nq = 0;
    return c->failed;
  }
  /* one thread per rank, and the mover's (argument r = -1) when it has work */
  int T = G + (c->mover.nq > 0);
  pthread_t th[T];
  run_arg arg[T];
  for (int r = 0; r < T; r++) {
    arg[r].c = c;
    arg[r].r = r < G ? r : -1;
  }
  int started = 0;
  c->gate = 0;
  if (T > 1)
    for (; started < T; started++)
      if (pthread_create(&th[started], NULL, run_gated, &arg[started])) break;
  pthread_mutex_lock(&c->gate_mu);
  c->gate = started == T ? 1 : -1;
  pthread_cond_broadcast(&c->gate_cv);
  pthread_mutex_unlock(&c->gate_mu);
  for (int r = 0; r < started; r++) pthread_join(th[r], NULL);
  if (started < T) run_serial(c);
  for (int r = 0; r < G; r++) c->rank[r].nq = 0;
  c->mover.nq = 0;
  return 0;
}

static int cpu_create(rt_backend **out, const rt_backend_config *cfg, char *err,
                      size_t errlen) {
  if (cfg->partitions > 0) {
    if (err) snprintf(err, errlen, "backend 'cpu': --partitions needs the cuda backend");
    return RT_EINVAL;
  }
  cpu_backend *c = rt_calloc(1, sizeof *c);
  if (!c) return RT_ENOMEM;
  c->base.ops = &rt_backend_cpu_ops;
  c->base.ranks = cfg->ranks;
  c->rank = rt_calloc((size_t)cfg->ranks, sizeof *c->rank);
  c->stamp = rt_calloc((size_t)CPU_MAX_MARKS * (size_t)cfg->ranks, sizeof(double));
  c->go = rt_calloc((size_t)cfg->ranks, sizeof *c->go);
  c->point = rt_calloc(RT_MOVE_POINTS, sizeof *c->point);
  pthread_mutex_init(&c->gate_mu, NULL);
  pthread_cond_init(&c->gate_cv, NULL);
  pthread_mutex_init(&c->mv_mu, NULL);
  pthread_cond_init(&c->mv_cv, NULL);
  if (!c->rank || !c->stamp || !c->go || !c->point ||
      pthread_barrier_init(&c->bar, NULL, (unsigned)cfg->ranks)) {
    rt_free(c->rank);
    rt_free(c->stamp);
    rt_free(c->go);
    rt_free(c->point);
    pthread_mutex_destroy(&c->gate_mu);
    pthread_cond_destroy(&c->gate_cv);
    pthread_mutex_destroy(&c->mv_mu);
    pthread_cond_destroy(&c->mv_cv);
    rt_free(c);
    return RT_ENOMEM;
  }
  *out = &c->base;
  return 0;
}

static void cpu_destroy(rt_backend *b) {
  cpu_backend *c = (cpu_backend *)b;
  for (int r = 0; r < b->ranks; r++) rt_free(c->rank[r].q);
  rt_free(c->mover.q);
  rt_free(c->rank);
  rt_free(c->stamp);
  rt_free(c->go);
  rt_free(c->point);
  pthread_mutex_destroy(&c->mv_mu);
  pthread_cond_destroy(&c->mv_cv);
  pthread_barrier_destroy(&c->bar);
  pthread_mutex_destroy(&c->gate_mu);
  pthread_cond_destroy(&c->gate_cv);
  rt_free(c);
}

static int cpu_elem_bytes(const rt_backend *b) { (void)b; return 4; }
static int cpu_owns(const rt_backend *b, int r) { return r >= 0 && r < b->ranks; }
static const char *cpu_describe(const rt_backend *b) { (void)b; return "host CPU (ranks are threads, float)"; }

static void *cpu_alloc(rt_backend *b, int r, size_t bytes) {
  (void)r;
  (void)b;
  /* 64-byte aligned, exactly `bytes` long (so AddressSanitizer sees any
   * overrun), zeroed: reads of never-written rows are defined. */
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
  memset(p, 0, bytes ? bytes : 64);
  return p;
}
static void cpu_release(rt_backend *b, int r, void *p) { (void)b; (void)r; free(p); }

static int cpu_upload(rt_backend *b, int r, void *dst, const void *host, size_t bytes) {
  op o = {.kind = OP_UPLOAD, .dst = dst, .a = host, .n = (int64_t)bytes};
  return push((cpu_backend *)b, r, &o);
}

static int cpu_download(rt_backend *b, int r, void *host, const void *src, size_t bytes) {
  (void)r;
  int rc = flush((cpu_backend *)b);
  if (rc) return rc;
  memcpy(host, src, bytes);
  return 0;
}

static int cpu_fill(rt_backend *b, int r, void *dst, size_t n, uint64_t seed, float scale) {
  op o = {.kind = OP_FILL, .dst = dst, .n = (int64_t)n, .seed = seed, .scale = scale};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_fill_bytes(rt_backend *b, int r, void *dst, size_t bytes, uint64_t seed) {
  op o = {.kind = OP_FILL_BYTES, .dst = dst, .n = (int64_t)bytes, .seed = seed};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_permute(rt_backend *b, int r, void *dst, const void *src,
                       const int32_t *idx, const float *w, int64_t rows, int d) {
  op o = {.kind = OP_PERMUTE, .dst = dst, .a = src, .idx = idx, .w = w, .n = rows, .d = d};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_combine(rt_backend *b, int r, void *out, const void *src,
                       const int32_t *idx, const float *w, int64_t tokens, int k, int d) {
  op o = {.kind = OP_COMBINE, .dst = out, .a = src, .idx = idx, .w = w, .n = tokens, .k = k, .d = d};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_ffn_fwd(rt_backend *b, int r, const void *X, const void *P, void *A,
                       void *Y, int64_t n, int d, int f) {
  op o = {.kind = OP_FFN_FWD, .dst = Y, .a = X, .b = P, .x1 = A, .n = n, .d = d, .f = f};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_ffn_bwd(rt_backend *b, int r, const void *X, const void *P,
                       const void *A, const void *dY, void *dA, void *dX, void *G,
                       int64_t n, int d, int f) {
  op o = {.kind = OP_FFN_BWD, .dst = G, .a = X, .b = P, .c = A, .e = dY, .x1 = dA,
          .x2 = dX, .n = n, .d = d, .f = f};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_add(rt_backend *b, int r, void *dst, const void *src, size_t n) {
  op o = {.kind = OP_ADD, .dst = dst, .a = src, .n = (int64_t)n};
  return push((cpu_backend *)b, r, &o);
}
static int cpu_group(rt_backend *b) { (void)b; return 0; }
static int cpu_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  cpu_backend *c = (cpu_backend *)b;
  if (dr < 0 || dr >= b->ranks) return RT_EINVAL;
  op o = {.kind = OP_COPY, .dst = dst, .a = src, .n = (int64_t)bytes};
  return push(c, sr, &o);
}
static int cpu_barrier(rt_backend *b) {
  op o = {.kind = OP_BARRIER};
  for (int r = 0; r < b->ranks; r++) {
    int rc = push((cpu_backend *)b, r, &o);
    if (rc) return rc;
  }
  return 0;
}
static int cpu_mark(rt_backend *b, int slot) {
  cpu_backend *c = (cpu_backend *)b;
  if (slot < 0 || slot >= CPU_MAX_MARKS) return RT_EINVAL;
  op o = {.kind = OP_MARK, .k = slot};
  for (int r = 0; r < b->ranks; r++) {
    int rc = push(c, r, &o);
    if (rc) return rc;
  }
  return 0;
}
static int cpu_collect(rt_backend *b, int nslots, double *ms) {
  cpu_backend *c = (cpu_backend *)b;
  if (nslots < 1 || nslots > CPU_MAX_MARKS) return RT_EINVAL;
  int rc = flush(c);
  if (rc) return rc;
  int G = b->ranks;
  double t0 = c->stamp[0];
  for (int r = 1; r < G; r++)
    if (c->stamp[r] < t0) t0 = c->stamp[r];
  for (int i = 0; i < nslots * G; i++) ms[i] = 1e3 * (c->stamp[i] - t0);
  return 0;
}
static int cpu_move_begin(rt_backend *b) {
  cpu_backend *c = (cpu_backend *)b;
  int64_t epoch = c->go_epoch + 1;
  op go = {.kind = OP_MOVE_GO, .n = epoch}, await = {.kind = OP_MOVE_AWAIT_GO, .n = epoch};
  for (int r = 0; r < b->ranks; r++) {
    int rc = push(c, r, &go);
    if (rc) return rc;
  }
  int rc = push(c, -1, &await);
  if (!rc) c->go_epoch = epoch;
  return rc;
}
static int cpu_move_copy(rt_backend *b, int sr, const void *src, int dr, void *dst,
                         size_t bytes) {
  if (sr < 0 || sr >= b->ranks || dr < 0 || dr >= b->ranks) return RT_EINVAL;
  op o = {.kind = OP_COPY, .dst = dst, .a = src, .n = (int64_t)bytes};
  return push((cpu_backend *)b, -1, &o);
}
static int cpu_move_fence(rt_backend *b) {
  cpu_backend *c = (cpu_backend *)b;
  int64_t epoch = c->fence_epoch + 1;
  op done = {.kind = OP_MOVE_DONE, .n = epoch}, wait = {.kind = OP_MOVE_WAIT, .n = epoch};
  int rc = push(c, -1, &done);
  for (int r = 0; r < b->ranks && !rc; r++) rc = push(c, r, &wait);
  if (!rc) c->fence_epoch = epoch;
  return rc;
}
/* A fence's first half: the mover passes epoch e here; id remembers it. */
static int cpu_move_point(rt_backend *b, int id) {
  cpu_backend *c = (cpu_backend *)b;
  if (id < 0 || id >= RT_MOVE_POINTS) {
    snprintf(c->err, sizeof c->err, "move point %d out of range", id);
    return RT_EINVAL;
  }
  int64_t epoch = c->fence_epoch + 1;
  op done = {.kind = OP_MOVE_DONE, .n = epoch};
  int rc = push(c, -1, &done);
  if (!rc) {
    c->fence_epoch = epoch;
    c->point[id] = epoch;
  }
  return rc;
}
/* Its second half: every rank waits until the mover passed point id. */
static int cpu_move_wait(rt_backend *b, int id) {
  cpu_backend *c = (cpu_backend *)b;
  if (id < 0 || id >= RT_MOVE_POINTS || !c->point[id]) {
    snprintf(c->err, sizeof c->err, "move_wait on point %d, which was never put", id);
    return RT_EINVAL;
  }
  op wait = {.kind = OP_MOVE_WAIT, .n = c->point[id]};
  for (int r = 0; r < b->ranks; r++) {
    int rc = push(c, r, &wait);
    if (rc) return rc;
  }
  return 0;
}
static int cpu_max_marks(const rt_backend *b) { (void)b; return CPU_MAX_MARKS; }
static const char *cpu_last_error(const rt_backend *b) { return ((const cpu_backend *)b)->err; }

const rt_backend_ops rt_backend_cpu_ops = {
    .name = "cpu",
    .summary = "reference: ranks are threads, float expert FFN, memcpy exchange",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .elem_bytes = cpu_elem_bytes,
    .owns = cpu_owns,
    .describe = cpu_describe,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .fill = cpu_fill,
    .fill_bytes = cpu_fill_bytes,
    .permute = cpu_permute,
    .combine = cpu_combine,
    .ffn_fwd = cpu_ffn_fwd,
    .ffn_bwd = cpu_ffn_bwd,
    .add = cpu_add,
    .delay = NULL,
    .group_begin = cpu_group,
    .copy = cpu_copy,
    .group_end = cpu_group,
    .allreduce = NULL,
    .barrier = cpu_barrier,
    .mark = cpu_mark,
    .collect = cpu_collect,
    .max_marks = cpu_max_marks,
    .last_error = cpu_last_error,
    .move_begin = cpu_move_begin,
    .move_copy = cpu_move_copy,
    .move_fence = cpu_move_fence,
    .move_point = cpu_move_point,
    .move_wait = cpu_move_wait,
};
