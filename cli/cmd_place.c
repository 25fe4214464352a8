/*
 * cmd_place.c - flexmoe place: a policy's placement plan for a trace.
 *
 * Drives the policy through the plan protocol (pl_policy.h) on the trace's
 * counts, rescaled to --gpus GPUs as `sim` does (tr_rescale_slice, --seed),
 * from iteration 0 up to --iteration I (default: the trace's last), and
 * prints the placement it uses for iteration I: per layer, each expert's
 * GPUs, each GPU's load after routing iteration I's counts, the balance
 * (max/mean GPU load) and the moves the plan for iteration I made. The
 * model, cluster, profile and slots are resolved as for `sim` (cluster
 * preset dgx-h100 with --gpus-per-node GPUs per node, built-in profile of
 * its GPU, slots from HBM with half reserved unless --slots).
 *
 * JSON (one document): {"policy", "trace", "iteration", "gpus",
 * "gpus_per_node", "slots_per_gpu", "layers": [{"layer", "experts":
 * [{"expert", "gpus": [..]}], "gpu_load": [..], "balance", "dropped",
 * "background", "moves": [{"expert", "from", "to", "kind", "bytes"}]}]}.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_config.h"
#include "placement/pl_error.h"
#include "placement/pl_memory.h"
#include "placement/pl_policy.h"
#include "sim/sim_cluster.h"
#include "sim/sim_profile.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

#define CMD "place"

static const char help[] =
    "usage: flexmoe place --trace T --gpus N [--gpus-per-node K] [--slots S]\n"
    "                     [--policy NAME[:key=value,...]] [--iteration I] [--layer L]\n"
    "                     [--cluster PRESET|FILE.json] [--d-model D] [--d-ff F]\n"
    "                     [--top-k K] [--tokens-per-gpu T] [--seed S]\n"
    "                     [--format table|json]\n"
    "\n"
    "Runs a placement policy over a routing trace (rescaled to N GPUs) up to\n"
    "iteration I and prints the placement it uses there: each expert's GPUs,\n"
    "each GPU's load after routing iteration I, the balance (max/mean GPU\n"
    "load) and the moves of that iteration's plan, for layer L or all layers.\n"
    "A framework can take the JSON plan as is.\n"
    "\n"
    "  --trace T            routing trace (.npy or .csv)\n"
    "  --gpus N             GPUs to place on (any N; GPU g replays rank g mod R)\n"
    "  --gpus-per-node K    GPUs per node (default: the preset's, at most N)\n"
    "  --slots S            expert slots per GPU per layer (default: from HBM,\n"
    "                       half reserved; at most the number of experts)\n"
    "  --policy SPEC        policy and parameters (default flexmoe; see\n"
    "                       'flexmoe policies')\n"
    "  --iteration I        iteration to show (default: the last)\n"
    "  --layer L            one layer (default: all)\n"
    "  --cluster P          preset or JSON file for link numbers (default dgx-h100)\n"
    "  --d-model, --d-ff, --top-k   model shape (default: the trace's sidecar)\n"
    "  --tokens-per-gpu T   tokens per GPU per iteration (default: the trace's)\n"
    "  --seed S             rescaling seed, 0 to 2^63 - 1 (default 0)\n"
    "  --format table|json  output (default table)\n"
    "\n"
    "example:\n"
    "  flexmoe place --trace traces/samples/gpt-l6-e32-top2-aux-200.npy --gpus 8 \\\n"
    "      --slots 6 --policy flexmoe:threshold=1.2,horizon=50 --iteration 120 --layer 0\n";

typedef struct place_opts {
  const char *trace, *policy, *cluster;
  long gpus, gpn, slots, iteration, layer, d_model, d_ff, top_k, tokens, seed;
  int fmt;
} place_opts;

static const char *kind_name(pl_move_kind k) {
  return k == PL_MOVE_REPLICATE ? "replicate" : k == PL_MOVE_DROP ? "drop" : "migrate";
}

/* Per-layer result of the iteration shown. */
typedef struct layer_out {
  pl_placement placement;
  int64_t *gpu_load;
  double balance;
  int64_t dropped;
  int background;
  pl_move *moves;
  int nmoves;
} layer_out;

/* Every set and append is checked (bad): a value that could not be built
 * (out of memory) fails the output instead of leaving a key out. */
