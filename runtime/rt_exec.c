/*
 * rt_exec.c - the replay executor (see rt_exec.h for the iteration model).
 *
 * Host side, per (layer, rank), the routing is turned into index arrays:
 *   sidx/sw  send layout (by destination rank, then expert, then slot):
 *            send[p] = X[sidx[p]] (forward), w * dOut[sidx[p]] (backward);
 *   ridx     regroup on the receiver: xin[i] = recv[ridx[i]], expert-major;
 *   rinv     its inverse, to send results back in the received layout;
 *   cidx/cw  combine: out[t] = sum_q cw * back[cidx[t*k + q]].
 * Buffers on each rank: per layer X, dOut, Out, dIn (tokens), xin and A
 * (saved for the backward); shared send/back (slots routed), recv, Y,
 * dY, ysend (slots received, at most every rank's), dA scratch.
 * Expert slots per (layer, rank): parameters (W1|W2), gradient, all-reduce
 * staging, optimizer state bytes; a slot's expert is -1 when free.
 *
 * Time stamps: 0 after input generation (and, on the first iteration,
 * after the initial layout), 1 after migration, then one per phase of every
 * layer and direction, then one after the all-reduce, and one after the
 * background moves' fence when the iteration has any; with weights-first
 * moves one more per layer that has them, after the wait for that layer's
 * weights before its forward (fence_weights). A phase lasts from
 * the latest rank's previous stamp to the latest rank's stamp: the critical
 * path the simulator predicts.
 *
 * Background moves (the contract is pl_policy.h's, "The background-move
 * contract"): a layer whose plan is in flight (pl_policy_inflight) keeps
 * its slots as the serving placement has them for the whole iteration;
 * every arriving replica gets a free physical slot (marked `incoming`, not
 * served), every replica that goes away stays served (`leaving`). The
 * copies start after stamp 0 on the backend's mover and the fence after
 * the all-reduce waits for them (the wait is the iteration's migration
 * phase). At the next iteration's start (the boundary) incoming slots
 * become the experts' and leaving ones free (land()). So a rank may need
 * up to `slots` more physical slots than the limit when its policy moves
 * in the background (nphys), one more otherwise; the extra ones are
 * allocated when a move first needs them (expert -3 until then), so
 * memory grows with the largest set of moves in flight, not the worst.
 * Weights-first moves (pl_policy.h rule 6; plan_moves): the new
 * placement serves at once, arriving replicas are served as soon as their
 * parameters have landed (before their own layer's forward), departing
 * ones retire (expert -4: unserved, readable) until the boundary. The
 * mover gets, after the iteration's first stamp, each weights-first
 * layer's parameters in layer order, each layer closed by a point
 * (move_point, id = the layer), then (behind move_join: every source's
 * weights landed) the rest (those copies' optimizer
 * state, plain background copies whole); a layer's forward waits for its
 * point only (move_wait), so neither it nor the rest waits for later
 * layers' weights beyond the mover's order (start_background).
 */
#include "runtime/rt_exec.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kn_kernels.h"
#include "placement/pl_error.h"
#include "placement/pl_route.h"

typedef struct slot {
  int expert; /* -1: free, -2: being freed in this migration round,
                 -3: no buffers yet (allocated by the first move into it),
                 -4: retiring (weights-first: no longer served, its state
                 still being copied; freed at the boundary) */
  int was;    /* expert of a slot being freed (still readable this round) */
  int born;   /* migration round that filled it (-1: earlier) */
  int incoming; /* expert arriving in the background (not yet served), -1 */
  int leaving;  /* 1: served this iteration, freed at the boundary */
  int wf_in;    /* 1: arrived weights-first in this iteration (served in it) */
  void *param, *grad, *stage, *opt;
} slot;

typedef struct lr {
  int64_t S, T;
  int32_t *sidx, *ridx, *rinv, *cidx;
  float *sw, *cw;
  int64_t *send_off, *send_cnt; /* [G] by destination */
  int64_t *recv_off, *recv_cnt; /* [G] by source */
  int64_t recv_total;
  int64_t *ex_n, *ex_off;       /* [E] expert-major rows on this rank */
  int *ex_slot;                 /* [E] slot index hosting e, -1 */
  int32_t *d_sidx, *d_ridx, *d_rinv, *d_cidx;
  float *d_sw, *d_cw;
  void *d_X, *d_dOut, *d_Out, *d_dIn, *d_xin, *d_A;
  slot *slots;                  /* [slots] */
} lr;

typedef struct rk {
  void *send, *back, *recv, *Y, *dY, *ysend, *dA;
} rk;

typedef struct mig_copy {
  int src_rank, dst_rank;
  slot src, dst;
  int round;   /* blocking round, -1: a background copy */
  int wf;      /* 1: weights-first (pl_policy.h rule 6): the parameters are
                  due before the layer's forward */
  int layer;
} mig_copy;

struct rt_exec {
  rt_backend *b;
  const rt_backend_ops *ops;
  pl_policy *policy;
  pl_env env;
  rt_exec_config cfg;
  int G, L, E, k, d, f, esz;
  int64_t Smax, Tmax, Cap;
  int nphys;       /* physical slots per (layer, rank): slots + 1 spare, so
                      that a plan that swaps experts between full GPUs
                      always finds a free buffer (at most `slots` are ever
                      occupied once a plan is applied) */
  size_t pelems;   /* 2 d f */
  size_t optbytes; /* per replica */
  lr *lr;          /* [L*G] */
  rk *rk;          /* [G] */
  int64_t *split_l; /* [L][G*E*G] split of each (source, expert) over ranks */
  int64_t last_it;
  int64_t *rowc;   /* [G*E] scratch */
  pl_routing route, tmp;
  pl_move *moves;
  int nmoves, capmoves;
  mig_copy *mig;
  int nmig, capmig, rounds;
  int nbg;         /* background copies of this iteration (round -1) */
  unsigned char *wf_layer; /* [L] 1: the layer has weights-first copies this iteration */
  double *stamps;
  int *kind;       /* phase of each time stamp */
  double *busy, *total;
  int64_t iters;
  char *err;
  size_t errlen;
  pl_temps *temps; /* [L] this iteration's temporaries (policies that make them), or NULL */
};

#define LR(x, l, r) (&(x)->lr[(size_t)(l) * (size_t)(x)->G + (size_t)(r)])

static int fail(rt_exec *x, int code, const char *fmt, const char *detail) {
  if (x->err && x->errlen) snprintf(x->err, x->errlen, fmt, detail);
  return code;
}

/* A backend call: on error the backend's own message is kept. */
#define BK(x, call)                                                            \
  do {                                                                         \
    int rc_ = (call);                                                          \
    if (rc_) return fail((x), rc_, "%s", (x)->ops->last_error((x)->b));        \
  } while (0)

static void *dalloc(rt_exec *x, int r, size_t bytes) {
  return x->ops->alloc(x->b, r, bytes ? bytes : 16);
}

static uint64_t seed_of(const rt_exec *x, int what, int64_t a, int64_t b, int64_t c) {
  return kn_seed(x->cfg.seed, (uint64_t)what, (uint64_t)a, (uint64_t)b, (uint64_t)c);
}

static float weight_of(uint64_t s, int64_t j) {
  return 0.75f + 0.25f * kn_value(s, (uint64_t)j);
}

/* Generates the parameters and optimizer state of expert e into a slot. */
static int gen_expert(rt_exec *x, int l, int r, int e, slot *s) {
  size_t df = (size_t)x->d * (size_t)x->f;
  char *p = s->param;
  BK(x, x->ops->fill(x->b, r, p, df, seed_of(x, 1, l, e, 0), 1.0f / sqrtf((float)x->d)));
  BK(x, x->ops->fill(x->b, r, p + df * (size_t)x->esz, df, seed_of(x, 1, l, e, 1),
                     1.0f / sqrtf((float)x->f)));
  if (x->optbytes) BK(x, x->ops->fill_bytes(x->b, r, s->opt, x->optbytes, seed_of(x, 2, l, e, 0)));
  return 0;
}

void rt_exec_destroy(rt_exec *x) {
  if (!x) return;
  if (x->lr)
    for (int l = 0; l < x->L; l++)
      for (int r = 0; r < x->G; r++) {
        lr *q = LR(x, l, r);
        rt_free(q->sidx); rt_free(q->ridx); rt_free(q->rinv); rt_free(q->cidx);
        rt_free(q->sw); rt_free(q->cw); rt_free(q->send_off); rt_free(q->send_cnt);
        rt_free(q->recv_off); rt_free(q->recv_cnt); rt_free(q->ex_n); rt_free(q->ex_off);
        rt_free(q->ex_slot);
        void *dev[] = {q->d_sidx, q->d_ridx, q->d_rinv, q->d_cidx, q->d_sw, q->d_cw,
                       q->d_X, q->d_dOut, q->d_Out, q->d_dIn, q->d_xin, q->d_A};
        for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
          if (dev[i]) x->ops->release(x->b, r, dev[i]);
        if (q->slots)
          for (int s = 0; s < x->nphys; s++) {
            slot *sl = &q->slots[s];
            void *sp[] = {sl->param, sl->grad, sl->stage, sl->opt};
            for (int i = 0; i < 4; i++)
              if (sp[i]) x->ops->release(x->b, r, sp[i]);
          }
        rt_free(q->slots);
      }
  if (x->rk)
    for (int r = 0; r < x->G; r++) {
      rk *q = &x->rk[r];
      void *dev[] = {q->send, q->back, q->recv, q->Y, q->dY, q->ysend, q->dA};
      for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (dev[i]) x->ops->release(x->b, r, dev[i]);
    }
  rt_free(x->lr);
  rt_free(x->rk);
  rt_free(x->split_l);
  rt_free(x->rowc);
  pl_routing_fini(&x->route);
  pl_routing_fini(&x->tmp);
  for (int l = 0; x->temps && l < x->L; l++)
    pl_temps_fini(&x->temps[l]);
  rt_free(x->temps);
  rt_free(x->moves);
  rt_free(x->mig);
  rt_free(x->stamps);
  rt_free(x->kind);
  rt_free(x->busy);
  rt_free(x->total);
  rt_free(x->wf_layer);
  rt_free(x);
}

static int warmup(rt_exec *x);
static int temps_init(rt_exec *x);

/* x's host arrays of its sizes, and the per-rank exchange buffers on
 * each rank it owns. */
