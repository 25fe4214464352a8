/*
 * fm_replay.c - one runtime replay: resolve the configuration like the
 * simulator's runner, run it on a backend, record it (contract: fm_replay.h).
 */
#include "run/fm_replay.h"

#include <limits.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run/fm_error.h"
#include "run/fm_json.h"
#include "flexmoe_config.h"
#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "run/fm_profile.h"
#include "sim/sim_profile.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"


const char *const fm_replay_phase_names[RT_PH_COUNT] = {"dispatch", "compute", "combine",
                                                     "allreduce", "migration", "local"};

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Nominal profile when none is calibrated: the H200 FFN table of
 * shared/calibration (d_model 2048, d_ff 8192), scaled by FLOPs to the
 * model shape and, on SM partitions, by 132 / 32 x 1.02. */
static const double nom_tok[] = {16, 64, 256, 1024, 4096, 16384, 65536};
static const double nom_us[] = {27.30, 28.10, 36.51, 93.27, 332.14, 1295.43, 5458.08};

typedef struct keep {
  double tok[64], us[64];
  pl_profile pl;
  sim_profile sp;
  sim_pl_profile plp;
} keep;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void fm_replay_output_free(fm_replay_output *o) {
  if (!o) return;
  free(o->rows);
  free(o->busy_ms);
  free(o->total_ms);
  free(o->moves);
  free(o->move_iteration);
  free(o);
}

/* The cost-model prediction of one iteration (cfg->predict). */
typedef struct predictor {
  pl_routing r;
  int inited;
  pl_move *moves;
  int nmoves, cap;
} predictor;

static void predict_fini(predictor *p) {
  if (p->inited) pl_routing_fini(&p->r);
  free(p->moves);
}

static int predict_iteration(pl_policy *pol, const pl_env *env, int64_t i, const int64_t *counts,
                             rt_iter_result *res, predictor *p, char *em, size_t el) {
  int G = env->cluster.gpus, E = env->experts, rc;
  size_t GE = (size_t)G * E;
  if (!p->inited) {
    if (pl_routing_init(&p->r, G, E, 1)) return fm_fail(em, el, FM_EFAIL, "out of memory");
    p->inited = 1;
  }
  memset(res, 0, sizeof *res);
  p->nmoves = 0;
  const pl_policy_ops *ops = pl_policy_ops_of(pol);
  for (int l = 0; l < env->layers; l++) {
    pl_plan plan;
    pl_plan_init(&plan);
    rc = pl_policy_plan(pol, (int)i, l, ops->clairvoyant ? counts + l * GE : NULL, &plan);
    if (!rc && plan.changed)
      for (int m = 0; m < plan.nmoves; m++) {
        if (p->nmoves == p->cap) {
          int nc = p->cap ? 2 * p->cap : 64;
          pl_move *n = realloc(p->moves, sizeof *n * (size_t)nc);
          if (!n) {
            pl_plan_fini(&plan);
            return fm_fail(em, el, FM_EFAIL, "out of memory");
          }
          p->moves = n;
          p->cap = nc;
        }
        p->moves[p->nmoves++] = plan.moves[m];
        if (i > 0) res->bytes_migrated += plan.moves[m].bytes;
      }
    pl_plan_fini(&plan);
    if (rc) return fm_fail(em, el, FM_EFAIL, "policy plan: %s", pl_strerror(rc));
    if ((rc = pl_policy_route(pol, l, counts + l * GE, &p->r)))
      return fm_fail(em, el, FM_EFAIL, "policy route: %s", pl_strerror(rc));
    pl_cost c;
    if ((rc = pl_cost_layer(&env->cluster, &env->model, &env->profile, pl_policy_placement(pol, l),
                            &p->r, &c)))
      return fm_fail(em, el, FM_EFAIL, "cost model: %s", pl_strerror(rc));
    res->phase_ms[RT_PH_COMPUTE] += c.compute_us / 1e3;
    res->phase_ms[RT_PH_DISPATCH] += c.alltoall_us / 2e3;
    res->phase_ms[RT_PH_COMBINE] += c.alltoall_us / 2e3;
    res->phase_ms[RT_PH_ALLREDUCE] += c.allreduce_us / 1e3;
    res->phase_ms[RT_PH_LOCAL] += c.other_us / 1e3;
    double bal = pl_routing_balance(&p->r);
    if (bal > res->balance) res->balance = bal;
    res->tokens_total += p->r.total;
    res->tokens_dropped += p->r.dropped;
    for (size_t q = 0; q < (size_t)G * G; q++)
      res->bytes_alltoall += 4 * p->r.traffic[q] * pl_token_bytes(&env->model);
    if ((rc = pl_policy_observe(pol, (int)i, l, counts + l * GE)))
      return fm_fail(em, el, FM_EFAIL, "policy observe: %s", pl_strerror(rc));
  }
  if (i > 0 && p->nmoves > 0)
    res->phase_ms[RT_PH_MIGRATION] = pl_cost_moves_us(&env->cluster, p->moves, p->nmoves) / 1e3;
  res->nmoves = p->nmoves;
  for (int q = 0; q < RT_PH_COUNT; q++) res->time_ms += res->phase_ms[q];
  return 0;
}

