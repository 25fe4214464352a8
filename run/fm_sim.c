/*
 * fm_sim.c - one simulation configuration: resolve, compute, record, pack
 * (the contract is fm_sim.h).
 *
 * Resolution (shared by compute and config_key):
 *   trace      tr_open; its content hash identifies it.
 *   model      d_model, d_ff, top_k from the flags, else the trace's sidecar
 *              (an error names the missing one); bytes per element from the
 *              sidecar, else 2 (bf16); optimizer state 12 bytes per parameter
 *              (Adam: fp32 master, m, v) migrated with an expert.
 *   GPUs       G = nodes x gpus_per_node of the cluster. Any G >= 1 maps onto
 *              a trace of R ranks: GPU g replays rank g mod R (tr_rescale,
 *              seeded multinomial). With --tokens-per-gpu T each GPU routes
 *              T x top_k slots per layer; without it each GPU keeps its
 *              source rank's own count (weak scaling) and G == R replays the
 *              trace unchanged. The impossible cases: G above SIM_MAX_GPUS
 *              (65,536), and fewer expert slots than experts (G x slots < E).
 *   slots      --slots, else pl_slots_from_memory with the cluster's HBM and
 *              half of it reserved for activations and non-MoE weights.
 *   profile    --profile FILE.json, else the built-in profile of the
 *              cluster's GPU; scaled to the model shape and to the cluster's
 *              compute_scale (sim_profile.h).
 *   policy     pl_policy_create(spec) with the env above and the seed.
 *   limits     every model number has a physical range (MODEL_RANGES; an
 *              error names the flag, or the sidecar key, and the range), and
 *              the whole configuration must fit the simulator's arithmetic
 *              (check_scale): one layer's worst case at most 2^36 us and one
 *              iteration's all-to-all bytes at most 2^62. docs/simulator.md
 *              "Limits" lists them.
 * Per iteration i in [A, B) and layer l: counts = tr_rescale_slice(i, l);
 * plan (the policy sees iterations renumbered from 0, so the first simulated
 * iteration gets the initial placement for free; the oracle gets this
 * iteration's counts as `upcoming`), route, observe; then the engine turns
 * the iteration's layers (placements, routings, moves) into its time.
 */
#include "run/fm_sim.h"

#include "run/fm_error.h"
#include "run/fm_json.h"
#include "run/fm_trace_cache.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "flexmoe_config.h"
#include "placement/pl_error.h"
#include "placement/pl_memory.h"
#include "placement/pl_policy.h"
#include "sim/sim_cluster.h"
#include "sim/sim_engine.h"
#include "sim/sim_profile.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

#define OPT_BYTES_PER_PARAM 12.0
#define HBM_RESERVE_FRACTION 0.5

/* Physical ranges of the model numbers (inclusive): d_model, d_ff and top_k
 * are the key table's (run/fm_keys.h), which the flag parsers and the JSON
 * entry points check too, and match the profile files; a real model is far
 * inside them (d_model 8,192, d_ff 32,768, top-k 8, a few thousand tokens
 * per GPU), and
 * at their ends every token count of the simulator - G x tokens x top_k,
 * and that times 1,024 (pl_greedy's fixed point) - stays below 2^63:
 * 2^16 GPUs x 2^30 tokens x 2^6 = 2^52. */
#define MAX_BYTES_PER_ELEM 8
#define MAX_TOKENS_PER_GPU ((int64_t)1 << 30)
/* check_scale: one layer's worst case, and one iteration's wire bytes. */
#define MAX_LAYER_US 0x1p36
#define MAX_ITER_BYTES 0x1p62

typedef struct plan_rec {
  int64_t iteration;
  int layer;
  int nmoves;
  int64_t bytes;
  char *moves_json;
} plan_rec;

struct fm_sim_output {
  fm_sim_summary sum;
  char *trace_path, *trace_meta, *cluster_json, *engine, *params_json, *config_key;
  uint64_t trace_hash, seed;
  int64_t t_iters;
  int t_layers, t_ranks, t_experts;
  int gpus;
  double started, finished;
  int64_t nrows;
  st_iter_row *rows;
  double *busy_ms, *idle_ms; /* [gpus] */
  int nplans, capplans;
  plan_rec *plans;
  int layers;
  double *layer_bal, *layer_ms; /* [nrows * layers] */
  uint64_t events; /* DES events executed (not packed) */
};

/* Everything resolved from a configuration. */
typedef struct resolved {
  tr_trace trace; /* opened here (trace_open), or a copy of cfg->traces' entry */
  int trace_open;
  sim_cluster cl;
  pl_cluster pc;
  pl_model model;
  sim_profile prof;
  sim_pl_profile plp;
  int64_t tokens_per_gpu, slots_per_gpu; /* slots_per_gpu 0 = each rank's own */
  int64_t a, b;
  int engine; /* SIM_ENGINE_* */
  pl_env env;
  pl_policy *policy;
  char cluster_json[2048];
} resolved;

static void resolved_fini(resolved *r) {
  pl_policy_destroy(r->policy);
  r->policy = NULL;
  if (r->trace_open)
    tr_close(&r->trace);
  r->trace_open = 0;
}

static char *dupstr(const char *s) {
  if (!s)
    s = "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* A model number against its key's range: from the configuration (cfg
 * value non-zero: exit 2, the key named as cfg->key_names asks) or from the
 * trace's sidecar (exit 1, the sidecar key named). */
static int model_range(const fm_sim_config *cfg, fm_key_id id, int from_cfg, int64_t v,
                       char *em, size_t el) {
  const fm_key *k = fm_key_of(id);
  const char *name = fm_key_name(id, cfg->key_names);
  if (v >= 1 && v <= k->hi)
    return FM_OK;
  if (from_cfg)
    return fm_fail(em, el, FM_EUSAGE, "%s must be between 1 and %" PRId64 " (got %" PRId64 ")",
                name, k->hi, v);
  return fm_fail(em, el, FM_EFAIL,
              "%s: the trace's %s is %" PRId64 "; it must be between 1 and %" PRId64
              " (or pass %s)",
              cfg->trace_path, k->name, v, k->hi, name);
}

/*
 * The whole configuration against the simulator's arithmetic, once every
 * number is known. The worst case of one layer bounds every time the
 * placement library and the engines form (so none overflows its integer
 * form: pl_greedy sums G GPUs' times in 1/1,024 us in an int64, which needs
 * G x 1,024 x t < 2^63, i.e. t < 2^37 us at 65,536 GPUs; the limit is half
 * of that): all S = G x tokens x top_k token slots of the layer through
 * one GPU's slowest link in each of the four all-to-alls (intra and inter),
 * computed by one GPU for each of its slots forward and backward, and
 * every slot's ring all-reduce over the slowest link. Then one iteration's
 * all-to-all bytes, 4 x layers x S x token bytes, must fit the int64 byte
 * counters.
 */
static int check_scale(const resolved *r, int layers, int slots, char *em, size_t el) {
  const pl_cluster *c = &r->pc;
  const pl_profile *p = &r->plp.pl;
  double G = c->gpus, S = G * (double)r->tokens_per_gpu * r->model.top_k;
  double tb = (double)r->model.d_model * r->model.bytes_per_elem;
  int one_node = c->gpus == c->gpus_per_node; /* no traffic leaves the node */
  double bw = one_node ? c->intra_Bps : fmin(c->intra_Bps, c->inter_Bps / c->oversub);
  double lat = one_node ? c->intra_lat_s : fmax(c->intra_lat_s, c->inter_lat_s);
  double grad = 2.0 * r->model.d_model * r->model.d_ff * r->model.bytes_per_elem;
  double ffn = pl_ffn_us(p, 2.0 * S); /* pl_greedy's estimate reaches 2 S */
  for (int i = 0; i < p->npoints; i++)
    ffn = fmax(ffn, p->us[i]);
  double a2a_us = 2.0 * (S * tb / bw + lat) * 1e6;
  double ring_us = slots * (2.0 * grad / bw + 2.0 * (G - 1) * lat) * 1e6;
  double layer_us = 4.0 * a2a_us + ring_us + slots * ffn * (1.0 + p->bwd_ratio) +
                    2.0 * p->nonmoe_us;
  if (!(layer_us <= MAX_LAYER_US))
    return fm_fail(em, el, FM_EFAIL,
                "model too large for the cluster: one layer could take %.3g s (%d GPUs x "
                "%" PRId64 " tokens x top-%d of %.3g bytes through a %.3g GB/s link, and "
                "their compute), above the simulator's 2^36 us (19 h); use fewer tokens per "
                "GPU, a smaller model or faster links",
                layer_us * 1e-6, c->gpus, r->tokens_per_gpu, r->model.top_k, tb, bw * 1e-9);
  if (!(4.0 * layers * S * tb <= MAX_ITER_BYTES))
    return fm_fail(em, el, FM_EFAIL,
                "model too large: one iteration's all-to-alls would carry %.3g bytes (4 x %d "
                "layers x %d GPUs x %" PRId64 " tokens x top-%d x %.3g bytes), above 2^62",
                4.0 * layers * S * tb, layers, c->gpus, r->tokens_per_gpu, r->model.top_k, tb);
  return FM_OK;
}