static int exec_arrays(rt_exec *x) {
  int G = x->G, L = x->L, E = x->E;
  size_t dsz = (size_t)x->d * (size_t)x->esz, fsz = (size_t)x->f * (size_t)x->esz;
  x->lr = rt_calloc((size_t)L * (size_t)G, sizeof *x->lr);
  x->rk = rt_calloc((size_t)G, sizeof *x->rk);
  x->split_l = rt_calloc((size_t)L * G * E * G, sizeof *x->split_l);
  x->rowc = rt_calloc((size_t)G * (size_t)E, sizeof *x->rowc);
  x->busy = rt_calloc((size_t)G, sizeof *x->busy);
  x->total = rt_calloc((size_t)G, sizeof *x->total);
  x->wf_layer = rt_calloc((size_t)L, 1);
  int nst = 15 * L + 4; /* 14 per layer, 1 per layer's weights wait, 4 per iteration */
  x->stamps = rt_calloc((size_t)nst * (size_t)G, sizeof *x->stamps);
  x->kind = rt_calloc((size_t)nst, sizeof *x->kind);
  if (!x->lr || !x->rk || !x->split_l || !x->rowc || !x->busy || !x->total ||
      !x->stamps || !x->kind || !x->wf_layer)
    return RT_ENOMEM;
  if (nst > x->ops->max_marks(x->b))
    return fail(x, RT_EINVAL, "%s", "too many layers for the backend's time stamps");
  if (pl_routing_init(&x->route, G, E, 1) || pl_routing_init(&x->tmp, G, E, 0))
    return RT_ENOMEM;
  for (int r = 0; r < G; r++) {
    if (!x->ops->owns(x->b, r)) continue;
    rk *q = &x->rk[r];
    q->send = dalloc(x, r, (size_t)x->Smax * dsz);
    q->back = dalloc(x, r, (size_t)x->Smax * dsz);
    q->recv = dalloc(x, r, (size_t)x->Cap * dsz);
    q->Y = dalloc(x, r, (size_t)x->Cap * dsz);
    q->dY = dalloc(x, r, (size_t)x->Cap * dsz);
    q->ysend = dalloc(x, r, (size_t)x->Cap * dsz);
    q->dA = dalloc(x, r, (size_t)x->Cap * fsz);
    if (!q->send || !q->back || !q->recv || !q->Y || !q->dY || !q->ysend || !q->dA)
      return fail(x, RT_ENOMEM, "out of device memory for exchange buffers: %s",
                  x->ops->last_error(x->b));
  }
  return 0;
}

/* Layer l's host index arrays on rank r (for every rank: the check reads
 * them all), its slots empty. */
static int exec_layer_host(rt_exec *x, lr *q) {
  int G = x->G, E = x->E;
  q->sidx = rt_calloc((size_t)x->Smax, sizeof(int32_t));
  q->sw = rt_calloc((size_t)x->Smax, sizeof(float));
  q->ridx = rt_calloc((size_t)x->Cap, sizeof(int32_t));
  q->rinv = rt_calloc((size_t)x->Cap, sizeof(int32_t));
  q->cidx = rt_calloc((size_t)x->Tmax * (size_t)x->k, sizeof(int32_t));
  q->cw = rt_calloc((size_t)x->Tmax * (size_t)x->k, sizeof(float));
  q->send_off = rt_calloc((size_t)G, sizeof(int64_t));
  q->send_cnt = rt_calloc((size_t)G, sizeof(int64_t));
  q->recv_off = rt_calloc((size_t)G, sizeof(int64_t));
  q->recv_cnt = rt_calloc((size_t)G, sizeof(int64_t));
  q->ex_n = rt_calloc((size_t)E, sizeof(int64_t));
  q->ex_off = rt_calloc((size_t)E, sizeof(int64_t));
  q->ex_slot = rt_calloc((size_t)E, sizeof(int));
  q->slots = rt_calloc((size_t)x->nphys, sizeof(slot));
  if (!q->sidx || !q->sw || !q->ridx || !q->rinv || !q->cidx || !q->cw || !q->send_off ||
      !q->send_cnt || !q->recv_off || !q->recv_cnt || !q->ex_n || !q->ex_off ||
      !q->ex_slot || !q->slots)
    return RT_ENOMEM;
  for (int s = 0; s < x->nphys; s++) {
    q->slots[s].expert = -1;
    q->slots[s].born = -1;
    q->slots[s].incoming = -1;
  }
  return 0;
}

/* Layer l's device arrays on rank r (which x owns), its first
 * cfg->slots + 1 slots' buffers (the others on demand: alloc_slot), and
 * the policy's initial placement pp generated into them. */
static int exec_layer_device(rt_exec *x, int l, int r, lr *q, const pl_placement *pp) {
  size_t dsz = (size_t)x->d * (size_t)x->esz, fsz = (size_t)x->f * (size_t)x->esz;
  q->d_sidx = dalloc(x, r, (size_t)x->Smax * 4);
  q->d_sw = dalloc(x, r, (size_t)x->Smax * 4);
  q->d_ridx = dalloc(x, r, (size_t)x->Cap * 4);
  q->d_rinv = dalloc(x, r, (size_t)x->Cap * 4);
  q->d_cidx = dalloc(x, r, (size_t)x->Tmax * (size_t)x->k * 4);
  q->d_cw = dalloc(x, r, (size_t)x->Tmax * (size_t)x->k * 4);
  q->d_X = dalloc(x, r, (size_t)x->Tmax * dsz);
  q->d_dOut = dalloc(x, r, (size_t)x->Tmax * dsz);
  q->d_Out = dalloc(x, r, (size_t)x->Tmax * dsz);
  q->d_dIn = dalloc(x, r, (size_t)x->Tmax * dsz);
  q->d_xin = dalloc(x, r, (size_t)x->Cap * dsz);
  q->d_A = dalloc(x, r, (size_t)x->Cap * fsz);
  if (!q->d_sidx || !q->d_sw || !q->d_ridx || !q->d_rinv || !q->d_cidx || !q->d_cw ||
      !q->d_X || !q->d_dOut || !q->d_Out || !q->d_dIn || !q->d_xin || !q->d_A)
    return fail(x, RT_ENOMEM, "out of device memory for activations: %s",
                x->ops->last_error(x->b));
  for (int s = 0; s < x->nphys; s++) {
    slot *sl = &q->slots[s];
    if (s > x->cfg.slots) {
      sl->expert = -3; /* allocated on demand (alloc_slot) */
      continue;
    }
    sl->param = dalloc(x, r, x->pelems * (size_t)x->esz);
    sl->grad = dalloc(x, r, x->pelems * (size_t)x->esz);
    sl->stage = dalloc(x, r, x->pelems * (size_t)x->esz);
    sl->opt = dalloc(x, r, x->optbytes);
    if (!sl->param || !sl->grad || !sl->stage || !sl->opt)
      return fail(x, RT_ENOMEM, "out of device memory for expert slots: %s",
                  x->ops->last_error(x->b));
  }
  /* Initial layout: the policy's placement. */
  for (int j = 0; j < pp->nhost[r]; j++) {
    int e = pp->host[r * pp->slots + j];
    if (j >= x->cfg.slots)
      return fail(x, RT_ESLOTS, "%s", "policy placement exceeds the slot count");
    q->slots[j].expert = e;
    int rc = gen_expert(x, l, r, e, &q->slots[j]);
    if (rc) return rc;
  }
  return 0;
}

int rt_exec_create(rt_exec **out, rt_backend *b, pl_policy *policy,
                   const pl_env *env, const rt_exec_config *cfg, char *err,
                   size_t errlen) {
  if (!out || !b || !policy || !env || !cfg) return RT_EINVAL;
  if (cfg->layers < 1 || cfg->experts < 1 || cfg->top_k < 1 || cfg->d_model < 8 ||
      cfg->d_ff < 8 || cfg->d_model % 8 || cfg->d_ff % 8 || cfg->slots < 1 ||
      cfg->max_slots_per_rank < 1 || env->cluster.gpus != b->ranks ||
      env->layers != cfg->layers || env->experts != cfg->experts) {
    if (err) snprintf(err, errlen, "executor: inconsistent configuration (shapes must be multiples of 8, ranks = GPUs)");
    return RT_EINVAL;
  }
  rt_exec *x = rt_calloc(1, sizeof *x);
  if (!x) return RT_ENOMEM;
  x->b = b;
  x->ops = b->ops;
  x->policy = policy;
  x->env = *env;
  x->cfg = *cfg;
  x->err = err;
  x->errlen = errlen;
  x->G = b->ranks;
  x->L = cfg->layers;
  x->E = cfg->experts;
  x->k = cfg->top_k;
  x->d = cfg->d_model;
  x->f = cfg->d_ff;
  x->esz = x->ops->elem_bytes(b);
  /* one spare for blocking swaps; the slot limit more when moves overlap an
   * iteration (incoming replicas beside the served ones, pl_policy.h) */
  x->nphys = cfg->slots + (pl_policy_background(policy) ? cfg->slots : 1);
  x->Smax = cfg->max_slots_per_rank;
  x->Tmax = (x->Smax + x->k - 1) / x->k;
  x->Cap = x->Smax * x->G;
  x->pelems = 2 * (size_t)x->d * (size_t)x->f;
  x->optbytes = (size_t)llround(cfg->optimizer_bytes_per_param * (double)x->pelems);
  x->optbytes = (x->optbytes + 3) & ~(size_t)3;
  int rc = exec_arrays(x);
  for (int l = 0; l < x->L && !rc; l++) {
    const pl_placement *pp = pl_policy_placement(policy, l);
    for (int r = 0; r < x->G && !rc; r++) {
      lr *q = LR(x, l, r);
      if (!(rc = exec_layer_host(x, q)) && x->ops->owns(b, r))
        rc = exec_layer_device(x, l, r, q, pp);
    }
  }
  if (!rc) rc = warmup(x);
  if (!rc) rc = temps_init(x);
  if (rc) goto fail;
  *out = x;
  return 0;
fail:
  if (rc == RT_ENOMEM && err && !err[0]) snprintf(err, errlen, "executor: out of memory");
  rt_exec_destroy(x);
  return rc;
}

/* GPU backends pay on first use: CUDA loads modules lazily, and cuBLAS
 * runs its heuristic (host time, tens of microseconds) for every new GEMM
 * size, then caches it. Measured on the H200: the first ~15 iterations of
 * a replay ran up to 15x slower until every expert token count had been
 * seen. So run the expert FFN forward and backward at every token count
 * 1..warm_tokens (the largest an expert gets in the trace) and then on a
 * 1.25x ladder up to the receive capacity, on every rank, with the spare
 * slot's buffers, before anything is timed. */
