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

static int efail(char *em, size_t el, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int efail(char *em, size_t el, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (em && el) vsnprintf(em, el, fmt, ap);
  va_end(ap);
  return code;
}

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
  free(o->plans_json);
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
    if (pl_routing_init(&p->r, G, E, 1)) return efail(em, el, FM_EFAIL, "out of memory");
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
            return efail(em, el, FM_EFAIL, "out of memory");
          }
          p->moves = n;
          p->cap = nc;
        }
        p->moves[p->nmoves++] = plan.moves[m];
        if (i > 0) res->bytes_migrated += plan.moves[m].bytes;
      }
    pl_plan_fini(&plan);
    if (rc) return efail(em, el, FM_EFAIL, "policy plan: %s", pl_strerror(rc));
    if ((rc = pl_policy_route(pol, l, counts + l * GE, &p->r)))
      return efail(em, el, FM_EFAIL, "policy route: %s", pl_strerror(rc));
    pl_cost c;
    if ((rc = pl_cost_layer(&env->cluster, &env->model, &env->profile, pl_policy_placement(pol, l),
                            &p->r, &c)))
      return efail(em, el, FM_EFAIL, "cost model: %s", pl_strerror(rc));
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
      return efail(em, el, FM_EFAIL, "policy observe: %s", pl_strerror(rc));
  }
  if (i > 0 && p->nmoves > 0)
    res->phase_ms[RT_PH_MIGRATION] = pl_cost_moves_us(&env->cluster, p->moves, p->nmoves) / 1e3;
  res->nmoves = p->nmoves;
  for (int q = 0; q < RT_PH_COUNT; q++) res->time_ms += res->phase_ms[q];
  return 0;
}