/* Engine name and trace: opened into r (r->trace_open), not empty. */
static int open_trace(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  if (!cfg)
    return fm_fail(em, el, FM_EUSAGE, "--trace is required");
  if (!cfg->trace_path)
    return fm_fail(em, el, FM_EUSAGE, "%s is required", fm_key_name(FM_KEY_TRACE, cfg->key_names));
  const char *engine = cfg->engine ? cfg->engine : "analytic";
  if (strcmp(engine, "analytic") == 0)
    r->engine = SIM_ENGINE_ANALYTIC;
  else if (strcmp(engine, "des") == 0)
    r->engine = SIM_ENGINE_DES;
  else
    return fm_fail(em, el, FM_EUSAGE, "%s: '%s' is not analytic or des",
                fm_key_name(FM_KEY_ENGINE, cfg->key_names), engine);
  tr_error terr;
  memset(&terr, 0, sizeof(terr));
  const tr_trace *cached = NULL;
  int trc = cfg->traces ? fm_trace_cache_open(cfg->traces, cfg->trace_path, &cached, &terr)
                        : tr_open(&r->trace, cfg->trace_path, &terr);
  if (trc != 0) {
    if (terr.line > 0)
      return fm_fail(em, el, FM_EFAIL, "%s:%ld: %s", terr.path[0] ? terr.path : cfg->trace_path,
                  terr.line, terr.msg[0] ? terr.msg : tr_strerror(terr.code));
    return fm_fail(em, el, FM_EFAIL, "%s: %s", terr.path[0] ? terr.path : cfg->trace_path,
                terr.msg[0] ? terr.msg : tr_strerror(terr.code));
  }
  if (cached)
    r->trace = *cached; /* a view: the cache keeps the mapping, nothing to close */
  r->trace_open = cached == NULL;
  const tr_trace *t = &r->trace;
  if (t->iterations < 1 || t->layers < 1 || t->ranks < 1 || t->experts < 1)
    return fm_fail(em, el, FM_EFAIL, "%s: the trace is empty", cfg->trace_path);
  return FM_OK;
}

/* The model (flags, else the trace's sidecar) inside its physical ranges. */
static int resolve_model(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  const tr_trace *t = &r->trace;
  int rc;
  r->model.d_model = cfg->d_model ? cfg->d_model : t->meta.d_model;
  r->model.d_ff = cfg->d_ff ? cfg->d_ff : t->meta.d_ff;
  r->model.top_k = cfg->top_k ? cfg->top_k : t->meta.top_k;
  r->model.bytes_per_elem = t->meta.bytes_per_elem > 0 ? t->meta.bytes_per_elem : 2;
  r->model.optimizer_bytes_per_param = OPT_BYTES_PER_PARAM;
  int missing = r->model.d_model < 1 ? FM_KEY_D_MODEL
                : r->model.d_ff < 1  ? FM_KEY_D_FF
                : r->model.top_k < 1 ? FM_KEY_TOP_K
                                     : -1;
  if (missing >= 0 && cfg->key_names == FM_NAME_JSON)
    return fm_fail(em, el, FM_EFAIL, "%s: the trace's sidecar does not give %s; pass it as a key",
                cfg->trace_path, fm_key_of(missing)->name);
  if (missing >= 0)
    return fm_fail(em, el, FM_EFAIL,
                "%s: the trace's sidecar does not give %s (%s); pass it on the command line",
                cfg->trace_path, fm_key_of(missing)->name, fm_key_of(missing)->flag);
  if ((rc = model_range(cfg, FM_KEY_D_MODEL, cfg->d_model != 0, r->model.d_model, em, el)) ||
      (rc = model_range(cfg, FM_KEY_D_FF, cfg->d_ff != 0, r->model.d_ff, em, el)) ||
      (rc = model_range(cfg, FM_KEY_TOP_K, cfg->top_k != 0, r->model.top_k, em, el)))
    return rc;
  if (r->model.bytes_per_elem > MAX_BYTES_PER_ELEM)
    return fm_fail(em, el, FM_EFAIL,
                "%s: the trace's bytes_per_elem is %d; it must be between 1 and %d",
                cfg->trace_path, r->model.bytes_per_elem, MAX_BYTES_PER_ELEM);
  return FM_OK;
}

/* Tokens per GPU: the flag (and the rescaled slot count), else the trace's
 * tokens per rank, else the first layer's routed slots of rank 0 / top_k. */
static int resolve_tokens(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  const tr_trace *t = &r->trace;
  if (cfg->tokens_per_gpu < 0 || cfg->tokens_per_gpu > MAX_TOKENS_PER_GPU)
    return fm_fail(em, el, FM_EUSAGE,
                "%s must be between 1 and %" PRId64 " (2^30) (got %" PRId64 ")",
                fm_key_name(FM_KEY_TOKENS_PER_GPU, cfg->key_names), MAX_TOKENS_PER_GPU,
                cfg->tokens_per_gpu);
  if (cfg->tokens_per_gpu > 0) {
    r->tokens_per_gpu = cfg->tokens_per_gpu;
    r->slots_per_gpu = cfg->tokens_per_gpu * r->model.top_k;
    return FM_OK;
  }
  r->slots_per_gpu = 0;
  if (t->meta.tokens_per_rank > 0)
    r->tokens_per_gpu = t->meta.tokens_per_rank;
  else {
    int64_t s = 0;
    for (int e = 0; e < t->experts; e++)
      s += tr_at(t, r->a, 0, 0, e);
    r->tokens_per_gpu = s / r->model.top_k;
  }
  if (r->tokens_per_gpu > MAX_TOKENS_PER_GPU)
    return fm_fail(em, el, FM_EFAIL,
                "%s: the trace gives %" PRId64 " tokens per rank; at most %" PRId64
                " (2^30) can be simulated (pass %s)",
                cfg->trace_path, r->tokens_per_gpu, MAX_TOKENS_PER_GPU,
                fm_key_name(FM_KEY_TOKENS_PER_GPU, cfg->key_names));
  return FM_OK;
}

/* The cluster (preset or file, resized) and the compute profile (in
 * memory, file or built-in) scaled to the model and the cluster. */
static int resolve_cluster_profile(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  sim_errbuf serr;
  if (sim_cluster_resolve(cfg->cluster ? cfg->cluster : "dgx-h100", &r->cl, &serr) ||
      sim_cluster_resize(&r->cl, cfg->nodes, cfg->gpus_per_node, &serr))
    return fm_fail(em, el, FM_EFAIL, "%s", serr.msg);
  if (sim_cluster_json(&r->cl, r->cluster_json, sizeof(r->cluster_json)) < 0)
    return fm_fail(em, el, FM_EFAIL, "cluster description too long");
  if (cfg->sim_profile)
    r->prof = *cfg->sim_profile;
  else if (cfg->profile_path ? sim_profile_load(cfg->profile_path, &r->prof, &serr)
                             : sim_profile_builtin(r->cl.profile, &r->prof, &serr))
    return fm_fail(em, el, FM_EFAIL, "%s", serr.msg);
  if (sim_profile_for_shape(&r->prof, r->model.d_model, r->model.d_ff, r->tokens_per_gpu,
                            r->cl.compute_scale, &r->plp))
    return fm_fail(em, el, FM_EFAIL, "cannot scale profile '%s' to d_model %d, d_ff %d",
                r->prof.name, r->model.d_model, r->model.d_ff);
  return FM_OK;
}

/* Expert slots per GPU (the flag, else from HBM with half reserved; at
 * most E) into r->pc, at least E slots in all, within check_scale. */
static int resolve_slots(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  int G = sim_cluster_gpus(&r->cl), E = r->trace.experts;
  int slots = cfg->slots;
  if (slots < 0)
    return fm_fail(em, el, FM_EUSAGE, "%s must be positive",
                fm_key_name(FM_KEY_SLOTS, cfg->key_names));
  if (slots == 0) {
    double hbm = r->cl.hbm_gib * 1073741824.0;
    int prc = pl_slots_from_memory(&r->model, hbm, hbm * HBM_RESERVE_FRACTION, E, G, &slots);
    if (prc == PL_ESLOTS)
      return fm_fail(em, el, FM_EFAIL,
                  "fewer expert slots than experts: %d experts of %.1f MiB (with optimizer "
                  "state) do not fit on %d GPUs of %.0f GiB (half reserved); use more GPUs",
                  E, (double)pl_expert_move_bytes(&r->model) / 1048576.0, G, r->cl.hbm_gib);
    if (prc)
      return fm_fail(em, el, FM_EFAIL, "cannot size expert slots: %s", pl_strerror(prc));
  }
  if (slots > E)
    slots = E;
  if ((int64_t)slots * G < E)
    return fm_fail(em, el, FM_EFAIL,
                "fewer expert slots than experts: %d GPUs x %d slots < %d experts", G, slots, E);
  sim_cluster_to_pl(&r->cl, slots, &r->pc);
  if (pl_cluster_check(&r->pc))
    return fm_fail(em, el, FM_EFAIL, "cluster '%s' is inconsistent", r->cl.name);
  return check_scale(r, r->trace.layers, slots, em, el);
}

/* The policy of cfg in the environment resolved above (r->policy). */
static int create_policy(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  pl_env env = PL_ENV_INIT;
  env.layers = r->trace.layers;
  env.experts = r->trace.experts;
  env.cluster = r->pc;
  env.model = r->model;
  env.profile = r->plp.pl;
  env.seed = cfg->seed;
  r->env = env;
  char perr[512] = "";
  int prc = pl_policy_create(&r->policy, cfg->policy ? cfg->policy : "static", &r->env, perr,
                             sizeof(perr));
  if (prc)
    return fm_fail(em, el, (prc == PL_EPOLICY || prc == PL_EPARAM) ? FM_EUSAGE : FM_EFAIL,
                "%s: %s", fm_key_name(FM_KEY_POLICY, cfg->key_names),
                perr[0] ? perr : pl_strerror(prc));
  return FM_OK;
}

/* Resolves cfg into r (the file's opening comment), step by step; on
 * failure r holds nothing and errmsg names the flag or file at fault. */