static int warmup(rt_exec *x) {
  /* cpu: nothing is loaded lazily; only an explicit warm_tokens runs it */
  int gpu = x->ops->delay != NULL;
  if (!gpu && x->cfg.warm_tokens <= 0) return 0;
  int64_t top = gpu ? x->Cap : (x->cfg.warm_tokens < x->Cap ? x->cfg.warm_tokens : x->Cap);
  for (int r = 0; r < x->G; r++) {
    if (!x->ops->owns(x->b, r)) continue;
    lr *q = LR(x, 0, r);
    slot *sp = &q->slots[x->cfg.slots]; /* the spare: free, allocated */
    BK(x, x->ops->fill(x->b, r, sp->param, x->pelems, 7, 0.01f));
    BK(x, x->ops->fill(x->b, r, q->d_xin, (size_t)x->Cap * x->d, 8, 1.0f));
    BK(x, x->ops->fill(x->b, r, x->rk[r].dY, (size_t)x->Cap * x->d, 9, 1.0f));
    int64_t every = x->cfg.warm_tokens < x->Cap ? x->cfg.warm_tokens : x->Cap;
    for (int64_t n = 1; n <= top; n = n < 8 || n < every ? n + 1 : n + n / 4) {
      BK(x, x->ops->ffn_fwd(x->b, r, q->d_xin, sp->param, q->d_A, x->rk[r].Y, n, x->d, x->f));
      BK(x, x->ops->ffn_bwd(x->b, r, q->d_xin, sp->param, q->d_A, x->rk[r].dY, x->rk[r].dA,
                            x->rk[r].Y, sp->grad, n, x->d, x->f));
    }
  }
  BK(x, x->ops->barrier(x->b));
  BK(x, x->ops->mark(x->b, 0));
  BK(x, x->ops->collect(x->b, 1, x->stamps));
  return 0;
}

static int add_move(rt_exec *x, const pl_move *m) {
  if (x->nmoves == x->capmoves) {
    int nc = x->capmoves ? 2 * x->capmoves : 64;
    pl_move *n = rt_realloc(x->moves, sizeof *n * (size_t)nc);
    if (!n) return RT_ENOMEM;
    x->moves = n;
    x->capmoves = nc;
  }
  x->moves[x->nmoves++] = *m;
  return 0;
}

static int add_mig(rt_exec *x, const mig_copy *m) {
  if (x->nmig == x->capmig) {
    int nc = x->capmig ? 2 * x->capmig : 64;
    mig_copy *n = rt_realloc(x->mig, sizeof *n * (size_t)nc);
    if (!n) return RT_ENOMEM;
    x->mig = n;
    x->capmig = nc;
  }
  x->mig[x->nmig++] = *m;
  return 0;
}

static int find_slot(const lr *q, int nslots, int expert) {
  for (int s = 0; s < nslots; s++)
    if (q->slots[s].expert == expert && (expert >= 0 || q->slots[s].incoming < 0)) return s;
  return -1;
}

static int find_incoming(const lr *q, int nslots, int expert) {
  for (int s = 0; s < nslots; s++)
    if (q->slots[s].incoming == expert) return s;
  return -1;
}

/* The boundary before an iteration: background copies of the previous one
 * have landed (its fence), so arriving replicas are served from now on and
 * the ones that went away free their slots (pl_policy.h, rule 2). */
static void land(rt_exec *x) {
  for (int l = 0; l < x->L; l++)
    for (int g = 0; g < x->G; g++) {
      lr *q = LR(x, l, g);
      for (int s = 0; s < x->nphys; s++) {
        slot *sl = &q->slots[s];
        if (sl->leaving || sl->expert == -4) sl->expert = -1;
        sl->wf_in = 0;
        if (sl->incoming >= 0) sl->expert = sl->incoming;
        sl->incoming = -1;
        sl->leaving = 0;
      }
    }
}

/* Gives the first slot of q without buffers (expert -3) its buffers on
 * rank r (none on a rank this process does not own) and makes it free;
 * *ds = its index, or -1 when every physical slot exists already. */
static int alloc_slot(rt_exec *x, int r, lr *q, int *ds) {
  *ds = -1;
  for (int s = 0; s < x->nphys; s++) {
    slot *sl = &q->slots[s];
    if (sl->expert != -3) continue;
    if (x->ops->owns(x->b, r)) {
      sl->param = dalloc(x, r, x->pelems * (size_t)x->esz);
      sl->grad = dalloc(x, r, x->pelems * (size_t)x->esz);
      sl->stage = dalloc(x, r, x->pelems * (size_t)x->esz);
      sl->opt = dalloc(x, r, x->optbytes);
      if (!sl->param || !sl->grad || !sl->stage || !sl->opt) {
        void *p[] = {sl->param, sl->grad, sl->stage, sl->opt};
        for (int i = 0; i < 4; i++)
          if (p[i]) x->ops->release(x->b, r, p[i]);
        sl->param = sl->grad = sl->stage = sl->opt = NULL;
        return RT_ENOMEM;
      }
    }
    sl->expert = -1;
    *ds = s;
    return 0;
  }
  return 0;
}

/* A slot of q holding `expert` to copy from: served, or retiring in this
 * iteration (a weights-first plan may migrate an expert away and also
 * replicate it from the same GPU); -1 when none. */
static int find_source(const lr *q, int nslots, int expert) {
  int s = find_slot(q, nslots, expert);
  for (int k = 0; k < nslots && s < 0; k++)
    if (q->slots[k].expert == -4 && q->slots[k].was == expert) s = k;
  return s;
}

/* Move m of layer l checked, with its source slot *ss on m->from (for a
 * weights-first move a replica still readable there: find_source) and,
 * unless m drops, a free physical slot *ds on m->to (allocated when none is
 * free); the messages name the protocol ("in the background",
 * "weights-first"). */
static int move_slots(rt_exec *x, int l, const pl_move *m, int weights_first, int *ss,
                      int *ds) {
  int S = x->nphys, G = x->G;
  const char *how = weights_first ? "weights-first" : "in the background";
  char why[200];
  if (m->from < 0 || m->from >= G || (m->kind != PL_MOVE_DROP && (m->to < 0 || m->to >= G)))
    return fail(x, RT_EPLACEMENT, "%s", "plan move names a GPU out of range");
  lr *src = LR(x, l, m->from);
  *ss = weights_first ? find_source(src, S, m->expert) : find_slot(src, S, m->expert);
  if (*ss < 0)
    return fail(x, RT_EPLACEMENT, "%s", "plan moves an expert from a GPU that does not host it");
  *ds = -1;
  if (m->kind == PL_MOVE_DROP) return 0;
  lr *dst = LR(x, l, m->to);
  if (find_slot(dst, S, m->expert) >= 0 ||
      (!weights_first && find_incoming(dst, S, m->expert) >= 0))
    return fail(x, RT_EPLACEMENT, "%s", "plan puts a second replica of an expert on one GPU");
  *ds = find_slot(dst, S, -1);
  if (*ds < 0) {
    int rc = alloc_slot(x, m->to, dst, ds);
    if (rc) {
      const char *be = x->ops->last_error(x->b);
      snprintf(why, sizeof why,
               "layer %d: out of device memory for a slot receiving expert %d on GPU %d %s (%s)",
               l, m->expert, m->to, how, be && be[0] ? be : "the allocation failed");
      return fail(x, rc, "%s", why);
    }
  }
  if (*ds < 0) {
    snprintf(why, sizeof why,
             "layer %d: expert %d cannot move to GPU %d %s: its %d physical "
             "expert slots (%d + %d for moves in flight) are all taken",
             l, m->expert, m->to, how, S, x->cfg.slots, S - x->cfg.slots);
    return fail(x, RT_ESLOTS, "%s", why);
  }
  return 0;
}


static int copy_part(rt_exec *x, int layer, int mover);
static int stamp(rt_exec *x, int *mark, int kind);

/* Whether the backend has a mover (rt_backend.h: begin, copy and fence). */
static int has_mover(const rt_exec *x) {
  return x->ops->move_begin && x->ops->move_copy && x->ops->move_fence;
}

/* The mover's point id of layer l's weights (ids past the last are shared
 * by the deepest layers: a wait then also covers the layers after it). */
static int point_of(int l) { return l < RT_MOVE_POINTS ? l : RT_MOVE_POINTS - 1; }

/* Starts this iteration's background copies on the backend's mover: each
 * weights-first layer's parameters in layer order, each closed by its
 * point (fence_weights waits for it), then the rest, which the mover
 * starts once every weight part has landed (pl_policy.h rule 6: the
 * optimizer state together with the plain background moves), without
 * waiting for the ranks to reach any layer. */
static int start_background(rt_exec *x) {
  if (!x->nbg || !has_mover(x)) return 0;
  BK(x, x->ops->move_begin(x->b));
  int last = -1;
  for (int l = 0; l < x->L; l++) {
    if (!x->wf_layer[l]) continue;
    int rc = copy_part(x, l, 1);
    if (rc) return rc;
    if (x->ops->move_point) BK(x, x->ops->move_point(x->b, point_of(l)));
    last = l;
  }
  /* the rest behind every source's weights, not only its own (rule 6) */
  if (last >= 0 && x->ops->move_point && x->ops->move_join)
    BK(x, x->ops->move_join(x->b, point_of(last)));
  return copy_part(x, -1, 1);
}

/* The boundary's wait for the background copies (pl_policy.h, rule 3). A
 * backend without a mover makes them here, blocking: the same placements
 * serve, the copies are only not overlapped. */
static int finish_background(rt_exec *x) {
  if (!x->nbg) return 0;
  if (has_mover(x)) {
    BK(x, x->ops->move_fence(x->b));
    return 0;
  }
  BK(x, x->ops->group_begin(x->b));
  int rc = copy_part(x, -1, 0); /* weights-first parameters: copied at fence_weights */
  if (rc) return rc;
  BK(x, x->ops->group_end(x->b));
  BK(x, x->ops->barrier(x->b));
  return 0;
}

/* The moves of layer l (x->moves[first..]), copied during this iteration
 * into a free physical slot of each destination; nothing is freed before
 * the boundary. In flight (wf = 0): the arriving replica is marked incoming
 * and the one that goes away stays served (leaving). Weights-first (wf = 1,
 * pl_policy.h rule 6): the new placement serves this iteration, so the
 * arriving replica is served at once (its parameters land before the
 * layer's forward: fence_weights), and the one that goes away stops serving
 * but stays readable until the boundary (retiring, -4), where land() frees
 * it. */