static int emit_json(const place_opts *o, const pl_policy *pol, int G, int gpn, int slots,
                     layer_out *out, int l0, int l1) {
  json_t *root = json_object(), *layers = json_array();
  int bad = !root || !layers;
  bad |= json_object_set_new(root, "policy", fm_json_string(pl_policy_spec(pol)));
  bad |= json_object_set_new(root, "trace", fm_json_string(o->trace));
  bad |= json_object_set_new(root, "iteration", json_integer(o->iteration));
  bad |= json_object_set_new(root, "gpus", json_integer(G));
  bad |= json_object_set_new(root, "gpus_per_node", json_integer(gpn));
  bad |= json_object_set_new(root, "slots_per_gpu", json_integer(slots));
  for (int l = l0; l < l1 && !bad; l++) {
    layer_out *lo = &out[l - l0];
    const pl_placement *p = &lo->placement;
    json_t *lj = json_object(), *experts = json_array(), *load = json_array(),
           *moves = json_array();
    bad |= !lj || !experts || !load || !moves;
    for (int e = 0; e < p->experts && !bad; e++) {
      json_t *ej = json_object(), *gpus = json_array();
      bad |= !ej || !gpus;
      for (int i = 0; i < p->nrep[e] && !bad; i++)
        bad |= json_array_append_new(gpus, json_integer(p->rep[(size_t)e * p->gpus + i]));
      bad |= json_object_set_new(ej, "expert", json_integer(e));
      bad |= json_object_set_new(ej, "gpus", gpus);
      bad |= json_array_append_new(experts, ej);
    }
    for (int g = 0; g < G && !bad; g++)
      bad |= json_array_append_new(load, json_integer(lo->gpu_load[g]));
    for (int k = 0; k < lo->nmoves && !bad; k++) {
      const pl_move *m = &lo->moves[k];
      json_t *mj = json_object();
      bad |= json_object_set_new(mj, "expert", json_integer(m->expert));
      bad |= json_object_set_new(mj, "from", json_integer(m->from));
      bad |= json_object_set_new(mj, "to", json_integer(m->to));
      bad |= json_object_set_new(mj, "kind", json_string(kind_name(m->kind)));
      bad |= json_object_set_new(mj, "bytes", json_integer(m->bytes));
      bad |= json_array_append_new(moves, mj);
    }
    bad |= json_object_set_new(lj, "layer", json_integer(l));
    bad |= json_object_set_new(lj, "experts", experts);
    bad |= json_object_set_new(lj, "gpu_load", load);
    /* NAN (a layer without load) is null: JSON has no NaN */
    bad |= json_object_set_new(lj, "balance", fm_json_number(lo->balance));
    bad |= json_object_set_new(lj, "dropped", json_integer(lo->dropped));
    bad |= json_object_set_new(lj, "background", json_boolean(lo->background));
    bad |= json_object_set_new(lj, "moves", moves);
    bad |= json_array_append_new(layers, lj);
  }
  bad |= json_object_set_new(root, "layers", layers);
  if (bad) {
    json_decref(root);
    root = NULL;
  }
  return cli_json_print(CMD, root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
}

static int emit_table(const place_opts *o, const pl_policy *pol, int G, int gpn, int slots,
                      layer_out *out, int l0, int l1) {
  printf("policy %s\n%s, iteration %ld: %d GPUs (%d per node), %d slots per GPU\n",
         pl_policy_spec(pol), o->trace, o->iteration, G, gpn, slots);
  for (int l = l0; l < l1; l++) {
    layer_out *lo = &out[l - l0];
    const pl_placement *p = &lo->placement;
    printf("\nlayer %d: balance %.3f (max/mean GPU load after routing)", l, lo->balance);
    if (lo->dropped)
      printf(", %" PRId64 " token slots dropped", lo->dropped);
    printf(", %d move%s%s\n", lo->nmoves, lo->nmoves == 1 ? "" : "s",
           lo->nmoves && lo->background ? " (background)" : "");
    printf("  %4s %10s  %s\n", "gpu", "tokens", "experts");
    for (int g = 0; g < G; g++) {
      printf("  %4d %10" PRId64 " ", g, lo->gpu_load[g]);
      for (int j = 0; j < p->nhost[g]; j++) {
        int e = p->host[(size_t)g * p->slots + j];
        printf(" %d%s", e, p->nrep[e] > 1 ? "*" : "");
      }
      printf("\n");
    }
    for (int k = 0; k < lo->nmoves; k++) {
      const pl_move *m = &lo->moves[k];
      if (m->kind == PL_MOVE_DROP)
        printf("  move: drop expert %d on GPU %d\n", m->expert, m->from);
      else
        printf("  move: %s expert %d GPU %d -> %d (%.1f MB)\n", kind_name(m->kind), m->expert,
               m->from, m->to, (double)m->bytes / 1e6);
    }
  }
  printf("\n(* = replicated expert)\n");
  if (fflush(stdout))
    return cli_fail(CLI_EFAIL, CMD, "cannot write to stdout");
  return CLI_OK;
}

static int parse(int argc, char **argv, place_opts *o) {
  enum { O_TRACE = 256, O_GPUS, O_GPN, O_SLOTS, O_POLICY, O_IT, O_LAYER, O_CLUSTER, O_DM,
         O_DFF, O_TOPK, O_TOK, O_SEED, O_FMT, O_HELP };
  static const struct option opts[] = {
      {"trace", required_argument, NULL, O_TRACE},
      {"gpus", required_argument, NULL, O_GPUS},
      {"gpus-per-node", required_argument, NULL, O_GPN},
      {"slots", required_argument, NULL, O_SLOTS},
      {"policy", required_argument, NULL, O_POLICY},
      {"iteration", required_argument, NULL, O_IT},
      {"layer", required_argument, NULL, O_LAYER},
      {"cluster", required_argument, NULL, O_CLUSTER},
      {"d-model", required_argument, NULL, O_DM},
      {"d-ff", required_argument, NULL, O_DFF},
      {"top-k", required_argument, NULL, O_TOPK},
      {"tokens-per-gpu", required_argument, NULL, O_TOK},
      {"seed", required_argument, NULL, O_SEED},
      {"format", required_argument, NULL, O_FMT},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0}};
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    int rc = CLI_OK;
    switch (c) {
    case O_TRACE: o->trace = optarg; break;
    case O_POLICY: o->policy = optarg; break;
    case O_CLUSTER: o->cluster = optarg; break;
    case O_GPUS: rc = cli_parse_long(CMD, "--gpus", optarg, 1, SIM_MAX_GPUS, &o->gpus); break;
    case O_GPN: rc = cli_parse_long(CMD, "--gpus-per-node", optarg, 1, SIM_MAX_GPUS, &o->gpn); break;
    case O_SLOTS: rc = cli_parse_long(CMD, "--slots", optarg, 1, 1 << 20, &o->slots); break;
    case O_IT: rc = cli_parse_long(CMD, "--iteration", optarg, 0, 1L << 40, &o->iteration); break;
    case O_LAYER: rc = cli_parse_long(CMD, "--layer", optarg, 0, 1 << 20, &o->layer); break;
    case O_DM: rc = cli_parse_long(CMD, "--d-model", optarg, 1, 1 << 20, &o->d_model); break;
    case O_DFF: rc = cli_parse_long(CMD, "--d-ff", optarg, 1, 1 << 22, &o->d_ff); break;
    case O_TOPK: rc = cli_parse_long(CMD, "--top-k", optarg, 1, 64, &o->top_k); break;
    case O_TOK: rc = cli_parse_long(CMD, "--tokens-per-gpu", optarg, 1, 1L << 32, &o->tokens); break;
    case O_SEED: rc = cli_parse_long(CMD, "--seed", optarg, 0, CLI_SEED_MAX, &o->seed); break;
    case O_FMT: rc = cli_parse_format(CMD, optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &o->fmt); break;
    case O_HELP: cli_help(help); return -1;
    default: return cli_bad_option(CMD, argv[optind - 1]);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, CMD, "unexpected argument '%s'", argv[optind]);
  if (!o->trace)
    return cli_fail(CLI_EUSAGE, CMD, "--trace is required (see 'flexmoe place --help')");
  if (!o->gpus)
    return cli_fail(CLI_EUSAGE, CMD, "--gpus is required (see 'flexmoe place --help')");
  return CLI_OK;
}