/* One replay's state from start to summary, released by replay_fini.
 * Invariants: kp never moves once env.profile points into it (the struct
 * lives on fm_replay_compute's stack); counts holds I x L x G x E rescaled
 * counts, iteration i at counts + per * i. */
typedef struct replay {
  const fm_replay_config *cfg;
  char *em; /* the caller's message buffer [el] */
  size_t el;
  tr_trace t;
  fm_replay_output *o;
  int L, E, G, d, f, k, slots;
  int64_t A, B, I;          /* iterations [A, B) of the trace, I = B - A */
  int64_t smax, emax;       /* largest slots on one GPU / one expert's total */
  double ssum;              /* slots over every (iteration, layer, GPU) */
  size_t per;               /* L * G * E */
  int64_t *counts;
  rt_backend *b;            /* NULL when predicting */
  pl_policy *pol;
  rt_exec *x;               /* NULL when predicting */
  pl_env env;
  int64_t capmoves;
  double *bal;
  keep kp;
  predictor pred;
  char err[768];
} replay;

/* The model shape from the configuration or the trace's sidecar and the
 * iteration range; FM_OK, or FM_EUSAGE with the message in w->em. */
static int replay_shape(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  w->L = w->t.layers;
  w->E = w->t.experts;
  w->d = cfg->d_model ? cfg->d_model : w->t.meta.d_model;
  w->f = cfg->d_ff ? cfg->d_ff : w->t.meta.d_ff;
  w->k = cfg->top_k ? cfg->top_k : w->t.meta.top_k;
  int d = w->d, f = w->f, k = w->k;
  if (d <= 0 || f <= 0 || k <= 0)
    return fm_fail(w->em, w->el, FM_EUSAGE, "%s has no %s in its sidecar: give %s", cfg->trace_path,
                 d <= 0 ? "d_model" : f <= 0 ? "d_ff" : "top_k",
                 d <= 0 ? "--d-model" : f <= 0 ? "--d-ff" : "--top-k");
  if (d % 8 || f % 8)
    return fm_fail(w->em, w->el, FM_EUSAGE,
                 "--d-model %d / --d-ff %d: the runtime needs multiples of 8", d, f);
  return fm_iteration_range(cfg->it_begin, cfg->it_end, w->t.iterations, &w->A, &w->B, w->em,
                            w->el);
}

/* The backend created (none when predicting: the ranks must be given), the
 * ranks G and the slots per rank (default ceil(1.5 E / G), at most E, enough
 * for every expert once); FM_OK, FM_EUSAGE or FM_EFAIL with the message. */