static int resolve(const fm_sim_config *cfg, resolved *r, char *em, size_t el) {
  memset(r, 0, sizeof(*r));
  int rc = open_trace(cfg, r, em, el);
  if (!rc)
    rc = fm_iteration_range_as(fm_key_name(FM_KEY_ITERATIONS, cfg->key_names), cfg->it_begin,
                               cfg->it_end, r->trace.iterations, &r->a, &r->b, em, el);
  if (!rc)
    rc = resolve_model(cfg, r, em, el);
  if (!rc)
    rc = resolve_tokens(cfg, r, em, el);
  if (!rc)
    rc = resolve_cluster_profile(cfg, r, em, el);
  if (!rc)
    rc = resolve_slots(cfg, r, em, el);
  if (!rc)
    rc = create_policy(cfg, r, em, el);
  if (rc)
    resolved_fini(r);
  return rc;
}

/* FNV-1a 64 */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) {
    h ^= c[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* The run's parameters as JSON text (stored, and hashed into the
 * configuration key). The profile's name comes from a file: it is written
 * as a JSON string by jansson (quotes and control bytes escaped), which is
 * the same text as before for a plain name, so keys of stored runs hold. */
static void params_text(const resolved *r, const fm_sim_config *cfg, char *buf, size_t len) {
  json_t *pn = json_string(r->prof.name); /* UTF-8: read by jansson or built in */
  char *pname = pn ? json_dumps(pn, JSON_ENCODE_ANY) : NULL;
  json_decref(pn);
  uint64_t ph = 14695981039346656037ULL;
  ph = fnv(ph, r->plp.tokens, sizeof(double) * (size_t)r->plp.pl.npoints);
  ph = fnv(ph, r->plp.us, sizeof(double) * (size_t)r->plp.pl.npoints);
  snprintf(buf, len,
           "{\"d_model\":%d,\"d_ff\":%d,\"top_k\":%d,\"bytes_per_elem\":%d,"
           "\"optimizer_bytes_per_param\":%g,\"tokens_per_gpu\":%" PRId64
           ",\"slots_per_gpu\":%d,\"iterations\":[%" PRId64 ",%" PRId64
           "],\"engine\":\"%s\",\"profile\":%s,\"profile_hash\":\"%016" PRIx64
           "\",\"bwd_ratio\":%.6g,\"nonmoe_us\":%.6g,\"rescale_slots_per_gpu\":%" PRId64
           ",\"network\":\"%s\"}",
           r->model.d_model, r->model.d_ff, r->model.top_k, r->model.bytes_per_elem,
           r->model.optimizer_bytes_per_param, r->tokens_per_gpu, r->pc.slots, r->a, r->b,
           r->engine == SIM_ENGINE_DES ? "des" : "analytic", pname ? pname : "null", ph,
           r->plp.pl.bwd_ratio, r->plp.pl.nonmoe_us, r->slots_per_gpu,
           /* the network's name is part of the configuration key, so a
            * sweep never takes rows of an earlier model for this one:
            * "fluid" (the analytic engine's per-link model; "closed-form"
            * was pl_cost_layer per layer), "hose-sync" / "exact-sync"
            * (transfers carry absolute latencies and shadows are broadcast;
            * "hose-all" / "exact" before), "hose-alltoall" (rings and
            * migrations per GPU pair) */
           r->engine == SIM_ENGINE_ANALYTIC ? "fluid"
           : cfg->exact_net == 1        ? "exact-sync"
           : cfg->exact_net == 2        ? "hose-alltoall-sync"
                                        : "hose-sync");
  free(pname);
}

/* The configuration key of a resolved configuration (fm_sim_config_key). */
static int key_of(const resolved *r, const fm_sim_config *cfg, char *buf, size_t len) {
  char params[1024];
  params_text(r, cfg, params, sizeof(params));
  uint64_t h = 14695981039346656037ULL;
  h = fnv(h, &r->trace.hash, sizeof(r->trace.hash));
  h = fnv(h, r->cluster_json, strlen(r->cluster_json));
  const char *spec = pl_policy_spec(r->policy);
  h = fnv(h, spec, strlen(spec) + 1);
  h = fnv(h, params, strlen(params));
  h = fnv(h, &cfg->seed, sizeof(cfg->seed));
  int n = snprintf(buf, len, "sim1-%016" PRIx64 "-%016" PRIx64, r->trace.hash, h);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

int fm_sim_config_key(const fm_sim_config *cfg, char *buf, size_t len, char *errmsg,
                       size_t errlen) {
  resolved r;
  int rc = resolve(cfg, &r, errmsg, errlen);
  if (rc)
    return rc;
  rc = key_of(&r, cfg, buf, len);
  resolved_fini(&r);
  if (rc)
    return fm_fail(errmsg, errlen, FM_EFAIL, "config key buffer too small");
  return FM_OK;
}

static double now_s(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Kind letters of a move in moves_json: r(eplicate), d(rop), m(igrate). */
/* Records a plan that changed the placement: its count and bytes, and with
 * keep_moves its moves in the store's one plans encoding
 * (st_plan_moves_json, docs/results.md). */
static int add_plan(fm_sim_output *o, int64_t it, int layer, const pl_plan *plan,
                    int keep_moves) {
  if (o->nplans == o->capplans) {
    int nc = o->capplans ? o->capplans * 2 : 64;
    plan_rec *np = realloc(o->plans, (size_t)nc * sizeof(plan_rec));
    if (!np)
      return -1;
    o->plans = np;
    o->capplans = nc;
  }
  char *js = NULL;
  if (keep_moves && !(js = st_plan_moves_json(plan->moves, plan->nmoves)))
    return -1;
  int64_t bytes = 0;
  for (int k = 0; k < plan->nmoves; k++)
    bytes += plan->moves[k].bytes;
  plan_rec *p = &o->plans[o->nplans++];
  p->iteration = it;
  p->layer = layer;
  p->nmoves = plan->nmoves;
  p->bytes = bytes;
  p->moves_json = js;
  return 0;
}

/*
 * Rescaled counts of the last configuration simulated in this process.
 * `flexmoe sim` compares several policies on one (trace, GPUs, slots, seed,
 * iterations) and the seeded multinomial draws of tr_rescale_slice are the
 * same for all of them (most of a run's time at 1,024 GPUs), so they are
 * drawn once and replayed. Stored as uint16 when no count can exceed 65,535
 * (every count is at most the slots per GPU the draw targets), else as
 * int32 (a run whose counts do not fit draws every time); kept when that
 * takes at most an eighth of the machine's memory (at least 512 MiB: a
 * sweep's workers each hold one). Recorded only by a run that keeps its
 * draws (cfg->keep_draws: not the last run of a comparison) and installed
 * only after it completes, so a failed run never leaves a partial cache. The CLI runs one simulation at a
 * time per process (sweep workers are processes), so this process-wide
 * state is not locked.
 */
typedef struct rescale_key {
  uint64_t hash, seed;
  int gpus, layers, experts;
  int64_t slots, a, b; /* slots per GPU, iterations [a, b) */
} rescale_key;

typedef struct rescale_store {
  rescale_key key;
  int narrow;  /* 1: uint16 counts, 0: int32 */
  void *counts; /* [(b - a) * layers * gpus * experts] */
} rescale_store;

static rescale_store rescale_cache;

static int rescale_key_equal(const rescale_key *x, const rescale_key *y) {
  return x->hash == y->hash && x->seed == y->seed && x->gpus == y->gpus &&
         x->layers == y->layers && x->experts == y->experts && x->slots == y->slots &&
         x->a == y->a && x->b == y->b;
}

static size_t rescale_cache_limit(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  size_t floor = (size_t)512 << 20;
  if (pages <= 0 || page <= 0)
    return floor;
  size_t eighth = (size_t)pages / 8 * (size_t)page;
  return eighth > floor ? eighth : floor;
}

/* Room for a new cache entry (s->counts NULL when it would not fit). */
static void rescale_cache_alloc(rescale_store *s, const rescale_key *k) {
  size_t n = (size_t)(k->b - k->a) * (size_t)k->layers * (size_t)k->gpus * (size_t)k->experts;
  s->key = *k;
  s->narrow = k->slots > 0 && k->slots <= UINT16_MAX;
  size_t width = s->narrow ? sizeof(uint16_t) : sizeof(int32_t);
  s->counts = n == 0 || n > rescale_cache_limit() / width ? NULL : malloc(n * width);
}

/* Counts [at, at + n) of the cache into c. */
static void rescale_cache_get(const rescale_store *s, size_t at, size_t n, int64_t *c) {
  if (s->narrow)
    for (size_t k = 0; k < n; k++)
      c[k] = ((const uint16_t *)s->counts)[at + k];
  else
    for (size_t k = 0; k < n; k++)
      c[k] = ((const int32_t *)s->counts)[at + k];
}

/* Records c into the cache at [at, at + n); 0 when a count does not fit. */
static int rescale_cache_put(rescale_store *s, size_t at, size_t n, const int64_t *c) {
  for (size_t k = 0; k < n; k++) {
    if (c[k] < 0 || c[k] > (s->narrow ? UINT16_MAX : INT32_MAX))
      return 0;
    if (s->narrow)
      ((uint16_t *)s->counts)[at + k] = (uint16_t)c[k];
    else
      ((int32_t *)s->counts)[at + k] = (int32_t)c[k];
  }
  return 1;
}

/*
 * Threads of one run (cfg->threads). The per-layer steps that depend on
 * nothing but their own layer run on several threads: drawing a layer's
 * rescaled counts (tr_rescale_slice is a pure function of its arguments)
 * and routing a layer on its serving placement (pl_policy_route_serving
 * only reads the policy; pl_policy.h). Each layer writes its own slot
 * (counts, routing, return code), and everything that orders or adds up
 * (the policy's plan and observe, the rescale cache, the rows, the errors)
 * runs on the caller's thread in layer order, so the results are byte for
 * byte the same for any number of threads. A job hands out layers through
 * an atomic counter; the thread that joins it works on the layers still
 * left first, so a helper that could not start only costs time.
 */
typedef struct layer_job {
  void (*fn)(void *ctx, int layer);
  void *ctx;
  int layers;
  atomic_int next;        /* the next layer to take */
  pthread_t *th;          /* [cap] helper threads */
  int cap, started;       /* helpers allowed, helpers running */
  /* A streamed job (job_stream) hands out only the layers released so far,
   * [0, avail), in order; its helpers wait on cv for more. sync: mu and cv
   * are initialised. */
  int streamed, avail, sync;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} layer_job;

/* The next layer of j to work on, or -1 when none is left (a streamed
 * job's: none left and none to come). */
static int job_take(layer_job *j) {
  if (!j->streamed) {
    int l = atomic_fetch_add(&j->next, 1);
    return l < j->layers ? l : -1;
  }
  pthread_mutex_lock(&j->mu);
  int l = atomic_load(&j->next);
  while (l >= j->avail && j->avail < j->layers) {
    pthread_cond_wait(&j->cv, &j->mu);
    l = atomic_load(&j->next);
  }
  if (l < j->avail)
    atomic_store(&j->next, l + 1);
  pthread_mutex_unlock(&j->mu);
  return l < j->avail ? l : -1;
}

static void job_work(layer_job *j) {
  for (int l; (l = job_take(j)) >= 0;)
    j->fn(j->ctx, l);
}

static void *job_thread(void *arg) {
  job_work(arg);
  return NULL;
}

/* Starts up to `helpers` threads on j's layers (fewer when pthread_create
 * fails; none when helpers <= 0). */
static void job_start(layer_job *j, void (*fn)(void *, int), void *ctx, int layers,
                      int helpers) {
  j->fn = fn;
  j->ctx = ctx;
  j->layers = layers;
  atomic_store(&j->next, 0);
  j->started = 0;
  for (int k = 0; k < helpers && k < j->cap; k++) {
    if (pthread_create(&j->th[k], NULL, job_thread, j))
      break;
    j->started++;
  }
}

/* Works on what is left of j on this thread, then waits for its helpers:
 * every layer is done on return (of a streamed job: every layer released
 * by job_release, all of them after job_release(j, j->layers)). */
static void job_join(layer_job *j) {
  if (!j->fn)
    return;
  job_work(j);
  for (int k = 0; k < j->started; k++)
    pthread_join(j->th[k], NULL);
  j->started = 0;
  j->streamed = 0;
  j->fn = NULL;
}

/* Starts j streamed (j->sync, helpers > 0): like job_start, but its
 * helpers take layer l only once job_release has released it. */
static void job_stream(layer_job *j, void (*fn)(void *, int), void *ctx, int layers,
                       int helpers) {
  j->streamed = 1;
  j->avail = 0;
  job_start(j, fn, ctx, layers, helpers);
}

/* Layers [0, n) of streamed job j may be taken; with stop, no layer past
 * them ever will be (a failure: job_join then waits for those alone). */
static void job_release(layer_job *j, int n, int stop) {
  pthread_mutex_lock(&j->mu);
  if (n > j->avail)
    j->avail = n;
  if (stop)
    j->layers = j->avail;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
}

/* One iteration's rescaled counts, each layer into its slot of counts and
 * its tr_rescale_slice code into rc[layer]. */
typedef struct draw_ctx {
  const tr_trace *t;
  int64_t it, slots;
  int gpus;
  uint64_t seed;
  int64_t *counts; /* [layers * gpus * experts] */
  int *rc;         /* [layers] */
} draw_ctx;

static void draw_layer(void *arg, int l) {
  draw_ctx *d = arg;
  size_t GE = (size_t)d->gpus * (size_t)d->t->experts;
  d->rc[l] = tr_rescale_slice(d->t, d->it, l, d->gpus, d->slots, d->seed,
                              d->counts + (size_t)l * GE);
}

/* One simulation's state from resolution to output, released by
 * simrun_fini. Invariants: it lives on fm_sim_compute's stack and never
 * moves (helper threads read pf, dc and rj, and pf.t points at r.trace);
 * counts and ahead each hold L x G x E counts, counts the iteration being
 * simulated and ahead the next one while pf's helpers draw it; every
 * pointer is NULL or owned here, o until fm_sim_compute hands it out. */
typedef struct simrun {
  const fm_sim_config *cfg;
  char *em; /* the caller's message buffer [el] */
  size_t el;
  resolved r;
  char key[128]; /* the configuration key of r */
  int G, E, L;
  int threads;   /* 1 to FM_SIM_MAX_THREADS */
  fm_sim_output *o;
  int64_t *counts, *ahead; /* this iteration's counts, the next one's */
  draw_ctx dc, pc;         /* drawing counts now, drawing ahead */
  layer_job now, pf;       /* this iteration's layer jobs, the draw ahead */
  int *draw_rc, *ahead_rc; /* [L] each layer's draw result */
  int *route_rc;           /* [L] each layer's routing result */
  int drawing;         /* pf draws the next iteration on its threads */
  int cached;          /* replaying rescaled counts from the cache */
  rescale_store fresh; /* rescaled counts being recorded for it */
  int shadowing;       /* pl_policy_shadowing of the policy */
  /* Per-layer buffers of nbuf iterations, slot ((it - a) % nbuf) x L + l:
   * nbuf 2 when the engine times iteration it while a helper plans and
   * routes it + 1 (w->pipe), else 1. */
  int pipe, nbuf;
  pl_routing *rt;      /* [nbuf L] */
  pl_plan *plans;      /* [nbuf L] */
  sim_layer_in *lin;   /* [nbuf L], the engine's input of an iteration */
  /* pipe only: the engine's own copy of each layer's serving placement and
   * shadows (the policy changes its own while the engine runs); a copy is
   * refreshed when the layer's serving placement changed since it was made
   * (ver counts a layer's plans that changed it or switched it over) */
  pl_placement *snap;           /* [nbuf L] */
  int *shadow;                  /* [nbuf L E] */
  int64_t *ver, *snap_ver;      /* [L], [nbuf L] */
  const pl_placement **serving; /* [L] the layer's serving placement last seen */
  int route_slot;               /* slot of layer 0 that simrun_plan_route fills */
  int64_t route_it;             /* the iteration it routes */
  double worst[2];              /* each buffered iteration's worst layer balance */
  char eng_msg[1024];           /* the engine's failure (it runs beside the policy) */
  sim_engine eng;
  int eng_ok;
  double *bal; /* [iterations], each iteration's worst layer balance */
  pl_temps *temps; /* [nbuf L] each layer's temporaries (policies that make them), or NULL */
} simrun;

static int simrun_nomem(simrun *w) { return fm_fail(w->em, w->el, FM_EFAIL, "out of memory"); }

/* The temporaries' buffers, one per layer and buffered iteration, when the
 * policy makes temporaries (pl_policy_has_temporaries); FM_OK or FM_EFAIL
 * "out of memory". */
static int simrun_temps_alloc(simrun *w) {
  const pl_policy *pol = w->r.policy;
  if (!pl_policy_has_temporaries(pol))
    return FM_OK;
  size_t NL = (size_t)w->nbuf * w->L;
  w->temps = calloc(NL, sizeof(pl_temps));
  if (!w->temps)
    return simrun_nomem(w);
  for (size_t k = 0; k < NL; k++)
    if (pl_temps_init(&w->temps[k], w->E, w->G, pl_policy_placement(pol, 0)->slots))
      return simrun_nomem(w);
  return FM_OK;
}

/* The output with its per-iteration, per-GPU and per-layer arrays, and the
 * per-layer work buffers (counts, routings, plans, engine inputs, return
 * codes, helper threads); FM_OK or FM_EFAIL "out of memory" (what was
 * allocated stays for simrun_fini). */
static int simrun_alloc(simrun *w) {
  int G = w->G, E = w->E, L = w->L;
  fm_sim_output *o = w->o = calloc(1, sizeof(*o));
  if (!o)
    return simrun_nomem(w);
  o->started = now_s();
  o->gpus = G;
  o->seed = w->cfg->seed;
  o->nrows = w->r.b - w->r.a;
  o->rows = calloc((size_t)o->nrows, sizeof(st_iter_row));
  o->busy_ms = calloc((size_t)G, sizeof(double));
  o->idle_ms = calloc((size_t)G, sizeof(double));
  o->layers = L;
  o->layer_bal = calloc((size_t)o->nrows * L, sizeof(double));
  o->layer_ms = calloc((size_t)o->nrows * L, sizeof(double));
  w->counts = calloc((size_t)L * G * E, sizeof(int64_t));
  size_t NL = (size_t)w->nbuf * L;
  w->rt = calloc(NL, sizeof(pl_routing));
  w->plans = calloc(NL, sizeof(pl_plan));
  w->lin = calloc(NL, sizeof(sim_layer_in));
  if (w->pipe) {
    w->snap = calloc(NL, sizeof(pl_placement));
    w->shadow = calloc(NL * E, sizeof(int));
    w->ver = calloc((size_t)L, sizeof(int64_t));
    w->snap_ver = calloc(NL, sizeof(int64_t));
    w->serving = calloc((size_t)L, sizeof(*w->serving));
    if (!w->snap || !w->shadow || !w->ver || !w->snap_ver || !w->serving)
      return simrun_nomem(w);
    for (size_t k = 0; k < NL; k++)
      w->snap_ver[k] = -1; /* no copy yet */
  }
  w->draw_rc = calloc((size_t)L, sizeof(int));
  w->ahead_rc = calloc((size_t)L, sizeof(int));
  w->route_rc = calloc((size_t)L, sizeof(int));
  w->now.th = calloc((size_t)w->threads, sizeof(pthread_t));
  w->pf.th = calloc((size_t)w->threads, sizeof(pthread_t));
  if (!o->rows || !o->busy_ms || !o->idle_ms || !o->layer_bal || !o->layer_ms || !w->counts ||
      !w->rt || !w->plans || !w->lin || !w->draw_rc || !w->ahead_rc || !w->route_rc ||
      !w->now.th || !w->pf.th)
    return simrun_nomem(w);
  /* helpers beside the caller's thread for the layer jobs; the draw ahead
   * runs beside the whole iteration, so it may use one more */
  w->now.cap = w->threads - 1;
  w->pf.cap = w->threads - 1;
  if (w->now.cap > 0) { /* the routing streams beside the plans (simrun_prepare) */
    if (pthread_mutex_init(&w->now.mu, NULL))
      return simrun_nomem(w);
    if (pthread_cond_init(&w->now.cv, NULL)) {
      pthread_mutex_destroy(&w->now.mu);
      return simrun_nomem(w);
    }
    w->now.sync = 1;
  }
  for (size_t l = 0; l < NL; l++) {
    pl_plan_init(&w->plans[l]);
    /* the G x G matrix only for the exact network: at 1,024 GPUs it is 8 MiB
     * per layer and dominated routing time */
    if (pl_routing_init(&w->rt[l], G, E, w->r.engine == SIM_ENGINE_DES && w->cfg->exact_net == 1))
      return simrun_nomem(w);
  }
  return simrun_temps_alloc(w);
}

/* The engine of the resolved cluster, model and profile (w->eng_ok) and the
 * per-iteration balance array; FM_OK or FM_EFAIL with the message. */
static int simrun_engine(simrun *w) {
  const resolved *r = &w->r;
  int xn = w->cfg->exact_net;
  int agg = xn == 1 ? 0 : xn == 2 ? SIM_AGG_ALLTOALL : SIM_AGG_ALL;
  if (sim_engine_init(&w->eng, r->engine, &r->cl, &r->pc, &r->model, &r->plp.pl, agg))
    return fm_fail(w->em, w->el, FM_EFAIL, "cannot start the %s engine (out of memory?)",
                r->engine == SIM_ENGINE_DES ? "des" : "analytic");
  w->eng_ok = 1;
  w->bal = calloc((size_t)w->o->nrows, sizeof(double));
  return w->bal ? FM_OK : simrun_nomem(w);
}

/* Starts drawing iteration it into w->ahead on pf's helpers. */
static void simrun_ahead_start(simrun *w, int64_t it) {
  w->pc.it = it;
  job_start(&w->pf, draw_layer, &w->pc, w->L, w->pf.cap);
}

/* Where the counts come from: the rescale cache when it holds this very
 * draw (w->cached); else, when the trace is rescaled rather than copied, a
 * fresh cache entry recorded as they are drawn (w->fresh, NULL counts when
 * too large) and, with two or more threads and several iterations, the
 * first iteration drawn ahead on helper threads (w->drawing; drawn when
 * needed when the buffer cannot be had). Never fails. */
static void simrun_source(simrun *w) {
  const fm_sim_config *cfg = w->cfg;
  const resolved *r = &w->r;
  const tr_trace *t = &r->trace;
  rescale_key rkey = {.hash = t->hash, .seed = cfg->seed, .gpus = w->G, .layers = w->L,
                      .experts = w->E, .slots = r->slots_per_gpu, .a = r->a, .b = r->b};
  int draws = w->G != t->ranks || r->slots_per_gpu > 0; /* else the trace is copied */
  if (rescale_cache.counts && rescale_key_equal(&rescale_cache.key, &rkey))
    w->cached = 1;
  else if (draws && cfg->keep_draws)
    rescale_cache_alloc(&w->fresh, &rkey);
  w->shadowing = pl_policy_shadowing(r->policy);
  draw_ctx d = {.t = t, .slots = r->slots_per_gpu, .gpus = w->G, .seed = cfg->seed};
  w->dc = d;
  w->dc.counts = w->counts;
  w->dc.rc = w->draw_rc;
  /* draws worth a thread: not replayed, several iterations */
  w->drawing = w->threads > 1 && !w->cached && draws && r->b - r->a > 1;
  if (w->drawing) {
    w->ahead = malloc((size_t)w->L * w->G * w->E * sizeof(int64_t));
    w->pc = d;
    w->pc.counts = w->ahead;
    w->pc.rc = w->ahead_rc;
    w->drawing = w->ahead != NULL;
    if (w->drawing)
      simrun_ahead_start(w, r->a);
  }
}

/* The message of the first layer whose draw of iteration it failed (rc
 * [L]), FM_EFAIL; FM_OK when none did. */
static int simrun_draw_fail(simrun *w, int64_t it, const int *rc) {
  for (int l = 0; l < w->L; l++)
    if (rc[l])
      return fm_fail(w->em, w->el, FM_EFAIL,
                  "%s: cannot map iteration %" PRId64 " layer %d onto %d GPUs: %s",
                  w->cfg->trace_path, it, l, w->G, tr_strerror(rc[l]));
  return FM_OK;
}

/* Iteration it's counts into w->counts: from the draw ahead (which then
 * starts on it + 1), or drawn now on the run's threads, or nothing when
 * they come from the cache (simrun_policy); FM_OK or FM_EFAIL naming the
 * iteration and layer whose draw failed. */
static int simrun_draw(simrun *w, int64_t it) {
  if (w->cached)
    return FM_OK;
  if (!w->drawing) {
    w->dc.it = it;
    job_start(&w->now, draw_layer, &w->dc, w->L, w->now.cap);
    job_join(&w->now);
    return simrun_draw_fail(w, it, w->draw_rc);
  }
  job_join(&w->pf);
  int rc = simrun_draw_fail(w, it, w->ahead_rc);
  if (rc)
    return rc;
  int64_t *swap = w->counts;
  w->counts = w->ahead;
  w->ahead = swap;
  w->dc.counts = w->counts;
  w->pc.counts = w->ahead;
  if (it + 1 < w->r.b)
    simrun_ahead_start(w, it + 1);
  return FM_OK;
}

/* The buffer slot of iteration it's layer 0 (rt, plans, lin, snap). */
static size_t simrun_slot(const simrun *w, int64_t it) {
  return (size_t)((it - w->r.a) % w->nbuf) * (size_t)w->L;
}

/* Layer l's counts of iteration it in c: from the cache, else recorded
 * into w->fresh (dropped when a count does not fit it). */
static void simrun_cache(simrun *w, int64_t it, int l, int64_t *c) {
  size_t GE = (size_t)w->G * w->E, at = ((size_t)(it - w->r.a) * w->L + l) * GE;
  if (w->cached) {
    rescale_cache_get(&rescale_cache, at, GE, c);
    return;
  }
  if (w->fresh.counts && !rescale_cache_put(&w->fresh, at, GE, c)) {
    free(w->fresh.counts); /* does not fit the cache: draw every run */
    w->fresh.counts = NULL;
  }
}

/* The message of a policy failure at (it, l), FM_EFAIL. */
static int simrun_policy_fail(simrun *w, int64_t it, int l, int prc) {
  return fm_fail(w->em, w->el, FM_EFAIL,
              "policy '%s' failed at iteration %" PRId64 " layer %d: %s",
              pl_policy_spec(w->r.policy), it, l, pl_strerror(prc));
}

/* Layer l of iteration it through the policy, on the caller's thread: its
 * counts (cache), the plan, and the observation; FM_OK or FM_EFAIL. The
 * routing of the layer (route_layer) reads only the serving placement,
 * which the plan alone changes, so it may follow the observation. */
static int simrun_policy(simrun *w, int64_t it, int l) {
  pl_policy *pol = w->r.policy;
  int64_t *c = w->counts + (size_t)l * w->G * w->E;
  simrun_cache(w, it, l, c);
  int prc;
  if ((prc = pl_policy_plan(pol, (int)(it - w->r.a), l, c, &w->plans[simrun_slot(w, it) + l])) ||
      (prc = pl_policy_observe(pol, (int)(it - w->r.a), l, c)))
    return simrun_policy_fail(w, it, l, prc);
  return FM_OK;
}

/* Layer l of iteration w->route_it routed (with its temporaries), then,
 * on a run with helper threads and another iteration to come, the
 * policy's work ahead for the layer's next plan (pl_policy_ahead: on this
 * helper instead of the plans' thread). */
static void route_layer(void *arg, int l) {
  simrun *w = arg;
  const int64_t *c = w->counts + (size_t)l * w->G * w->E;
  pl_routing *r = &w->rt[w->route_slot + l];
  w->route_rc[l] = w->temps ? pl_policy_route_temporaries(w->r.policy, l, c,
                                                          &w->temps[w->route_slot + l], r)
                            : pl_policy_route_serving(w->r.policy, l, c, r);
  if (!w->route_rc[l] && w->now.sync && w->route_it + 1 < w->r.b)
    w->route_rc[l] = pl_policy_ahead(w->r.policy, (int)(w->route_it - w->r.a), l);
}

/* The first layer of iteration it whose routing failed, FM_EFAIL naming
 * it; FM_OK when none did. */
static int simrun_route_fail(simrun *w, int64_t it) {
  for (int l = 0; l < w->L; l++)
    if (w->route_rc[l])
      return simrun_policy_fail(w, it, l, w->route_rc[l]);
  return FM_OK;
}

/*
 * Every layer of iteration it through the policy (simrun_policy, in layer
 * order on this thread) and routed on its serving placement (route_layer),
 * on the run's threads; FM_OK or FM_EFAIL, a policy's failure first, then
 * the first layer whose routing failed. With helper threads the routing
 * streams: a layer is handed to them as soon as it and every layer below
 * it are planned and observed and the policy says its routing reads
 * nothing the later layers' plans write (pl_policy_route_ready), so the
 * routing of the first layers runs while the later ones plan; the others
 * after the last plan. Each layer's routing is the same function of the
 * same state either way: the same bytes for any number of threads.
 */
static int simrun_plan_route(simrun *w, int64_t it) {
  w->route_slot = simrun_slot(w, it);
  w->route_it = it;
  int rc = FM_OK, released = 0;
  if (!w->now.sync) {
    for (int l = 0; !rc && l < w->L; l++)
      rc = simrun_policy(w, it, l);
    if (rc)
      return rc;
    job_start(&w->now, route_layer, w, w->L, w->now.cap);
    job_join(&w->now);
    return simrun_route_fail(w, it);
  }
  job_stream(&w->now, route_layer, w, w->L, w->now.cap);
  for (int l = 0; !rc && l < w->L; l++) {
    rc = simrun_policy(w, it, l);
    if (!rc && released == l && pl_policy_route_ready(w->r.policy, l))
      job_release(&w->now, ++released, 0);
  }
  job_release(&w->now, rc ? released : w->L, rc != FM_OK);
  job_join(&w->now);
  return rc ? rc : simrun_route_fail(w, it);
}

/* The engine's copies (slot k) of layer l's serving placement and shadows
 * in `in` (pipe only), the placement copied again only when it changed
 * since that slot's copy: the plan changed it (changed) or the serving
 * view switched over (pl_policy_serving points elsewhere). 0, or -1 when
 * out of memory. */
static int simrun_snapshot(simrun *w, int l, size_t k, int changed, sim_layer_in *in) {
  const pl_placement *sv = in->placement;
  if (changed || sv != w->serving[l])
    w->ver[l]++;
  w->serving[l] = sv;
  pl_placement *sn = &w->snap[k];
  if (w->snap_ver[k] != w->ver[l]) {
    if (!sn->nrep && pl_placement_init(sn, sv->experts, sv->gpus, sv->slots))
      return -1;
    if (pl_placement_copy(sn, sv))
      return -1;
    w->snap_ver[k] = w->ver[l];
  }
  in->placement = sn;
  if (in->shadow_owner) {
    int *sh = w->shadow + k * (size_t)w->E;
    memcpy(sh, in->shadow_owner, (size_t)w->E * sizeof(int));
    in->shadow_owner = sh;
  }
  return 0;
}

/* The engine's view of slot k's temporaries (pl_policy.h's contract): the
 * placement they were routed on, the planned one for the all-reduce. */
static void simrun_layer_temps(simrun *w, size_t k, sim_layer_in *in) {
  const pl_temps *t = w->temps ? &w->temps[k] : NULL;
  int n = t ? t->n : 0;
  in->ntemps = n;
  in->decide_us = t ? t->host_us : 0; /* a decision that took none took its time too */
  in->temps = n ? t->temp : NULL;
  in->planned = n ? in->placement : NULL;
  if (n)
    in->placement = &t->placement;
}

/* Layer l of iteration it after routing: the engine's input w->lin[l], the
 * plan recorded when it moved experts, the layer's balance into
 * o->layer_bal and *worst_bal (raised to it), its tokens into row; FM_OK
 * or FM_EFAIL "out of memory". */
static int simrun_layer(simrun *w, int64_t it, int l, st_iter_row *row, double *worst_bal) {
  pl_policy *pol = w->r.policy;
  size_t k = simrun_slot(w, it) + (size_t)l;
  pl_plan *plan = &w->plans[k];
  pl_routing *rt = &w->rt[k];
  sim_layer_in *in = &w->lin[k];
  /* a background plan's replicas serve from the next iteration on */
  in->placement = pl_policy_serving(pol, l);
  in->shadow_owner = pl_policy_shadows(pol, l);
  if (w->pipe && simrun_snapshot(w, l, k, plan->changed, in))
    return simrun_nomem(w);
  in->routing = rt;
  simrun_layer_temps(w, k, in);
  /* the oracle re-plans for free: its moves are reported, not charged;
   * a shadowing policy's moves only create its shadows, which the
   * engine charges as a broadcast and a reduce every iteration */
  int moved = plan->changed && !w->shadowing;
  in->moves = moved ? plan->moves : NULL;
  in->nmoves = moved ? plan->nmoves : 0;
  in->uncharged = moved && plan->uncharged;
  in->background = plan->background;
  in->weights_first = moved && plan->weights_first; /* pl_policy.h rule 6 */
  if (moved && plan->nmoves && add_plan(w->o, it, l, plan, w->cfg->plan_moves))
    return simrun_nomem(w);
  double b = pl_routing_balance(rt);
  w->o->layer_bal[(size_t)(it - w->r.a) * w->L + l] = b;
  if (b > *worst_bal)
    *worst_bal = b;
  row->tokens_dropped += rt->dropped;
  row->tokens_total += rt->total;
  return FM_OK;
}

/* The message of engine error erc at iteration it into w->eng_msg (the
 * engine may fail while a helper plans the next iteration, whose messages
 * go to w->em); returns FM_EFAIL. */
static int simrun_engine_fail(simrun *w, int64_t it, int erc) {
  if (erc == SIM_ELIMIT)
    return fm_fail(w->eng_msg, sizeof(w->eng_msg), FM_EFAIL,
                "simulation stopped at iteration %" PRId64 ": the discrete-event network "
                "needs more than 2^24 flows or 2^31 flow rate updates in one iteration "
                "(--network exact grows with the fourth power of the GPUs); use --network "
                "hose or fewer GPUs",
                it);
  if (erc == SIM_ETIME || erc == SIM_ERANGE)
    return fm_fail(w->eng_msg, sizeof(w->eng_msg), FM_EFAIL,
                "simulation stopped at iteration %" PRId64 ": %s (the cluster and model "
                "numbers make it too long; see 'Limits' in docs/simulator.md)",
                it, erc == SIM_ETIME ? sim_strerror(erc) : "all-to-all bytes past 2^60");
  return fm_fail(w->eng_msg, sizeof(w->eng_msg), FM_EFAIL, "simulation failed at iteration %" PRId64 ": %s", it,
              sim_strerror(erc));
}

/* Iteration it through the engine (its layers in w->lin): the times of its
 * row and of each layer (ms), its bytes, and its worst layer balance into the
 * row and w->bal; FM_OK or FM_EFAIL with the message. */
static int simrun_time(simrun *w, int64_t it, st_iter_row *row, double worst_bal) {
  sim_iter_out io;
  double *lus = w->o->layer_ms + (size_t)(it - w->r.a) * w->L;
  int erc = sim_engine_iteration_layers(&w->eng, w->lin + simrun_slot(w, it), w->L, &io, lus);
  if (erc)
    return simrun_engine_fail(w, it, erc);
  for (int l = 0; l < w->L; l++)
    lus[l] *= 1e-3; /* us -> ms */
  row->time_ms = io.time_us * 1e-3;
  row->compute_ms = io.compute_us * 1e-3;
  row->alltoall_ms = io.alltoall_us * 1e-3;
  row->allreduce_ms = io.allreduce_us * 1e-3;
  row->migration_ms = io.migration_us * 1e-3;
  row->other_ms = io.other_us * 1e-3;
  row->balance = worst_bal;
  row->bytes_alltoall = io.bytes_alltoall;
  row->bytes_migrated = io.bytes_migrated;
  w->bal[it - w->r.a] = worst_bal;
  return FM_OK;
}

/* Iteration it up to the engine: its counts, each layer through the
 * policy, the layers' routings, the engine's input in its slot and its
 * worst layer balance in w->worst; FM_OK or FM_EFAIL with the message. */
static int simrun_prepare(simrun *w, int64_t it) {
  st_iter_row *row = &w->o->rows[it - w->r.a];
  row->iteration = it;
  double worst_bal = 0;
  int rc = simrun_draw(w, it);
  if (!rc)
    rc = simrun_plan_route(w, it);
  for (int l = 0; !rc && l < w->L; l++)
    rc = simrun_layer(w, it, l, row, &worst_bal);
  w->worst[(it - w->r.a) % 2] = worst_bal;
  return rc;
}

/* The engine's time of iteration it (prepared); its failure's message
 * into the caller's buffer. */
static int simrun_timed(simrun *w, int64_t it) {
  int rc = simrun_time(w, it, &w->o->rows[it - w->r.a], w->worst[(it - w->r.a) % 2]);
  if (rc)
    fm_fail(w->em, w->el, rc, "%s", w->eng_msg);
  return rc;
}

/* The configuration's progress callback, if any, after iteration it. */
static void simrun_progress(simrun *w, int64_t it) {
  if (w->cfg->progress)
    w->cfg->progress(w->cfg->progress_ctx, w->cfg->policy, it + 1 - w->r.a, w->r.b - w->r.a);
}

/* The next iteration prepared on a helper thread while the engine times
 * this one (w->pipe). */
typedef struct next_prep {
  simrun *w;
  int64_t it;
  int rc;
} next_prep;

static void *next_prep_run(void *arg) {
  next_prep *n = arg;
  n->rc = simrun_prepare(n->w, n->it);
  return NULL;
}

/*
 * Every iteration of [a, b): prepared, then timed by the engine; FM_OK or
 * FM_EFAIL with the first failure's message. With w->pipe, iteration it + 1
 * is prepared on a helper thread while the engine times it: the engine
 * reads only its own slot (routings, plans, engine input, copies of the
 * placements and shadows) and the helper writes only the other, and the
 * policy sees nothing of the engine's results, so the order of effects on
 * every output is the same as one iteration after the other. The first
 * failure in iteration order is the one reported.
 */
static int simrun_iterate(simrun *w) {
  int64_t a = w->r.a, b = w->r.b;
  if (!w->pipe) {
    for (int64_t it = a; it < b; it++) {
      int rc = simrun_prepare(w, it);
      if (rc || (rc = simrun_timed(w, it)))
        return rc;
      simrun_progress(w, it);
    }
    return FM_OK;
  }
  int rc = a < b ? simrun_prepare(w, a) : FM_OK;
  for (int64_t it = a; !rc && it < b; it++) {
    next_prep n = {.w = w, .it = it + 1, .rc = FM_OK};
    pthread_t th;
    int helper = it + 1 < b && pthread_create(&th, NULL, next_prep_run, &n) == 0;
    int trc = simrun_time(w, it, &w->o->rows[it - a], w->worst[(it - a) % 2]);
    if (helper)
      pthread_join(th, NULL);
    else if (it + 1 < b) /* no thread: one after the other */
      n.rc = trc ? FM_OK : simrun_prepare(w, it + 1);
    if (trc) /* this iteration failed first: its message replaces the next one's */
      return fm_fail(w->em, w->el, trc, "%s", w->eng_msg);
    simrun_progress(w, it);
    rc = n.rc;
  }
  return rc;
}

/* The output's summary (names, shape, means over the iterations, tokens,
 * effective time, balance percentiles; sorts w->bal) and each GPU's busy
 * and idle time. */
static void simrun_summarize(simrun *w) {
  fm_sim_output *o = w->o;
  fm_sim_summary *s = &o->sum;
  snprintf(s->policy, sizeof(s->policy), "%s", pl_policy_spec(w->r.policy));
  snprintf(s->cluster, sizeof(s->cluster), "%s", w->r.cl.name);
  s->gpus = w->G;
  s->slots_per_gpu = w->r.pc.slots;
  s->iterations = o->nrows;
  double n = (double)o->nrows;
  for (int64_t i = 0; i < o->nrows; i++) {
    const st_iter_row *row = &o->rows[i];
    s->mean_iteration_ms += row->time_ms / n;
    s->compute_ms += row->compute_ms / n;
    s->alltoall_ms += row->alltoall_ms / n;
    s->allreduce_ms += row->allreduce_ms / n;
    s->migration_ms += row->migration_ms / n;
    s->other_ms += row->other_ms / n;
    s->migrated_bytes += row->bytes_migrated;
    s->dropped_tokens += row->tokens_dropped;
    s->total_tokens += row->tokens_total;
  }
  s->effective_iteration_ms =
      st_effective_ms(s->mean_iteration_ms, s->dropped_tokens, s->total_tokens);
  qsort(w->bal, (size_t)o->nrows, sizeof(double), cmp_double);
  s->balance_p50 = fm_percentile(w->bal, o->nrows, 0.5);
  s->balance_p90 = fm_percentile(w->bal, o->nrows, 0.9);
  uint64_t scheduled, cancelled;
  sim_engine_events(&w->eng, &scheduled, &o->events, &cancelled);
  o->events += 2 * sim_engine_flows(&w->eng); /* a flow's start and its end */
  for (int g = 0; g < w->G; g++) {
    o->busy_ms[g] = w->eng.busy_us[g] * 1e-3;
    double idle = (w->eng.total_us - w->eng.busy_us[g]) * 1e-3;
    o->idle_ms[g] = idle > 0 ? idle : 0;
  }
}

/* What the store records beside the numbers: trace path, sidecar as JSON,
 * cluster, engine, parameters, key, the trace's identity and the finish
 * time; FM_OK or FM_EFAIL "out of memory". */
static int simrun_describe(simrun *w) {
  const tr_trace *t = &w->r.trace;
  fm_sim_output *o = w->o;
  char params[1024];
  params_text(&w->r, w->cfg, params, sizeof(params));
  json_t *m = json_pack("{s:i, s:i, s:i, s:i, s:I, s:s}", "top_k", t->meta.top_k, "d_model",
                        t->meta.d_model, "d_ff", t->meta.d_ff, "bytes_per_elem",
                        t->meta.bytes_per_elem, "tokens_per_rank",
                        (json_int_t)t->meta.tokens_per_rank, "source", t->meta.source);
  char *meta = m ? json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(m);
  o->trace_path = dupstr(w->cfg->trace_path);
  o->trace_meta = dupstr(meta ? meta : "{}");
  free(meta);
  o->cluster_json = dupstr(w->r.cluster_json);
  o->engine = dupstr(w->r.engine == SIM_ENGINE_DES ? "des" : "analytic");
  o->params_json = dupstr(params);
  o->config_key = dupstr(w->key);
  o->trace_hash = t->hash;
  o->t_iters = t->iterations;
  o->t_layers = t->layers;
  o->t_ranks = t->ranks;
  o->t_experts = t->experts;
  o->finished = now_s();
  if (!o->trace_path || !o->trace_meta || !o->cluster_json || !o->engine || !o->params_json ||
      !o->config_key)
    return simrun_nomem(w);
  return FM_OK;
}

/* Releases what simrun holds except the output: the thread first, the
 * trace and policy (resolved_fini) last. */
static void simrun_fini(simrun *w) {
  job_join(&w->pf);
  free(w->ahead);
  free(w->draw_rc);
  free(w->ahead_rc);
  free(w->route_rc);
  for (int k = 0; w->snap && k < w->nbuf * w->L; k++)
    pl_placement_fini(&w->snap[k]);
  free(w->snap);
  free(w->shadow);
  free(w->ver);
  free(w->snap_ver);
  free(w->serving);
  free(w->now.th);
  free(w->pf.th);
  if (w->now.sync) {
    pthread_mutex_destroy(&w->now.mu);
    pthread_cond_destroy(&w->now.cv);
  }
  if (w->eng_ok)
    sim_engine_fini(&w->eng);
  for (int l = 0; w->rt && l < w->nbuf * w->L; l++)
    pl_routing_fini(&w->rt[l]);
  for (int l = 0; w->plans && l < w->nbuf * w->L; l++)
    pl_plan_fini(&w->plans[l]);
  for (int l = 0; w->temps && l < w->nbuf * w->L; l++)
    pl_temps_fini(&w->temps[l]);
  free(w->temps);
  free(w->rt);
  free(w->plans);
  free(w->lin);
  free(w->counts);
  free(w->fresh.counts);
  free(w->bal);
  resolved_fini(&w->r);
}

int fm_sim_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > FM_SIM_MAX_THREADS ? FM_SIM_MAX_THREADS : (int)n;
}

int fm_sim_compute(const fm_sim_config *cfg, fm_sim_output **out, char *errmsg,
                    size_t errlen) {
  simrun rw = {.cfg = cfg, .em = errmsg, .el = errlen}, *w = &rw; /* pf stays in place */
  int rc = resolve(cfg, &w->r, errmsg, errlen);
  if (rc)
    return rc;
  /* the key of this very resolution (the policy is fresh), instead of a
   * second resolve that opens and checks the trace again */
  if (key_of(&w->r, cfg, w->key, sizeof(w->key))) {
    resolved_fini(&w->r);
    return fm_fail(errmsg, errlen, FM_EFAIL, "config key buffer too small");
  }
  w->G = w->r.pc.gpus;
  w->E = w->r.trace.experts;
  w->L = w->r.trace.layers;
  w->threads = cfg->threads ? cfg->threads : cfg->prefetch ? 2 : 1;
  /* the engine beside the next iteration's policy: several iterations */
  w->pipe = w->threads > 1 && w->r.b - w->r.a > 1;
  w->nbuf = w->pipe ? 2 : 1;
  if (cfg->threads && (rc = fm_key_check(FM_KEY_THREADS, cfg->key_names, cfg->threads, errmsg,
                                         errlen))) {
    resolved_fini(&w->r);
    return rc;
  }
  if (!(rc = simrun_alloc(w)) && !(rc = simrun_engine(w))) {
    simrun_source(w);
    if (!(rc = simrun_iterate(w))) {
      simrun_summarize(w);
      rc = simrun_describe(w);
    }
  }
  if (!rc && w->fresh.counts) { /* complete: replaces the previous entry */
    free(rescale_cache.counts);
    rescale_cache = w->fresh;
    w->fresh.counts = NULL;
  }
  simrun_fini(w);
  if (rc) {
    fm_sim_output_free(w->o);
    return rc;
  }
  *out = w->o;
  return FM_OK;
}

const fm_sim_summary *fm_sim_summary_of(const fm_sim_output *o) { return &o->sum; }

uint64_t fm_sim_events(const fm_sim_output *o) { return o->events; }

int64_t fm_sim_iteration_rows(const fm_sim_output *o, const st_iter_row **rows) {
  *rows = o->rows;
  return o->nrows;
}

const char *fm_sim_params_json(const fm_sim_output *o) { return o->params_json; }

void fm_sim_output_free(fm_sim_output *o) {
  if (!o)
    return;
  free(o->trace_path);
  free(o->trace_meta);
  free(o->cluster_json);
  free(o->engine);
  free(o->params_json);
  free(o->config_key);
  free(o->rows);
  free(o->busy_ms);
  free(o->idle_ms);
  free(o->layer_bal);
  free(o->layer_ms);
  for (int i = 0; i < o->nplans; i++)
    free(o->plans[i].moves_json);
  free(o->plans);
  free(o);
}

int fm_sim_record(st_db *db, const fm_sim_output *o, int64_t *run_id, char *errmsg,
                   size_t errlen) {
  if (!db || !o)
    return fm_fail(errmsg, errlen, FM_EFAIL, "no database");
  st_trace_row tr = {.path = o->trace_path, .hash = o->trace_hash, .iterations = o->t_iters,
                     .layers = o->t_layers, .ranks = o->t_ranks, .experts = o->t_experts,
                     .meta_json = o->trace_meta};
  st_run_row rr;
  memset(&rr, 0, sizeof(rr));
  rr.kind = "sim";
  rr.policy = o->sum.policy;
  rr.cluster = o->sum.cluster;
  rr.cluster_json = o->cluster_json;
  rr.engine = o->engine;
  rr.params_json = o->params_json;
  rr.gpus = o->gpus;
  rr.seed = o->seed;
  rr.rng = "mt19937";
  rr.code_version = FLEXMOE_VERSION;
  rr.started = o->started;
  rr.finished = o->finished;
  rr.status = "complete";
  rr.config_key = o->config_key;
  st_run *run = NULL;
  int rc = st_run_begin(db, &tr, &rr, &run);
  for (int64_t i = 0; !rc && i < o->nrows; i++)
    rc = st_run_iteration(run, &o->rows[i]);
  for (int g = 0; !rc && g < o->gpus; g++)
    rc = st_run_gpu(run, g, o->busy_ms[g], o->idle_ms[g]);
  for (int64_t i = 0; !rc && i < o->nrows; i++)
    for (int l = 0; !rc && l < o->layers; l++)
      rc = st_run_layer(run, o->rows[i].iteration, l, o->layer_bal[(size_t)i * o->layers + l],
                        o->layer_ms[(size_t)i * o->layers + l]);
  for (int i = 0; !rc && i < o->nplans; i++)
    rc = st_run_plan(run, o->plans[i].iteration, o->plans[i].layer, o->plans[i].nmoves,
                     o->plans[i].bytes,
                     o->plans[i].moves_json && *o->plans[i].moves_json ? o->plans[i].moves_json
                                                                        : NULL);
  if (!rc)
    rc = st_run_commit(run, run_id);
  else
    st_run_abort(run);
  if (rc)
    return fm_fail(errmsg, errlen, FM_EFAIL, "cannot record the run: %s (%s)", st_strerror(rc),
                st_errmsg(db));
  return FM_OK;
}

/* ------------------------------------------------------------- packing --- */

#define PACK_MAGIC 0x464d5331u /* "FMS1" */

typedef struct wbuf {
  unsigned char *p;
  size_t len, cap;
  int bad;
} wbuf;

static void put(wbuf *w, const void *src, size_t n) {
  if (w->bad)
    return;
  if (w->len + n > w->cap) {
    size_t nc = w->cap ? w->cap : 4096;
    while (nc < w->len + n)
      nc *= 2;
    unsigned char *np = realloc(w->p, nc);
    if (!np) {
      w->bad = 1;
      return;
    }
    w->p = np;
    w->cap = nc;
  }
  memcpy(w->p + w->len, src, n);
  w->len += n;
}

static void put_str(wbuf *w, const char *s) {
  uint32_t n = (uint32_t)(s ? strlen(s) : 0);
  put(w, &n, sizeof(n));
  put(w, s ? s : "", n);
}

int fm_sim_pack(const fm_sim_output *o, void **buf, size_t *len) {
  wbuf w = {0};
  uint32_t magic = PACK_MAGIC;
  put(&w, &magic, sizeof(magic));
  put(&w, &o->sum, sizeof(o->sum));
  put_str(&w, o->trace_path);
  put_str(&w, o->trace_meta);
  put_str(&w, o->cluster_json);
  put_str(&w, o->engine);
  put_str(&w, o->params_json);
  put_str(&w, o->config_key);
  put(&w, &o->trace_hash, sizeof(o->trace_hash));
  put(&w, &o->seed, sizeof(o->seed));
  put(&w, &o->t_iters, sizeof(o->t_iters));
  put(&w, &o->t_layers, sizeof(int) * 3);
  put(&w, &o->gpus, sizeof(o->gpus));
  put(&w, &o->started, sizeof(double) * 2);
  put(&w, &o->nrows, sizeof(o->nrows));
  put(&w, o->rows, sizeof(st_iter_row) * (size_t)o->nrows);
  put(&w, o->busy_ms, sizeof(double) * (size_t)o->gpus);
  put(&w, o->idle_ms, sizeof(double) * (size_t)o->gpus);
  put(&w, &o->layers, sizeof(o->layers));
  put(&w, o->layer_bal, sizeof(double) * (size_t)o->nrows * (size_t)o->layers);
  put(&w, o->layer_ms, sizeof(double) * (size_t)o->nrows * (size_t)o->layers);
  put(&w, &o->nplans, sizeof(o->nplans));
  for (int i = 0; i < o->nplans; i++) {
    put(&w, &o->plans[i].iteration, sizeof(int64_t));
    put(&w, &o->plans[i].layer, sizeof(int));
    put(&w, &o->plans[i].nmoves, sizeof(int));
    put(&w, &o->plans[i].bytes, sizeof(int64_t));
    put_str(&w, o->plans[i].moves_json);
  }
  if (w.bad) {
    free(w.p);
    return FM_EFAIL;
  }
  *buf = w.p;
  *len = w.len;
  return FM_OK;
}

typedef struct rbuf {
  const unsigned char *p;
  size_t len, off;
  int bad;
} rbuf;

static void get(rbuf *r, void *dst, size_t n) {
  if (r->bad || r->len - r->off < n) {
    r->bad = 1;
    return;
  }
  memcpy(dst, r->p + r->off, n);
  r->off += n;
}

static char *get_str(rbuf *r) {
  uint32_t n = 0;
  get(r, &n, sizeof(n));
  if (r->bad || r->len - r->off < n) {
    r->bad = 1;
    return NULL;
  }
  char *s = malloc((size_t)n + 1);
  if (!s) {
    r->bad = 1;
    return NULL;
  }
  memcpy(s, r->p + r->off, n);
  s[n] = '\0';
  r->off += n;
  return s;
}

/* The rows and per-GPU times of a packed output into o (counts checked
 * against what is left of the buffer first); sets r->bad on failure. */
static void unpack_rows(rbuf *r, fm_sim_output *o) {
  get(r, &o->nrows, sizeof(o->nrows));
  if (!r->bad && (o->nrows < 0 || o->gpus < 0 || o->gpus > SIM_MAX_GPUS ||
                  (size_t)o->nrows > (r->len - r->off) / sizeof(st_iter_row)))
    r->bad = 1;
  if (!r->bad) {
    o->rows = calloc((size_t)o->nrows + 1, sizeof(st_iter_row));
    o->busy_ms = calloc((size_t)o->gpus + 1, sizeof(double));
    o->idle_ms = calloc((size_t)o->gpus + 1, sizeof(double));
    if (!o->rows || !o->busy_ms || !o->idle_ms)
      r->bad = 1;
  }
  if (!r->bad) {
    get(r, o->rows, sizeof(st_iter_row) * (size_t)o->nrows);
    get(r, o->busy_ms, sizeof(double) * (size_t)o->gpus);
    get(r, o->idle_ms, sizeof(double) * (size_t)o->gpus);
  }
}

/* The per-layer balance and times ([nrows * layers] each); sets r->bad. */
static void unpack_layers(rbuf *r, fm_sim_output *o) {
  get(r, &o->layers, sizeof(o->layers));
  if (!r->bad && (o->layers < 0 || (o->layers && (size_t)o->nrows * (size_t)o->layers >
                                                      (r->len - r->off) / sizeof(double))))
    r->bad = 1;
  if (!r->bad) {
    size_t nl = (size_t)o->nrows * (size_t)o->layers + 1;
    o->layer_bal = calloc(nl, sizeof(double));
    o->layer_ms = calloc(nl, sizeof(double));
    if (!o->layer_bal || !o->layer_ms)
      r->bad = 1;
  }
  if (!r->bad) {
    get(r, o->layer_bal, sizeof(double) * (size_t)o->nrows * (size_t)o->layers);
    get(r, o->layer_ms, sizeof(double) * (size_t)o->nrows * (size_t)o->layers);
  }
}

/* The plans (o->nplans counts those read, so a failure frees them all);
 * sets r->bad. */
static void unpack_plans(rbuf *r, fm_sim_output *o) {
  int np = 0;
  get(r, &np, sizeof(np));
  if (!r->bad && (np < 0 || (size_t)np > r->len - r->off))
    r->bad = 1;
  if (!r->bad && np) {
    o->plans = calloc((size_t)np, sizeof(plan_rec));
    if (!o->plans)
      r->bad = 1;
    else
      o->capplans = np;
  }
  for (int i = 0; !r->bad && i < np; i++) {
    plan_rec *p = &o->plans[i];
    get(r, &p->iteration, sizeof(int64_t));
    get(r, &p->layer, sizeof(int));
    get(r, &p->nmoves, sizeof(int));
    get(r, &p->bytes, sizeof(int64_t));
    p->moves_json = get_str(r);
    o->nplans = i + 1;
  }
}

int fm_sim_unpack(const void *buf, size_t len, fm_sim_output **out) {
  rbuf r = {.p = buf, .len = len, .off = 0, .bad = 0};
  fm_sim_output *o = calloc(1, sizeof(*o));
  if (!o)
    return FM_EFAIL;
  uint32_t magic = 0;
  get(&r, &magic, sizeof(magic));
  if (magic != PACK_MAGIC)
    r.bad = 1;
  get(&r, &o->sum, sizeof(o->sum));
  o->trace_path = get_str(&r);
  o->trace_meta = get_str(&r);
  o->cluster_json = get_str(&r);
  o->engine = get_str(&r);
  o->params_json = get_str(&r);
  o->config_key = get_str(&r);
  get(&r, &o->trace_hash, sizeof(o->trace_hash));
  get(&r, &o->seed, sizeof(o->seed));
  get(&r, &o->t_iters, sizeof(o->t_iters));
  get(&r, &o->t_layers, sizeof(int) * 3);
  get(&r, &o->gpus, sizeof(o->gpus));
  get(&r, &o->started, sizeof(double) * 2);
  unpack_rows(&r, o);
  unpack_layers(&r, o);
  unpack_plans(&r, o);
  if (r.bad || r.off != r.len) {
    fm_sim_output_free(o);
    return FM_EFAIL;
  }
  *out = o;
  return FM_OK;
}