/* One place run's state: the trace, what was resolved from it and the
 * flags, the policy and the per-layer results of the iteration shown. Zero
 * (with plan initialized) is "nothing to release" for place_fini. */
typedef struct place_run {
  tr_trace t;
  pl_model model;
  int64_t tokens, slots_per_gpu; /* tokens per GPU; rescale target (0 = trace's) */
  sim_cluster cl;
  sim_profile prof;
  sim_pl_profile plp; /* the policy's env.profile points into it: it outlives the policy */
  int G, gpn, slots, l0, l1, nshow;
  pl_policy *pol;
  layer_out *out;   /* [nshow], layers l0..l1-1 */
  int64_t *counts;  /* [G * E] one (iteration, layer) rescaled */
  pl_routing r;
  pl_plan plan;
} place_run;

/* Opens the trace o->trace into *t; CLI_OK or CLI_EFAIL with one message
 * naming the file (and line). */
static int place_open(const place_opts *o, tr_trace *t) {
  tr_error terr;
  if (tr_open(t, o->trace, &terr) == 0)
    return CLI_OK;
  const char *msg = terr.msg[0] ? terr.msg : tr_strerror(terr.code);
  if (strstr(msg, o->trace))
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  if (terr.line > 0)
    return cli_fail(CLI_EFAIL, CMD, "%s:%ld: %s", o->trace, terr.line, msg);
  return cli_fail(CLI_EFAIL, CMD, "%s: %s", o->trace, msg);
}