static int replay_backend(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  rt_backend_config bc = {.ranks = cfg->ranks, .partitions = cfg->partitions,
                          .device = cfg->device, .timeout_s = 300.0, .direct = 0};
  if (cfg->partitions > 0) bc.ranks = cfg->partitions;
  else if (bc.ranks == 0 && strcmp(cfg->backend, "cpu") == 0) bc.ranks = w->t.ranks;
  else if (bc.ranks == 0 && strcmp(cfg->backend, "cuda") == 0) bc.ranks = 1;
  if (cfg->predict) {
    if (bc.ranks < 1)
      return fm_fail(w->em, w->el, FM_EUSAGE, "--ranks is needed to predict a %s run", cfg->backend);
  } else if (rt_backend_create(&w->b, cfg->backend, &bc, w->err, sizeof w->err)) {
    return fm_fail(w->em, w->el, FM_EFAIL, "%s", w->err);
  }
  int G = w->G = w->b ? w->b->ranks : bc.ranks, E = w->E;
  if (G > w->t.ranks)
    return fm_fail(w->em, w->el, FM_EUSAGE,
                   "--%s %d: %s has %d ranks, and every replay rank replays one of them "
                   "(give --%s 1..%d)",
                   cfg->partitions > 0 ? "partitions" : "ranks", G, cfg->trace_path, w->t.ranks,
                   cfg->partitions > 0 ? "partitions" : "ranks", w->t.ranks);
  if (w->b && strcmp(cfg->backend, "cpu") == 0)
    fm_replay_cores_warning(G, w->o->warning, sizeof w->o->warning);
  int slots = cfg->slots ? cfg->slots : (int)ceil(1.5 * E / G);
  if (slots > E) slots = E;
  w->slots = slots;
  if ((int64_t)slots * G < E)
    return fm_fail(w->em, w->el, FM_EUSAGE, "--slots %d: %d ranks x %d slots < %d experts", slots,
                 G, slots, E);
  return FM_OK;
}

/* Every (iteration, layer) of the range rescaled to G ranks into w->counts,
 * with the largest slots on one rank (smax), on one expert (emax) and their
 * sum (ssum); FM_OK or FM_EFAIL with the message. */
static int replay_counts(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  int L = w->L, G = w->G, E = w->E;
  w->I = w->B - w->A;
  w->per = (size_t)L * G * E;
  w->counts = malloc(sizeof(int64_t) * w->per * (size_t)w->I);
  if (!w->counts)
    return fm_fail(w->em, w->el, FM_EFAIL, "out of memory for %" PRId64 " iterations of counts",
                 w->I);
  int64_t slots_per_gpu = cfg->tokens_per_gpu * w->k;
  w->smax = w->emax = 1;
  w->ssum = 0;
  for (int64_t i = 0; i < w->I; i++)
    for (int l = 0; l < L; l++) {
      int64_t *c = w->counts + w->per * (size_t)i + (size_t)l * G * E;
      int trc = tr_rescale_slice(&w->t, w->A + i, l, G, slots_per_gpu, cfg->seed, c);
      if (trc)
        return fm_fail(w->em, w->el, FM_EFAIL, "%s: rescaling iteration %" PRId64 " layer %d: %s",
                     cfg->trace_path, w->A + i, l, tr_strerror(trc));
      for (int g = 0; g < G; g++) {
        int64_t s = 0;
        for (int e = 0; e < E; e++) s += c[g * E + e];
        if (s > w->smax) w->smax = s;
        w->ssum += (double)s;
      }
      for (int e = 0; e < E; e++) {
        int64_t s = 0;
        for (int g = 0; g < G; g++) s += c[g * E + e];
        if (s > w->emax) w->emax = s;
      }
    }
  return FM_OK;
}

/* Tokens per GPU as the simulator's runner resolves it (fm_sim.c), then the
 * cost model's profile into w->kp: the calibrated file through the
 * simulator's own resolution, the caller's, or the nominal H200 table
 * scaled; FM_OK or FM_EFAIL with the message. */
static int replay_profile(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  int d = w->d, f = w->f, k = w->k;
  keep *kp = &w->kp;
  int64_t tpg = cfg->tokens_per_gpu;
  if (tpg <= 0) {
    if (w->t.meta.tokens_per_rank > 0) tpg = w->t.meta.tokens_per_rank;
    else {
      int64_t s = 0;
      for (int e = 0; e < w->E; e++) s += tr_at(&w->t, w->A, 0, 0, e);
      tpg = s / k;
    }
  }
  w->o->tokens_per_gpu = tpg;
  if (cfg->profile_path) {
    int rc = fm_profile_for_sim(cfg->profile_path, d, f, k, (double)tpg, &kp->sp, w->em, w->el);
    if (rc) return rc;
    if (sim_profile_for_shape(&kp->sp, d, f, tpg, 1.0, &kp->plp))
      return fm_fail(w->em, w->el, FM_EFAIL, "%s: no usable profile for d_model %d, d_ff %d",
                   cfg->profile_path, d, f);
    kp->pl = kp->plp.pl; /* points into kp->plp, which stays in place */
  } else if (cfg->profile) {
    kp->pl = *cfg->profile;
  } else {
    double scale = (double)d * f / (2048.0 * 8192.0);
    if (cfg->partitions > 1) scale *= 132.0 / ((132 / cfg->partitions / 8) * 8) * 1.02;
    int n = (int)(sizeof nom_tok / sizeof *nom_tok);
    for (int i = 0; i < n; i++) {
      kp->tok[i] = nom_tok[i];
      kp->us[i] = nom_us[i] * scale;
    }
    kp->pl.npoints = n;
    kp->pl.tokens = kp->tok;
    kp->pl.us = kp->us;
    kp->pl.bwd_ratio = 2.15;
    kp->pl.nonmoe_us = 0.0;
  }
  w->o->slots_per_gpu_mean = w->ssum / ((double)w->I * w->L * w->G);
  w->o->nonmoe_us = kp->pl.nonmoe_us;
  return FM_OK;
}

