/*
 * fm_place.c - a policy's placement plan for a trace (run/fm_place.h).
 *
 * One run is a sequence of steps over one state (place_run): open the
 * trace, resolve the model, the cluster and profile, the slots, create the
 * policy, then replay iterations 0..I through plan, route and observe,
 * copying the layers shown at I into the result. Each step fills one
 * sentence on failure; the sentences are the ones `flexmoe place` has always
 * printed after "flexmoe place: " (tests/placement/test_cli.c,
 * tests/run/golden.py). Nothing here prints.
 */
#include "run/fm_place.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_memory.h"
#include "run/fm_error.h"
#include "run/fm_json.h"
#include "sim/sim_cluster.h"
#include "sim/sim_profile.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

/* One run's state: the trace, what was resolved from it and the
 * configuration, the policy, one (iteration, layer) of rescaled counts and
 * its routing. Zero (with plan initialized) is "nothing to release". */
typedef struct place_run {
  const fm_place_config *cfg;
  char *em;
  size_t el;
  tr_trace t;
  pl_model model;
  int64_t tokens, slots_per_gpu; /* tokens per GPU; rescale target (0 = trace's) */
  sim_cluster cl;
  sim_profile prof;
  sim_pl_profile plp; /* the policy's env.profile points into it: it outlives the policy */
  pl_policy *pol;
  int64_t *counts; /* [G * E] one (iteration, layer) rescaled */
  pl_routing r;
  pl_plan plan;
} place_run;

static int fail(place_run *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(place_run *w, int code, const char *fmt, ...) {
  if (w->em && w->el) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->em, w->el, fmt, ap);
    va_end(ap);
  }
  return code;
}

const char *fm_place_move_kind(pl_move_kind k) {
  return k == PL_MOVE_REPLICATE ? "replicate" : k == PL_MOVE_DROP ? "drop" : "migrate";
}

/* Opens the trace; FM_OK or FM_EFAIL naming the file (and line). */
static int place_open(place_run *w) {
  const char *path = w->cfg->trace;
  tr_error terr;
  if (tr_open(&w->t, path, &terr) == 0)
    return FM_OK;
  const char *msg = terr.msg[0] ? terr.msg : tr_strerror(terr.code);
  if (strstr(msg, path))
    return fail(w, FM_EFAIL, "%s", msg);
  if (terr.line > 0)
    return fail(w, FM_EFAIL, "%s:%ld: %s", path, terr.line, msg);
  return fail(w, FM_EFAIL, "%s: %s", path, msg);
}

/* The iteration (default the last) and the layers shown checked against the
 * trace into out; FM_OK or FM_EUSAGE. */
static int place_range(place_run *w, fm_place_result *out) {
  const fm_place_config *c = w->cfg;
  const tr_trace *t = &w->t;
  out->iteration = c->iteration < 0 ? t->iterations - 1 : c->iteration;
  if (out->iteration >= t->iterations)
    return fail(w, FM_EUSAGE, "--iteration %" PRId64 ": %s has iterations 0..%" PRId64,
                out->iteration, c->trace, t->iterations - 1);
  if (c->layer >= t->layers)
    return fail(w, FM_EUSAGE, "--layer %d: %s has layers 0..%d", c->layer, c->trace,
                t->layers - 1);
  out->layer0 = c->layer >= 0 ? c->layer : 0;
  out->nlayers = c->layer >= 0 ? 1 : t->layers;
  return FM_OK;
}

/* The model shape and the tokens per GPU from the configuration or the
 * trace's sidecar; FM_OK, or FM_EFAIL when the sidecar lacks a shape. */
static int place_model(place_run *w) {
  const fm_place_config *c = w->cfg;
  const tr_trace *t = &w->t;
  w->model = (pl_model){.d_model = c->d_model ? c->d_model : t->meta.d_model,
                        .d_ff = c->d_ff ? c->d_ff : t->meta.d_ff,
                        .top_k = c->top_k ? c->top_k : t->meta.top_k,
                        .bytes_per_elem = t->meta.bytes_per_elem > 0 ? t->meta.bytes_per_elem : 2,
                        .optimizer_bytes_per_param = 12.0};
  const pl_model *m = &w->model;
  if (m->d_model < 1 || m->d_ff < 1 || m->top_k < 1)
    return fail(w, FM_EFAIL,
                "%s: the trace's sidecar does not give %s; pass it on the command line",
                c->trace, m->d_model < 1 ? "d_model (--d-model)"
                          : m->d_ff < 1  ? "d_ff (--d-ff)" : "top_k (--top-k)");
  w->tokens = c->tokens_per_gpu ? c->tokens_per_gpu : t->meta.tokens_per_rank;
  w->slots_per_gpu = c->tokens_per_gpu ? c->tokens_per_gpu * m->top_k : 0;
  if (w->tokens <= 0) {
    int64_t s = 0;
    for (int e = 0; e < t->experts; e++)
      s += tr_at(t, 0, 0, 0, e);
    w->tokens = s / m->top_k;
  }
  return FM_OK;
}