static int plan_moves(rt_exec *x, int l, int first, int wf) {
  for (int i = first; i < x->nmoves; i++) {
    const pl_move *m = &x->moves[i];
    int ss, ds, rc = move_slots(x, l, m, wf, &ss, &ds);
    if (rc) return rc;
    lr *src = LR(x, l, m->from);
    if (m->kind != PL_MOVE_DROP) {
      lr *dst = LR(x, l, m->to);
      mig_copy c = {.src_rank = m->from, .dst_rank = m->to, .src = src->slots[ss],
                    .dst = dst->slots[ds], .round = -1, .wf = wf, .layer = l};
      if ((rc = add_mig(x, &c))) return rc;
      x->nbg++;
      if (wf) {
        dst->slots[ds].expert = m->expert;
        dst->slots[ds].wf_in = 1;
        x->wf_layer[l] = 1;
      } else {
        dst->slots[ds].incoming = m->expert;
      }
    }
    if (m->kind == PL_MOVE_REPLICATE) continue;
    if (!wf) {
      src->slots[ss].leaving = 1;
    } else if (src->slots[ss].expert >= 0) {
      src->slots[ss].was = m->expert;
      src->slots[ss].expert = -4;
    }
  }
  return 0;
}

/* Part of the background copies: `layer` >= 0, the parameters of that
 * layer's weights-first copies (due before its forward); -1, the rest
 * (the weights-first copies' optimizer state, plain background copies
 * whole); on the backend's mover or, without one, as blocking copies. */
static int copy_part(rt_exec *x, int layer, int mover) {
  size_t pb = x->pelems * (size_t)x->esz;
  for (int i = 0; i < x->nmig; i++) {
    const mig_copy *c = &x->mig[i];
    if (c->round != -1 || (layer >= 0 && (!c->wf || c->layer != layer))) continue;
    int param = layer >= 0 || !c->wf, opt = layer < 0 && x->optbytes;
    if (param)
      BK(x, (mover ? x->ops->move_copy : x->ops->copy)(x->b, c->src_rank, c->src.param,
                                                       c->dst_rank, c->dst.param, pb));
    if (opt)
      BK(x, (mover ? x->ops->move_copy : x->ops->copy)(x->b, c->src_rank, c->src.opt,
                                                       c->dst_rank, c->dst.opt, x->optbytes));
  }
  return 0;
}

/* Before weights-first layer l's forward: its copies' parameters have
 * landed (the wait for its point; later layers' weights and the rest keep
 * copying), the wait stamped as migration. A backend without points
 * fences every copy given so far; one without a mover copies the layer's
 * parameters here, blocking, and the rest at the boundary. */
static int fence_weights(rt_exec *x, int l, int *mark) {
  if (has_mover(x) && x->ops->move_point && x->ops->move_wait) {
    BK(x, x->ops->move_wait(x->b, point_of(l)));
  } else if (has_mover(x)) {
    BK(x, x->ops->move_fence(x->b));
  } else {
    BK(x, x->ops->group_begin(x->b));
    int rc = copy_part(x, l, 0);
    if (rc) return rc;
    BK(x, x->ops->group_end(x->b));
    BK(x, x->ops->barrier(x->b));
  }
  return stamp(x, mark, RT_PH_MIGRATION);
}

/* Turns the moves of layer l (x->moves[first..]) into slot copies in
 * rounds: a slot freed in a round is reused only in a later one, after a
 * barrier, so no copy reads a slot another copy is writing. */
static int plan_migration(rt_exec *x, int l, int first) {
  int S = x->nphys, G = x->G;
  int n = x->nmoves - first;
  if (n <= 0) return 0;
  char *done = rt_calloc((size_t)n, 1);
  int *freeing = rt_calloc((size_t)G * (size_t)S, sizeof(int));
  if (!done || !freeing) {
    rt_free(done);
    rt_free(freeing);
    return RT_ENOMEM;
  }
  int left = n, rc = 0;
  for (int g = 0; g < G; g++)
    for (int s = 0; s < S; s++) LR(x, l, g)->slots[s].born = -1;
  for (int round = 0; left > 0 && !rc; round++) {
    int progress = 0, nfreeing = 0;
    for (int i = 0; i < n && !rc; i++) {
      if (done[i]) continue;
      const pl_move *m = &x->moves[first + i];
      if (m->from < 0 || m->from >= G || (m->kind != PL_MOVE_DROP && (m->to < 0 || m->to >= G))) {
        rc = fail(x, RT_EPLACEMENT, "%s", "plan move names a GPU out of range");
        break;
      }
      lr *src = LR(x, l, m->from);
      int ss = find_slot(src, S, m->expert);
      if (ss < 0)
        for (int q = 0; q < S; q++)
          if (src->slots[q].expert == -2 && src->slots[q].was == m->expert) ss = q;
      if (ss >= 0 && src->slots[ss].born == round) continue; /* its copy lands this round */
      if (ss < 0) {
        rc = fail(x, RT_EPLACEMENT, "%s", "plan moves an expert from a GPU that does not host it");
        break;
      }
      if (m->kind == PL_MOVE_DROP) {
        src->slots[ss].was = m->expert;
        src->slots[ss].expert = -2; /* freed at the end of the round */
        freeing[m->from * S + ss] = 1;
        nfreeing++;
      } else {
        lr *dst = LR(x, l, m->to);
        if (find_slot(dst, S, m->expert) >= 0) {
          rc = fail(x, RT_EPLACEMENT, "%s", "plan puts a second replica of an expert on one GPU");
          break;
        }
        int ds = find_slot(dst, S, -1);
        if (ds < 0) continue; /* wait for a slot freed in this round */
        mig_copy c = {.src_rank = m->from, .dst_rank = m->to, .src = src->slots[ss],
                      .dst = dst->slots[ds], .round = round, .wf = 0, .layer = l};
        if ((rc = add_mig(x, &c))) break;
        dst->slots[ds].expert = m->expert;
        dst->slots[ds].born = round;
        if (m->kind == PL_MOVE_MIGRATE) {
          src->slots[ss].was = m->expert;
          src->slots[ss].expert = -2;
          freeing[m->from * S + ss] = 1;
          nfreeing++;
        }
      }
      done[i] = 1;
      left--;
      progress = 1;
    }
    /* Free the slots given up this round, except those a move still to
     * come copies from (a plan may migrate an expert away from a GPU and
     * also replicate it from there): they stay readable until then. */
    for (int g = 0; g < G; g++)
      for (int s = 0; s < S; s++) {
        if (!freeing[g * S + s]) continue;
        int needed = 0;
        for (int i = 0; i < n && !needed; i++) {
          const pl_move *m = &x->moves[first + i];
          needed = !done[i] && m->kind != PL_MOVE_DROP && m->from == g &&
                   m->expert == LR(x, l, g)->slots[s].was;
        }
        if (needed) continue;
        LR(x, l, g)->slots[s].expert = -1;
        freeing[g * S + s] = 0;
      }
    if (!rc && !progress && nfreeing == 0 && left > 0) {
      /* Moves waiting only for a copy made this round can go next round. */
      for (int g = 0; g < G; g++)
        for (int s = 0; s < S; s++)
          if (LR(x, l, g)->slots[s].born == round) {
            progress = 1;
          }
    }
    if (round + 1 > x->rounds) x->rounds = round + 1;
    if (!rc && !progress && nfreeing == 0 && left > 0)
      rc = fail(x, RT_ESLOTS, "%s",
                "a plan needs more expert slots than a GPU has (the slot limit + 1 spare) "
                "to make its moves");
  }
  rt_free(done);
  rt_free(freeing);
  return rc;
}

static int run_migration(rt_exec *x) {
  size_t pb = x->pelems * (size_t)x->esz;
  for (int round = 0; round < x->rounds; round++) {
    BK(x, x->ops->group_begin(x->b));
    for (int i = 0; i < x->nmig; i++) {
      const mig_copy *c = &x->mig[i];
      if (c->round != round) continue;
      BK(x, x->ops->copy(x->b, c->src_rank, c->src.param, c->dst_rank, c->dst.param, pb));
      if (x->optbytes)
        BK(x, x->ops->copy(x->b, c->src_rank, c->src.opt, c->dst_rank, c->dst.opt, x->optbytes));
    }
    BK(x, x->ops->group_end(x->b));
    BK(x, x->ops->barrier(x->b));
  }
  return 0;
}

