/*
 * fm_profile.h - calibrated profiles on disk, in the simulator's formats.
 *
 * `flexmoe calibrate --out P.json` writes two files (temporary + rename):
 *   P.json          the compute profile in the format of sim/sim_profile.h
 *                   (name, device, dtype, bwd_ratio, nonmoe_factor = 0 since
 *                   the runtime runs no non-MoE work, one shape);
 *   P.cluster.json  a cluster file in the format `--cluster FILE.json` takes
 *                   (one node of G ranks, compute_scale 1 because the profile
 *                   was measured on one rank, intra/inter = the measured
 *                   exchange bandwidth and latency);
 *   P.runtime.json  what only the runtime knows: the local token movement
 *                   fit (permute: latency + cost per row), launch overhead,
 *                   and the raw exchange points.
 * The runtime's local token movement per layer and direction (four passes
 * over the rank's token slots S) is what the cost model calls non-MoE work:
 * nonmoe_us = 4 (local_lat_us + S local_us_per_row); `flexmoe validate`
 * gives it to the simulator as the profile's nonmoe_factor for the run.
 * Owned by the runtime authors.
 */
#ifndef FLEXMOE_RUN_FM_PROFILE_H
#define FLEXMOE_RUN_FM_PROFILE_H

#include <stddef.h>

#include "placement/pl_cost.h"
#include "runtime/rt_calib.h"

typedef struct fm_profile {
  char name[64];
  char device[128];
  int d_model, d_ff;
  int npoints;
  double tok[64], us[64];
  pl_profile pl;              /* points into tok/us: use in place */
  double exchange_GBps;       /* 0 when no cluster file */
  double exchange_latency_us;
  double launch_us;
  double local_lat_us, local_us_per_row; /* 0 when no runtime file */
  int gpus;
} fm_profile;

/* The calibration res measured on backend b as a profile named name, for a
 * model (d_model, d_ff): points, backward ratio, exchange, launch and local
 * token movement. *p is filled in place (its pl arrays point into *p
 * itself: never copy it). */
struct rt_calib_result;
struct rt_backend;
void fm_profile_from_calib(const struct rt_calib_result *res, const struct rt_backend *b,
                           const char *name, int d_model, int d_ff, fm_profile *p);

/* Non-MoE time per layer and direction the runtime spends moving S token
 * slots locally (see above). */
double fm_profile_local_us(const fm_profile *p, double slots_per_gpu);

/* The simulator's profile of P.json with its nonmoe_factor set so that the
 * simulator's non-MoE time equals the runtime's local token movement for a
 * model (d_model, d_ff, top_k) at tokens_per_gpu tokens per GPU (0 when
 * P.runtime.json is absent). Both sides then build their pl_profile with
 * sim_profile_for_shape from this same struct: the policies see identical
 * numbers, so the simulator and the runtime plan identically. */
struct sim_profile;
int fm_profile_for_sim(const char *path, int d_model, int d_ff, int top_k,
                       double tokens_per_gpu, struct sim_profile *out, char *em,
                       size_t el);

/* P.json -> P.cluster.json */
void fm_profile_cluster_path(const char *profile_path, char *buf, size_t len);

/* Reads P.json (the shape matching d_model/d_ff if given, else the first)
 * and, when present, P.cluster.json. */
int fm_profile_load(const char *path, fm_profile *p, char *em, size_t el);

/* JSON texts of both files (malloc'd, caller frees). */
int fm_profile_json(const fm_profile *p, char **profile_json, char **cluster_json);

/* Writes both files; nothing half-written on failure. */
int fm_profile_save(const fm_profile *p, const char *path, char *em, size_t el);

/* ---- calibration: `flexmoe calibrate` as one call ---- */

/* What to measure and where to keep it (0 / NULL: the backend's default). */
typedef struct fm_calibrate_config {
  const char *backend; /* "cuda" or "cpu" */
  int partitions;      /* cuda: green-context SM partitions of one GPU */
  int ranks;           /* default: the partitions, 2 on cpu, else 1 */
  int device, reps;
  /* the expert measured; default 2048 x 8192 on GPUs (the built-in
   * profile's model), 64 x 128 on cpu (its FFN is plain loops, about 0.5
   * GFLOP/s a rank: 2048 x 8192 would take hours there) */
  int d_model, d_ff;
  const char *name;     /* NULL: h200-green-N with partitions, else BACKEND-RANKS */
  const char *out_path; /* NULL: no files; else P.json and its siblings */
  const char *db_path;  /* NULL: not stored; else profiles NAME and NAME.cluster */
} fm_calibrate_config;

/* The measurements, the profile made of them and the ranks measured. */
typedef struct fm_calibration {
  rt_calib_result res;
  fm_profile profile; /* pl points into itself: use in place, never copy */
  int ranks;
} fm_calibration;

/* Creates the backend, measures it, makes the profile, writes it to
 * cfg->out_path and stores it in cfg->db_path (each only when given) into
 * *out. FM_OK, or FM_EFAIL with the backend's, the file's or the
 * database's sentence. */
int fm_calibrate(const fm_calibrate_config *cfg, fm_calibration *out, char *errmsg,
                 size_t errlen);

/* The calibration as one JSON document {"name", "backend", "device",
 * "ranks", "d_model", "d_ff", "ffn": [{"tokens", "fwd_us", "bwd_us",
 * "fwd_tflops"}], "bwd_ratio", "exchange": [{"bytes_per_rank", "us"}],
 * "exchange_GBps", "exchange_latency_us", "local_latency_us",
 * "local_us_per_row", "launch_us"}; NULL when out of memory. */
struct json_t;
struct json_t *fm_calibration_doc(const fm_calibrate_config *cfg, const fm_calibration *c);

#endif