int fm_replay_compute(const fm_replay_config *cfg, fm_replay_output **outp, char *em, size_t el) {
  tr_trace t;
  tr_error terr;
  memset(&terr, 0, sizeof terr);
  if (!cfg->trace_path) return efail(em, el, FM_EUSAGE, "--trace is required");
  if (tr_open(&t, cfg->trace_path, &terr)) {
    if (terr.line > 0)
      return efail(em, el, FM_EFAIL, "%s:%ld: %s", terr.path, terr.line, terr.msg);
    return efail(em, el, FM_EFAIL, "%s: %s", cfg->trace_path, terr.msg[0] ? terr.msg : tr_strerror(terr.code));
  }
  int rc = FM_OK;
  fm_replay_output *o = calloc(1, sizeof *o);
  int64_t *counts = NULL;
  rt_backend *b = NULL;
  pl_policy *pol = NULL;
  rt_exec *x = NULL;
  json_t *plans = NULL;
  double *bal = NULL;
  keep kp;
  predictor pred;
  memset(&pred, 0, sizeof pred);
  char err[768] = "";
  if (!o) {
    tr_close(&t);
    return efail(em, el, FM_EFAIL, "out of memory");
  }
  o->started = wall_s();
  int L = t.layers, E = t.experts;
  int d = cfg->d_model ? cfg->d_model : t.meta.d_model;
  int f = cfg->d_ff ? cfg->d_ff : t.meta.d_ff;
  int k = cfg->top_k ? cfg->top_k : t.meta.top_k;
  if (d <= 0 || f <= 0 || k <= 0) {
    rc = efail(em, el, FM_EUSAGE, "%s has no %s in its sidecar: give %s", cfg->trace_path,
               d <= 0 ? "d_model" : f <= 0 ? "d_ff" : "top_k",
               d <= 0 ? "--d-model" : f <= 0 ? "--d-ff" : "--top-k");
    goto done;
  }
  if (d % 8 || f % 8) {
    rc = efail(em, el, FM_EUSAGE, "--d-model %d / --d-ff %d: the runtime needs multiples of 8", d, f);
    goto done;
  }
  int64_t A = 0, B = 0;
  if ((rc = fm_iteration_range(cfg->it_begin, cfg->it_end, t.iterations, &A, &B, em, el)) != FM_OK)
    goto done;
  rt_backend_config bc = {.ranks = cfg->ranks, .partitions = cfg->partitions,
                          .device = cfg->device, .timeout_s = 300.0, .direct = 0};
  if (cfg->partitions > 0) bc.ranks = cfg->partitions;
  else if (bc.ranks == 0 && strcmp(cfg->backend, "cpu") == 0) bc.ranks = t.ranks;
  else if (bc.ranks == 0 && strcmp(cfg->backend, "cuda") == 0) bc.ranks = 1;
  if (cfg->predict) {
    if (bc.ranks < 1) {
      rc = efail(em, el, FM_EUSAGE, "--ranks is needed to predict a %s run", cfg->backend);
      goto done;
    }
  } else if (rt_backend_create(&b, cfg->backend, &bc, err, sizeof err)) {
    rc = efail(em, el, FM_EFAIL, "%s", err);
    goto done;
  }
  int G = b ? b->ranks : bc.ranks;
  int slots = cfg->slots ? cfg->slots : (int)ceil(1.5 * E / G);
  if (slots > E) slots = E;
  if ((int64_t)slots * G < E) {
    rc = efail(em, el, FM_EUSAGE, "--slots %d: %d ranks x %d slots < %d experts", slots, G, slots, E);
    goto done;
  }
  int64_t I = B - A;
  size_t per = (size_t)L * G * E;
  counts = malloc(sizeof(int64_t) * per * (size_t)I);
  if (!counts) {
    rc = efail(em, el, FM_EFAIL, "out of memory for %" PRId64 " iterations of counts", I);
    goto done;
  }
  int64_t slots_per_gpu = cfg->tokens_per_gpu * k, smax = 1, emax = 1;
  double ssum = 0;
  for (int64_t i = 0; i < I; i++)
    for (int l = 0; l < L; l++) {
      int64_t *c = counts + per * (size_t)i + (size_t)l * G * E;
      int trc = tr_rescale_slice(&t, A + i, l, G, slots_per_gpu, cfg->seed, c);
      if (trc) {
        rc = efail(em, el, FM_EFAIL, "%s: rescaling iteration %" PRId64 " layer %d: %s", cfg->trace_path,
                   A + i, l, tr_strerror(trc));
        goto done;
      }
      for (int g = 0; g < G; g++) {
        int64_t s = 0;
        for (int e = 0; e < E; e++) s += c[g * E + e];
        if (s > smax) smax = s;
        ssum += (double)s;
      }
      for (int e = 0; e < E; e++) {
        int64_t s = 0;
        for (int g = 0; g < G; g++) s += c[g * E + e];
        if (s > emax) emax = s;
      }
    }
  /* tokens per GPU as the simulator's runner resolves it (fm_sim.c) */
  int64_t tpg = cfg->tokens_per_gpu;
  if (tpg <= 0) {
    if (t.meta.tokens_per_rank > 0) tpg = t.meta.tokens_per_rank;
    else {
      int64_t s = 0;
      for (int e = 0; e < E; e++) s += tr_at(&t, A, 0, 0, e);
      tpg = s / k;
    }
  }
  o->tokens_per_gpu = tpg;
  /* profile: the calibrated one through the simulator's own resolution */
  if (cfg->profile_path) {
    if ((rc = fm_profile_for_sim(cfg->profile_path, d, f, k, (double)tpg, &kp.sp, em, el))) goto done;
    if (sim_profile_for_shape(&kp.sp, d, f, tpg, 1.0, &kp.plp)) {
      rc = efail(em, el, FM_EFAIL, "%s: no usable profile for d_model %d, d_ff %d", cfg->profile_path, d, f);
      goto done;
    }
    kp.pl = kp.plp.pl; /* points into kp.plp, which stays in place */
  } else if (cfg->profile) {
    kp.pl = *cfg->profile;
  } else {
    double scale = (double)d * f / (2048.0 * 8192.0);
    if (cfg->partitions > 1) scale *= 132.0 / ((132 / cfg->partitions / 8) * 8) * 1.02;
    int n = (int)(sizeof nom_tok / sizeof *nom_tok);
    for (int i = 0; i < n; i++) {
      kp.tok[i] = nom_tok[i];
      kp.us[i] = nom_us[i] * scale;
    }
    kp.pl.npoints = n;
    kp.pl.tokens = kp.tok;
    kp.pl.us = kp.us;
    kp.pl.bwd_ratio = 2.15;
    kp.pl.nonmoe_us = 0.0;
  }
  o->slots_per_gpu_mean = ssum / ((double)I * L * G);
  o->nonmoe_us = kp.pl.nonmoe_us;
  pl_env env = PL_ENV_INIT;
  env.layers = L;
  env.experts = E;
  env.cluster.gpus = G;
  env.cluster.gpus_per_node = G;
  env.cluster.slots = slots;
  env.cluster.intra_Bps = cfg->exchange_GBps * 1e9;
  env.cluster.intra_lat_s = cfg->exchange_lat_us * 1e-6;
  env.cluster.inter_Bps = cfg->exchange_GBps * 1e9;
  env.cluster.inter_lat_s = cfg->exchange_lat_us * 1e-6;
  env.cluster.oversub = 1.0;
  env.model.d_model = d;
  env.model.d_ff = f;
  env.model.top_k = k;
  env.model.bytes_per_elem = 2;
  env.model.optimizer_bytes_per_param = 12.0;
  env.profile = kp.pl;
  env.seed = cfg->seed;
  char perr[256] = "";
  int prc = pl_policy_create(&pol, cfg->policy, &env, perr, sizeof perr);
  if (prc) {
    rc = efail(em, el, FM_EUSAGE, "--policy '%s': %s", cfg->policy, perr[0] ? perr : pl_strerror(prc));
    goto done;
  }
  /* GPU warm-up at every token count an expert can get here (bounded by an
   * expert's largest total load in the trace slice). */
  rt_exec_config xc = {.layers = L, .experts = E, .top_k = k, .d_model = d, .d_ff = f,
                       .slots = slots, .max_slots_per_rank = smax,
                       .optimizer_bytes_per_param = 12.0, .model_bytes_per_elem = 2,
                       .seed = cfg->seed,
                       .warm_tokens = strcmp(cfg->backend, "cpu") != 0 ? emax : 0};
  if (!cfg->predict && rt_exec_create(&x, b, pol, &env, &xc, err, sizeof err)) {
    rc = efail(em, el, FM_EFAIL, "backend '%s': %s", cfg->backend, err);
    goto done;
  }
  o->rows = calloc((size_t)I, sizeof *o->rows);
  o->busy_ms = calloc((size_t)G, sizeof(double));
  o->total_ms = calloc((size_t)G, sizeof(double));
  bal = calloc((size_t)I, sizeof(double));
  plans = json_array();
  if (!o->rows || !o->busy_ms || !o->total_ms || !bal || !plans) {
    rc = efail(em, el, FM_EFAIL, "out of memory");
    goto done;
  }
  for (int64_t i = 0; i < I; i++) {
    rt_iter_result *r = &o->rows[i];
    int nm = 0;
    const pl_move *mv = NULL;
    if (cfg->predict) {
      if ((rc = predict_iteration(pol, &env, i, counts + per * (size_t)i, r, &pred, em, el))) goto done;
      mv = pred.moves;
      nm = pred.nmoves;
    } else {
      if (rt_exec_iteration(x, i, counts + per * (size_t)i, r, err, sizeof err)) {
        rc = efail(em, el, FM_EFAIL, "iteration %" PRId64 ": %s", A + i, err);
        goto done;
      }
      mv = rt_exec_moves(x, &nm);
    }
    r->iteration = A + i;
    for (int m = 0; m < nm; m++)
      json_array_append_new(plans, json_pack("{s:I, s:i, s:i, s:i, s:i, s:i, s:I}", "iteration",
                                             (json_int_t)(A + i), "layer", mv[m].layer, "expert",
                                             mv[m].expert, "from", mv[m].from, "to", mv[m].to,
                                             "kind", (int)mv[m].kind, "bytes",
                                             (json_int_t)mv[m].bytes));
    if (!cfg->quiet && ((i + 1) % 10 == 0 || i + 1 == I))
      fprintf(stderr, "progress: %s: iteration %" PRId64 "/%" PRId64 " %.3f ms\n",
              pl_policy_spec(pol), i + 1, I, r->time_ms);
  }
  if (cfg->check && x) {
    if (rt_exec_check(x, &o->check, err, sizeof err)) {
      rc = efail(em, el, FM_EFAIL, "check: %s", err);
      goto done;
    }
    o->checked = 1;
  }
  /* summary */
  snprintf(o->policy, sizeof o->policy, "%s", pl_policy_spec(pol));
  snprintf(o->backend, sizeof o->backend, "%s", cfg->backend);
  if (cfg->partitions > 0) snprintf(o->cluster, sizeof o->cluster, "h200-green-%d", G);
  else snprintf(o->cluster, sizeof o->cluster, "%s-%d", cfg->backend, G);
  snprintf(o->device, sizeof o->device, "%s", b ? b->ops->describe(b) : "cost model");
  o->gpus = G;
  o->slots = slots;
  o->d_model = d;
  o->d_ff = f;
  o->top_k = k;
  o->layers = L;
  o->experts = E;
  o->it_begin = A;
  o->it_end = B;
  o->iterations = I;
  for (int64_t i = 0; i < I; i++) {
    rt_iter_result *r = &o->rows[i];
    o->mean_iteration_ms += r->time_ms / (double)I;
    for (int p = 0; p < RT_PH_COUNT; p++) o->phase_ms[p] += r->phase_ms[p] / (double)I;
    o->migrated_bytes += r->bytes_migrated;
    o->dropped_tokens += r->tokens_dropped;
    o->bytes_alltoall += r->bytes_alltoall;
    bal[i] = r->balance;
  }
  qsort(bal, (size_t)I, sizeof *bal, cmp_double);
  o->balance_p50 = fm_percentile(bal, I, 0.5);
  o->balance_p90 = fm_percentile(bal, I, 0.9);
  if (x)
    for (int g = 0; g < G; g++) rt_exec_rank_time(x, g, &o->busy_ms[g], &o->total_ms[g]);
  o->plans_json = json_dumps(plans, JSON_COMPACT);
  o->trace_hash = t.hash;
  snprintf(o->trace_path, sizeof o->trace_path, "%s", t.path);
  o->trace_iterations = t.iterations;
  o->trace_layers = t.layers;
  o->trace_ranks = t.ranks;
  o->trace_experts = t.experts;
  o->owner = b ? b->ops->owns(b, 0) : 1;
  o->finished = wall_s();
done:
  json_decref(plans);
  free(bal);
  predict_fini(&pred);
  rt_exec_destroy(x);
  pl_policy_destroy(pol);
  rt_backend_destroy(b);
  free(counts);
  tr_close(&t);
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
    return efail(em, el, FM_EFAIL, "cannot record the run: its cluster description is not JSON");
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
    return efail(em, el, FM_EFAIL, "cannot record the run: its key is over %zu bytes",
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
  if (rc) return efail(em, el, FM_EFAIL, "cannot record the run: %s", st_strerror(rc));
  for (int64_t i = 0; i < o->iterations && !rc; i++) {
    const rt_iter_result *x = &o->rows[i];
    st_iter_row row = row_of(x);
    rc = st_run_iteration(r, &row);
  }
  /* plans: one row per (iteration, layer) with moves */
  json_t *all = o->plans_json ? json_loads(o->plans_json, 0, NULL) : NULL;
  size_t n = all ? json_array_size(all) : 0, i = 0;
  while (!rc && i < n) {
    json_t *m0 = json_array_get(all, i);
    json_int_t it = json_integer_value(json_object_get(m0, "iteration"));
    int layer = (int)json_integer_value(json_object_get(m0, "layer"));
    json_t *grp = json_array();
    int64_t bytes = 0;
    while (i < n) {
      json_t *m = json_array_get(all, i);
      if (json_integer_value(json_object_get(m, "iteration")) != it ||
          json_integer_value(json_object_get(m, "layer")) != layer)
        break;
      bytes += json_integer_value(json_object_get(m, "bytes"));
      json_array_append(grp, m);
      i++;
    }
    char *s = json_dumps(grp, JSON_COMPACT);
    rc = st_run_plan(r, it, layer, (int)json_array_size(grp), bytes, s ? s : "[]");
    free(s);
    json_decref(grp);
  }
  json_decref(all);
  for (int g = 0; g < o->gpus && !rc; g++)
    rc = st_run_gpu(r, g, o->busy_ms[g], o->total_ms[g] - o->busy_ms[g]);
  if (rc) {
    st_run_abort(r);
    return efail(em, el, FM_EFAIL, "cannot record the run: %s", st_strerror(rc));
  }
  rc = st_run_commit(r, run_id);
  if (rc) return efail(em, el, FM_EFAIL, "cannot record the run: %s", st_strerror(rc));
  return FM_OK;
}