/* Host layout of layer l from the routing in x->route and counts. */
static int layout_layer(rt_exec *x, int64_t it, int l, const int64_t *counts) {
  int G = x->G, E = x->E, k = x->k;
  const pl_placement *pp = x->temps && x->temps[l].n ? &x->temps[l].placement
                                                     : pl_policy_serving(x->policy, l);
  int64_t *split = x->split_l + (size_t)l * G * E * G;
  /* split[src][e][g]: pl_route of one source row at a time, dropless, of
   * the slots the source keeps within its capacity (x->route.cap[src], -1
   * when dropless): drops are per (source, expert), as pl_route_caps makes
   * them, and each source's split does not depend on the others. The
   * runtime sends the kept tokens, not the padding the simulator charges
   * for a capacity routing. */
  for (int src = 0; src < G; src++) {
    int64_t cap = x->route.cap ? x->route.cap[src] : -1;
    memset(x->rowc, 0, sizeof(int64_t) * (size_t)G * (size_t)E);
    for (int e = 0; e < E; e++) {
      int64_t c = counts[(size_t)src * E + e];
      x->rowc[(size_t)src * E + e] = cap >= 0 && c > cap ? cap : c;
    }
    int prc = pl_route(pp, &x->env.cluster, x->rowc, -1, &x->tmp);
    if (prc) return fail(x, RT_EPLACEMENT, "pl_route: %s", pl_strerror(prc));
    for (int e = 0; e < E; e++)
      for (int g = 0; g < G; g++)
        split[((size_t)src * E + e) * G + g] = x->tmp.load[(size_t)g * E + e];
  }
  for (int r = 0; r < G; r++) {
    lr *q = LR(x, l, r);
    const int64_t *c = counts + (size_t)r * E;
    int64_t S = 0;
    for (int e = 0; e < E; e++) S += c[e];
    if (S > x->Smax) return fail(x, RT_EINVAL, "%s", "a rank routes more token slots than max_slots_per_rank");
    q->S = S;
    q->T = (S + k - 1) / k;
    for (int e = 0; e < E; e++) q->ex_slot[e] = find_slot(q, x->nphys, e);
    /* Send layout: by destination, then expert ascending. */
    int64_t p = 0;
    for (int g = 0; g < G; g++) {
      q->send_off[g] = p;
      for (int e = 0; e < E; e++) p += split[((size_t)r * E + e) * G + g];
      q->send_cnt[g] = p - q->send_off[g];
    }
    for (int64_t i = 0; i < q->T * k; i++) {
      q->cidx[i] = -1;
      q->cw[i] = 0.0f;
    }
    uint64_t ws = seed_of(x, 5, it, l, r);
    int64_t base = 0;
    int64_t cursor[G];
    for (int g = 0; g < G; g++) cursor[g] = q->send_off[g];
    for (int e = 0; e < E; e++) {
      int64_t j = base;
      for (int g = 0; g < G; g++) {
        int64_t n = split[((size_t)r * E + e) * G + g];
        for (int64_t u = 0; u < n; u++, j++) {
          int64_t pos = cursor[g]++;
          int64_t t = j % q->T, qq = j / q->T;
          float w = weight_of(ws, j);
          q->sidx[pos] = (int32_t)t;
          q->sw[pos] = w;
          q->cidx[t * k + qq] = (int32_t)pos;
          q->cw[t * k + qq] = w;
        }
      }
      base += c[e];
    }
  }
  /* Receive side. */
  for (int g = 0; g < G; g++) {
    lr *q = LR(x, l, g);
    int64_t p = 0;
    for (int src = 0; src < G; src++) {
      q->recv_off[src] = p;
      q->recv_cnt[src] = LR(x, l, src)->send_cnt[g];
      p += q->recv_cnt[src];
    }
    q->recv_total = p;
    if (p > x->Cap) return fail(x, RT_EINVAL, "%s", "receive buffer overflow");
    int64_t i = 0;
    for (int e = 0; e < E; e++) {
      q->ex_off[e] = i;
      int64_t n = 0;
      for (int src = 0; src < G; src++) {
        int64_t sub = q->recv_off[src];
        for (int e2 = 0; e2 < e; e2++) sub += split[((size_t)src * E + e2) * G + g];
        int64_t cnt = split[((size_t)src * E + e) * G + g];
        for (int64_t u = 0; u < cnt; u++) {
          q->ridx[i] = (int32_t)(sub + u);
          q->rinv[sub + u] = (int32_t)i;
          i++;
        }
        n += cnt;
      }
      q->ex_n[e] = n;
      if (n > 0 && q->ex_slot[e] < 0)
        return fail(x, RT_EPLACEMENT, "%s", "tokens routed to a GPU that holds no replica");
    }
  }
  return 0;
}

static int check_layout(rt_exec *x, int l) {
  const pl_placement *pp = pl_policy_serving(x->policy, l);
  for (int g = 0; g < x->G; g++) {
    lr *q = LR(x, l, g);
    int n = 0;
    for (int s = 0; s < x->nphys; s++)
      if (q->slots[s].expert >= 0) {
        n++;
        if (!pl_placement_has(pp, q->slots[s].expert, g))
          return fail(x, RT_EPLACEMENT, "%s", "runtime layout disagrees with the policy's placement");
      }
    if (n != pp->nhost[g])
      return fail(x, RT_EPLACEMENT, "%s", "runtime layout disagrees with the policy's placement");
  }
  return 0;
}

/* Time stamp number *mark, closing a phase of kind `kind`. */
static int stamp(rt_exec *x, int *mark, int kind) {
  x->kind[*mark] = kind;
  BK(x, x->ops->mark(x->b, (*mark)++));
  return 0;
}

/* The buffer of rank r at byte offset `field` of its rk struct. */
static char *rkbuf(rt_exec *x, int r, size_t field) {
  return *(char **)((char *)&x->rk[r] + field);
}

/* Exchange of layer l's routed rows: forward (back = 0) from each source's
 * `from` buffer in send layout to each destination's `to` buffer in receive
 * layout; back = 1 the reverse. Ends with a barrier. */
static int exchange(rt_exec *x, int l, int back, size_t from, size_t to) {
  size_t dsz = (size_t)x->d * (size_t)x->esz;
  BK(x, x->ops->group_begin(x->b));
  for (int r = 0; r < x->G; r++)
    for (int g = 0; g < x->G; g++) {
      lr *s = LR(x, l, r), *t = LR(x, l, g);
      int64_t n = s->send_cnt[g];
      if (n == 0) continue;
      /* Offsets are applied only to buffers this process owns (the others
       * are NULL on the nccl backend and ignored by copy). */
      char *sp, *dp;
      if (!back) {
        sp = rkbuf(x, r, from);
        dp = rkbuf(x, g, to);
        if (sp) sp += (size_t)s->send_off[g] * dsz;
        if (dp) dp += (size_t)t->recv_off[r] * dsz;
        BK(x, x->ops->copy(x->b, r, sp, g, dp, (size_t)n * dsz));
      } else {
        sp = rkbuf(x, g, from);
        dp = rkbuf(x, r, to);
        if (sp) sp += (size_t)t->recv_off[r] * dsz;
        if (dp) dp += (size_t)s->send_off[g] * dsz;
        BK(x, x->ops->copy(x->b, g, sp, r, dp, (size_t)n * dsz));
      }
    }
  BK(x, x->ops->group_end(x->b));
  BK(x, x->ops->barrier(x->b));
  return 0;
}

static int layer_pass(rt_exec *x, int l, int bwd, int *mark) {
  int G = x->G;
  size_t dsz = (size_t)x->d * (size_t)x->esz, fsz = (size_t)x->f * (size_t)x->esz;
  /* dispatch */
  for (int r = 0; r < G; r++) {
    if (!x->ops->owns(x->b, r)) continue;
    lr *q = LR(x, l, r);
    BK(x, x->ops->permute(x->b, r, x->rk[r].send, bwd ? q->d_dOut : q->d_X, q->d_sidx,
                          bwd ? q->d_sw : NULL, q->S, x->d));
  }
  int rc = stamp(x, mark, RT_PH_LOCAL);
  if (rc) return rc;
  if ((rc = exchange(x, l, 0, offsetof(rk, send), offsetof(rk, recv)))) return rc;
  if ((rc = stamp(x, mark, RT_PH_DISPATCH))) return rc;
  for (int g = 0; g < G; g++) {
    if (!x->ops->owns(x->b, g)) continue;
    lr *q = LR(x, l, g);
    BK(x, x->ops->permute(x->b, g, bwd ? x->rk[g].dY : q->d_xin, x->rk[g].recv, q->d_ridx,
                          NULL, q->recv_total, x->d));
  }
  if ((rc = stamp(x, mark, RT_PH_LOCAL))) return rc;
  /* expert compute */
  for (int g = 0; g < G; g++) {
    if (!x->ops->owns(x->b, g)) continue;
    lr *q = LR(x, l, g);
    for (int e = 0; e < x->E; e++) {
      int s = q->ex_slot[e];
      if (s < 0) continue;
      slot *sl = &q->slots[s];
      int64_t n = q->ex_n[e], off = q->ex_off[e];
      char *xin = (char *)q->d_xin + (size_t)off * dsz;
      char *A = (char *)q->d_A + (size_t)off * fsz;
      char *Y = (char *)x->rk[g].Y + (size_t)off * dsz;
      if (!bwd) {
        if (n > 0) BK(x, x->ops->ffn_fwd(x->b, g, xin, sl->param, A, Y, n, x->d, x->f));
      } else {
        char *dY = (char *)x->rk[g].dY + (size_t)off * dsz;
        BK(x, x->ops->ffn_bwd(x->b, g, xin, sl->param, A, dY, x->rk[g].dA, Y, sl->grad, n,
                              x->d, x->f));
      }
    }
  }
  if ((rc = stamp(x, mark, RT_PH_COMPUTE))) return rc;
  /* combine */
  for (int g = 0; g < G; g++) {
    if (!x->ops->owns(x->b, g)) continue;
    lr *q = LR(x, l, g);
    BK(x, x->ops->permute(x->b, g, x->rk[g].ysend, x->rk[g].Y, q->d_rinv, NULL, q->recv_total,
                          x->d));
  }
  if ((rc = stamp(x, mark, RT_PH_LOCAL))) return rc;
  if ((rc = exchange(x, l, 1, offsetof(rk, ysend), offsetof(rk, back)))) return rc;
  if ((rc = stamp(x, mark, RT_PH_COMBINE))) return rc;
  for (int r = 0; r < G; r++) {
    if (!x->ops->owns(x->b, r)) continue;
    lr *q = LR(x, l, r);
    BK(x, x->ops->combine(x->b, r, bwd ? q->d_dIn : q->d_Out, x->rk[r].back, q->d_cidx,
                          bwd ? NULL : q->d_cw, q->T, x->k, x->d));
  }
  return stamp(x, mark, RT_PH_LOCAL);
}

/* Replica gradient all-reduce of every expert with r > 1 replicas:
 * chunk c of the gradient is owned by replica c; reduce-scatter (every
 * other replica sends its chunk c to the owner's staging buffer, the owner
 * adds them in replica order), then all-gather. */
static int allreduce_op(rt_exec *x) {
  int S = x->nphys;
  for (int l = 0; l < x->L; l++) {
    const pl_placement *pp = pl_policy_serving(x->policy, l);
    for (int e = 0; e < x->E; e++) {
      int nr = pp->nrep[e];
      if (nr < 2) continue;
      int g[nr];
      void *buf[nr], *scr[nr];
      for (int i = 0; i < nr; i++) {
        g[i] = pp->rep[e * pp->gpus + i];
        int s = find_slot(LR(x, l, g[i]), S, e);
        if (s < 0) return fail(x, RT_EPLACEMENT, "%s", "replica missing in the runtime layout");
        buf[i] = LR(x, l, g[i])->slots[s].grad;
        scr[i] = LR(x, l, g[i])->slots[s].stage;
      }
      BK(x, x->ops->allreduce(x->b, g, nr, buf, scr, x->pelems));
    }
  }
  BK(x, x->ops->barrier(x->b));
  return 0;
}

/* 1 when some expert of some layer has two replicas or more. */
static int any_replicated(const rt_exec *x) {
  for (int l = 0; l < x->L; l++) {
    const pl_placement *pp = pl_policy_serving(x->policy, l);
    for (int e = 0; e < x->E; e++)
      if (pp->nrep[e] > 1) return 1;
  }
  return 0;
}

/* The replica gradient all-reduce. Without a replica it does nothing, not
 * even its barriers: there is nothing to order, and the simulator charges
 * such an iteration no all-reduce (every rank's placement is the same, so
 * every process of the nccl backend skips alike). */