/* The cluster resized to G GPUs in nodes of gpus_per_node, and its GPU's
 * compute profile for the model shape; FM_OK, FM_EUSAGE when G does not
 * split into nodes, FM_EFAIL for an unknown cluster or a missing profile. */
static int place_cluster(place_run *w, fm_place_result *out) {
  const fm_place_config *c = w->cfg;
  sim_errbuf serr;
  int G = c->gpus;
  if (sim_cluster_resolve(c->cluster, &w->cl, &serr))
    return fail(w, FM_EFAIL, "%s", serr.msg);
  int gpn = c->gpus_per_node ? c->gpus_per_node
                             : (w->cl.gpus_per_node < G ? w->cl.gpus_per_node : G);
  out->gpus_per_node = gpn;
  if (G % gpn)
    return fail(w, FM_EUSAGE,
                "--gpus %d cannot be split into nodes of %d GPUs (--gpus-per-node)", G, gpn);
  if (sim_cluster_resize(&w->cl, G / gpn, gpn, &serr))
    return fail(w, FM_EFAIL, "%s", serr.msg);
  if (sim_profile_builtin(w->cl.profile, &w->prof, &serr) ||
      sim_profile_for_shape(&w->prof, w->model.d_model, w->model.d_ff, w->tokens,
                            w->cl.compute_scale, &w->plp))
    return fail(w, FM_EFAIL, "no compute profile for GPU '%s' and d_model %d, d_ff %d",
                w->cl.profile, w->model.d_model, w->model.d_ff);
  return FM_OK;
}

/* Slots per GPU: the configuration's, or from HBM with half reserved; at
 * most E, and enough for every expert once; FM_OK or FM_EFAIL. */
static int place_slots(place_run *w, fm_place_result *out) {
  int E = w->t.experts, G = w->cfg->gpus;
  int slots = w->cfg->slots;
  if (!slots) {
    double hbm = w->cl.hbm_gib * 1073741824.0;
    if (pl_slots_from_memory(&w->model, hbm, hbm * 0.5, E, G, &slots))
      return fail(w, FM_EFAIL,
                  "fewer expert slots than experts: %d experts of %.1f MiB (with optimizer "
                  "state) do not fit on %d GPUs of %.0f GiB (half reserved); use more GPUs or "
                  "--slots",
                  E, (double)pl_expert_move_bytes(&w->model) / 1048576.0, G, w->cl.hbm_gib);
  }
  if (slots > E)
    slots = E;
  out->slots = slots;
  if ((int64_t)slots * G < E)
    return fail(w, FM_EFAIL, "fewer expert slots than experts: %d GPUs x %d slots < %d experts",
                G, slots, E);
  return FM_OK;
}

/* The policy created on the resolved environment, its canonical spec, and
 * the layers shown, counts and routing allocated; FM_OK, FM_EUSAGE for an
 * unknown policy or parameter, FM_EFAIL otherwise. */
static int place_policy(place_run *w, fm_place_result *out) {
  int E = w->t.experts, G = w->cfg->gpus;
  pl_env env = PL_ENV_INIT;
  env.layers = w->t.layers;
  env.experts = E;
  sim_cluster_to_pl(&w->cl, out->slots, &env.cluster);
  env.model = w->model;
  env.profile = w->plp.pl;
  env.seed = w->cfg->seed;
  char perr[512] = "";
  int prc = pl_policy_create(&w->pol, w->cfg->policy, &env, perr, sizeof(perr));
  if (prc)
    return fail(w, (prc == PL_EPOLICY || prc == PL_EPARAM) ? FM_EUSAGE : FM_EFAIL,
                "--policy: %s", perr[0] ? perr : pl_strerror(prc));
  out->policy = strdup(pl_policy_spec(w->pol));
  out->layers = calloc((size_t)out->nlayers, sizeof(fm_place_layer));
  w->counts = malloc(sizeof(int64_t) * (size_t)G * E);
  if (!out->policy || !out->layers || !w->counts || pl_routing_init(&w->r, G, E, 0))
    return fail(w, FM_EFAIL, "out of memory");
  return FM_OK;
}

/* Layer l's placement, loads, balance and plan moves (of the iteration
 * shown) copied into lo; FM_OK or FM_EFAIL (out of memory). */