/* The placement environment (one node of G ranks at the exchange numbers),
 * the policy, the executor (not when predicting) and the output arrays;
 * FM_OK, FM_EUSAGE for a bad policy, FM_EFAIL otherwise. */
static int replay_policy(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  pl_env *env = &w->env;
  *env = (pl_env)PL_ENV_INIT;
  env->layers = w->L;
  env->experts = w->E;
  env->cluster.gpus = w->G;
  env->cluster.gpus_per_node = w->G;
  env->cluster.slots = w->slots;
  env->cluster.intra_Bps = cfg->exchange_GBps * 1e9;
  env->cluster.intra_lat_s = cfg->exchange_lat_us * 1e-6;
  env->cluster.inter_Bps = cfg->exchange_GBps * 1e9;
  env->cluster.inter_lat_s = cfg->exchange_lat_us * 1e-6;
  env->cluster.oversub = 1.0;
  env->model = (pl_model){.d_model = w->d, .d_ff = w->f, .top_k = w->k, .bytes_per_elem = 2,
                          .optimizer_bytes_per_param = 12.0};
  env->profile = w->kp.pl;
  env->seed = cfg->seed;
  char perr[256] = "";
  int prc = pl_policy_create(&w->pol, cfg->policy, env, perr, sizeof perr);
  if (prc)
    return fm_fail(w->em, w->el, FM_EUSAGE, "--policy '%s': %s", cfg->policy,
                 perr[0] ? perr : pl_strerror(prc));
  /* GPU warm-up at every token count an expert can get here (bounded by an
   * expert's largest total load in the trace slice). */
  rt_exec_config xc = {.layers = w->L, .experts = w->E, .top_k = w->k, .d_model = w->d,
                       .d_ff = w->f, .slots = w->slots, .max_slots_per_rank = w->smax,
                       .optimizer_bytes_per_param = 12.0, .model_bytes_per_elem = 2,
                       .seed = cfg->seed,
                       .warm_tokens = strcmp(cfg->backend, "cpu") != 0 ? w->emax : 0};
  if (!cfg->predict && rt_exec_create(&w->x, w->b, w->pol, env, &xc, w->err, sizeof w->err))
    return fm_fail(w->em, w->el, FM_EFAIL, "backend '%s': %s", cfg->backend, w->err);
  fm_replay_output *o = w->o;
  o->rows = calloc((size_t)w->I, sizeof *o->rows);
  o->busy_ms = calloc((size_t)w->G, sizeof(double));
  o->total_ms = calloc((size_t)w->G, sizeof(double));
  w->bal = calloc((size_t)w->I, sizeof(double));
  if (!o->rows || !o->busy_ms || !o->total_ms || !w->bal)
    return fm_fail(w->em, w->el, FM_EFAIL, "out of memory");
  return FM_OK;
}

/* check 2: the iteration just run against the single-device reference,
 * folded into the output's check (worst errors, summed counts). */
static int check_fold(replay *w) {
  rt_check c;
  if (rt_exec_check(w->x, &c, w->err, sizeof w->err))
    return fm_fail(w->em, w->el, FM_EFAIL, "check: %s", w->err);
  rt_check *o = &w->o->check;
  o->out_err = fmax(o->out_err, c.out_err);
  o->din_err = fmax(o->din_err, c.din_err);
  o->grad_err = fmax(o->grad_err, c.grad_err);
  o->tokens_checked += c.tokens_checked;
  o->tokens_missing += c.tokens_missing;
  o->replicas_checked += c.replicas_checked;
  o->checksum_mismatches += c.checksum_mismatches;
  o->moved_checked += c.moved_checked;
  w->o->checked++;
  return FM_OK;
}