static int allreduce(rt_exec *x) {
  int S = x->nphys;
  size_t n = x->pelems, esz = (size_t)x->esz;
  if (!any_replicated(x)) return 0;
  if (x->ops->allreduce) return allreduce_op(x);
  for (int step = 0; step < 3; step++) {
    if (step != 1) BK(x, x->ops->group_begin(x->b));
    for (int l = 0; l < x->L; l++) {
      const pl_placement *pp = pl_policy_serving(x->policy, l);
      for (int e = 0; e < x->E; e++) {
        int nr = pp->nrep[e];
        if (nr < 2) continue;
        int g[nr];
        slot *sl[nr];
        for (int i = 0; i < nr; i++) {
          g[i] = pp->rep[e * pp->gpus + i];
          int s = find_slot(LR(x, l, g[i]), S, e);
          if (s < 0) return fail(x, RT_EPLACEMENT, "%s", "replica missing in the runtime layout");
          sl[i] = &LR(x, l, g[i])->slots[s];
        }
        for (int c = 0; c < nr; c++) {
          size_t lo = n * (size_t)c / (size_t)nr, hi = n * (size_t)(c + 1) / (size_t)nr;
          size_t len = hi - lo;
          if (len == 0) continue;
          for (int i = 0; i < nr; i++) {
            if (i == c) continue;
            /* Sender i's piece goes to the owner's staging buffer at
             * position j (0..nr-2): (nr-1) pieces of at most ceil(n/nr)
             * elements fit in n. Indexing by i would overrun it by up to
             * nr-1 elements when nr does not divide n (seen on the H200:
             * cudaMemcpyAsync "invalid argument" once eplb made an expert
             * with three replicas). */
            size_t j = (size_t)(i < c ? i : i - 1);
            if (step == 0) {
              BK(x, x->ops->copy(x->b, g[i], (char *)sl[i]->grad + lo * esz, g[c],
                                 (char *)sl[c]->stage + j * len * esz, len * esz));
            } else if (step == 1) {
              if (x->ops->owns(x->b, g[c]))
                BK(x, x->ops->add(x->b, g[c], (char *)sl[c]->grad + lo * esz,
                                  (char *)sl[c]->stage + j * len * esz, len));
            } else {
              BK(x, x->ops->copy(x->b, g[c], (char *)sl[c]->grad + lo * esz, g[i],
                                 (char *)sl[i]->grad + lo * esz, len * esz));
            }
          }
        }
      }
    }
    if (step != 1) BK(x, x->ops->group_end(x->b));
    BK(x, x->ops->barrier(x->b));
  }
  return 0;
}

/* ---------------------------------------- temporaries (issue 17 step 2) --- */
/*
 * pl_policy.h's temporaries contract on the runtime. A layer's temporaries
 * (pl_policy_route_temporaries, which also routes the layer on the
 * placement with them) each take a free physical slot of their GPU
 * (temps_place: expert -1 and nothing arriving; the decision keeps them
 * within the slots the serving and current placements leave, so one is
 * there, its buffers allocated on first use) and are served like a replica
 * for the iteration. Their weights are copied from the holder's slot after
 * the iteration's moves have run (temps_copy_in: before the layer's forward,
 * after the weights-first fence for a layer at or past it, since a holder
 * may be a replica that arrived weights-first; the simulator starts them
 * after the layer's dispatch; the cpu
 * backend's copies are memcpy, so only when they are timed differs); after
 * the backward each temporary's gradient is added to its holder's (copied
 * to the holder's staging buffer, then added there), before the replica
 * all-reduce, and its slot is freed (temps_reduce_back). The policy's
 * placement never holds them, so check_layout and the parameter checksums
 * see the planned layout only.
 */

/* The temporaries' buffers, one per layer, when the policy makes them. */
static int temps_init(rt_exec *x) {
  if (!pl_policy_has_temporaries(x->policy)) return 0;
  x->temps = rt_calloc((size_t)x->L, sizeof(pl_temps));
  if (!x->temps) return RT_ENOMEM;
  int slots = pl_policy_placement(x->policy, 0)->slots;
  for (int l = 0; l < x->L; l++)
    if (pl_temps_init(&x->temps[l], x->E, x->G, slots)) return RT_ENOMEM;
  return 0;
}

/* A free physical slot of (l, to) for each of layer l's temporaries. */
static int temps_place(rt_exec *x, int l) {
  const pl_temps *t = x->temps ? &x->temps[l] : NULL;
  for (int k = 0; t && k < t->n; k++) {
    lr *q = LR(x, l, t->temp[k].to);
    int s = -1;
    for (int i = 0; i < x->nphys && s < 0; i++)
      if (q->slots[i].expert == -1 && q->slots[i].incoming < 0 && !q->slots[i].leaving) s = i;
    if (s < 0) {
      int rc = alloc_slot(x, t->temp[k].to, q, &s);
      if (rc) return fail(x, rc, "%s", "out of memory for a temporary's buffers");
    }
    if (s < 0) return fail(x, RT_ESLOTS, "%s", "no free slot for a temporary");
    q->slots[s].expert = t->temp[k].expert;
  }
  return 0;
}

/* Slot of expert e on (l, g): the temporary's or its holder's. */
static slot *temps_slot(rt_exec *x, int l, int g, int e) {
  lr *q = LR(x, l, g);
  int s = find_slot(q, x->nphys, e);
  return s < 0 ? NULL : &q->slots[s];
}

/* Every temporary of layer l gets its weights from its holder. */
static int temps_copy_in(rt_exec *x, int l) {
  int any = 0;
  size_t bytes = x->pelems * (size_t)x->esz;
  if (x->temps)
    for (int k = 0; k < x->temps[l].n; k++) {
      const pl_temp *tp = &x->temps[l].temp[k];
      slot *from = temps_slot(x, l, tp->from, tp->expert), *to = temps_slot(x, l, tp->to, tp->expert);
      if (!from || !to) return fail(x, RT_EPLACEMENT, "%s", "a temporary's slot is missing");
      if (!any++) BK(x, x->ops->group_begin(x->b));
      BK(x, x->ops->copy(x->b, tp->from, from->param, tp->to, to->param, bytes));
    }
  if (!any) return 0;
  BK(x, x->ops->group_end(x->b));
  BK(x, x->ops->barrier(x->b));
  return 0;
}

/* Every temporary's gradient added to its holder's, then its slot freed.
 * A holder's copy has one staging buffer, so the temporaries of one
 * (layer, expert, holder) go in rounds, one each. */
static int temps_reduce_back(rt_exec *x) {
  size_t n = x->pelems, bytes = n * (size_t)x->esz;
  for (int round = 0;; round++) {
    int any = 0;
    for (int l = 0; x->temps && l < x->L; l++) {
      const pl_temps *t = &x->temps[l];
      for (int k = 0; k < t->n; k++) {
        int dup = 0; /* the round-th temporary of its (layer, holder) goes now */
        for (int j = 0; j < k; j++)
          dup += t->temp[j].from == t->temp[k].from && t->temp[j].expert == t->temp[k].expert;
        if (dup != round) continue;
        const pl_temp *tp = &t->temp[k];
        slot *from = temps_slot(x, l, tp->from, tp->expert), *to = temps_slot(x, l, tp->to, tp->expert);
        if (!from || !to) return fail(x, RT_EPLACEMENT, "%s", "a temporary's slot is missing");
        if (!any++) BK(x, x->ops->group_begin(x->b));
        BK(x, x->ops->copy(x->b, tp->to, to->grad, tp->from, from->stage, bytes));
      }
    }
    if (!any) break;
    BK(x, x->ops->group_end(x->b));
    BK(x, x->ops->barrier(x->b));
    for (int l = 0; l < x->L; l++) {
      const pl_temps *t = &x->temps[l];
      for (int k = 0; k < t->n; k++) {
        int dup = 0;
        for (int j = 0; j < k; j++)
          dup += t->temp[j].from == t->temp[k].from && t->temp[j].expert == t->temp[k].expert;
        const pl_temp *tp = &t->temp[k];
        if (dup != round || !x->ops->owns(x->b, tp->from)) continue;
        slot *from = temps_slot(x, l, tp->from, tp->expert);
        BK(x, x->ops->add(x->b, tp->from, from->grad, from->stage, n));
      }
    }
    BK(x, x->ops->barrier(x->b));
  }
  for (int l = 0; x->temps && l < x->L; l++)
    for (int k = 0; k < x->temps[l].n; k++) {
      const pl_temp *tp = &x->temps[l].temp[k];
      temps_slot(x, l, tp->to, tp->expert)->expert = -1;
    }
  return 0;
}

/* Step 1 for layer l: its plan, turned into slot copies (background,
 * weights-first or blocking rounds), the layout checked against the
 * policy's, then the policy observes the counts (it only uses them for
 * later plans); *migrated += the plan's bytes. */
static int plan_layer(rt_exec *x, int64_t it, int l, const int64_t *counts, int64_t *migrated) {
  const pl_policy_ops *pops = pl_policy_ops_of(x->policy);
  pl_plan plan;
  pl_plan_init(&plan);
  int rc = pl_policy_plan(x->policy, (int)it, l, pops->clairvoyant ? counts : NULL, &plan);
  if (rc) {
    pl_plan_fini(&plan);
    return fail(x, RT_EPLACEMENT, "policy plan: %s", pl_strerror(rc));
  }
  int first = x->nmoves;
  if (plan.changed)
    for (int m = 0; m < plan.nmoves && !rc; m++) {
      rc = add_move(x, &plan.moves[m]);
      *migrated += plan.moves[m].bytes;
    }
  pl_plan_fini(&plan);
  if (rc) return rc;
  /* Rounds are counted over all layers: plan each layer's moves. */
  int saved = x->rounds;
  if (pl_policy_inflight(x->policy, l)) rc = plan_moves(x, l, first, 0);
  else if (pl_policy_weights_first(x->policy, l)) rc = plan_moves(x, l, first, 1);
  else rc = plan_migration(x, l, first);
  if (rc) return rc;
  if (x->rounds < saved) x->rounds = saved;
  if ((rc = check_layout(x, l))) return rc;
  rc = pl_policy_observe(x->policy, (int)it, l, counts);
  return rc ? fail(x, RT_EPLACEMENT, "policy observe: %s", pl_strerror(rc)) : 0;
}