static int place_capture(place_run *w, int l, fm_place_layer *lo) {
  int E = w->t.experts, G = w->cfg->gpus;
  const pl_plan *plan = &w->plan;
  const pl_placement *p = pl_policy_placement(w->pol, l);
  lo->gpu_load = malloc(sizeof(int64_t) * (size_t)G);
  lo->moves = malloc(sizeof(pl_move) * (size_t)(plan->changed && plan->nmoves ? plan->nmoves : 1));
  if (!lo->gpu_load || !lo->moves || pl_placement_init(&lo->placement, E, G, p->slots) ||
      pl_placement_copy(&lo->placement, p))
    return fail(w, FM_EFAIL, "out of memory");
  memcpy(lo->gpu_load, w->r.gpu_load, sizeof(int64_t) * (size_t)G);
  lo->balance = pl_routing_balance(&w->r);
  lo->dropped = w->r.dropped;
  lo->nmoves = plan->changed ? plan->nmoves : 0;
  lo->background = plan->changed && plan->background;
  if (lo->nmoves)
    memcpy(lo->moves, plan->moves, sizeof(pl_move) * (size_t)lo->nmoves);
  return FM_OK;
}

/* One (iteration, layer): rescale, plan, route, observe; FM_OK or FM_EFAIL
 * naming the step. */
static int place_step(place_run *w, int64_t it, int l) {
  const fm_place_config *c = w->cfg;
  int G = c->gpus, prc;
  int trc = tr_rescale_slice(&w->t, it, l, G, w->slots_per_gpu, c->seed, w->counts);
  if (trc)
    return fail(w, FM_EFAIL, "%s: cannot map iteration %" PRId64 " onto %d GPUs: %s", c->trace,
                it, G, tr_strerror(trc));
  if ((prc = pl_policy_plan(w->pol, (int)it, l, w->counts, &w->plan)) != 0)
    return fail(w, FM_EFAIL, "policy %s failed at iteration %" PRId64 ", layer %d: %s",
                c->policy, it, l, pl_strerror(prc));
  if ((prc = pl_policy_route(w->pol, l, w->counts, &w->r)) != 0 ||
      (prc = pl_policy_observe(w->pol, (int)it, l, w->counts)) != 0)
    return fail(w, FM_EFAIL, "routing iteration %" PRId64 ", layer %d: %s", it, l,
                pl_strerror(prc));
  return FM_OK;
}

/* The temporaries of the layers shown at the iteration shown, decided as
 * the simulator does once every layer of it is planned (run/fm_sim.c), on
 * the layer's counts drawn again (the same draw); FM_OK or FM_EFAIL. */
static int place_temporaries(place_run *w, fm_place_result *out) {
  const fm_place_config *c = w->cfg;
  int E = w->t.experts, G = c->gpus, rc = FM_OK;
  pl_temps t = {0};
  if (pl_temps_init(&t, E, G, pl_policy_placement(w->pol, 0)->slots))
    return fail(w, FM_EFAIL, "out of memory");
  for (int i = 0; i < out->nlayers && !rc; i++) {
    int l = out->layer0 + i, trc, prc;
    fm_place_layer *lo = &out->layers[i];
    if ((trc = tr_rescale_slice(&w->t, out->iteration, l, G, w->slots_per_gpu, c->seed,
                                w->counts)))
      rc = fail(w, FM_EFAIL, "%s: cannot map iteration %" PRId64 " onto %d GPUs: %s", c->trace,
                out->iteration, G, tr_strerror(trc));
    else if ((prc = pl_policy_temporaries(w->pol, l, w->counts, &t)))
      rc = fail(w, FM_EFAIL, "temporaries of iteration %" PRId64 ", layer %d: %s", out->iteration,
                l, pl_strerror(prc));
    else if (!(lo->temps = malloc(sizeof(pl_temp) * (size_t)(t.n ? t.n : 1))))
      rc = fail(w, FM_EFAIL, "out of memory");
    else {
      lo->ntemps = t.n;
      if (t.n)
        memcpy(lo->temps, t.temp, sizeof(pl_temp) * (size_t)t.n);
    }
  }
  pl_temps_fini(&t);
  return rc;
}

/* Every layer of iterations 0..out->iteration, the layers shown captured at
 * the last (and their temporaries when asked for); FM_OK or FM_EFAIL. */
static int place_replay(place_run *w, fm_place_result *out) {
  int rc, l1 = out->layer0 + out->nlayers;
  for (int64_t it = 0; it <= out->iteration; it++)
    for (int l = 0; l < w->t.layers; l++) {
      if ((rc = place_step(w, it, l)))
        return rc;
      if (it == out->iteration && l >= out->layer0 && l < l1 &&
          (rc = place_capture(w, l, &out->layers[l - out->layer0])))
        return rc;
    }
  out->temporaries = w->cfg->temporaries;
  return out->temporaries ? place_temporaries(w, out) : FM_OK;
}