/* Appends the n moves of trace iteration it to the output's moves. */
static int keep_moves(replay *w, int64_t it, const pl_move *mv, int n) {
  fm_replay_output *o = w->o;
  if (o->nmoves + n > w->capmoves) {
    int64_t nc = 2 * w->capmoves + n + 64;
    pl_move *p = realloc(o->moves, sizeof *p * (size_t)nc);
    if (p) o->moves = p;
    int64_t *q = p ? realloc(o->move_iteration, sizeof *q * (size_t)nc) : NULL;
    if (q) o->move_iteration = q;
    if (!p || !q) return fm_fail(w->em, w->el, FM_EFAIL, "out of memory for the plans' moves");
    w->capmoves = nc;
  }
  for (int m = 0; m < n; m++) {
    o->move_iteration[o->nmoves] = it;
    o->moves[o->nmoves++] = mv[m];
  }
  return FM_OK;
}

/* Every iteration run (or predicted), its moves appended to the output's and
 * progress printed unless quiet, then the executor's check when asked;
 * FM_OK or FM_EFAIL with the message. */
static int replay_iterate(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  int rc;
  for (int64_t i = 0; i < w->I; i++) {
    rt_iter_result *r = &w->o->rows[i];
    int nm = 0;
    const pl_move *mv = NULL;
    const int64_t *c = w->counts + w->per * (size_t)i;
    if (cfg->predict) {
      if ((rc = predict_iteration(w->pol, &w->env, i, c, r, &w->pred, w->em, w->el))) return rc;
      mv = w->pred.moves;
      nm = w->pred.nmoves;
    } else {
      if (rt_exec_iteration(w->x, i, c, r, w->err, sizeof w->err))
        return fm_fail(w->em, w->el, FM_EFAIL, "iteration %" PRId64 ": %s", w->A + i, w->err);
      mv = rt_exec_moves(w->x, &nm);
    }
    r->iteration = w->A + i;
    if ((rc = keep_moves(w, w->A + i, mv, nm))) return rc;
    if (cfg->check == 2 && w->x && (rc = check_fold(w))) return rc;
    if (!cfg->quiet && ((i + 1) % 10 == 0 || i + 1 == w->I))
      fprintf(stderr, "progress: %s: iteration %" PRId64 "/%" PRId64 " %.3f ms\n",
              pl_policy_spec(w->pol), i + 1, w->I, r->time_ms);
  }
  if (cfg->check == 1 && w->x) {
    if (rt_exec_check(w->x, &w->o->check, w->err, sizeof w->err))
      return fm_fail(w->em, w->el, FM_EFAIL, "check: %s", w->err);
    w->o->checked = 1;
  }
  return FM_OK;
}

/* The output's summary: names, shape, means over the iterations, balance
 * percentiles, per-rank times, the plans as JSON and the trace's identity. */
static void replay_summarize(replay *w) {
  const fm_replay_config *cfg = w->cfg;
  fm_replay_output *o = w->o;
  int64_t I = w->I;
  snprintf(o->policy, sizeof o->policy, "%s", pl_policy_spec(w->pol));
  snprintf(o->backend, sizeof o->backend, "%s", cfg->backend);
  if (cfg->partitions > 0) snprintf(o->cluster, sizeof o->cluster, "h200-green-%d", w->G);
  else snprintf(o->cluster, sizeof o->cluster, "%s-%d", cfg->backend, w->G);
  snprintf(o->device, sizeof o->device, "%s", w->b ? w->b->ops->describe(w->b) : "cost model");
  o->gpus = w->G;
  o->slots = w->slots;
  o->d_model = w->d;
  o->d_ff = w->f;
  o->top_k = w->k;
  o->layers = w->L;
  o->experts = w->E;
  o->it_begin = w->A;
  o->it_end = w->B;
  o->iterations = I;
  for (int64_t i = 0; i < I; i++) {
    rt_iter_result *r = &o->rows[i];
    o->mean_iteration_ms += r->time_ms / (double)I;
    for (int p = 0; p < RT_PH_COUNT; p++) o->phase_ms[p] += r->phase_ms[p] / (double)I;
    o->migrated_bytes += r->bytes_migrated;
    o->dropped_tokens += r->tokens_dropped;
    o->bytes_alltoall += r->bytes_alltoall;
    w->bal[i] = r->balance;
  }
  qsort(w->bal, (size_t)I, sizeof *w->bal, cmp_double);
  o->balance_p50 = fm_percentile(w->bal, I, 0.5);
  o->balance_p90 = fm_percentile(w->bal, I, 0.9);
  if (w->x)
    for (int g = 0; g < w->G; g++) rt_exec_rank_time(w->x, g, &o->busy_ms[g], &o->total_ms[g]);
  o->trace_hash = w->t.hash;
  snprintf(o->trace_path, sizeof o->trace_path, "%s", w->t.path);
  o->trace_iterations = w->t.iterations;
  o->trace_layers = w->t.layers;
  o->trace_ranks = w->t.ranks;
  o->trace_experts = w->t.experts;
  o->owner = w->b ? w->b->ops->owns(w->b, 0) : 1;
}