/* Step 2 for layer l, once every layer is planned: its routing on the
 * serving placement (with its temporaries when the policy makes them),
 * their slots, and the layer's index arrays; the tokens, bytes and
 * *balance (raised to the layer's) into res. */
static int route_layer(rt_exec *x, int64_t it, int l, const int64_t *counts, rt_iter_result *res,
                       double *balance) {
  int rc = x->temps ? pl_policy_route_temporaries(x->policy, l, counts, &x->temps[l], &x->route)
                    : pl_policy_route_serving(x->policy, l, counts, &x->route);
  if (rc) return fail(x, RT_EPLACEMENT, "policy route: %s", pl_strerror(rc));
  if ((rc = temps_place(x, l))) return rc;
  double bal = pl_routing_balance(&x->route);
  if (bal > *balance) *balance = bal;
  res->tokens_total += x->route.total;
  res->tokens_dropped += x->route.dropped;
  if ((rc = layout_layer(x, it, l, counts))) return rc;
  for (int r = 0; r < x->G; r++)
    for (int g = 0; g < x->G; g++)
      if (g != r) res->bytes_alltoall += 4 * LR(x, l, r)->send_cnt[g];
  return 0;
}

int rt_exec_iteration(rt_exec *x, int64_t it, const int64_t *counts,
                      rt_iter_result *res, char *err, size_t errlen) {
  int G = x->G, L = x->L, E = x->E, rc;
  x->err = err;
  x->errlen = errlen;
  size_t GE = (size_t)G * (size_t)E;
  memset(res, 0, sizeof *res);
  res->iteration = it;
  /* 1. plans, turned into slot copies, at the boundary where the previous
   * iteration's background moves land */
  land(x);
  x->nmoves = 0;
  x->nmig = 0;
  x->nbg = 0;
  memset(x->wf_layer, 0, (size_t)L);
  x->rounds = 0;
  int64_t migrated = 0;
  double balance = 0.0;
  /* the simulator's call order (run/fm_sim.c): plan and observe layer by
   * layer, then every layer's routing and temporaries (which read only the
   * plans: the same decisions as the simulator's, bit for bit) */
  for (int l = 0; l < L; l++)
    if ((rc = plan_layer(x, it, l, counts + l * GE, &migrated))) return rc;
  for (int l = 0; l < L; l++)
    if ((rc = route_layer(x, it, l, counts + l * GE, res, &balance))) return rc;
  res->bytes_alltoall *= (int64_t)x->d * x->cfg.model_bytes_per_elem;
  res->balance = balance;
  res->nmoves = x->nmoves;
  res->bytes_migrated = x->iters > 0 ? migrated : 0;
  /* 3. inputs (not timed) */
  for (int l = 0; l < L; l++)
    for (int r = 0; r < G; r++) {
      if (!x->ops->owns(x->b, r)) continue;
      lr *q = LR(x, l, r);
      BK(x, x->ops->fill(x->b, r, q->d_X, (size_t)q->T * x->d, seed_of(x, 3, it, l, r), 1.0f));
      BK(x, x->ops->fill(x->b, r, q->d_dOut, (size_t)q->T * x->d, seed_of(x, 4, it, l, r), 1.0f));
      BK(x, x->ops->upload(x->b, r, q->d_sidx, q->sidx, (size_t)q->S * 4));
      BK(x, x->ops->upload(x->b, r, q->d_sw, q->sw, (size_t)q->S * 4));
      BK(x, x->ops->upload(x->b, r, q->d_ridx, q->ridx, (size_t)q->recv_total * 4));
      BK(x, x->ops->upload(x->b, r, q->d_rinv, q->rinv, (size_t)q->recv_total * 4));
      BK(x, x->ops->upload(x->b, r, q->d_cidx, q->cidx, (size_t)q->T * x->k * 4));
      BK(x, x->ops->upload(x->b, r, q->d_cw, q->cw, (size_t)q->T * x->k * 4));
    }
  int mark = 0;
  if (x->iters == 0 && (rc = run_migration(x))) return rc;
  /* A head start for the host: the ranks spin while it queues the
   * iteration, so the stamps measure the devices, not the queueing. */
  if (x->ops->delay)
    for (int r = 0; r < G; r++)
      if (x->ops->owns(x->b, r)) BK(x, x->ops->delay(x->b, r, 300.0));
  BK(x, x->ops->barrier(x->b));
  if ((rc = stamp(x, &mark, -1))) return rc;
  if (x->iters > 0 && (rc = run_migration(x))) return rc;
  if ((rc = stamp(x, &mark, RT_PH_MIGRATION))) return rc;
  if ((rc = start_background(x))) return rc;
  for (int l = 0; l < L; l++) {
    if (x->wf_layer[l] && (rc = fence_weights(x, l, &mark))) return rc;
    /* after the layer's wait: a temporary's holder may be a replica that
     * arrived weights-first in this iteration */
    if ((rc = temps_copy_in(x, l))) return rc;
    if ((rc = layer_pass(x, l, 0, &mark))) return rc;
  }
  for (int l = L - 1; l >= 0; l--)
    if ((rc = layer_pass(x, l, 1, &mark))) return rc;
  if ((rc = temps_reduce_back(x))) return rc;
  if ((rc = allreduce(x))) return rc;
  if ((rc = stamp(x, &mark, RT_PH_ALLREDUCE))) return rc;
  if (x->nbg) {
    if ((rc = finish_background(x))) return rc;
    if ((rc = stamp(x, &mark, RT_PH_MIGRATION))) return rc;
  }
  BK(x, x->ops->collect(x->b, mark, x->stamps));
  /* 4. phase times: latest rank to latest rank */
  double prev = 0.0;
  for (int r = 0; r < G; r++)
    if (x->stamps[r] > prev) prev = x->stamps[r];
  double t0 = prev;
  for (int s = 1; s < mark; s++) {
    double t = 0.0;
    for (int r = 0; r < G; r++)
      if (x->stamps[s * G + r] > t) t = x->stamps[s * G + r];
    if (t < prev) t = prev;
    int ph = x->kind[s];
    res->phase_ms[ph] += t - prev;
    if (ph == RT_PH_COMPUTE)
      for (int r = 0; r < G; r++) {
        double busy = x->stamps[s * G + r] - prev;
        if (busy > 0) x->busy[r] += busy;
      }
    prev = t;
  }
  res->time_ms = prev - t0;
  for (int r = 0; r < G; r++) x->total[r] += res->time_ms;
  x->last_it = it;
  x->iters++;
  return 0;
}

void rt_exec_rank_time(const rt_exec *x, int rank, double *busy_ms, double *total_ms) {
  *busy_ms = x->busy[rank];
  *total_ms = x->total[rank];
}

const pl_move *rt_exec_moves(const rt_exec *x, int *nmoves) {
  *nmoves = x->nmoves;
  return x->moves;
}

/* ---- checks ---- */

static void to_float(const rt_exec *x, const void *src, float *dst, size_t n) {
  if (x->esz == 4) memcpy(dst, src, n * 4);
  else
    for (size_t i = 0; i < n; i++) dst[i] = kn_bf2f(((const uint16_t *)src)[i]);
}

static void ref_fill(const rt_exec *x, float *dst, size_t n, uint64_t seed, float scale) {
  kn_cpu_fill(dst, n, seed, scale);
  if (x->esz == 2)
    for (size_t i = 0; i < n; i++) dst[i] = kn_bf16_round(dst[i]);
}

static void acc_err(const float *a, const float *ref, size_t n, double *num, double *den) {
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)ref[i];
    *num += d * d;
    *den += (double)ref[i] * ref[i];
  }
}

/* The parameter + optimizer-state checksum every replica of (l, e) must
 * have: the generated values, stored as the backend stores them. */
static uint64_t expected_checksum(rt_exec *x, int l, int e, float *P, void *raw, void *rawo) {
  size_t df = (size_t)x->d * (size_t)x->f;
  kn_cpu_fill(P, df, seed_of(x, 1, l, e, 0), 1.0f / sqrtf((float)x->d));
  kn_cpu_fill(P + df, df, seed_of(x, 1, l, e, 1), 1.0f / sqrtf((float)x->f));
  if (x->esz == 4) memcpy(raw, P, 2 * df * 4);
  else
    for (size_t i = 0; i < 2 * df; i++) ((uint16_t *)raw)[i] = kn_f2bf(P[i]);
  uint32_t *o = rawo;
  uint64_t os = seed_of(x, 2, l, e, 0);
  for (size_t i = 0; i < x->optbytes / 4; i++) o[i] = (uint32_t)kn_mix64(os ^ kn_mix64((uint64_t)i));
  return kn_checksum(raw, 2 * df * (size_t)x->esz) ^ kn_mix64(kn_checksum(rawo, x->optbytes));
}

/* rt_exec_check's host buffers, and the sums of its relative errors
 * (numerator, denominator: outputs, input gradients, weight gradients). */
typedef struct check_buf {
  float *P, *Gref, *Gd;             /* [pelems]: an expert's parameters, its gradients */
  void *raw, *raw2, *rawo, *rawo2;  /* downloads: parameters or tokens, optimizer state */
  float **Xr, **dOr, **Ys, **dXs;   /* [G] per rank: inputs, output grads; per slot results */
  float *xb, *dyb, *ab, *dab, *yb, *dxb; /* [Cap x d or f] one expert's batch */
  int32_t *rowr;                    /* [Cap] each batch row's source rank */
  int64_t *rowp;                    /* [Cap] and its slot there */
  float *tok, *tokref;              /* [Tmax d] one rank's tokens: the device's, the reference */
  double on, od, dn, dd, gn, gd;
} check_buf;

static void check_free(check_buf *c, int G) {
  for (int r = 0; c->Xr && r < G; r++) {
    rt_free(c->Xr[r]);
    if (c->dOr) rt_free(c->dOr[r]);
    if (c->Ys) rt_free(c->Ys[r]);
    if (c->dXs) rt_free(c->dXs[r]);
  }
  rt_free(c->Xr); rt_free(c->dOr); rt_free(c->Ys); rt_free(c->dXs);
  rt_free(c->P); rt_free(c->Gref); rt_free(c->Gd); rt_free(c->raw); rt_free(c->raw2);
  rt_free(c->rawo); rt_free(c->rawo2);
  rt_free(c->xb); rt_free(c->dyb); rt_free(c->ab); rt_free(c->dab); rt_free(c->yb);
  rt_free(c->dxb); rt_free(c->rowr); rt_free(c->rowp);
  rt_free(c->tok); rt_free(c->tokref);
}

/* c's buffers for x's sizes; 0, or 1 when one cannot be had (check_free
 * then). */