/* The iteration (default the last) and the layers shown checked against the
 * trace, then the model shape and the tokens per GPU from the flags or the
 * trace's sidecar; CLI_OK, CLI_EUSAGE for an iteration or layer out of range,
 * CLI_EFAIL when the sidecar lacks a shape. */
static int place_model(place_opts *o, place_run *w) {
  const tr_trace *t = &w->t;
  w->l0 = 0;
  w->l1 = t->layers;
  if (o->iteration < 0)
    o->iteration = t->iterations - 1;
  if (o->iteration >= t->iterations)
    return cli_fail(CLI_EUSAGE, CMD, "--iteration %ld: %s has iterations 0..%" PRId64,
                    o->iteration, o->trace, t->iterations - 1);
  if (o->layer >= t->layers)
    return cli_fail(CLI_EUSAGE, CMD, "--layer %ld: %s has layers 0..%d", o->layer, o->trace,
                    t->layers - 1);
  if (o->layer >= 0) {
    w->l0 = (int)o->layer;
    w->l1 = w->l0 + 1;
  }
  w->model = (pl_model){.d_model = o->d_model ? (int)o->d_model : t->meta.d_model,
                        .d_ff = o->d_ff ? (int)o->d_ff : t->meta.d_ff,
                        .top_k = o->top_k ? (int)o->top_k : t->meta.top_k,
                        .bytes_per_elem = t->meta.bytes_per_elem > 0 ? t->meta.bytes_per_elem : 2,
                        .optimizer_bytes_per_param = 12.0};
  const pl_model *m = &w->model;
  if (m->d_model < 1 || m->d_ff < 1 || m->top_k < 1)
    return cli_fail(CLI_EFAIL, CMD, "%s: the trace's sidecar does not give %s; pass it on the command line",
                    o->trace, m->d_model < 1 ? "d_model (--d-model)"
                              : m->d_ff < 1  ? "d_ff (--d-ff)" : "top_k (--top-k)");
  w->tokens = o->tokens ? o->tokens : t->meta.tokens_per_rank;
  w->slots_per_gpu = o->tokens ? o->tokens * m->top_k : 0;
  if (w->tokens <= 0) {
    int64_t s = 0;
    for (int e = 0; e < t->experts; e++)
      s += tr_at(t, 0, 0, 0, e);
    w->tokens = s / m->top_k;
  }
  return CLI_OK;
}

/* The cluster preset or file resized to G GPUs in nodes of --gpus-per-node
 * (default the preset's, at most G), and its GPU's compute profile for the
 * model shape; CLI_OK, CLI_EUSAGE when G does not split into nodes,
 * CLI_EFAIL for an unknown cluster or a missing profile. */
