/*
 * sim_profile.h - compute profiles: expert FFN time as a function of tokens.
 *
 * A profile holds measured forward times of the expert FFN (two GEMMs,
 * d_model x d_ff and back) at increasing token counts for one or more
 * (d_model, d_ff) shapes, a backward/forward ratio, and a non-MoE factor.
 * sim_profile_for_shape turns it into the placement library's pl_profile for
 * the simulated model:
 *   - a measured shape is used as is;
 *   - another shape takes the measured shape nearest in FLOPs per token
 *     (|log(d*f / d'*f')| smallest; ties: the smaller) and scales its times by
 *     the FLOP ratio (d*f)/(d'*f') at the same token counts, i.e. the GEMM
 *     efficiency curve over tokens is assumed to carry over;
 *   - times are multiplied by `scale` (SM partitions: compute_scale of the
 *     cluster; built-in h100/a100: see below).
 * Non-MoE work per layer and direction (attention projections, attention,
 * norms: what the trace does not describe) is modelled as
 *   nonmoe_us = nonmoe_factor x (2 d / f) x ffn_us(tokens_per_gpu)
 *               x (1 + bwd_ratio) / 2
 * because the four d x d projections cost 8 d^2 FLOPs per token against the
 * FFN's 4 d f, at the same GEMM efficiency; nonmoe_factor (default 1.3) adds
 * the attention score/softmax/norm work on top; (1 + bwd_ratio)/2 averages
 * forward and backward, as pl_cost charges nonmoe_us in each direction.
 *
 * Built-in profiles: "h200" = the H200 measurements of
 * shared/calibration/h200-2026-11-28.txt (FFN rows of 3 shapes, bwd ratio
 * 2.15 = mean of the BWD rows). "h100" and "a100": the same curves scaled by
 * published dense bf16 peaks (H100 SXM 989 TFLOP/s = H200's 989: scale 1.0;
 * A100 312 TFLOP/s: scale 989/312 = 3.17), i.e. the same efficiency curve.
 *
 * Profile JSON (written by `flexmoe calibrate --out`, read by `sim --profile`):
 *   {"name": "h200-mybox",            string
 *    "device": "NVIDIA H200",         string, optional
 *    "dtype": "bf16",                 string, optional (bf16 assumed)
 *    "bwd_ratio": 2.15,               number, 0.01..100
 *    "nonmoe_factor": 1.3,            number 0..100, optional (default 1.3)
 *    "shapes": [{"d_model": 2048, "d_ff": 8192,   1..2^20, 1..2^22
 *                "tokens": [16, 64, ...],     ascending, 1..2^40
 *                "us": [27.3, 28.1, ...]}]}   forward microseconds, 0..1e9
 * Unknown keys are refused. At least one shape, at least one point each.
 */
#ifndef FLEXMOE_SIM_PROFILE_H
#define FLEXMOE_SIM_PROFILE_H

#include <stdint.h>

#include "placement/pl_cost.h"
#include "sim/sim_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_PROFILE_MAX_SHAPES 16
#define SIM_PROFILE_MAX_POINTS 64
/* Physical ranges of a profile file's numbers (inclusive): a backward pass
 * 0.01..100 times the forward (measured: 2.15), a non-MoE factor 0..100
 * (default 1.3), points at 1..2^40 tokens taking 0..1e9 us (1,000 s) each.
 * Errors name the key and the range (SIM_ERANGE). */
#define SIM_PROFILE_MIN_BWD 0.01
#define SIM_PROFILE_MAX_BWD 100.0
#define SIM_PROFILE_MAX_NONMOE 100.0
#define SIM_PROFILE_MAX_TOKENS 0x1p40
#define SIM_PROFILE_MAX_US 1e9

typedef struct sim_shape {
  int d_model, d_ff;
  int npoints;
  double tokens[SIM_PROFILE_MAX_POINTS];
  double us[SIM_PROFILE_MAX_POINTS];
} sim_shape;

typedef struct sim_profile {
  char name[64];
  char device[64];
  double bwd_ratio;
  double nonmoe_factor;
  double scale; /* time multiplier applied to every shape (built-ins) */
  int nshapes;
  sim_shape shapes[SIM_PROFILE_MAX_SHAPES];
} sim_profile;

/* Built-in profile "h200", "h100" or "a100". SIM_ENOENT otherwise. */
int sim_profile_builtin(const char *name, sim_profile *p, sim_errbuf *err);

/* Reads a profile JSON file (format above); err names the file and key. */
int sim_profile_load(const char *path, sim_profile *p, sim_errbuf *err);

/* Writes p as JSON (the format above) to path via a temporary + rename. */
int sim_profile_save(const sim_profile *p, const char *path, sim_errbuf *err);

/* The pl_profile for a model shape. `tok` and `us` (npoints each, at least
 * SIM_PROFILE_MAX_POINTS) receive the scaled table, out points into them.
 * time_scale multiplies every time (cluster compute_scale). */
typedef struct sim_pl_profile {
  double tokens[SIM_PROFILE_MAX_POINTS];
  double us[SIM_PROFILE_MAX_POINTS];
  pl_profile pl;
  int shape_index;     /* which measured shape was used */
  double flop_scale;   /* (d f) / (d' f') applied */
} sim_pl_profile;

/* out->pl points into out itself: use it in place, never copy the struct. */
int sim_profile_for_shape(const sim_profile *p, int d_model, int d_ff,
                          int64_t tokens_per_gpu, double time_scale,
                          sim_pl_profile *out);

#ifdef __cplusplus
}
#endif
#endif