static int check_alloc(const rt_exec *x, check_buf *c) {
  int G = x->G, d = x->d, f = x->f;
  size_t pb = x->pelems * (size_t)x->esz;
  size_t tokb = (size_t)x->Tmax * (size_t)d * (size_t)x->esz;
  *c = (check_buf){.P = rt_malloc(sizeof(float) * x->pelems),
                   .Gref = rt_malloc(sizeof(float) * x->pelems),
                   .Gd = rt_malloc(sizeof(float) * x->pelems),
                   .raw = rt_malloc(pb > tokb ? pb : tokb),
                   .raw2 = rt_malloc(pb),
                   .rawo = rt_malloc(x->optbytes ? x->optbytes : 4),
                   .rawo2 = rt_malloc(x->optbytes ? x->optbytes : 4),
                   .Xr = rt_calloc((size_t)G, sizeof(float *)),
                   .dOr = rt_calloc((size_t)G, sizeof(float *)),
                   .Ys = rt_calloc((size_t)G, sizeof(float *)),
                   .dXs = rt_calloc((size_t)G, sizeof(float *)),
                   .xb = rt_malloc(sizeof(float) * (size_t)x->Cap * d),
                   .dyb = rt_malloc(sizeof(float) * (size_t)x->Cap * d),
                   .ab = rt_malloc(sizeof(float) * (size_t)x->Cap * f),
                   .dab = rt_malloc(sizeof(float) * (size_t)x->Cap * f),
                   .yb = rt_malloc(sizeof(float) * (size_t)x->Cap * d),
                   .dxb = rt_malloc(sizeof(float) * (size_t)x->Cap * d),
                   .rowr = rt_malloc(sizeof(int32_t) * (size_t)x->Cap),
                   .rowp = rt_malloc(sizeof(int64_t) * (size_t)x->Cap),
                   .tok = rt_malloc(sizeof(float) * (size_t)x->Tmax * d),
                   .tokref = rt_malloc(sizeof(float) * (size_t)x->Tmax * d)};
  int ok = c->P && c->Gref && c->Gd && c->raw && c->raw2 && c->rawo && c->rawo2 && c->Xr &&
           c->dOr && c->Ys && c->dXs && c->xb && c->dyb && c->ab && c->dab && c->yb && c->dxb &&
           c->rowr && c->rowp && c->tok && c->tokref;
  for (int r = 0; ok && r < G; r++) {
    c->Xr[r] = rt_malloc(sizeof(float) * (size_t)x->Tmax * d);
    c->dOr[r] = rt_malloc(sizeof(float) * (size_t)x->Tmax * d);
    c->Ys[r] = rt_calloc((size_t)x->Smax * d, sizeof(float));
    c->dXs[r] = rt_calloc((size_t)x->Smax * d, sizeof(float));
    ok = c->Xr[r] && c->dOr[r] && c->Ys[r] && c->dXs[r];
  }
  return !ok;
}

/* Every kept slot of expert e of layer l, from every source, gathered
 * into one batch (inputs xb, weighted output gradients dyb, each row's
 * rank and slot); its rows. */
static int64_t check_gather(const rt_exec *x, check_buf *c, int l, int e) {
  int G = x->G, E = x->E, d = x->d;
  const int64_t *split = x->split_l + (size_t)l * G * E * G;
  int64_t n = 0;
  for (int r = 0; r < G; r++) {
    lr *q = LR(x, l, r);
    for (int g = 0; g < G; g++) {
      int64_t p = q->send_off[g];
      for (int e2 = 0; e2 < e; e2++) p += split[((size_t)r * E + e2) * G + g];
      int64_t cnt = split[((size_t)r * E + e) * G + g];
      for (int64_t u = 0; u < cnt; u++, p++) {
        int32_t t = q->sidx[p];
        float w = q->sw[p];
        memcpy(c->xb + n * d, c->Xr[r] + (size_t)t * d, sizeof(float) * (size_t)d);
        for (int k = 0; k < d; k++) {
          float v = w * c->dOr[r][(size_t)t * d + k];
          c->dyb[n * d + k] = x->esz == 2 ? kn_bf16_round(v) : v;
        }
        c->rowr[n] = r;
        c->rowp[n] = p;
        n++;
      }
    }
  }
  return n;
}

/* Expert e of layer l on its n gathered rows, on the host: its reference
 * parameters (P), forward and backward (the weight gradient into Gref),
 * each row's output and input gradient back into its rank's slot. */
static void check_reference(const rt_exec *x, check_buf *c, int l, int e, int64_t n) {
  int d = x->d, f = x->f;
  size_t df = (size_t)d * f;
  kn_cpu_fill(c->P, df, seed_of(x, 1, l, e, 0), 1.0f / sqrtf((float)d));
  kn_cpu_fill(c->P + df, df, seed_of(x, 1, l, e, 1), 1.0f / sqrtf((float)f));
  if (x->esz == 2)
    for (size_t i = 0; i < 2 * df; i++) c->P[i] = kn_bf16_round(c->P[i]);
  kn_cpu_ffn_fwd(c->xb, c->P, c->ab, c->yb, n, d, f);
  kn_cpu_ffn_bwd(c->xb, c->P, c->ab, c->dyb, c->dab, c->dxb, c->Gref, n, d, f);
  for (int64_t i = 0; i < n; i++) {
    memcpy(c->Ys[c->rowr[i]] + (size_t)c->rowp[i] * d, c->yb + i * d, sizeof(float) * (size_t)d);
    memcpy(c->dXs[c->rowr[i]] + (size_t)c->rowp[i] * d, c->dxb + i * d,
           sizeof(float) * (size_t)d);
  }
}

/* Every replica of expert e of layer l: its reduced gradient against the
 * reference, and its parameter and optimizer checksum against the
 * expected one, those that arrived in the background in the last
 * iteration included (landed: collect waited for the fence; they are
 * served from the next iteration on, so have no gradient, but those that
 * arrived weights-first served it and have one). */
static int check_replicas(rt_exec *x, check_buf *c, int l, int e, rt_check *out) {
  size_t pb = x->pelems * (size_t)x->esz;
  for (int g = 0; g < x->G; g++) {
    if (!x->ops->owns(x->b, g)) continue;
    lr *q = LR(x, l, g);
    int s = find_slot(q, x->nphys, e), in = find_incoming(q, x->nphys, e);
    if (s < 0 && in < 0) continue;
    if (s >= 0) {
      BK(x, x->ops->download(x->b, g, c->raw, q->slots[s].grad, pb));
      to_float(x, c->raw, c->Gd, x->pelems);
      acc_err(c->Gd, c->Gref, x->pelems, &c->gn, &c->gd);
    }
    uint64_t want = expected_checksum(x, l, e, c->Gd, c->raw2, c->rawo2);
    for (int pass = 0; pass < 2; pass++) {
      int u = pass == 0 ? s : in;
      if (u < 0) continue;
      out->replicas_checked++;
      out->moved_checked += pass || q->slots[u].wf_in;
      BK(x, x->ops->download(x->b, g, c->raw, q->slots[u].param, pb));
      if (x->optbytes) BK(x, x->ops->download(x->b, g, c->rawo, q->slots[u].opt, x->optbytes));
      uint64_t got = kn_checksum(c->raw, pb) ^ kn_mix64(kn_checksum(c->rawo, x->optbytes));
      if (got != want) out->checksum_mismatches++;
    }
  }
  return 0;
}

/* Every owned rank's combined outputs and input gradients of layer l
 * against the reference's, token by token (a token whose error is over a
 * quarter of its norm is missing). */
static int check_tokens(rt_exec *x, check_buf *c, int l, rt_check *out) {
  int d = x->d;
  for (int r = 0; r < x->G; r++) {
    if (!x->ops->owns(x->b, r)) continue;
    lr *q = LR(x, l, r);
    size_t nt = (size_t)q->T * d;
    for (int pass = 0; pass < 2; pass++) {
      if (pass == 0) kn_cpu_combine(c->tokref, c->Ys[r], q->cidx, q->cw, q->T, x->k, d);
      else kn_cpu_combine(c->tokref, c->dXs[r], q->cidx, NULL, q->T, x->k, d);
      BK(x, x->ops->download(x->b, r, c->raw, pass == 0 ? q->d_Out : q->d_dIn,
                             nt * (size_t)x->esz));
      to_float(x, c->raw, c->tok, nt);
      if (pass == 0) acc_err(c->tok, c->tokref, nt, &c->on, &c->od);
      else acc_err(c->tok, c->tokref, nt, &c->dn, &c->dd);
      for (int64_t t = 0; t < q->T; t++) {
        double a = 0, b = 0;
        acc_err(c->tok + t * d, c->tokref + t * d, (size_t)d, &a, &b);
        if (pass == 0) out->tokens_checked++;
        if (b > 0 && a > 0.25 * b) out->tokens_missing++;
      }
    }
  }
  return 0;
}

int rt_exec_check(rt_exec *x, rt_check *out, char *errbuf, size_t errlen) {
  int G = x->G, L = x->L, E = x->E, d = x->d, rc = 0;
  x->err = errbuf;
  x->errlen = errlen;
  memset(out, 0, sizeof *out);
  if (x->iters == 0) return fail(x, RT_EINVAL, "%s", "no iteration to check");
  int64_t it = x->last_it;
  check_buf c;
  if (check_alloc(x, &c)) {
    rc = fail(x, RT_ENOMEM, "%s", "check: out of host memory");
    goto done;
  }
  for (int l = 0; l < L && !rc; l++) {
    for (int r = 0; r < G; r++) {
      lr *q = LR(x, l, r);
      ref_fill(x, c.Xr[r], (size_t)q->T * d, seed_of(x, 3, it, l, r), 1.0f);
      ref_fill(x, c.dOr[r], (size_t)q->T * d, seed_of(x, 4, it, l, r), 1.0f);
    }
    for (int e = 0; e < E && !rc; e++) {
      check_reference(x, &c, l, e, check_gather(x, &c, l, e));
      rc = check_replicas(x, &c, l, e, out);
    }
    if (!rc)
      rc = check_tokens(x, &c, l, out);
  }
  if (!rc) {
    out->out_err = c.od > 0 ? sqrt(c.on / c.od) : sqrt(c.on);
    out->din_err = c.dd > 0 ? sqrt(c.dn / c.dd) : sqrt(c.dn);
    out->grad_err = c.gd > 0 ? sqrt(c.gn / c.gd) : sqrt(c.gn);
  }
done:
  check_free(&c, G);
  return rc;
}