static int place_cluster(const place_opts *o, place_run *w) {
  sim_errbuf serr;
  int G = w->G;
  if (sim_cluster_resolve(o->cluster, &w->cl, &serr))
    return cli_fail(CLI_EFAIL, CMD, "%s", serr.msg);
  w->gpn = o->gpn ? (int)o->gpn : (w->cl.gpus_per_node < G ? w->cl.gpus_per_node : G);
  if (G % w->gpn)
    return cli_fail(CLI_EUSAGE, CMD, "--gpus %d cannot be split into nodes of %d GPUs (--gpus-per-node)",
                    G, w->gpn);
  if (sim_cluster_resize(&w->cl, G / w->gpn, w->gpn, &serr))
    return cli_fail(CLI_EFAIL, CMD, "%s", serr.msg);
  if (sim_profile_builtin(w->cl.profile, &w->prof, &serr) ||
      sim_profile_for_shape(&w->prof, w->model.d_model, w->model.d_ff, w->tokens,
                            w->cl.compute_scale, &w->plp))
    return cli_fail(CLI_EFAIL, CMD, "no compute profile for GPU '%s' and d_model %d, d_ff %d",
                    w->cl.profile, w->model.d_model, w->model.d_ff);
  return CLI_OK;
}

/* Slots per GPU: --slots, or from HBM with half reserved; at most E, and
 * enough for every expert once; CLI_OK or CLI_EFAIL with one message. */
static int place_slots(const place_opts *o, place_run *w) {
  int E = w->t.experts, G = w->G;
  w->slots = (int)o->slots;
  if (!w->slots) {
    double hbm = w->cl.hbm_gib * 1073741824.0;
    if (pl_slots_from_memory(&w->model, hbm, hbm * 0.5, E, G, &w->slots))
      return cli_fail(CLI_EFAIL, CMD,
                      "fewer expert slots than experts: %d experts of %.1f MiB (with optimizer "
                      "state) do not fit on %d GPUs of %.0f GiB (half reserved); use more GPUs or --slots",
                      E, (double)pl_expert_move_bytes(&w->model) / 1048576.0, G, w->cl.hbm_gib);
  }
  if (w->slots > E)
    w->slots = E;
  if ((int64_t)w->slots * G < E)
    return cli_fail(CLI_EFAIL, CMD, "fewer expert slots than experts: %d GPUs x %d slots < %d experts",
                    G, w->slots, E);
  return CLI_OK;
}

/* The policy created on the resolved environment, and the per-layer results,
 * counts and routing allocated; CLI_OK, CLI_EUSAGE for an unknown policy or
 * parameter, CLI_EFAIL otherwise (one message printed). */
static int place_policy(const place_opts *o, place_run *w) {
  int E = w->t.experts, G = w->G;
  pl_env env = PL_ENV_INIT;
  env.layers = w->t.layers;
  env.experts = E;
  sim_cluster_to_pl(&w->cl, w->slots, &env.cluster);
  env.model = w->model;
  env.profile = w->plp.pl;
  env.seed = (uint64_t)o->seed;
  char perr[512] = "";
  int prc = pl_policy_create(&w->pol, o->policy, &env, perr, sizeof(perr));
  if (prc)
    return cli_fail((prc == PL_EPOLICY || prc == PL_EPARAM) ? CLI_EUSAGE : CLI_EFAIL, CMD,
                    "--policy: %s", perr[0] ? perr : pl_strerror(prc));
  w->nshow = w->l1 - w->l0;
  w->out = calloc((size_t)w->nshow, sizeof(layer_out));
  w->counts = malloc(sizeof(int64_t) * (size_t)G * E);
  if (!w->out || !w->counts || pl_routing_init(&w->r, G, E, 0))
    return cli_fail(CLI_EFAIL, CMD, "out of memory");
  return CLI_OK;
}

/* Layer l's placement, loads, balance and plan moves (of the iteration
 * shown) copied into lo; CLI_OK or CLI_EFAIL (out of memory). */