/* Releases what the run state holds, the trace last. */
static void place_fini(place_run *w) {
  free(w->counts);
  pl_routing_fini(&w->r);
  pl_plan_fini(&w->plan);
  pl_policy_destroy(w->pol);
  tr_close(&w->t);
}

int fm_place_run(const fm_place_config *cfg, fm_place_result *out, char *em, size_t el) {
  *out = (fm_place_result){.policy = NULL, .trace = cfg->trace, .gpus = cfg->gpus};
  place_run w = {.cfg = cfg, .em = em, .el = el, .pol = NULL, .r = {0}};
  int rc = place_open(&w);
  if (rc)
    return rc;
  pl_plan_init(&w.plan);
  if (!(rc = place_range(&w, out)) && !(rc = place_model(&w)) &&
      !(rc = place_cluster(&w, out)) && !(rc = place_slots(&w, out)) &&
      !(rc = place_policy(&w, out)))
    rc = place_replay(&w, out);
  place_fini(&w);
  return rc;
}

void fm_place_result_fini(fm_place_result *r) {
  if (!r)
    return;
  if (r->layers)
    for (int i = 0; i < r->nlayers; i++) {
      pl_placement_fini(&r->layers[i].placement);
      free(r->layers[i].gpu_load);
      free(r->layers[i].moves);
      free(r->layers[i].temps);
    }
  free(r->layers);
  free(r->policy);
  r->layers = NULL;
  r->policy = NULL;
}

/* Adds the layer's temporaries to its document (released on failure). */
static json_t *temps_doc(const fm_place_layer *lo, json_t *doc) {
  json_t *temps = json_array();
  int bad = !temps;
  for (int k = 0; k < lo->ntemps && !bad; k++)
    bad |= json_array_append_new(temps, json_pack("{s:i,s:i,s:i}", "expert", lo->temps[k].expert,
                                                  "from", lo->temps[k].from, "to",
                                                  lo->temps[k].to));
  if (bad) {
    json_decref(temps);
    json_decref(doc);
    return NULL;
  }
  if (json_object_set_new(doc, "temporaries", temps)) {
    json_decref(doc);
    return NULL;
  }
  return doc;
}

/* One layer's JSON: its experts' GPUs, GPU loads, balance, drops and moves;
 * NULL when out of memory. */
static json_t *layer_doc(const fm_place_result *r, int i) {
  const fm_place_layer *lo = &r->layers[i];
  const pl_placement *p = &lo->placement;
  json_t *experts = json_array(), *load = json_array(), *moves = json_array();
  int bad = !experts || !load || !moves;
  for (int e = 0; e < p->experts && !bad; e++) {
    json_t *gpus = json_array();
    for (int k = 0; gpus && k < p->nrep[e]; k++)
      bad |= json_array_append_new(gpus, json_integer(p->rep[(size_t)e * p->gpus + k]));
    bad |= json_array_append_new(experts, json_pack("{s:i,s:o}", "expert", e, "gpus", gpus));
  }
  for (int g = 0; g < r->gpus && !bad; g++)
    bad |= json_array_append_new(load, json_integer(lo->gpu_load[g]));
  for (int k = 0; k < lo->nmoves && !bad; k++) {
    const pl_move *m = &lo->moves[k];
    bad |= json_array_append_new(
        moves, json_pack("{s:i,s:i,s:i,s:s,s:I}", "expert", m->expert, "from", m->from, "to",
                         m->to, "kind", fm_place_move_kind(m->kind), "bytes",
                         (json_int_t)m->bytes));
  }
  if (bad) {
    json_decref(experts);
    json_decref(load);
    json_decref(moves);
    return NULL;
  }
  /* NAN (a layer without load) is null: JSON has no NaN */
  json_t *doc = json_pack("{s:i,s:o,s:o,s:o,s:I,s:b,s:o}", "layer", r->layer0 + i, "experts",
                          experts, "gpu_load", load, "balance", fm_json_number(lo->balance),
                          "dropped", (json_int_t)lo->dropped, "background", lo->background,
                          "moves", moves);
  return doc && r->temporaries ? temps_doc(lo, doc) : doc;
}

json_t *fm_place_doc(const fm_place_result *r) {
  json_t *layers = json_array();
  for (int i = 0; layers && i < r->nlayers; i++)
    if (json_array_append_new(layers, layer_doc(r, i))) {
      json_decref(layers);
      layers = NULL;
    }
  return json_pack("{s:o,s:o,s:I,s:i,s:i,s:i,s:o}", "policy", fm_json_string(r->policy),
                   "trace", fm_json_string(r->trace), "iteration", (json_int_t)r->iteration,
                   "gpus", r->gpus, "gpus_per_node", r->gpus_per_node, "slots_per_gpu",
                   r->slots, "layers", layers);
}