/* Releases what replay holds except the output, the trace last. */
static void replay_fini(replay *w) {
  free(w->bal);
  predict_fini(&w->pred);
  rt_exec_destroy(w->x);
  pl_policy_destroy(w->pol);
  rt_backend_destroy(w->b);
  free(w->counts);
  tr_close(&w->t);
}

void fm_replay_cores_warning(int ranks, char *buf, size_t len) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (len) buf[0] = '\0';
  if (cores > 0 && ranks > cores)
    snprintf(buf, len,
             "%d cpu ranks on %ld cores: the rank threads take turns on the cores, so the "
             "measured times include the scheduler's; give --ranks %ld or fewer for times "
             "worth comparing",
             ranks, cores, cores);
}

int fm_replay_trace_ranks(const char *path, int *ranks, char *em, size_t el) {
  tr_trace t;
  tr_error terr;
  memset(&terr, 0, sizeof terr);
  if (!path) return fm_fail(em, el, FM_EUSAGE, "--trace is required");
  if (tr_open(&t, path, &terr)) {
    if (terr.line > 0) return fm_fail(em, el, FM_EFAIL, "%s:%ld: %s", terr.path, terr.line, terr.msg);
    return fm_fail(em, el, FM_EFAIL, "%s: %s", path, terr.msg[0] ? terr.msg : tr_strerror(terr.code));
  }
  *ranks = t.ranks;
  tr_close(&t);
  return FM_OK;
}

int fm_replay_compute(const fm_replay_config *cfg, fm_replay_output **outp, char *em, size_t el) {
  tr_error terr;
  memset(&terr, 0, sizeof terr);
  if (!cfg->trace_path) return fm_fail(em, el, FM_EUSAGE, "--trace is required");
  replay rw = {.cfg = cfg, .em = em, .el = el}, *w = &rw; /* kp stays in place */
  if (tr_open(&w->t, cfg->trace_path, &terr)) {
    if (terr.line > 0)
      return fm_fail(em, el, FM_EFAIL, "%s:%ld: %s", terr.path, terr.line, terr.msg);
    return fm_fail(em, el, FM_EFAIL, "%s: %s", cfg->trace_path, terr.msg[0] ? terr.msg : tr_strerror(terr.code));
  }
  int rc = FM_OK;
  fm_replay_output *o = w->o = calloc(1, sizeof *o);
  if (!o) {
    tr_close(&w->t);
    return fm_fail(em, el, FM_EFAIL, "out of memory");
  }
  o->started = wall_s();
  if (!(rc = replay_shape(w)) && !(rc = replay_backend(w)) && !(rc = replay_counts(w)) &&
      !(rc = replay_profile(w)) && !(rc = replay_policy(w)) && !(rc = replay_iterate(w))) {
    replay_summarize(w);
    o->finished = wall_s();
  }
  replay_fini(w);
  if (rc) {
    fm_replay_output_free(o);
    return rc;
  }
  *outp = o;
  return FM_OK;
}

/* A measured iteration as the store's row: all-to-all = dispatch +
 * combine, other = the local token movement. */