static int place_capture(place_run *w, int l, layer_out *lo) {
  int E = w->t.experts, G = w->G;
  const pl_plan *plan = &w->plan;
  const pl_placement *p = pl_policy_placement(w->pol, l);
  lo->gpu_load = malloc(sizeof(int64_t) * (size_t)G);
  lo->moves = malloc(sizeof(pl_move) * (size_t)(plan->changed && plan->nmoves ? plan->nmoves : 1));
  if (!lo->gpu_load || !lo->moves ||
      pl_placement_init(&lo->placement, E, G, p->slots) ||
      pl_placement_copy(&lo->placement, p))
    return cli_fail(CLI_EFAIL, CMD, "out of memory");
  memcpy(lo->gpu_load, w->r.gpu_load, sizeof(int64_t) * (size_t)G);
  lo->balance = pl_routing_balance(&w->r);
  lo->dropped = w->r.dropped;
  lo->nmoves = plan->changed ? plan->nmoves : 0;
  lo->background = plan->changed && plan->background;
  if (lo->nmoves)
    memcpy(lo->moves, plan->moves, sizeof(pl_move) * (size_t)lo->nmoves);
  return CLI_OK;
}

/* The policy driven through plan, route and observe on the rescaled counts
 * of every layer of iterations 0..o->iteration, the layers shown captured
 * at the last; CLI_OK or CLI_EFAIL with one message naming the step. */
static int place_replay(const place_opts *o, place_run *w) {
  int G = w->G, prc, rc;
  for (int64_t it = 0; it <= o->iteration; it++)
    for (int l = 0; l < w->t.layers; l++) {
      int trc = tr_rescale_slice(&w->t, it, l, G, w->slots_per_gpu, (uint64_t)o->seed, w->counts);
      if (trc)
        return cli_fail(CLI_EFAIL, CMD, "%s: cannot map iteration %" PRId64 " onto %d GPUs: %s",
                        o->trace, it, G, tr_strerror(trc));
      if ((prc = pl_policy_plan(w->pol, (int)it, l, w->counts, &w->plan)) != 0)
        return cli_fail(CLI_EFAIL, CMD, "policy %s failed at iteration %" PRId64 ", layer %d: %s",
                        o->policy, it, l, pl_strerror(prc));
      if ((prc = pl_policy_route(w->pol, l, w->counts, &w->r)) != 0 ||
          (prc = pl_policy_observe(w->pol, (int)it, l, w->counts)) != 0)
        return cli_fail(CLI_EFAIL, CMD, "routing iteration %" PRId64 ", layer %d: %s", it, l,
                        pl_strerror(prc));
      if (it == o->iteration && l >= w->l0 && l < w->l1 &&
          (rc = place_capture(w, l, &w->out[l - w->l0])))
        return rc;
    }
  return CLI_OK;
}

/* Releases everything place_run holds, the trace last; accepts a partly
 * set up run. */
static void place_fini(place_run *w) {
  if (w->out)
    for (int i = 0; i < w->nshow; i++) {
      pl_placement_fini(&w->out[i].placement);
      free(w->out[i].gpu_load);
      free(w->out[i].moves);
    }
  free(w->out);
  free(w->counts);
  pl_routing_fini(&w->r);
  pl_plan_fini(&w->plan);
  pl_policy_destroy(w->pol);
  tr_close(&w->t);
}

/* flexmoe place ARGS: resolves the run as `sim` does, drives the policy up
 * to the iteration shown and prints its placement there; CLI_OK, CLI_EUSAGE
 * for a bad command line, CLI_EFAIL (one message printed) otherwise. */
int cmd_place(int argc, char **argv) {
  place_opts o = {.trace = NULL, .policy = "flexmoe", .cluster = "dgx-h100", .iteration = -1,
                  .layer = -1, .seed = FM_DEFAULT_SEED, .fmt = CLI_FMT_TABLE};
  int rc = parse(argc, argv, &o);
  if (rc)
    return rc < 0 ? CLI_OK : rc;
  place_run w = {.G = (int)o.gpus, .pol = NULL, .r = {0}};
  if ((rc = place_open(&o, &w.t)))
    return rc;
  pl_plan_init(&w.plan);
  if (!(rc = place_model(&o, &w)) && !(rc = place_cluster(&o, &w)) &&
      !(rc = place_slots(&o, &w)) && !(rc = place_policy(&o, &w)) &&
      !(rc = place_replay(&o, &w)))
    rc = o.fmt == CLI_FMT_JSON ? emit_json(&o, w.pol, w.G, w.gpn, w.slots, w.out, w.l0, w.l1)
                               : emit_table(&o, w.pol, w.G, w.gpn, w.slots, w.out, w.l0, w.l1);
  place_fini(&w);
  return rc;
}
