/*
 * rt_calib.h - measuring a backend: the numbers the simulator's profile
 * needs (flexmoe calibrate).
 *
 *  - expert FFN forward and backward time vs tokens for (d_model, d_ff), on
 *    every rank at once (as in a replay, where all ranks compute together),
 *    the slowest rank's mean over `reps` after `warmup` runs; on the cpu
 *    backend (plain loops, linear in tokens) the points are then replaced
 *    by a Theil-Sen line through them (median slope), so that a burst of other work
 *    during one point does not become a cliff in the profile;
 *  - exchange: a uniform all-to-all (the runtime's copies or send/recv and
 *    the wait for every rank) at several sizes, fitted by least squares as
 *    time = latency + bytes / bandwidth, bytes = what one rank sends to the
 *    others counted at `model_bytes_per_elem` (so the fit is in the units
 *    the cost model charges). On the cpu backend with 2+ ranks instead:
 *    the bandwidth from the copies alone at 16..1024 rows a destination
 *    (a Theil-Sen line; the barrier per repetition of the old tight loop
 *    put its noise into the slope, and at the old 4..256 rows the clock,
 *    not the memcpy, set the time), and the latency from the replay's own
 *    exchange phases: 16 dispatch-like phases (a permute on every rank,
 *    then copies and a barrier: the ranks arrive almost together) and 16
 *    combine-like ones (rank 0 an FFN of the largest token count, the
 *    others a quarter: one rank waits, asleep, and must be woken), each
 *    timed as the replay times a phase (latest stamp before to latest
 *    stamp after); latency = their mean less the copy time at that size.
 *    The replay pays the long wake-up once per layer and direction (after
 *    the compute), not at every exchange as the old barrier cost added to
 *    both; barrier_us keeps the latency less the copies' own intercept;
 *  - local token movement: the permute kernel at several row counts,
 *    fitted as latency + rows x cost per row (the replay runs four such
 *    passes per layer and direction around the exchanges);
 *  - launch overhead: the time per tiny kernel of a long chain;
 *  - barrier cost as the replay meets it (GPU backends; the cpu backend
 *    measures it inside the exchange phases above): 16 phases in one run
 *    of the queues, rank 0 computing an expert FFN of the largest token
 *    count and the others a quarter of it, then a barrier; the mean time
 *    from the latest arrival to the latest release, less the same with no
 *    work before the barrier, added to exchange_latency_us (the simulator
 *    charges it per all-to-all) and kept in barrier_us.
 *
 * The FFN runs on weights scaled as the replay makes its experts (W1 at
 * 1/sqrt(d_model), W2 at 1/sqrt(d_ff)): the cpu backward's time depends on
 * the values.
 */
#ifndef FLEXMOE_RT_CALIB_H
#define FLEXMOE_RT_CALIB_H

#include <stdint.h>

#include "runtime/rt_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_CALIB_MAX 32

typedef struct rt_calib_config {
  int d_model, d_ff;
  int ntokens;
  int64_t tokens[RT_CALIB_MAX]; /* ascending */
  int nsizes;
  int64_t rows[RT_CALIB_MAX];   /* exchange: rows each rank sends to each rank */
  int warmup, reps;
  int model_bytes_per_elem;
  uint64_t seed;
} rt_calib_config;

typedef struct rt_calib_result {
  int ntokens;
  int64_t tokens[RT_CALIB_MAX];
  double fwd_us[RT_CALIB_MAX], bwd_us[RT_CALIB_MAX];
  double bwd_ratio;             /* sum bwd / sum fwd over the points >= 256 tokens */
  int nsizes;
  double x_bytes[RT_CALIB_MAX]; /* per rank, sent to others */
  double x_us[RT_CALIB_MAX];
  double exchange_GBps;         /* fitted, per rank, per direction */
  double exchange_latency_us;   /* fitted intercept */
  double local_lat_us;          /* permute: fitted intercept */
  double local_us_per_row;      /* permute: fitted slope */
  double launch_us;
  double barrier_us;            /* appended: barrier cost, included in
                                   exchange_latency_us (0 with one rank) */
} rt_calib_result;

/* Fills cfg with the default point lists for the backend's element size
 * (GPU: 16..16384 tokens; cpu: 1..512). */
void rt_calib_defaults(rt_calib_config *cfg, const rt_backend *b, int d_model, int d_ff);

int rt_calibrate(rt_backend *b, const rt_calib_config *cfg, rt_calib_result *out,
                 char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