static st_iter_row row_of(const rt_iter_result *x) {
  return (st_iter_row){.iteration = x->iteration, .time_ms = x->time_ms,
                       .compute_ms = x->phase_ms[RT_PH_COMPUTE],
                       .alltoall_ms = x->phase_ms[RT_PH_DISPATCH] + x->phase_ms[RT_PH_COMBINE],
                       .allreduce_ms = x->phase_ms[RT_PH_ALLREDUCE],
                       .migration_ms = x->phase_ms[RT_PH_MIGRATION],
                       .other_ms = x->phase_ms[RT_PH_LOCAL], .balance = x->balance,
                       .bytes_alltoall = x->bytes_alltoall, .bytes_migrated = x->bytes_migrated,
                       .tokens_dropped = x->tokens_dropped, .tokens_total = x->tokens_total};
}

int fm_replay_record(st_db *db, const fm_replay_output *o, int64_t *run_id, char *em, size_t el) {
  char cluster_json[1024], params[1024], key[2048];
  /* names (the device's from the driver) escaped by jansson, never pasted */
  json_t *cj = json_pack("{s:o, s:i, s:i, s:o, s:o}", "name", fm_json_string(o->cluster),
                         "nodes", 1, "gpus_per_node", o->gpus, "backend",
                         fm_json_string(o->backend), "device", fm_json_string(o->device));
  size_t cn = cj ? json_dumpb(cj, cluster_json, sizeof cluster_json - 1,
                              JSON_COMPACT | JSON_PRESERVE_ORDER)
                 : 0;
  json_decref(cj);
  if (cn == 0 || cn >= sizeof cluster_json)
    return fm_fail(em, el, FM_EFAIL, "cannot record the run: its cluster description is not JSON");
  cluster_json[cn] = '\0';
  snprintf(params, sizeof params,
           "{\"d_model\":%d,\"d_ff\":%d,\"top_k\":%d,\"slots_per_gpu\":%d,\"iterations\":[%" PRId64
           ",%" PRId64 "],\"bytes_per_elem\":2,\"optimizer_bytes_per_param\":12}",
           o->d_model, o->d_ff, o->top_k, o->slots, o->it_begin, o->it_end);
  /* the key carries the whole canonical spec: a cut one would make two
   * policies one run (report keeps the latest of equal keys) */
  int kn = snprintf(key, sizeof key, "gpu|%s|%s|%016" PRIx64 "|%s|%s", o->backend, o->cluster,
                    o->trace_hash, o->policy, params);
  if (kn < 0 || (size_t)kn >= sizeof key)
    return fm_fail(em, el, FM_EFAIL, "cannot record the run: its key is over %zu bytes",
                 sizeof key - 1);
  st_trace_row tr = {.path = o->trace_path, .hash = o->trace_hash,
                     .iterations = o->trace_iterations, .layers = o->trace_layers,
                     .ranks = o->trace_ranks, .experts = o->trace_experts, .meta_json = NULL};
  st_run_row rr = {.kind = "gpu", .policy = o->policy, .cluster = o->cluster,
                   .cluster_json = cluster_json, .engine = o->backend, .params_json = params,
                   .gpus = o->gpus, .seed = 0, .rng = "splitmix64",
                   .code_version = FLEXMOE_VERSION, .started = o->started,
                   .finished = o->finished, .status = "complete", .config_key = key};
  st_run *r = NULL;
  int rc = st_run_begin(db, &tr, &rr, &r);
  if (rc) return fm_fail(em, el, FM_EFAIL, "cannot record the run: %s", st_strerror(rc));
  for (int64_t i = 0; i < o->iterations && !rc; i++) {
    const rt_iter_result *x = &o->rows[i];
    st_iter_row row = row_of(x);
    rc = st_run_iteration(r, &row);
  }
  /* plans: one row per (iteration, layer) with moves, in the store's one
   * encoding (the simulator's runs write theirs through it too) */
  for (int64_t i = 0; !rc && i < o->nmoves;) {
    int64_t j = i;
    while (j < o->nmoves && o->move_iteration[j] == o->move_iteration[i] &&
           o->moves[j].layer == o->moves[i].layer)
      j++;
    rc = st_run_plan_moves(r, o->move_iteration[i], o->moves[i].layer, o->moves + i,
                           (int)(j - i), 1);
    i = j;
  }
  for (int g = 0; g < o->gpus && !rc; g++)
    rc = st_run_gpu(r, g, o->busy_ms[g], o->total_ms[g] - o->busy_ms[g]);
  if (rc) {
    st_run_abort(r);
    return fm_fail(em, el, FM_EFAIL, "cannot record the run: %s", st_strerror(rc));
  }
  rc = st_run_commit(r, run_id);
  if (rc) return fm_fail(em, el, FM_EFAIL, "cannot record the run: %s", st_strerror(rc));
  return FM_OK;
}

