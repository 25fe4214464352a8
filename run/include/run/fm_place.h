/*
 * fm_place.h - a policy's placement plan for a trace, as `flexmoe place`
 * prints it and a training framework can take it.
 *
 * Drives the policy through the plan protocol (placement/pl_policy.h) on the
 * trace's counts, rescaled to `gpus` GPUs as a simulation does
 * (tr_rescale_slice with the seed), from iteration 0 up to `iteration`, and
 * keeps, for the layers shown, the placement used at that iteration, each
 * GPU's load after routing its counts, the balance (max/mean GPU load) and
 * the moves of that iteration's plan. Model, cluster, profile and slots are
 * resolved as for a simulation: the cluster preset or file resized to
 * gpus_per_node GPUs per node (default the preset's, at most gpus), its GPU's
 * built-in profile, slots from HBM with half reserved unless given.
 *
 * Errors: FM_EUSAGE (an iteration or layer past the trace, gpus that do not
 * split into nodes, an unknown policy or parameter) or FM_EFAIL (a trace or
 * cluster that cannot be read, a sidecar without a model shape, too few
 * slots, a failing policy), with one sentence in the caller's buffer naming
 * the file, flag or step. Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_PLACE_H
#define FLEXMOE_RUN_FM_PLACE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "placement/pl_policy.h"

/* 0 (or -1 for iteration and layer) means "resolve it": see each field. */
typedef struct fm_place_config {
  const char *trace;   /* routing trace (.npy or .csv), required */
  const char *policy;  /* spec NAME[:key=value,...] */
  const char *cluster; /* preset name or JSON file */
  int gpus;            /* required, >= 1 */
  int gpus_per_node;   /* 0: the preset's, at most gpus */
  int slots;           /* slots per GPU per layer; 0: from HBM, half reserved */
  int64_t iteration;   /* -1: the trace's last */
  int layer;           /* -1: every layer */
  int d_model, d_ff, top_k; /* 0: the trace's sidecar */
  int64_t tokens_per_gpu;   /* 0: the trace's */
  uint64_t seed;            /* rescaling and the policy's seed */
  /* Appended (issue 17): 1 = also decide the iteration's temporaries of the
   * layers shown (pl_policy.h's temporaries contract: after every layer's
   * plan, on the iteration's own counts, as the simulator does) */
  int temporaries;
} fm_place_config;

/* One layer shown, at the iteration shown. */
typedef struct fm_place_layer {
  pl_placement placement;
  int64_t *gpu_load; /* [gpus] token slots after routing */
  double balance;    /* max/mean GPU load; NAN for a layer without load */
  int64_t dropped;   /* token slots dropped */
  int background;    /* the plan's moves run in the background */
  pl_move *moves;
  int nmoves;
  pl_temp *temps; /* with cfg.temporaries: the iteration's temporaries, else NULL */
  int ntemps;
} fm_place_layer;

typedef struct fm_place_result {
  char *policy;      /* the canonical spec (pl_policy_spec), owned */
  const char *trace; /* the configuration's */
  int64_t iteration; /* resolved */
  int gpus, gpus_per_node, slots;
  int layer0, nlayers;    /* layers layer0 .. layer0 + nlayers - 1 */
  fm_place_layer *layers; /* [nlayers] */
  int temporaries;        /* the configuration's: the layers have temps */
} fm_place_result;

/* Runs the configuration into *out (release with fm_place_result_fini, also
 * on failure). FM_OK, FM_EUSAGE or FM_EFAIL with one sentence in errmsg. */
int fm_place_run(const fm_place_config *cfg, fm_place_result *out, char *errmsg,
                 size_t errlen);
void fm_place_result_fini(fm_place_result *r);

/* "migrate", "replicate" or "drop". */
const char *fm_place_move_kind(pl_move_kind k);

/* `flexmoe place --format json`'s document: {"policy", "trace",
 * "iteration", "gpus", "gpus_per_node", "slots_per_gpu", "layers": [{"layer",
 * "experts": [{"expert", "gpus"}], "gpu_load", "balance", "dropped",
 * "background", "moves": [{"expert", "from", "to", "kind", "bytes"}]}]},
 * each layer with "temporaries": [{"expert", "from", "to"}] after "moves"
 * when they were asked for; NULL when out of memory. */
json_t *fm_place_doc(const fm_place_result *r);

#endif