/* ---- what `flexmoe run` adds around a replay ---- */

int fm_replay_use_profile(fm_replay_config *cfg, const char *path, char *em, size_t el) {
  fm_profile prof;
  if (fm_profile_load(path, &prof, em, el))
    return FM_EFAIL;
  cfg->profile_path = path;
  if (prof.exchange_GBps > 0) {
    cfg->exchange_GBps = prof.exchange_GBps;
    cfg->exchange_lat_us = prof.exchange_latency_us;
  }
  return FM_OK;
}

int fm_replay_check_ok(const fm_replay_config *cfg, const fm_replay_output *o) {
  if (!o->checked)
    return 1;
  double tol = strcmp(cfg->backend, "cpu") == 0 ? 1e-5 : 2e-2;
  return o->check.out_err <= tol && o->check.din_err <= tol && o->check.grad_err <= tol &&
         o->check.tokens_missing == 0 && o->check.checksum_mismatches == 0;
}

/* The replay's --check as JSON. */
static json_t *check_doc(const rt_check *c, int ok) {
  return json_pack("{s:o, s:o, s:o, s:I, s:I, s:i, s:i, s:b}", "out_err",
                   fm_json_number(c->out_err), "din_err", fm_json_number(c->din_err),
                   "grad_err", fm_json_number(c->grad_err), "tokens",
                   (json_int_t)c->tokens_checked, "tokens_missing",
                   (json_int_t)c->tokens_missing, "replicas", c->replicas_checked,
                   "checksum_mismatches", c->checksum_mismatches, "ok", ok);
}

json_t *fm_replay_doc(const fm_replay_output *o, const int64_t *run_id, int check_ok) {
  const double *ph = o->phase_ms;
  json_t *bd = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "dispatch",
                         fm_json_number(ph[RT_PH_DISPATCH]), "compute",
                         fm_json_number(ph[RT_PH_COMPUTE]), "combine",
                         fm_json_number(ph[RT_PH_COMBINE]), "local",
                         fm_json_number(ph[RT_PH_LOCAL]), "allreduce",
                         fm_json_number(ph[RT_PH_ALLREDUCE]), "migration",
                         fm_json_number(ph[RT_PH_MIGRATION]));
  json_t *r = json_pack("{s:o, s:o, s:o, s:o, s:i, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I}",
                        "policy", fm_json_string(o->policy), "backend",
                        fm_json_string(o->backend), "cluster", fm_json_string(o->cluster),
                        "device", fm_json_string(o->device), "gpus", o->gpus, "iterations",
                        (json_int_t)o->iterations, "mean_iteration_ms",
                        fm_json_number(o->mean_iteration_ms), "breakdown_ms", bd,
                        "balance_p50", fm_json_number(o->balance_p50), "balance_p90",
                        fm_json_number(o->balance_p90), "migrated_bytes",
                        (json_int_t)o->migrated_bytes, "dropped_tokens",
                        (json_int_t)o->dropped_tokens, "alltoall_bytes",
                        (json_int_t)o->bytes_alltoall);
  int64_t slots = 0; /* token slots routed, for the effective time */
  for (int64_t i = 0; i < o->iterations; i++)
    slots += o->rows[i].tokens_total;
  int bad = !r;
  bad |= json_object_set_new(r, "effective_iteration_ms",
                             fm_json_number(st_effective_ms(o->mean_iteration_ms,
                                                            o->dropped_tokens, slots)));
  bad |= json_object_set_new(r, "nonmoe_us", fm_json_number(o->nonmoe_us));
  if (run_id)
    bad |= json_object_set_new(r, "run_id", json_integer(*run_id));
  if (o->checked)
    bad |= json_object_set_new(r, "check", check_doc(&o->check, check_ok));
  if (bad) {
    json_decref(r);
    return NULL;
  }
  return r;
}
